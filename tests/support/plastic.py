"""An emulated plastic card for terminal tests, and what tests check it with: the issuer's
own recomputation of its cryptograms, a UK test terminal, and a link to put in front of
the card.

Tests are not packages (pytest runs with ``--import-mode=importlib``), so load this
module by path, as scripted_card.py's docstring shows (module name
``tests_terminal_plastic``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from emv.crypto import ac, kd, oda
from emv.link import Link
from hce.card import Card, CardProfile, MemoryCounterStore, SoftIssuer, personalise
from hce.card.keys import CounterStore
from terminal.config import AidConfig, TerminalConfig

__all__ = ["Plastic", "Relay", "issuer_ac", "make_plastic", "terminal_config"]


@dataclass
class Plastic:
    """A personalised plastic card, its issuer, and the terminal's CA keys for it."""

    profile: CardProfile
    issuer: SoftIssuer
    card: Card

    @property
    def ca_key(self) -> oda.CaPublicKey:
        """The CA public key that certifies the card's issuer key."""
        return self.issuer.ca_public_key(self.profile)

    @property
    def ca_keys(self) -> oda.CaKeyStore:
        return oda.CaKeyStore([self.ca_key])


def make_plastic(
    issuer: SoftIssuer, profile: CardProfile, store: CounterStore | None = None
) -> Plastic:
    """``profile`` personalised by ``issuer``, its counters in ``store`` (a fresh
    MemoryCounterStore by default; share one to make the same card again)."""
    image = personalise(profile, issuer.signer(profile))
    keys = issuer.plastic_keys(profile, store or MemoryCounterStore())
    return Plastic(profile, issuer, Card(image, keys))


def issuer_ac(issuer: SoftIssuer, profile: CardProfile, record: Mapping[int, bytes]) -> bytes:
    """The application cryptogram as the issuer recomputes it from the data record alone:
    the ICC master key by Option A from the IMK-AC, the PAN and the PSN; Table 26 (Book 2
    §8.1.1) from the record; then by the profile's cryptogram version, Visa CVN 18 (the
    common session key of ATC || '00'x6, Table 26 || IAD) or M/Chip CVN 16 (the M/Chip
    session key of ATC and UN, Table 26 || the CVR of IAD bytes 3-8)."""
    mk = kd.derive_icc_mk_a(issuer.imk(profile.keys["imk_ac"]), profile.pan, profile.psn)
    data = ac.CryptogramData.from_tags(record)
    version = profile.applications[0].cryptogram_version
    if version == "18":
        session_key = kd.derive_common_sk(mk, data.atc + bytes(6))
        return ac.generate_ac(session_key, ac.visa_cvn18_input(data, record[0x9F10]))
    assert version == "16", f"no issuer recomputation for CVN {version}"
    session_key = kd.derive_mastercard_sk(mk, data.atc, data.unpredictable_number)
    return ac.generate_ac(session_key, ac.mastercard_cvn16_input(data, record[0x9F10][2:8]))


def terminal_config(
    name: str, *aids: AidConfig, ca_keys: oda.CaKeyStore | None = None
) -> TerminalConfig:
    """An attended POS, online with offline capability (9F35 '22'), in the UK (country
    and currency 0826, exponent 2), with Terminal Capabilities E0F8C8, for ``aids``."""
    return TerminalConfig(
        name=name,
        terminal_type=0x22,
        capabilities=bytes.fromhex("E0F8C8"),
        additional_capabilities=bytes.fromhex("6000F0A001"),
        country=bytes.fromhex("0826"),
        currency=bytes.fromhex("0826"),
        currency_exponent=2,
        aids=aids,
        ca_keys=ca_keys if ca_keys is not None else oda.CaKeyStore(),
    )


class Relay:
    """A link in front of ``card`` that passes everything through; subclasses change
    what ``transceive`` does."""

    card: Link

    def __init__(self, card: Link) -> None:
        self.card = card

    def power_on(self) -> bytes:
        return self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def transceive(self, command: bytes) -> bytes:
        return self.card.transceive(command)
