"""The issuer public key certificate, signed by the test CA inside the HSM.

``emv.crypto.oda.issuer_certificate_message`` formats the certificate (EMV Book 2
§5.1 / §6.1, Table 6, message recovery of Annex A2.1.2); only the raw RSA private
operation is the HSM's (``Hsm.rsa_sign_raw``), so the CA key never leaves it.
"""

from __future__ import annotations

from emv.crypto import oda
from hce.hsm.interface import Hsm

__all__ = ["sign_issuer_certificate"]


def sign_issuer_certificate(
    hsm: Hsm,
    ca_label: str,
    issuer_label: str,
    *,
    issuer_identifier: str,
    expiry: str,
    serial_number: bytes,
) -> oda.PublicKeyCertificate:
    """Tags 90, 92 and 9F32 for the issuer key ``issuer_label`` under the CA ``ca_label``."""
    ca = hsm.rsa_public_key(ca_label)
    unsigned = oda.issuer_certificate_message(
        len(ca.modulus),
        hsm.rsa_public_key(issuer_label).oda_key(),
        issuer_identifier=issuer_identifier,
        expiry=expiry,
        serial_number=serial_number,
    )
    return unsigned.signed(hsm.rsa_sign_raw(ca_label, unsigned.message))
