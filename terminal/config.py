"""Terminal configuration: the reader's constants and its per-AID kernel settings, from YAML.

A configuration (``terminal/configs/default.yaml`` ships) says what the POS is
(Book 4 Annex A1: terminal type 9F35, capabilities 9F33, additional capabilities
9F40, country 9F1A, currency 5F2A and exponent 5F36, merchant data), which CA
public keys it holds, and for each AID it accepts (Book B §3.1, the Entry Point
Configuration Data; Books C-2 and C-3 for the kernel's own): the kernel, the
reader limits (contactless transaction limit, floor limit, CVM required limit),
status check and zero amount handling, the TTQ (Kernel 3), the Terminal Action
Codes, and the kernel configuration (:class:`Kernel2Settings`, :class:`Kernel3Settings`).

:func:`load_config` reads and checks a file; errors are :class:`ConfigError`
naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emv.crypto.oda import CaKeyStore

__all__ = [
    "AidConfig",
    "ConfigError",
    "Kernel2Settings",
    "Kernel3Settings",
    "Tacs",
    "TerminalConfig",
]


class ConfigError(ValueError):
    """A configuration that cannot be used: names the file, the field and the problem."""

    def __init__(self, file: str, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field}: {problem}")
        self.file = file
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Tacs:
    """Terminal Action Codes (Book 3 §10.7): Default, Denial, Online, 5 bytes each like the TVR."""

    default: bytes = bytes(5)
    denial: bytes = bytes(5)
    online: bytes = bytes(5)


@dataclass(frozen=True)
class Kernel2Settings:
    """Kernel 2 configuration (Book C-2 Annex A: Kernel Configuration DF811B, CVM
    capabilities DF8118/DF8119, mag-stripe CVM capabilities DF811E/DF812C, ...)."""

    emv_mode: bool = True
    mag_stripe_mode: bool = True
    on_device_cvm: bool = True
    cda: bool = True
    cvm_capability_cvm_required: bytes = b"\x60"  # DF8118: online PIN, signature
    cvm_capability_no_cvm_required: bytes = b"\x08"  # DF8119: no CVM
    mag_stripe_cvm_required: bytes = b"\x10"  # DF811E: CVM = online PIN
    mag_stripe_no_cvm_required: bytes = b"\x00"  # DF812C: no CVM
    default_udol: bytes = bytes.fromhex("9F6A04")  # DF811A
    torn_record_lifetime: int = 300  # seconds, DF811C
    max_torn_records: int = 1  # DF811D


@dataclass(frozen=True)
class Kernel3Settings:
    """Kernel 3 configuration (Book C-3 §4 and Annex A: reader options)."""

    fdda_versions: tuple[int, ...] = (0x00, 0x01)
    expiry_check: bool = True
    cdcvm_supported: bool = True


@dataclass(frozen=True)
class AidConfig:
    """One AID the reader accepts and how (Book B §3.1, Entry Point Configuration Data).

    Limits are in minor units of the terminal currency; None means "no such limit".
    """

    aid: bytes
    kernel_id: int
    partial_selection: bool = True
    transaction_limit: int | None = None  # Reader Contactless Transaction Limit
    floor_limit: int | None = None  # Reader Contactless Floor Limit (9F1B for the kernel)
    cvm_required_limit: int | None = None  # Reader CVM Required Limit
    status_check: bool = False
    zero_amount_allowed: bool = True
    ttq: bytes | None = None  # Kernel 3: the configured TTQ (9F66), 4 bytes
    tacs: Tacs = field(default_factory=Tacs)
    application_version: bytes = b"\x00\x02"  # 9F09
    kernel2: Kernel2Settings = field(default_factory=Kernel2Settings)
    kernel3: Kernel3Settings = field(default_factory=Kernel3Settings)


@dataclass(frozen=True)
class TerminalConfig:
    """The whole configuration (see the module docstring)."""

    name: str
    terminal_type: int  # 9F35
    capabilities: bytes  # 9F33, 3 bytes
    additional_capabilities: bytes  # 9F40, 5 bytes
    country: bytes  # 9F1A, 2 bytes n 3
    currency: bytes  # 5F2A, 2 bytes n 3
    currency_exponent: int  # 5F36
    aids: tuple[AidConfig, ...]
    ca_keys: CaKeyStore = field(default_factory=CaKeyStore)
    merchant_category: bytes = b"\x59\x99"  # 9F15
    merchant_id: str = "EMVTAP000000001"  # 9F16, ans 15
    terminal_id: str = "EMVTAP01"  # 9F1C, an 8
    ifd_serial: str = "00000001"  # 9F1E, an 8
    merchant_name: str = "EMVTAP TEST MERCHANT"  # 9F4E
    retaps: int = 1  # how many times Entry Point asks for the card again (Try Again)

    @property
    def online_capable(self) -> bool:
        """Terminal type (Book 4 Annex A1): x1 online only, x2 offline with online
        capability, x4 / x5 likewise unattended; x3 / x6 offline only."""
        return self.terminal_type & 0x0F not in (0x03, 0x06)

    def constants(self) -> dict[int, bytes]:
        """The terminal's fixed data objects by tag, for DOLs (Book 3 Annex A)."""
        return {
            0x9F35: bytes((self.terminal_type,)),
            0x9F33: self.capabilities,
            0x9F40: self.additional_capabilities,
            0x9F1A: self.country,
            0x5F36: bytes((self.currency_exponent,)),
            0x9F15: self.merchant_category,
            0x9F16: self.merchant_id.encode("ascii"),
            0x9F1C: self.terminal_id.encode("ascii"),
            0x9F1E: self.ifd_serial.encode("ascii"),
            0x9F4E: self.merchant_name.encode("ascii"),
        }

    def aid(self, aid: bytes) -> AidConfig | None:
        """The configuration of ``aid`` (exact match first, then partial selection)."""
        for entry in self.aids:
            if entry.aid == aid:
                return entry
        for entry in self.aids:
            if entry.partial_selection and aid.startswith(entry.aid):
                return entry
        return None
