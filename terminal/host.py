"""The `Host` seam: online authorisation, as a terminal sees its acquirer.

After an Online Request outcome the terminal sends the kernel's data record (the
ICC data of ISO 8583 DE 55, BER-TLV) to a :class:`Host` and gets a
:class:`HostResponse`: the decision, the Authorisation Response Code (8A), and
the ARPC (with a Card Status Update for ARPC method 2) when the issuer verified
the cryptogram. A host that cannot be reached, times out, or answers something
unusable raises :class:`HostUnavailable`; the terminal then ends the transaction
the way its kernel prescribes for "unable to go online".

Implementations: :class:`HttpHost` (the token server's ``POST /v1/authorisations``
over HTTPS); the in-process adapter around a token server lives in ``scenarios``,
which is the only package that may wire the terminal to ``hce``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Host", "HostResponse", "HostUnavailable"]


class HostUnavailable(Exception):
    """The host could not be asked or did not answer usably (down, time-out, garbage)."""


@dataclass(frozen=True)
class HostResponse:
    """The authorisation response (Book 3 §10.9, Book 4 §12.2): ``arc`` is 8A (2 bytes,
    ASCII "00" approved), ``arpc`` and ``csu`` the issuer authentication data when the
    cryptogram verified; ``reason`` the host's reason in words (e.g. "replay")."""

    approved: bool
    reason: str
    arc: bytes
    arpc: bytes | None = None
    csu: bytes | None = None
    authorisation_id: str = ""


class Host(Protocol):
    """An acquirer / issuer that authorises online."""

    def authorise(self, icc_data: bytes) -> HostResponse:
        """Decide on the ICC data (BER-TLV, DE 55); raises :class:`HostUnavailable`."""
        ...
