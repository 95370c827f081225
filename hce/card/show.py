"""``emvtap card show PROFILE``: a card's data objects, decoded.

The card is personalised as it would be for a tap (with a fresh
:class:`hce.card.issuer.SoftIssuer` when it does offline data authentication), and
everything it holds is printed with :func:`emv.tags.render`: the PPSE answer, then
per application its FCI, the AIP and AFL, the card's own qualifiers (CTQ) and its
records, each under the heading of where a terminal finds it. PANs are masked
unless ``mask=False``.
"""

from __future__ import annotations

from pathlib import Path

from emv import tags, tlv
from emv.tlv import Tlv
from hce.card.issuer import SoftIssuer
from hce.card.personalise import AppImage, CardImage, personalise
from hce.card.profile import load_profile

__all__ = ["render_image", "show_profile"]


def show_profile(path: str | Path, *, mask: bool = True) -> str:
    """Load, personalise and render the profile at ``path`` (or a shipped profile's name)."""
    profile = load_profile(path)
    needs_signer = any(app.oda.enabled for app in profile.applications)
    signer = SoftIssuer().signer(profile) if needs_signer else None
    return render_image(personalise(profile, signer), mask=mask)


def render_image(image: CardImage, *, mask: bool = True) -> str:
    """Every data object of a card image, decoded (see the module docstring)."""
    profile = image.profile
    lines = [
        f"Card profile {profile.name} ({profile.path})",
        f"brand {profile.brand}, {profile.key_mode} keys",
        "",
        "SELECT 2PAY.SYS.DDF01",
        tags.render(tlv.decode(image.ppse_fci), mask=mask),
    ]
    for app in image.applications:
        lines += ["", *_application(app, mask)]
    return "\n".join(lines)


def _application(app: AppImage, mask: bool) -> list[str]:
    profile = app.profile
    kernel = profile.short_kernel_id
    processing = [Tlv.primitive(0x82, profile.aip), Tlv.primitive(0x94, profile.afl)]
    if profile.ctq is not None:
        processing.append(Tlv.primitive(0x9F6C, profile.ctq))
    lines = [
        f"SELECT {profile.aid.hex().upper()} ({profile.label}), cryptogram version "
        f"{profile.cryptogram_version}, ODA {profile.oda.method}",
        tags.render(tlv.decode(app.fci), mask=mask, kernel=kernel),
        "",
        "GET PROCESSING OPTIONS (static part)",
        tags.render(processing, mask=mask, kernel=kernel),
    ]
    for record in profile.records:
        signed = ", signed for ODA" if record.oda else ""
        lines += ["", f"READ RECORD SFI {record.sfi} record {record.number}{signed}"]
        encoded = app.records[record.sfi, record.number]
        lines.append(tags.render(tlv.decode(encoded), mask=mask, kernel=kernel))
    return lines
