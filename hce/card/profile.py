"""Card profiles: what a card is, read from YAML and checked field by field.

A profile names the brand, the key mode and the data of one card: PAN (or token
PAN), PSN, expiry, and one or more applications, each with its AID and label,
priority and kernel identifier (EMV Contactless Book B §3.3), AIP and AUC, the
Issuer Action Codes, CVM List, CTQ, PDOL and CDOLs (EMV 4.4 Book 3 Annex A),
the cryptogram version, the offline data authentication method and key sizes,
the card's risk limits and its records. The AFL is built from the records
(Book 3 §10.2): one entry per SFI, its records numbered from 1 without gaps,
those signed for offline data authentication first.

Keys are never in a profile: ``keys`` names them (``imk_ac: visa-imk-ac``) and an
issuer object resolves the names (:mod:`hce.card.issuer`).

Every problem raises one :class:`ProfileError` naming the file, the field path
(``applications[0].aip``) and what is wrong; no message shows a full PAN.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from emv import dol, tlv
from emv.masking import mask_pan

__all__ = [
    "BRANDS",
    "ODA_METHODS",
    "Application",
    "BrandRules",
    "CardProfile",
    "KeyMode",
    "Limits",
    "OdaSpec",
    "ProfileError",
    "Record",
    "load_profile",
    "parse_profile",
    "read_profile_text",
    "shipped_profiles",
]

KeyMode = Literal["plastic", "hce"]
KEY_MODES: tuple[KeyMode, ...] = ("plastic", "hce")
ODA_METHODS = frozenset({"none", "fdda", "cda"})
PROFILES_DIR = Path(__file__).with_name("profiles")
_ODA_KEY_ROLES = ("ca", "issuer")


class ProfileError(ValueError):
    """A profile that cannot be used: ``file``, ``field`` (a path such as
    ``applications[0].records[2].tags[1]``) and ``problem``."""

    def __init__(self, file: str, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field}: {problem}" if field else f"{file}: {problem}")
        self.file = file
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class BrandRules:
    """What a brand's applet needs from a profile (the plug-in point for a new brand).

    ``cryptogram_versions`` maps each version the applet computes to the key mode
    it needs; ``required`` names application fields that must be present;
    ``plastic_keys`` the key roles a plastic card needs besides the ODA keys;
    ``data_dols`` the tags of the ``data`` objects that are DOLs in this brand
    (checked as the PDOL and CDOLs are: Book 3 §5.4).
    """

    cryptogram_versions: Mapping[str, KeyMode]
    oda_methods: frozenset[str]
    required: frozenset[str]
    plastic_keys: frozenset[str]
    data_dols: frozenset[int] = frozenset()


BRANDS: Mapping[str, BrandRules] = MappingProxyType(
    {
        # Visa qVSDC (Book C-3): CVN 18 / 22 (IAD byte 0x12 / 0x22) on plastic, CBP-V 'C1' in HCE.
        "visa": BrandRules(
            cryptogram_versions=MappingProxyType({"18": "plastic", "22": "plastic", "C1": "hce"}),
            oda_methods=frozenset({"none", "fdda"}),
            required=frozenset({"pdol", "ctq"}),
            plastic_keys=frozenset({"imk_ac"}),
        ),
        # Mastercard M/Chip (Book C-2): CVN 16 / 17 (M/Chip session key), 20 / 21 (common
        # session key) on plastic, CBP-M 'C2' in HCE; CDA; imk_cvc3 adds mag-stripe mode;
        # the DRDOL (9F51, RECOVER AC) and the UDOL (9F69, mag-stripe) are DOLs.
        "mastercard": BrandRules(
            cryptogram_versions=MappingProxyType(
                {"16": "plastic", "17": "plastic", "20": "plastic", "21": "plastic", "C2": "hce"}
            ),
            oda_methods=frozenset({"none", "cda"}),
            required=frozenset({"cdol1", "cdol2"}),
            plastic_keys=frozenset({"imk_ac"}),
            data_dols=frozenset({0x9F51, 0x9F69}),
        ),
    }
)
"""Brand name -> its rules. A second applet adds its brand here (and its factory in
``hce.card.card.APPLETS``)."""


@dataclass(frozen=True)
class Record:
    """One record of the card: SFI, record number, whether it is signed for
    offline data authentication, and the data objects it holds, in order."""

    sfi: int
    number: int
    oda: bool
    tags: tuple[int, ...]


@dataclass(frozen=True)
class OdaSpec:
    """The offline data authentication method and the RSA key sizes (EMV Book 2 §6.1).

    ``ca_index`` is the CA Public Key Index (8F) of the payment system's CA key.
    """

    method: str = "none"
    ca_index: int = 0
    ca_key_bits: int = 1408
    issuer_key_bits: int = 1152
    icc_key_bits: int = 1024
    icc_exponent: int = 3

    @property
    def enabled(self) -> bool:
        return self.method != "none"


@dataclass(frozen=True)
class Limits:
    """The card's own risk limits, amounts in minor units of the application currency.

    Offline approval needs the amount at most ``offline_transaction``, and the
    offline totals (:class:`hce.card.keys.Counters`) within ``cumulative_offline``
    and ``consecutive_offline`` (0: the card never approves offline). Above ``cvm``
    the card asks for cardholder verification (Book C-3, card CVM limit; 0: no limit).
    """

    offline_transaction: int = 0
    cumulative_offline: int = 0
    consecutive_offline: int = 0
    cvm: int = 0


@dataclass(frozen=True)
class Application:
    """One payment application of a card (the data objects are raw values)."""

    aid: bytes
    label: str
    priority: int
    kernel_id: bytes
    aip: bytes
    auc: bytes
    iac_default: bytes
    iac_denial: bytes
    iac_online: bytes
    cvm_list: bytes
    cryptogram_version: str
    dki: int
    currency: bytes
    records: tuple[Record, ...]
    afl: bytes
    oda: OdaSpec = OdaSpec()
    limits: Limits = Limits()
    ctq: bytes | None = None
    pdol: bytes | None = None
    cdol1: bytes | None = None
    cdol2: bytes | None = None
    data: Mapping[int, bytes] = field(default_factory=dict)

    @property
    def short_kernel_id(self) -> int:
        """Kernel Identifier byte 1 bits 6-1 (Book B §3.3): 3 for Visa, 2 for Mastercard."""
        return self.kernel_id[0] & 0x3F


@dataclass(frozen=True)
class CardProfile:
    """A card: the profile file's content, checked. The PAN stays out of the repr."""

    path: Path
    name: str
    brand: str
    key_mode: KeyMode
    keys: Mapping[str, str]
    pan: str = field(repr=False)
    psn: bytes
    expiry: bytes
    service_code: str
    issuer_country: bytes
    applications: tuple[Application, ...]
    effective: bytes | None = None
    cardholder_name: str | None = None
    track2_discretionary: str = ""

    def __repr__(self) -> str:
        return (
            f"CardProfile({self.name!r}, {self.brand}, {self.key_mode}, PAN {mask_pan(self.pan)})"
        )

    @property
    def rules(self) -> BrandRules:
        return BRANDS[self.brand]


