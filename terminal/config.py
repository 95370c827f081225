"""Terminal configuration: the reader's constants and its per-AID kernel settings, from YAML.

A configuration (``terminal/configs/default.yaml`` ships) says what the POS is
(Book 4 Annex A1: terminal type 9F35, capabilities 9F33, additional capabilities
9F40, country 9F1A, currency 5F2A and exponent 5F36, merchant data), which CA
public keys it holds, and for each AID it accepts (Book B §3.1, the Entry Point
Configuration Data; Books C-2 and C-3 for the kernel's own): the kernel, the
reader limits (contactless transaction limit, floor limit, CVM required limit),
status check and zero amount handling, the TTQ (Kernel 3), the Terminal Action
Codes, and the kernel configuration (:class:`Kernel2Settings`, :class:`Kernel3Settings`).

:func:`load_config` reads and checks a file (a bare name such as ``"default"``
finds a shipped one); errors are :class:`ConfigError` naming the file, the field
path (``aids[1].tac.online``) and the problem. :func:`default_config` is the
shipped attended online POS; :func:`with_ca_keys` adds CA public keys at run time
(an emulated card's issuer CA), a runtime key replacing a shipped key with the
same RID and index.

The file format (every key is checked; an unknown key is an error)::

    name: default
    terminal: {type: "22", capabilities: "E0F8C8", additional_capabilities: "6000A0F001",
               country: "0826", currency: "0826", currency_exponent: 2,
               merchant_category: "5999", merchant_id: ..., terminal_id: ...,
               ifd_serial: ..., merchant_name: ...}
    retaps: 1
    ca_keys: test          # the scheme test CA keys; or none; or a key file path
    aids:
      - {aid: "A0000000031010", kernel: 3, partial_selection: true,
         transaction_limit: 10000, floor_limit: 0, cvm_required_limit: 3000,
         status_check: false, zero_amount_allowed: true, ttq: "37204000",
         tac: {default: ..., denial: ..., online: ...}, application_version: "0096",
         kernel3: {...}}

Limits are whole numbers of minor units of the terminal currency; an omitted (or
null) limit is "no such limit" (Book B §3.1.1: the limit is not present).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cache, partial
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from emv import dol, tags
from emv.crypto.oda import CaKeyStore, CaPublicKey, OdaError

__all__ = [
    "KERNEL_IDS",
    "AidConfig",
    "ConfigError",
    "Kernel2Settings",
    "Kernel3Settings",
    "Tacs",
    "TerminalConfig",
    "default_config",
    "load_config",
    "parse_config",
    "read_config_text",
    "shipped_configs",
    "with_ca_keys",
]

KERNEL_IDS = (2, 3)
"""The kernels a configuration may name (Short Kernel IDs, Book B §3.3.2.5): Kernel 2
(Book C-2, Mastercard) and Kernel 3 (Book C-3, Visa)."""

_CONFIGS = "configs"  # the shipped configurations: terminal/configs/<name>.yaml
_TEST_CA_KEYS = ("emv.crypto", "vectors/oda/test_capk.txt")
_AMOUNT_MAX = 999_999_999_999  # Amount, Authorised 9F02 is n 12


class ConfigError(ValueError):
    """A configuration that cannot be used: names the file, the field and the problem."""

    def __init__(self, file: str, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field}: {problem}" if field else f"{file}: {problem}")
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
    mag_stripe_cvm_required: bytes = b"\x20"  # DF811E: online PIN (bits 8-5 0010; 0001 signature)
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


# --- loading --------------------------------------------------------------------------------


def shipped_configs() -> list[str]:
    """The names of the configurations that ship with emvtap (``terminal/configs/*.yaml``)."""
    folder = resources.files("terminal").joinpath(_CONFIGS)
    return sorted(
        entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml")
    )


def load_config(path_or_name: str | Path) -> TerminalConfig:
    """Read and check a configuration file; a bare name (``"default"``) finds a shipped one."""
    path = Path(path_or_name)
    if path.is_file():
        return _read(str(path), path.read_bytes, path.parent)
    if path.suffix == "" and path.name == str(path_or_name):
        shipped = resources.files("terminal").joinpath(_CONFIGS)
        resource = shipped.joinpath(f"{path.name}.yaml")
        if resource.is_file():
            return _read(f"{_CONFIGS}/{path.name}.yaml", resource.read_bytes, shipped)
        known = ", ".join(shipped_configs())
        raise ConfigError(
            str(path), "", f"no such file or shipped configuration (shipped: {known})"
        )
    raise ConfigError(str(path), "", "cannot read: no such file")


@cache
def default_config() -> TerminalConfig:
    """The shipped ``default`` configuration: an attended online-capable POS in GBP
    accepting Visa (Kernel 3) and Mastercard (Kernel 2); see ``terminal/configs/default.yaml``."""
    return load_config("default")


def parse_config(text: str, file: str, base: Traversable | None = None) -> TerminalConfig:
    """Check a configuration's YAML ``text``; ``file`` names it in errors and ``base`` is
    the folder a relative ``ca_keys`` path is read from (None: such paths are refused)."""
    try:
        document = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as err:
        raise ConfigError(file, "", f"not valid YAML: {err}") from None
    return _Reader(file, base).config(document)


def with_ca_keys(config: TerminalConfig, keys: Iterable[CaPublicKey]) -> TerminalConfig:
    """``config`` with ``keys`` added to its CA public keys (Book 2 §5.2: a key is known
    by RID and CA Public Key Index); a key given here replaces a configured key with
    the same RID and index."""
    table = {(key.rid, key.index): key for key in config.ca_keys}
    table.update({(key.rid, key.index): key for key in keys})
    return replace(config, ca_keys=CaKeyStore(table.values()))


@cache
def _test_ca_keys() -> CaKeyStore:
    """The scheme TEST CA public keys shipped in ``emv/crypto/vectors/oda/test_capk.txt``
    (read once: a store is immutable)."""
    package, name = _TEST_CA_KEYS
    return CaKeyStore.parse(resources.files(package).joinpath(name).read_text(encoding="utf-8"))


def _read(file: str, read: Callable[[], bytes], base: Traversable) -> TerminalConfig:
    return parse_config(read_config_text(file, read), file, base)


def read_config_text(file: str, read: Callable[[], bytes]) -> str:
    """A configuration file's text from ``read``; a ConfigError naming ``file`` when it
    cannot be read or is not UTF-8."""
    try:
        raw = read()
    except OSError as err:
        raise ConfigError(file, "", f"cannot read: {err.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(file, "", "not UTF-8 text") from None


# --- checking -------------------------------------------------------------------------------

_TOP_FIELDS = ("name", "terminal", "retaps", "ca_keys", "aids")
_TERMINAL_FIELDS = (
    "type",
    "capabilities",
    "additional_capabilities",
    "country",
    "currency",
    "currency_exponent",
    "merchant_category",
    "merchant_id",
    "terminal_id",
    "ifd_serial",
    "merchant_name",
)
_AID_FIELDS = (
    "aid",
    "kernel",
    "partial_selection",
    "transaction_limit",
    "floor_limit",
    "cvm_required_limit",
    "status_check",
    "zero_amount_allowed",
    "ttq",
    "tac",
    "application_version",
    "kernel2",
    "kernel3",
)
_TAC_FIELDS = ("default", "denial", "online")
_KERNEL_SETTINGS: Mapping[int, tuple[str, type[Any]]] = {
    2: ("kernel2", Kernel2Settings),
    3: ("kernel3", Kernel3Settings),
}
# Largest values of the whole-number kernel settings (Book C-2 Annex A: DF811C is b2, DF811D b1).
_SETTING_MAX = {"torn_record_lifetime": 0xFFFF, "max_torn_records": 0xFF}
_PRINTABLE = re.compile(r"[\x20-\x7E]*")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


@dataclass(frozen=True)
class _Reader:
    """Field checks that know which file they read, so every error names it."""

    file: str
    base: Traversable | None

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(self.file, where, problem)

    # --- values -----------------------------------------------------------------------------

    def mapping(self, where: str, value: Any, known: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping" if where else "the file must hold a mapping")
        for key in value:
            if key not in known:
                raise self.fail(
                    _join(where, str(key)), f"unknown field (known: {', '.join(known)})"
                )
        return value

    def require(self, where: str, data: Mapping[str, Any], key: str) -> Any:
        if data.get(key) is None:
            raise self.fail(_join(where, key), "missing field")
        return data[key]

    def flag(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "must be true or false")
        return value

    def number(self, where: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(where, f"must be a whole number from {low} to {high}")
        return value

    def limit(self, where: str, value: Any) -> int | None:
        """A reader limit in minor units; None (omitted or null) means no such limit."""
        return None if value is None else self.number(where, value, 0, _AMOUNT_MAX)

    def hexbytes(self, where: str, value: Any, low: int, high: int | None = None) -> bytes:
        """Hex text in quotes (spaces allowed), ``low`` to ``high`` bytes (exactly ``low``)."""
        high = low if high is None else high
        if not isinstance(value, str):
            raise self.fail(where, "must be hex text in quotes")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise self.fail(where, f"is not hex: {value[:40]!r}") from None
        if not low <= len(raw) <= high:
            wanted = f"{low}" if low == high else f"{low} to {high}"
            raise self.fail(where, f"must be {wanted} bytes, got {len(raw)}")
        return raw

    def digits(self, where: str, value: Any, count: int) -> bytes:
        """``count`` decimal digits in quotes, as BCD (format n, Book 3 §4.3)."""
        if not isinstance(value, str) or not re.fullmatch(rf"\d{{{count}}}", value):
            raise self.fail(where, f"must be {count} digits in quotes")
        return bytes.fromhex(value)

    def text(self, where: str, value: Any, low: int, high: int) -> str:
        """Printable ASCII (format ans), ``low`` to ``high`` characters."""
        if (
            not isinstance(value, str)
            or not low <= len(value) <= high
            or not _PRINTABLE.fullmatch(value)
        ):
            size = f"{low}" if low == high else f"{low} to {high}"
            raise self.fail(where, f"must be {size} printable ASCII characters")
        return value

    # --- the document -----------------------------------------------------------------------

    def config(self, document: Any) -> TerminalConfig:
        top = self.mapping("", document, _TOP_FIELDS)
        terminal = self.mapping("terminal", self.require("", top, "terminal"), _TERMINAL_FIELDS)
        aids = self.require("", top, "aids")
        if not isinstance(aids, list) or not aids:
            raise self.fail("aids", "must be a list of at least one AID")
        country = self.digits("terminal.country", self.require("terminal", terminal, "country"), 4)
        if tags.country(country) is None:
            raise self.fail("terminal.country", "is not an ISO 3166-1 numeric country code")
        currency = self.digits(
            "terminal.currency", self.require("terminal", terminal, "currency"), 4
        )
        exponent = self.number(
            "terminal.currency_exponent",
            self.require("terminal", terminal, "currency_exponent"),
            0,
            9,
        )
        self.check_currency(currency, exponent)
        optional: dict[str, Any] = {
            name: reader(f"terminal.{name}", terminal[name])
            for name, reader in (
                ("merchant_category", lambda w, v: self.digits(w, v, 4)),
                ("merchant_id", lambda w, v: self.text(w, v, 15, 15)),  # 9F16 ans 15
                ("terminal_id", lambda w, v: self.text(w, v, 8, 8)),  # 9F1C an 8
                ("ifd_serial", lambda w, v: self.text(w, v, 8, 8)),  # 9F1E an 8
                ("merchant_name", lambda w, v: self.text(w, v, 1, 40)),  # 9F4E ans var.
            )
            if terminal.get(name) is not None
        }
        if top.get("retaps") is not None:
            optional["retaps"] = self.number("retaps", top["retaps"], 0, 10)
        entries = tuple(self.aid(f"aids[{i}]", entry) for i, entry in enumerate(aids))
        self.check_unique(entries)
        return TerminalConfig(
            name=self.text("name", self.require("", top, "name"), 1, 64),
            terminal_type=self.terminal_type(
                "terminal.type", self.require("terminal", terminal, "type")
            ),
            capabilities=self.hexbytes(
                "terminal.capabilities", self.require("terminal", terminal, "capabilities"), 3
            ),
            additional_capabilities=self.hexbytes(
                "terminal.additional_capabilities",
                self.require("terminal", terminal, "additional_capabilities"),
                5,
            ),
            country=country,
            currency=currency,
            currency_exponent=exponent,
            aids=entries,
            ca_keys=self.ca_keys("ca_keys", self.require("", top, "ca_keys")),
            **optional,
        )

    def terminal_type(self, where: str, value: Any) -> int:
        """Terminal Type 9F35 (Book 4 Annex A1): n 2, operational control 1-3 (financial
        institution, merchant, cardholder), then 1-6 (attended / unattended and online
        only, offline with online capability, offline only)."""
        if not isinstance(value, str) or not re.fullmatch(r"[1-3][1-6]", value):
            raise self.fail(where, 'must be 2 digits in quotes: 1-3 then 1-6 (e.g. "22")')
        return int(value, 16)

    def check_currency(self, currency: bytes, exponent: int) -> None:
        known = tags.currency(currency)
        if known is None:
            raise self.fail("terminal.currency", "is not an ISO 4217 numeric currency code")
        alpha, _, minor_units = known
        if minor_units is not None and minor_units != exponent:
            raise self.fail(
                "terminal.currency_exponent",
                f"{alpha} has {minor_units} minor unit digits in ISO 4217, not {exponent}",
            )

    def ca_keys(self, where: str, value: Any) -> CaKeyStore:
        """``test`` (the scheme test CA keys shipped in emv), ``none``, or a key file
        (:class:`emv.crypto.oda.CaKeyStore` format) relative to the configuration file."""
        if not isinstance(value, str) or not value:
            raise self.fail(where, "must be test, none, or the path of a CA key file")
        if value == "none":
            return CaKeyStore()
        if value == "test":
            return _test_ca_keys()
        source: Traversable
        if Path(value).is_absolute():
            source = Path(value)
        elif self.base is None:
            raise self.fail(where, "a relative path needs a configuration file to be relative to")
        else:
            source = self.base.joinpath(value)
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            problem = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
            raise self.fail(where, f"cannot read {value}: {problem}") from None
        try:
            return CaKeyStore.parse(text)
        except OdaError as err:
            raise self.fail(where, f"{value}: {err}") from None

    def aid(self, where: str, value: Any) -> AidConfig:
        entry = self.mapping(where, value, _AID_FIELDS)
        at = partial(_join, where)
        kernel = self.require(where, entry, "kernel")
        if kernel not in KERNEL_IDS or isinstance(kernel, bool):
            raise self.fail(at("kernel"), f"must be one of {', '.join(map(str, KERNEL_IDS))}")
        for other, (name, _) in _KERNEL_SETTINGS.items():
            if other != kernel and entry.get(name) is not None:
                raise self.fail(
                    at(name), f"settings of Kernel {other}, but this AID uses Kernel {kernel}"
                )
        ttq = None
        if kernel == 3:
            ttq = self.ttq(at("ttq"), self.require(where, entry, "ttq"))
        elif entry.get("ttq") is not None:
            raise self.fail(at("ttq"), "the TTQ (9F66) is a Kernel 3 setting")
        values: dict[str, Any] = {
            "aid": self.hexbytes(at("aid"), self.require(where, entry, "aid"), 5, 16),
            "kernel_id": kernel,
            "ttq": ttq,
            "transaction_limit": self.limit(
                at("transaction_limit"), entry.get("transaction_limit")
            ),
            "floor_limit": self.limit(at("floor_limit"), entry.get("floor_limit")),
            "cvm_required_limit": self.limit(
                at("cvm_required_limit"), entry.get("cvm_required_limit")
            ),
        }
        for name in ("partial_selection", "status_check", "zero_amount_allowed"):
            if entry.get(name) is not None:
                values[name] = self.flag(at(name), entry[name])
        if entry.get("tac") is not None:
            values["tacs"] = self.tacs(at("tac"), entry["tac"])
        if entry.get("application_version") is not None:
            values["application_version"] = self.hexbytes(
                at("application_version"), entry["application_version"], 2
            )
        name, settings = _KERNEL_SETTINGS[kernel]
        if entry.get(name) is not None:
            values[name] = self.settings(at(name), entry[name], settings)
        return AidConfig(**values)

    def ttq(self, where: str, value: Any) -> bytes:
        """Terminal Transaction Qualifiers (Book A §5.7, Book C-3 Annex A.2), 4 bytes.
        Byte 2 bits 8-7 are set per transaction by Entry Point (Book B §3.1.1), so the
        configured value must leave them 0."""
        raw = self.hexbytes(where, value, 4)
        if raw[1] & 0xC0:
            raise self.fail(
                where,
                "byte 2 bits 8-7 (online cryptogram required, CVM required) are set per "
                "transaction by Entry Point; configure them 0",
            )
        return raw

    def tacs(self, where: str, value: Any) -> Tacs:
        """Terminal Action Codes (Book 3 §10.7), 5 bytes each; an omitted one is all zero."""
        tac = self.mapping(where, value, _TAC_FIELDS)
        return Tacs(
            **{
                name: self.hexbytes(_join(where, name), tac[name], 5)
                for name in _TAC_FIELDS
                if tac.get(name) is not None
            }
        )

    def settings(self, where: str, value: Any, kind: type[Any]) -> Any:
        """A kernel settings dataclass, each field read by the type of its default:
        true/false, a whole number, hex bytes of the default's length (a DOL when the
        name ends in ``dol``: 0 to 252 bytes, checked as a DOL), or a list of one-byte
        hex values."""
        defaults = kind()
        names = [f.name for f in fields(kind)]
        data = self.mapping(where, value, names)
        values: dict[str, Any] = {}
        for name, given in data.items():
            if given is None:
                continue
            default = getattr(defaults, name)
            values[name] = self.setting(_join(where, name), name, given, default)
        return kind(**values)

    def setting(self, where: str, name: str, value: Any, default: Any) -> Any:
        if isinstance(default, bool):
            return self.flag(where, value)
        if isinstance(default, int):
            return self.number(where, value, 0, _SETTING_MAX.get(name, 0xFFFFFFFF))
        if isinstance(default, bytes) and name.endswith("dol"):
            raw = self.hexbytes(where, value, 0, 252)
            try:
                dol.parse_dol(raw)
            except dol.DolError as err:
                raise self.fail(where, err.problem) from None
            return raw
        if isinstance(default, bytes):
            return self.hexbytes(where, value, len(default))
        if not isinstance(value, list) or len(value) > 16:
            raise self.fail(where, "must be a list of one-byte hex values in quotes")
        return tuple(self.hexbytes(f"{where}[{i}]", item, 1)[0] for i, item in enumerate(value))

    def check_unique(self, entries: Sequence[AidConfig]) -> None:
        seen: dict[bytes, int] = {}
        for i, entry in enumerate(entries):
            if entry.aid in seen:
                raise self.fail(
                    f"aids[{i}].aid", f"AID listed twice (also aids[{seen[entry.aid]}])"
                )
            seen[entry.aid] = i
