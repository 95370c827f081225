"""The token vault: PANs only ever stored sealed by the HSM, found by keyed digest.

A PAN is sealed with AES-GCM under the HSM's ``vault`` key (``Hsm.encrypt_data``),
the token id and the field name as associated data, so a sealed value cannot be
moved to another row or field. Look-ups use ``Hsm.keyed_digest`` under the
``lookup`` key: deterministic, but useless without the HSM.
"""

from __future__ import annotations

import re
import secrets

from hce.hsm.interface import Hsm
from hce.server.errors import InvalidRequest

__all__ = [
    "LOOKUP_KEY",
    "VAULT_KEY",
    "check_pan",
    "luhn_valid",
    "new_token_pan",
    "open_pan",
    "pan_digest",
    "seal_pan",
]

VAULT_KEY = "vault"
LOOKUP_KEY = "lookup"
PAN_PATTERN = re.compile(r"\d{12,19}")


def _luhn_sum(digits: str) -> int:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10


def luhn_valid(pan: str) -> bool:
    """ISO/IEC 7812-1 Annex B: the check digit makes the Luhn sum a multiple of 10."""
    return bool(PAN_PATTERN.fullmatch(pan)) and _luhn_sum(pan) == 0


def new_token_pan(bin_prefix: str, length: int = 16) -> str:
    """A random Luhn-valid PAN of ``length`` digits starting with ``bin_prefix``."""
    body = bin_prefix + "".join(
        str(secrets.randbelow(10)) for _ in range(length - len(bin_prefix) - 1)
    )
    return body + str((10 - _luhn_sum(body + "0")) % 10)


def check_pan(what: str, pan: str) -> None:
    """Refuse anything but 12 to 19 digits with a good Luhn check digit (message names no digit)."""
    if not luhn_valid(pan):
        raise InvalidRequest(f"{what}: not a 12 to 19 digit PAN with a valid check digit")


def pan_digest(hsm: Hsm, pan: str) -> bytes:
    """The keyed look-up value of a PAN (AES-CMAC under the HSM's ``lookup`` key)."""
    return hsm.keyed_digest(LOOKUP_KEY, pan.encode("ascii"))


def seal_pan(hsm: Hsm, pan: str, token_id: str, field: str) -> bytes:
    """The PAN sealed under the ``vault`` key, bound to its token and field."""
    return hsm.encrypt_data(VAULT_KEY, pan.encode("ascii"), _aad(token_id, field))


def open_pan(hsm: Hsm, sealed: bytes, token_id: str, field: str) -> str:
    """The inverse of :func:`seal_pan`, inside the server only (key paths need the PAN)."""
    return hsm.decrypt_data(VAULT_KEY, sealed, _aad(token_id, field)).decode("ascii")


def _aad(token_id: str, field: str) -> bytes:
    return f"emvtap-vault/1|{token_id}|{field}".encode("ascii")