# --- reading --------------------------------------------------------------------------------


def shipped_profiles() -> list[Path]:
    """The profiles that ship with emvtap (``hce/card/profiles/*.yaml``)."""
    return sorted(PROFILES_DIR.glob("*.yaml"))


def load_profile(path: str | Path) -> CardProfile:
    """Read and check a profile file; a bare name finds a shipped profile."""
    path = Path(path)
    if not path.exists() and (PROFILES_DIR / f"{path.name}.yaml").exists():
        path = PROFILES_DIR / f"{path.name}.yaml"
    return parse_profile(read_profile_text(path), path)


def read_profile_text(path: Path) -> str:
    """A profile file's text; a ProfileError naming it when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise ProfileError(str(path), "", f"cannot read: {err.strerror}") from None


def parse_profile(text: str, path: Path) -> CardProfile:
    """Check a profile's YAML text; ``path`` names it in errors."""
    try:
        document = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as err:
        raise ProfileError(str(path), "", f"not valid YAML: {err}") from None
    return _Reader(str(path)).profile(path, document)


@dataclass(frozen=True)
class _Reader:
    """Field checks that know which file they read, so every error names it."""

    file: str

    def fail(self, where: str, problem: str) -> ProfileError:
        return ProfileError(self.file, where, problem)

    def mapping(self, where: str, value: Any, known: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping")
        for key in value:
            if key not in known:
                raise self.fail(_join(where, str(key)), "unknown field")
        return value

    def require(self, where: str, data: Mapping[str, Any], key: str) -> Any:
        if data.get(key) is None:
            raise self.fail(_join(where, key), "missing field")
        return data[key]

    def text(self, where: str, value: Any, longest: int) -> str:
        if not isinstance(value, str) or not value or len(value) > longest:
            raise self.fail(where, f"must be text of 1 to {longest} characters")
        return value

    def number(self, where: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(where, f"must be a whole number from {low} to {high}")
        return value

    def hexbytes(self, where: str, value: Any, low: int, high: int | None = None) -> bytes:
        """Hex text (spaces allowed), ``low`` to ``high`` bytes (exactly ``low`` if no high)."""
        high = low if high is None else high
        if not isinstance(value, str):
            raise self.fail(where, "must be hex text in quotes")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise self.fail(where, "is not hex") from None
        if not low <= len(raw) <= high:
            wanted = f"{low}" if low == high else f"{low} to {high}"
            raise self.fail(where, f"must be {wanted} bytes, got {len(raw)}")
        return raw

    def digits(self, where: str, value: Any, low: int, high: int, *, secret: bool = False) -> str:
        if not isinstance(value, str) or not re.fullmatch(rf"\d{{{low},{high}}}", value):
            shown = "" if secret or not isinstance(value, str) else f", got {value!r}"
            raise self.fail(where, f"must be {low} to {high} digits in quotes{shown}")
        return value

    def bcd(self, where: str, value: Any, length: int) -> bytes:
        return bytes.fromhex(self.digits(where, value, 2 * length, 2 * length))

    def date(self, where: str, value: Any) -> bytes:
        """YYMMDD as EMV holds dates (n 6, Book 3 Annex A)."""
        raw = self.bcd(where, value, 3)
        month, day = int(value[2:4]), int(value[4:6])
        if not (1 <= month <= 12 and 1 <= day <= 31):
            raise self.fail(where, "must be a date YYMMDD")
        return raw

    def dol(self, where: str, value: Any) -> bytes:
        raw = self.hexbytes(where, value, 0, 252)
        try:
            dol.parse_dol(raw)
        except dol.DolError as err:
            raise self.fail(where, err.problem) from None
        return raw

    def tag(self, where: str, value: Any) -> int:
        if not isinstance(value, str):
            raise self.fail(where, "must be a tag in hex, in quotes")
        try:
            return tlv.parse_tag(value)
        except ValueError as err:
            raise self.fail(where, str(err)) from None

    # --- the document -----------------------------------------------------------------------

    def profile(self, path: Path, document: Any) -> CardProfile:
        top = self.mapping("", document, _PROFILE_FIELDS)
        brand = self.require("", top, "brand")
        if brand not in BRANDS:
            raise self.fail("brand", f"unknown brand {brand!r} (known: {', '.join(BRANDS)})")
        key_mode = self.require("", top, "key_mode")
        if key_mode not in KEY_MODES:
            raise self.fail("key_mode", "must be plastic or hce")
        apps = self.require("", top, "applications")
        if not isinstance(apps, list) or not apps:
            raise self.fail("applications", "must be a list of at least one application")
        pan = self.digits("pan", self.require("", top, "pan"), 12, 19, secret=True)
        profile = CardProfile(
            path=path,
            name=self.text("name", self.require("", top, "name"), 64),
            brand=brand,
            key_mode=key_mode,
            keys=self.keys(top.get("keys", {})),
            pan=pan,
            psn=self.bcd("psn", self.require("", top, "psn"), 1),
            expiry=self.date("expiry", self.require("", top, "expiry")),
            effective=None
            if top.get("effective") is None
            else self.date("effective", top["effective"]),
            service_code=self.digits("service_code", self.require("", top, "service_code"), 3, 3),
            issuer_country=self.bcd("issuer_country", self.require("", top, "issuer_country"), 2),
            cardholder_name=None
            if top.get("cardholder_name") is None
            else self.text("cardholder_name", top["cardholder_name"], 26),
            track2_discretionary=self.digits(
                "track2_discretionary", top.get("track2_discretionary", "0"), 0, 16
            ),
            applications=tuple(
                self.application(f"applications[{i}]", app, BRANDS[brand], key_mode)
                for i, app in enumerate(apps)
            ),
        )
        self.check_keys(profile)
        return profile

    def keys(self, value: Any) -> Mapping[str, str]:
        keys = self.mapping("keys", value, _KEY_ROLES)
        return MappingProxyType(
            {role: self.text(f"keys.{role}", name, 64) for role, name in keys.items()}
        )

    def check_keys(self, profile: CardProfile) -> None:
        needed = set(profile.rules.plastic_keys) if profile.key_mode == "plastic" else set()
        if any(app.oda.enabled for app in profile.applications):
            needed |= set(_ODA_KEY_ROLES)
        missing = sorted(needed - set(profile.keys))
        if missing:
            raise self.fail(f"keys.{missing[0]}", "missing key name")

    def application(self, where: str, value: Any, rules: BrandRules, mode: KeyMode) -> Application:
        app = self.mapping(where, value, _APPLICATION_FIELDS)
        at = partial(_join, where)
        for name in sorted(rules.required):
            self.require(where, app, name)
        version = str(self.require(where, app, "cryptogram_version")).upper()
        if rules.cryptogram_versions.get(version) != mode:
            allowed = [v for v, m in rules.cryptogram_versions.items() if m == mode]
            raise self.fail(at("cryptogram_version"), f"must be one of {allowed} for {mode} cards")
        iac = self.mapping(
            at("iac"), self.require(where, app, "iac"), ("default", "denial", "online")
        )
        oda = self.oda(at("oda"), app.get("oda", {"method": "none"}), rules)
        data = self.extra_data(at("data"), app.get("data", {}))
        self.check_data_dols(at("data"), data, rules)
        records = self.records(at("records"), self.require(where, app, "records"))
        afl = _build_afl(records, lambda i, problem: self.fail(at(f"records[{i}]"), problem))
        if app.get("afl") is not None and self.hexbytes(at("afl"), app["afl"], 4, 252) != afl:
            raise self.fail(
                at("afl"), f"does not match the records, which give {afl.hex().upper()}"
            )
        application = Application(
            aid=self.hexbytes(at("aid"), self.require(where, app, "aid"), 5, 16),
            label=self.text(at("label"), self.require(where, app, "label"), 16),
            priority=self.number(at("priority"), app.get("priority", 1), 1, 15),
            kernel_id=self.hexbytes(at("kernel_id"), self.require(where, app, "kernel_id"), 1, 8),
            aip=self.hexbytes(at("aip"), self.require(where, app, "aip"), 2),
            auc=self.hexbytes(at("auc"), self.require(where, app, "auc"), 2),
            iac_default=self.hexbytes(
                at("iac.default"), self.require(at("iac"), iac, "default"), 5
            ),
            iac_denial=self.hexbytes(at("iac.denial"), self.require(at("iac"), iac, "denial"), 5),
            iac_online=self.hexbytes(at("iac.online"), self.require(at("iac"), iac, "online"), 5),
            cvm_list=self.cvm_list(at("cvm_list"), self.require(where, app, "cvm_list")),
            cryptogram_version=version,
            dki=self.number(at("dki"), app.get("dki", 1), 0, 255),
            currency=self.bcd(at("currency"), self.require(where, app, "currency"), 2),
            records=records,
            afl=afl,
            oda=oda,
            limits=self.limits(at("limits"), app.get("limits", {})),
            ctq=None if app.get("ctq") is None else self.hexbytes(at("ctq"), app["ctq"], 2),
            pdol=None if app.get("pdol") is None else self.dol(at("pdol"), app["pdol"]),
            cdol1=None if app.get("cdol1") is None else self.dol(at("cdol1"), app["cdol1"]),
            cdol2=None if app.get("cdol2") is None else self.dol(at("cdol2"), app["cdol2"]),
            data=data,
        )
        self.check_record_tags(where, application)
        return application

    def cvm_list(self, where: str, value: Any) -> bytes:
        raw = self.hexbytes(where, value, 8, 252)
        if len(raw) % 2:
            raise self.fail(where, "must be 8 bytes of amounts and 2-byte CV Rules")
        return raw

    def oda(self, where: str, value: Any, rules: BrandRules) -> OdaSpec:
        spec = self.mapping(where, value, _ODA_FIELDS)
        method = spec.get("method", "none")
        if method not in rules.oda_methods:
            raise self.fail(_join(where, "method"), f"must be one of {sorted(rules.oda_methods)}")
        if method == "none":
            return OdaSpec()
        at = partial(_join, where)
        bits = {
            name: self.number(at(name), spec.get(name, default), 1024, 1984)
            for name, default in (
                ("ca_key_bits", 1408),
                ("issuer_key_bits", 1152),
                ("icc_key_bits", 1024),
            )
        }
        for name, size in bits.items():
            if size % 8:
                raise self.fail(at(name), "must be a whole number of bytes")
        if not bits["icc_key_bits"] <= bits["issuer_key_bits"] <= bits["ca_key_bits"]:
            raise self.fail(where, "key sizes must not grow down the chain (ICC <= issuer <= CA)")
        exponent = spec.get("icc_exponent", 3)
        if exponent not in (3, 65537):
            raise self.fail(at("icc_exponent"), "must be 3 or 65537")
        return OdaSpec(
            method=method,
            ca_index=self.hexbytes(at("ca_index"), self.require(where, spec, "ca_index"), 1)[0],
            icc_exponent=exponent,
            **bits,
        )

    def limits(self, where: str, value: Any) -> Limits:
        spec = self.mapping(where, value, _LIMIT_FIELDS)
        return Limits(
            **{
                name: self.number(_join(where, name), amount, 0, 999_999_999_999)
                for name, amount in spec.items()
            }
        )

    def extra_data(self, where: str, value: Any) -> Mapping[int, bytes]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping of tag to hex value")
        data: dict[int, bytes] = {}
        for key, raw in value.items():
            at = _join(where, str(key))
            tag = self.tag(at, str(key))
            if tag in _BUILT_TAGS:
                raise self.fail(at, "is built from the profile's own fields; set those instead")
            data[tag] = self.hexbytes(at, raw, 0, 252)
        return MappingProxyType(data)

    def check_data_dols(self, where: str, data: Mapping[int, bytes], rules: BrandRules) -> None:
        """The ``data`` objects the brand reads as DOLs parse as DOLs (Book 3 §5.4)."""
        for tag in sorted(rules.data_dols & set(data)):
            try:
                dol.parse_dol(data[tag])
            except dol.DolError as err:
                raise self.fail(_join(where, tlv.tag_hex(tag)), err.problem) from None

    def records(self, where: str, value: Any) -> tuple[Record, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(where, "must be a list of at least one record")
        records = []
        for i, item in enumerate(value):
            at = f"{where}[{i}]"
            spec = self.mapping(at, item, ("sfi", "number", "oda", "tags"))
            tags = self.require(at, spec, "tags")
            if not isinstance(tags, list) or not tags:
                raise self.fail(_join(at, "tags"), "must be a list of at least one tag")
            oda = spec.get("oda", False)
            if not isinstance(oda, bool):
                raise self.fail(_join(at, "oda"), "must be true or false")
            records.append(
                Record(
                    sfi=self.number(_join(at, "sfi"), self.require(at, spec, "sfi"), 1, 30),
                    number=self.number(
                        _join(at, "number"), self.require(at, spec, "number"), 1, 254
                    ),
                    oda=oda,
                    tags=tuple(self.tag(f"{at}.tags[{j}]", t) for j, t in enumerate(tags)),
                )
            )
        return tuple(records)

    def check_record_tags(self, where: str, app: Application) -> None:
        """Each record tag names a data object the card has; nothing signed covers a certificate."""
        available = _record_tags(app)
        seen: set[int] = set()
        for i, record in enumerate(app.records):
            for j, tag in enumerate(record.tags):
                at = f"{where}.records[{i}].tags[{j}]"
                if tag not in available:
                    raise self.fail(
                        at, f"{tlv.tag_hex(tag)} is not a data object of this application"
                    )
                if tag in seen:
                    raise self.fail(at, f"{tlv.tag_hex(tag)} is already in another record")
                if record.oda and tag in _CERTIFIED_LATER:
                    raise self.fail(at, f"{tlv.tag_hex(tag)} cannot be in a record signed for ODA")
                seen.add(tag)


_PROFILE_FIELDS = (
    "name",
    "brand",
    "key_mode",
    "keys",
    "pan",
    "psn",
    "expiry",
    "effective",
    "service_code",
    "issuer_country",
    "cardholder_name",
    "track2_discretionary",
    "applications",
)
_KEY_ROLES = ("imk_ac", "imk_cvc3", "ca", "issuer")
_APPLICATION_FIELDS = (
    "aid",
    "label",
    "priority",
    "kernel_id",
    "aip",
    "auc",
    "iac",
    "cvm_list",
    "ctq",
    "pdol",
    "cdol1",
    "cdol2",
    "cryptogram_version",
    "dki",
    "currency",
    "oda",
    "limits",
    "records",
    "afl",
    "data",
)
_ODA_FIELDS = (
    "method",
    "ca_index",
    "ca_key_bits",
    "issuer_key_bits",
    "icc_key_bits",
    "icc_exponent",
)
_LIMIT_FIELDS = ("offline_transaction", "cumulative_offline", "consecutive_offline", "cvm")

# Data objects the card builds from the profile's fields (tag -> what makes it).
_CARD_TAGS = frozenset({0x57, 0x5A, 0x5F24, 0x5F28, 0x5F30, 0x5F34})
_OPTIONAL_CARD_TAGS = {0x5F20: "cardholder_name", 0x5F25: "effective"}
_APPLICATION_TAGS = frozenset({0x8E, 0x9F07, 0x9F0D, 0x9F0E, 0x9F0F, 0x9F42, 0x9F4A})
_OPTIONAL_APPLICATION_TAGS = {0x8C: "cdol1", 0x8D: "cdol2"}
_ODA_TAGS = frozenset({0x8F, 0x90, 0x92, 0x9F32, 0x9F46, 0x9F47, 0x9F48})
_CERTIFIED_LATER = frozenset({0x9F46, 0x9F47, 0x9F48})  # the ICC certificate signs ODA records
_BUILT_TAGS = (
    _CARD_TAGS
    | _APPLICATION_TAGS
    | _ODA_TAGS
    | set(_OPTIONAL_CARD_TAGS)
    | set(_OPTIONAL_APPLICATION_TAGS)
    | {0x82, 0x84, 0x94, 0x4F, 0x50, 0x87, 0x9F2A, 0x9F38, 0x9F6C}
)


def _record_tags(app: Application) -> set[int]:
    """The data objects a record of ``app`` may hold (card fields are checked by the loader)."""
    tags = set(_CARD_TAGS | _APPLICATION_TAGS) | set(_OPTIONAL_CARD_TAGS) | set(app.data)
    tags |= {tag for tag, name in _OPTIONAL_APPLICATION_TAGS.items() if getattr(app, name)}
    if app.oda.enabled:
        tags |= _ODA_TAGS
    return tags


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _build_afl(records: Sequence[Record], fail: Callable[[int, str], ProfileError]) -> bytes:
    """The Application File Locator (Book 3 §10.2): per SFI one 4-byte entry, SFI << 3,
    first record, last record, and how many records from the first are signed for ODA."""
    by_sfi: dict[int, list[tuple[int, Record]]] = {}
    for i, record in enumerate(records):
        by_sfi.setdefault(record.sfi, []).append((i, record))
    afl = bytearray()
    for sfi in sorted(by_sfi):
        entries = sorted(by_sfi[sfi], key=lambda item: item[1].number)
        for position, (i, record) in enumerate(entries, start=1):
            if record.number != position:
                raise fail(
                    i, f"SFI {sfi} records must be numbered 1, 2, ... once each (AFL ranges)"
                )
        flags = [record.oda for _, record in entries]
        signed = sum(flags)
        if flags != [True] * signed + [False] * (len(flags) - signed):
            i = entries[flags.index(False)][0]
            raise fail(i, f"SFI {sfi}: records signed for ODA must come first (AFL byte 4)")
        afl += bytes((sfi << 3, 1, len(entries), signed))
    return bytes(afl)
