"""Kernel 3 (EMV Contactless Book C-3): the qVSDC path, from the FCI to the outcome.

In qVSDC the card decides. The reader sends its Terminal Transaction Qualifiers
(TTQ, 9F66) and the transaction data in the PDOL data of GET PROCESSING OPTIONS; the
card answers once, with its cryptogram, its Card Transaction Qualifiers (CTQ, 9F6C)
and, when it wants an offline approval or the reader does ODA for online
authorisations, the fDDA signature. The reader then checks what the card decided.
Sections are cited by their titles in Book C-3 (Kernel 3 Specification), Book A
(Architecture and General Requirements) and EMV 4.4 Books 2 and 3:

* Initiate Application Processing (C-3): the FCI must carry a PDOL (9F38) that asks
  for the TTQ, else the card cannot do qVSDC and the kernel ends (End Application).
  The PDOL data is built by Book 3 §5.4 from the transaction data Entry Point
  prepared (with the TTQ of pre-processing, Book B §3.1.1). GET PROCESSING OPTIONS
  then answers:

  - '9000' with a Response Message Template Format 2 ('77'): qVSDC goes on;
    Format 1 ('80', AIP and AFL only) is the legacy mag-stripe (MSD) answer, which
    this kernel does not support: End Application;
  - '6984' or '6985': the card will not do this transaction contactless: Try
    Another Interface ("Insert, Swipe or Try Another Card");
  - '6986': a mobile device wants its cardholder to act on the phone first: Try
    Again at Start B, "See Phone for Instructions", then "Present Card Again";
  - anything else: End Application.

* Read Application Data (C-3, Book 3 §10.2): the data objects of the GPO response
  are kept, and when the card gave an AFL (94) its records are read; a data object
  given twice, a record that is not a '70' template, a status word other than
  '9000' end the transaction (End Application). Then "Card Read OK" (Book A §7.1).
  A card that leaves the field during GPO or READ RECORD gives Try Again at Start B
  with "Present Card Again" on restart (Book A §6.2, L1 errors).

* Card data check (C-3 Annex A, the qVSDC data requirements): the AIP (82), Track 2
  Equivalent Data (57), Application Cryptogram (9F26), ATC (9F36) and Issuer
  Application Data (9F10) must be present and well formed, and the Cryptogram
  Information Data (9F27) or, without it, the cryptogram type the Visa IAD carries
  in its CVR; anything missing or malformed: End Application (ICC data missing in
  the TVR when missing).

* The card's decision (C-3, the card-decided outcome):

  - AAC: Declined, "Not Authorised";
  - ARQC: Online Request, "Authorising Please Wait"; when the card signed (9F4B) and
    the reader does ODA for online authorisations (TTQ byte 1 bit 1), fDDA is
    done and its result reported (a failure sets "DDA failed" in the TVR; the
    issuer decides);
  - TC: an offline approval only after fDDA (C-3 Annex C; the ICC key from Book 2
    §6.2-6.4, the CA key by RID and index 8F) passed and the application has not
    expired. fDDA failed or impossible: CTQ "go online if ODA fails" on an
    online-capable reader (TTQ byte 1 bit 4 clear) gives Online Request, else CTQ
    "switch interface if ODA fails" on a reader with contact chip (TTQ byte 1
    bit 5) Try Another Interface ("Please Insert Card"), else Declined. Expired
    (5F24 before the transaction date 9A, Processing Restrictions): CTQ "go
    online if application expired" on an online-capable reader gives Online
    Request, else Declined.

* Cardholder Verification (C-3, CTQ and TTQ in Annex A): Online PIN when the CTQ
  asks (byte 1 bit 8), the reader supports it (TTQ byte 1 bit 3) and the outcome
  is online; Confirmation Code Verified when the device did its own verification
  (CTQ byte 2 bit 8) and the reader accepts consumer device CVM (TTQ byte 3 bit 7)
  (offline, only when the CTQ the card signed in 9F69 says so too); Obtain
  Signature when the CTQ asks (byte 1 bit 7) and the reader supports it (TTQ byte
  1 bit 2); else No CVM, unless the reader required a CVM (TTQ byte 2 bit 7):
  then Declined. Without a CTQ, a reader that requires a CVM takes a signature
  when it can.

* The data record (Book C-3 online data, :data:`terminal.kernels.DATA_RECORD_TAGS`)
  carries the transaction data exactly as the PDOL data sent it, because the
  cryptogram covers those values; the TVR the kernel builds afterwards goes into
  :attr:`KernelResult.tvr`, never into the record's 95. The PAN (5A) is the card's
  5A, else track 2's up to the separator, padded with 'F'.

Every byte the card sends is untrusted: whatever it sends, :meth:`Kernel3.run`
returns an outcome. Reasons and decisions name the command and the data object,
never a PAN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date

from emv import apdu, dol, tlv
from emv.apdu import CryptogramType
from emv.bitfields import AIP, CID, CTQ, TTQ, TVR
from terminal.kernels import DATA_RECORD_TAGS, KernelResult, Selected
from terminal.oda import (
    OdaFailure,
    OdaResult,
    retrieve_icc_key,
    static_data_to_authenticate,
    verify_fdda,
)
from terminal.outcome import (
    Cvm,
    Message,
    Outcome,
    ReaderStatus,
    Status,
    UiRequest,
    approved,
    declined,
    end_application,
    online_request,
    try_again,
    try_another_interface,
)
from terminal.records import Records, parse_afl, read_records, store_objects
from terminal.session import CardDataError, CardLost, CardSession

__all__ = [
    "CardData",
    "Kernel3",
    "Track2",
    "after_expiry",
    "after_oda_failure",
    "build_data_record",
    "cryptogram_type_from_iad",
    "gpo_status_outcome",
    "offline_status",
    "parse_card_data",
    "parse_date",
    "parse_fci",
    "parse_track2",
    "select_cvm",
]

GPO = "GET PROCESSING OPTIONS"
TRY_ANOTHER_INTERFACE_SW = frozenset({0x6984, 0x6985})
SEE_PHONE_SW = 0x6986
MAX_PDOL_DATA = 252  # the GPO data field '83' L data must fit a short Lc of 255
MAX_PAN_DIGITS = 19
MAX_TRACK2_BYTES = 19
MAX_IAD_BYTES = 32
MANDATORY = (
    (0x82, "Application Interchange Profile"),
    (0x57, "Track 2 Equivalent Data"),
    (0x9F26, "Application Cryptogram"),
    (0x9F36, "Application Transaction Counter"),
    (0x9F10, "Issuer Application Data"),
)
FIXED_LENGTHS = {
    0x82: ("Application Interchange Profile", 2),
    0x9F26: ("Application Cryptogram", 8),
    0x9F27: ("Cryptogram Information Data", 1),
    0x9F36: ("Application Transaction Counter", 2),
    0x9F6C: ("Card Transaction Qualifiers", 2),
    0x5F34: ("PAN Sequence Number", 1),
    0x5F24: ("Application Expiration Date", 3),
}
ODA_OBJECTS = (
    (0x8F, "CA Public Key Index"),
    (0x90, "Issuer Public Key Certificate"),
    (0x9F32, "Issuer Public Key Exponent"),
    (0x9F46, "ICC Public Key Certificate"),
    (0x9F47, "ICC Public Key Exponent"),
    (0x5A, "Application PAN"),
    (0x9F4B, "Signed Dynamic Application Data"),
)
TERMINAL_TAGS = frozenset(
    {0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x9F66, 0x9F33, 0x9F34, 0x9F35}
    | {0x9F1E, 0x9F21}
)
"""Data record tags the reader supplies: taken as the PDOL data sent them, else the
reader's own values (Book C-3 online data; Book 2 Table 26 for the cryptogram's)."""
FDDA_TERMINAL = ((0x9F37, 4), (0x9F02, 6), (0x5F2A, 2))
CTQ_IN_CARD_AUTHENTICATION_DATA = slice(5, 7)  # 9F69 version 01: '01' || UN (4) || CTQ (2)
_KINDS = {0: CryptogramType.AAC, 1: CryptogramType.TC, 2: CryptogramType.ARQC}
_CENTURY_PIVOT = 50  # YY 00-49 is 20YY, 50-99 is 19YY (Book 4 §6.7.3 date handling)


class _Stop(Exception):
    """The kernel has its outcome (an early exit)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


def _contact_chip(ttq: TTQ) -> str | None:
    """The interface a Try Another Interface outcome prefers: the contact chip when the
    reader has one (TTQ byte 1 bit 5)."""
    return "contact chip" if ttq.emv_contact_chip_supported else None


def gpo_status_outcome(sw: int, ttq: TTQ) -> Outcome | None:
    """The outcome a GPO status word other than '9000' gives (C-3, Initiate Application
    Processing); None for '9000'."""
    if sw == 0x9000:
        return None
    said = f"{GPO} answered {sw:04X}"
    if sw in TRY_ANOTHER_INTERFACE_SW:
        return try_another_interface(
            f"{said}: the card asks for another interface",
            Message.TRY_ANOTHER_CARD,
            _contact_chip(ttq),
        )
    if sw == SEE_PHONE_SW:  # the phone shows the cardholder what to do, then a new tap
        see_phone = UiRequest(Message.SEE_PHONE, ReaderStatus.NOT_READY)
        return try_again(f"{said}: see the phone, then present it again", see_phone)
    return end_application(f"{said} ({apdu.sw_meaning(sw)})")


# --- card data: parsing what the card sent ---------------------------------------------------


def parse_fci(fci: bytes) -> bytes | None:
    """The PDOL (9F38) of the FCI Template '6F' > FCI Proprietary Template 'A5' (Book 1
    §11.3.4), None when absent; a malformed FCI is a :class:`CardDataError`."""
    try:
        decoded = tlv.decode(fci)
    except tlv.TlvError as err:
        raise CardDataError(f"SELECT: FCI: {err}") from None
    if len(decoded) != 1 or decoded[0].tag != 0x6F:
        raise CardDataError("SELECT: the answer is not one FCI Template (6F)")
    children = decoded[0].children or ()
    if not any(child.tag == 0x84 for child in children):
        raise CardDataError("SELECT: FCI has no DF Name (84)")
    proprietary = next((child for child in children if child.tag == 0xA5), None)
    if proprietary is None:
        raise CardDataError("SELECT: FCI has no FCI Proprietary Template (A5)")
    pdol = next((c for c in proprietary.children or () if c.tag == 0x9F38), None)
    return None if pdol is None else pdol.value


def parse_date(value: bytes) -> date:
    """A date n 6 YYMMDD (Book 3 Annex A); :class:`ValueError` when it is not one."""
    text = value.hex()
    if len(value) != 3 or not text.isdigit():
        raise ValueError("not YYMMDD digits")
    year = int(text[:2])
    year += 2000 if year < _CENTURY_PIVOT else 1900
    return date(year, int(text[2:4]), int(text[4:6]))


@dataclass(frozen=True)
class Track2:
    """Track 2 Equivalent Data (57, Book 3 Annex A): PAN, separator 'D', expiry YYMM,
    service code, discretionary data, an 'F' pad to whole bytes."""

    pan: str
    expiry: str
    service_code: str

    def __repr__(self) -> str:
        return "Track2(...)"  # a PAN never goes to a trace or a message


def parse_track2(value: bytes) -> Track2:
    """Track 2 Equivalent Data; :class:`CardDataError` naming the problem, never the digits."""
    where = "Track 2 Equivalent Data (57)"
    if not value or len(value) > MAX_TRACK2_BYTES:
        raise CardDataError(f"{where}: {len(value)} bytes, expected 1 to {MAX_TRACK2_BYTES}")
    text = value.hex().upper()
    if text.endswith("F"):
        text = text[:-1]
    pan, separator, rest = text.partition("D")
    if not separator:
        raise CardDataError(f"{where}: no field separator 'D'")
    if not pan.isdigit() or len(pan) > MAX_PAN_DIGITS:
        raise CardDataError(f"{where}: the PAN is not 1 to {MAX_PAN_DIGITS} digits")
    if len(rest) < 7 or not rest.isdigit():
        raise CardDataError(f"{where}: expiry, service code and data are not digits")
    return Track2(pan, rest[:4], rest[4:7])


def _pan_of(objects: Mapping[int, bytes], track2: Track2) -> str:
    """The PAN: Application PAN (5A), else track 2's."""
    value = objects.get(0x5A)
    if value is None:
        return track2.pan
    digits = value.hex().upper().rstrip("F")
    if not value or len(value) > 10 or not digits.isdigit():
        raise CardDataError("Application PAN (5A): not 1 to 19 digits padded with 'F'")
    return digits


def cryptogram_type_from_iad(iad: bytes) -> CryptogramType | None:
    """The cryptogram type in the CVR of a Visa Issuer Application Data (Book C-3 Annex
    A, VIS 1.5 Appendix A): formats 0, 1, 3 ('06' DKI CVN '03' CVR...) carry the CVR
    from byte 5, format 2 ('1F' CVN DKI CVR...) from byte 4; CVR byte 1 bits 6-5 are
    00 AAC, 01 TC, 10 ARQC. None when the IAD is of no known Visa format."""
    if len(iad) >= 7 and iad[0] == 0x06 and iad[3] == 0x03:
        first = iad[4]
    elif len(iad) >= 4 and iad[0] == 0x1F:
        first = iad[3]
    else:
        return None
    return _KINDS.get(first >> 4 & 0x03)


@dataclass(frozen=True)
class CardData:
    """What the kernel uses of the card's data objects, checked."""

    aip: AIP
    kind: CryptogramType
    cid: bytes  # 9F27 as the card sent it, or made from the IAD's cryptogram type
    cid_from_iad: bool
    ctq: CTQ | None
    pan: str
    expiry: date | None

    def __repr__(self) -> str:
        return f"CardData(kind={self.kind.name}, ctq={self.ctq}, expiry={self.expiry})"


def missing_mandatory(objects: Mapping[int, bytes]) -> list[str]:
    """The mandatory qVSDC data objects the card did not give, as "name (tag)"."""
    return [f"{name} ({tlv.tag_hex(tag)})" for tag, name in MANDATORY if tag not in objects]


def parse_card_data(objects: Mapping[int, bytes], origin: Mapping[int, str]) -> CardData:
    """Check the card's data objects (C-3 Annex A) and read what the kernel needs;
    :class:`CardDataError` names the command that gave the object and the tag."""

    def where(tag: int) -> str:
        return origin.get(tag, "READ RECORD")

    for tag, (name, length) in FIXED_LENGTHS.items():
        value = objects.get(tag)
        if value is not None and len(value) != length:
            raise CardDataError(
                f"{where(tag)}: {name} ({tlv.tag_hex(tag)}) has {len(value)} bytes, "
                f"expected {length}"
            )
    iad = objects[0x9F10]
    if not 1 <= len(iad) <= MAX_IAD_BYTES:
        raise CardDataError(
            f"{where(0x9F10)}: Issuer Application Data (9F10) has {len(iad)} bytes, "
            f"expected 1 to {MAX_IAD_BYTES}"
        )
    try:
        track2 = parse_track2(objects[0x57])
    except CardDataError as err:
        raise CardDataError(f"{where(0x57)}: {err}") from None
    try:
        pan = _pan_of(objects, track2)
    except CardDataError as err:
        raise CardDataError(f"{where(0x5A)}: {err}") from None
    cid_value = objects.get(0x9F27)
    if cid_value is not None:
        kind = _KINDS.get(CID.from_bytes(cid_value).cryptogram_type)
        if kind is None:
            raise CardDataError(f"{where(0x9F27)}: Cryptogram Information Data (9F27) says AAR")
    else:
        kind = cryptogram_type_from_iad(iad)
        if kind is None:
            raise CardDataError(
                f"{where(0x9F10)}: no Cryptogram Information Data (9F27), and the Issuer "
                "Application Data (9F10) carries no cryptogram type"
            )
        cid_value = bytes((kind,))
    expiry = None
    if 0x5F24 in objects:
        try:
            expiry = parse_date(objects[0x5F24])
        except ValueError:
            raise CardDataError(
                f"{where(0x5F24)}: Application Expiration Date (5F24) is not a date"
            ) from None
    ctq = CTQ.from_bytes(objects[0x9F6C]) if 0x9F6C in objects else None
    return CardData(
        aip=AIP.from_bytes(objects[0x82]),
        kind=kind,
        cid=cid_value,
        cid_from_iad=0x9F27 not in objects,
        ctq=ctq,
        pan=pan,
        expiry=expiry,
    )


# --- the decisions: pure functions -----------------------------------------------------------


def after_oda_failure(ctq: CTQ | None, ttq: TTQ) -> tuple[Status, str]:
    """A TC whose fDDA failed (C-3, Offline Data Authentication; CTQ byte 1 bits 6-5)."""
    ctq = ctq or CTQ()
    if ctq.go_online_if_oda_fails and not ttq.offline_only_reader:
        return Status.ONLINE_REQUEST, "CTQ says go online if ODA fails, the reader is online"
    if ctq.switch_interface_if_oda_fails and ttq.emv_contact_chip_supported:
        return (
            Status.TRY_ANOTHER_INTERFACE,
            "CTQ says switch interface if ODA fails, the reader has contact chip",
        )
    return Status.DECLINED, "ODA failed and the CTQ offers no way on for this reader"


def after_expiry(ctq: CTQ | None, ttq: TTQ) -> tuple[Status, str]:
    """A TC of an expired application (C-3, Processing Restrictions; CTQ byte 1 bit 4)."""
    if ctq is not None and ctq.go_online_if_application_expired and not ttq.offline_only_reader:
        return Status.ONLINE_REQUEST, "CTQ says go online if the application expired"
    return Status.DECLINED, "the application expired and the CTQ does not send it online"


def offline_status(
    oda_passed: bool, expired: bool, ctq: CTQ | None, ttq: TTQ
) -> tuple[Status, list[str]]:
    """What a TC becomes: Approved only with fDDA passed and an unexpired application;
    else by the CTQ rules for ODA failure, then for expiry (an expired application is
    not sent online unless the CTQ says so)."""
    status, reasons = Status.APPROVED, []
    if not oda_passed:
        status, reason = after_oda_failure(ctq, ttq)
        reasons.append(reason)
    if expired and status in (Status.APPROVED, Status.ONLINE_REQUEST):
        status, reason = after_expiry(ctq, ttq)
        reasons.append(reason)
    return status, reasons


def select_cvm(
    ctq: CTQ | None,
    ttq: TTQ,
    *,
    online: bool,
    cdcvm_supported: bool = True,
    cdcvm_confirmed: bool = True,
) -> tuple[Cvm | None, str]:
    """The CVM (C-3, Cardholder Verification) and why; None when the reader required a
    CVM and none can be had, or the device's verification cannot be trusted
    (``cdcvm_confirmed`` False: offline, the signed CTQ in 9F69 does not say so)."""
    required = " (the reader requires a CVM)" if ttq.cvm_required else ""
    if ctq is None:
        if not ttq.cvm_required:
            return Cvm.NO_CVM, "no CVM: no CTQ and the reader requires none"
        if ttq.signature_supported:
            return Cvm.SIGNATURE, "signature: no CTQ, the reader requires a CVM"
        return None, "no CTQ, the reader requires a CVM and supports no signature"
    if ctq.online_pin_required and ttq.online_pin_supported and online:
        return Cvm.ONLINE_PIN, f"online PIN: the CTQ asks for it{required}"
    reader_cdcvm = ttq.consumer_device_cvm_supported and cdcvm_supported
    if ctq.consumer_device_cvm_performed and reader_cdcvm:
        if not cdcvm_confirmed:
            return None, "the CTQ claims CDCVM but the CTQ the card signed (9F69) does not"
        return Cvm.CONFIRMATION_CODE_VERIFIED, "confirmation code verified: CDCVM on the device"
    if ctq.signature_required and ttq.signature_supported:
        return Cvm.SIGNATURE, f"signature: the CTQ asks for it{required}"
    if ttq.cvm_required:
        return None, "the reader requires a CVM and the card asks for none the reader can do"
    return Cvm.NO_CVM, "no CVM: none asked for"


def build_data_record(
    objects: Mapping[int, bytes],
    sent: Mapping[int, bytes],
    *,
    aid: bytes,
    application_version: bytes,
    pan: str,
    cid: bytes,
) -> dict[int, bytes]:
    """The data record (:data:`DATA_RECORD_TAGS`, those present): the reader's data as
    the PDOL data sent it (``sent``), the card's data objects, the DF Name (84), the
    reader's application version (9F09), the PAN (5A) in cn and the CID."""
    record: dict[int, bytes] = {}
    for tag in DATA_RECORD_TAGS:
        if tag == 0x5A:
            value: bytes | None = bytes.fromhex(pan + "F" * (len(pan) % 2))
        elif tag == 0x9F27:
            value = cid
        elif tag == 0x84:
            value = aid
        elif tag == 0x9F09:
            value = application_version
        elif tag in TERMINAL_TAGS:
            value = sent.get(tag)
        else:
            value = objects.get(tag)
        if value is not None:
            record[tag] = value
    return record


# --- the transaction -------------------------------------------------------------------------


@dataclass
class _Run:
    """One kernel activation's state: what was sent, what the card gave, what was decided."""

    selected: Selected
    decisions: list[str] = field(default_factory=list)
    ui: list[UiRequest] = field(default_factory=list)
    objects: dict[int, bytes] = field(default_factory=dict)
    origin: dict[int, str] = field(default_factory=dict)
    sent: dict[int, bytes] = field(default_factory=dict)
    tvr: TVR = field(default_factory=TVR)
    oda: OdaResult = field(default_factory=OdaResult)
    path: str = ""
    kind: CryptogramType | None = None
    data_record: dict[int, bytes] = field(default_factory=dict)

    def decide(self, text: str) -> None:
        self.decisions.append(text)

    def result(self, outcome: Outcome) -> KernelResult:
        because = f" ({outcome.reason})" if outcome.reason else ""
        self.decide(f"outcome: {outcome.status}{because}")
        return KernelResult(
            outcome=outcome,
            kernel=Kernel3.name,
            path=self.path,
            oda=self.oda,
            tvr=self.tvr.to_bytes(),
            cryptogram_type=self.kind,
            data_record=self.data_record,
            card_data=dict(self.objects),
            decisions=self.decisions,
            ui=self.ui,
        )


class Kernel3:
    """EMV Contactless Kernel 3, the qVSDC path (see the module docstring)."""

    name = "C-3"

    def run(self, session: CardSession, selected: Selected) -> KernelResult:
        """Run qVSDC on the selected application; every card behaviour ends in an outcome."""
        run = _Run(selected)
        try:
            outcome = _transaction(session, run)
        except _Stop as stop:
            outcome = stop.outcome
        except CardLost as err:  # an L1 error: the cardholder taps again (Book A §6.2)
            outcome = try_again(f"card lost during {err}", field_off=False)
        except CardDataError as err:
            outcome = end_application(str(err))
        return run.result(outcome)


def _ttq(selected: Selected) -> tuple[bytes, TTQ]:
    """The TTQ of pre-processing: the transaction's 9F66, else the indicators', else the
    configured one (Book B §3.1.1)."""
    value = selected.terminal_data.get(0x9F66) or selected.indicators.ttq or selected.config.ttq
    if value is None or len(value) != TTQ.LENGTH:
        raise _Stop(end_application("reader configuration: no 4-byte TTQ (9F66) for Kernel 3"))
    return value, TTQ.from_bytes(value)


def _pdol(selected: Selected) -> list[dol.DolEntry]:
    """The PDOL, which must ask for the TTQ (C-3, Initiate Application Processing)."""
    pdol = parse_fci(selected.fci)
    if pdol is None:
        raise _Stop(end_application("SELECT: no PDOL (9F38): the card offers no qVSDC"))
    try:
        entries = dol.parse_dol(pdol)
    except dol.DolError as err:
        raise CardDataError(f"SELECT: PDOL (9F38): {err}") from None
    if not any(entry.tag == 0x9F66 for entry in entries):
        raise _Stop(
            end_application("SELECT: the PDOL (9F38) does not ask for the TTQ (9F66): no qVSDC")
        )
    return entries


def _gpo(session: CardSession, run: _Run, ttq_value: bytes, ttq: TTQ) -> list[tlv.Tlv]:
    """Build the PDOL data, send GET PROCESSING OPTIONS, return the Format 2 objects."""
    entries = _pdol(run.selected)
    values = {**run.selected.terminal_data, 0x9F66: ttq_value}
    pdol_data = dol.build_dol_data(entries, values)
    if len(pdol_data) > MAX_PDOL_DATA:
        raise CardDataError(
            f"SELECT: the PDOL (9F38) asks for {len(pdol_data)} bytes, more than GPO carries"
        )
    run.sent = {**values, **dol.split_dol_data(entries, pdol_data)}
    asked = " ".join(tlv.tag_hex(entry.tag) for entry in entries)
    run.decide(f"GPO with the PDOL data for {asked}")
    answer = session.exchange(apdu.get_processing_options(pdol_data))
    refused = gpo_status_outcome(answer.sw, ttq)
    if refused is not None:
        raise _Stop(refused)
    try:
        decoded = tlv.decode(answer.data)
    except tlv.TlvError as err:
        raise CardDataError(f"{GPO}: {err}") from None
    if len(decoded) != 1:
        raise CardDataError(f"{GPO}: {len(decoded)} objects, expected one response template")
    if decoded[0].tag == 0x80:
        raise _Stop(
            end_application(f"{GPO}: Format 1 (80) is the mag-stripe (MSD) answer, not qVSDC")
        )
    if decoded[0].tag != 0x77:
        raise CardDataError(f"{GPO}: template {tlv.tag_hex(decoded[0].tag)} is not Format 2 (77)")
    run.path = "qVSDC"
    return list(decoded[0].children or ())


def _read(session: CardSession, run: _Run, ttq_value: bytes, ttq: TTQ) -> Records:
    """GPO, then the records of the AFL (C-3, Read Application Data)."""
    found = _gpo(session, run, ttq_value, ttq)
    store_objects(run.objects, found, GPO)
    run.origin = dict.fromkeys(run.objects, GPO)
    records = Records()
    afl = run.objects.get(0x94)
    if afl is not None:
        try:
            entries = parse_afl(afl)
        except CardDataError as err:
            raise CardDataError(f"{GPO}: {err}") from None
        records = read_records(session, entries, run.objects)
        read = ", ".join(f"SFI {sfi} record {number}" for sfi, number in records.read)
        run.decide(f"read {len(records.read)} records: {read}")
    run.ui.append(UiRequest(Message.CARD_READ_OK, ReaderStatus.CARD_READ_SUCCESSFULLY))
    return records


def _transaction(session: CardSession, run: _Run) -> Outcome:
    ttq_value, ttq = _ttq(run.selected)
    today = _transaction_date(run.selected)
    records = _read(session, run, ttq_value, ttq)
    missing = missing_mandatory(run.objects)
    if missing:
        run.tvr = replace(run.tvr, icc_data_missing=True)
        read = f"{GPO} and READ RECORD" if records.read else GPO
        raise CardDataError(f"{read}: mandatory data missing: {', '.join(missing)}")
    card = parse_card_data(run.objects, run.origin)
    run.kind = card.kind
    source = " (CID absent: the type from the IAD)" if card.cid_from_iad else ""
    run.decide(f"card returned {card.kind.name}{source}")
    expired = _expired(run, card, today)
    if card.kind == CryptogramType.AAC:
        run.tvr = replace(run.tvr, offline_data_authentication_not_performed=True)
        outcome = declined("the card declined (AAC)")
    elif card.kind == CryptogramType.ARQC:
        outcome = _online(run, card, records, ttq, today)
    else:
        outcome = _offline(run, card, records, ttq, today, expired=expired)
    if outcome.status in (Status.APPROVED, Status.DECLINED, Status.ONLINE_REQUEST):
        run.data_record = build_data_record(
            run.objects,
            run.sent,
            aid=run.selected.aid,
            application_version=run.selected.config.application_version,
            pan=card.pan,
            cid=card.cid,
        )
    return outcome


def _transaction_date(selected: Selected) -> date:
    try:
        return parse_date(selected.terminal_data.get(0x9A, b""))
    except ValueError:
        raise _Stop(end_application("reader data: Transaction Date (9A) is not a date")) from None


def _expired(run: _Run, card: CardData, today: date) -> bool:
    """Processing Restrictions (C-3): the Application Expiration Date against the
    transaction date; the TVR says so."""
    if not run.selected.config.kernel3.expiry_check or card.expiry is None:
        return False
    if card.expiry >= today:
        return False
    run.tvr = replace(run.tvr, expired_application=True)
    run.decide(f"application expired on {card.expiry} (transaction date {today})")
    return True


def _fdda(run: _Run, records: Records, today: date) -> OdaResult:
    """fDDA (C-3 Annex C): the ICC key through the certificates, then the SDAD over the
    terminal's UN, amount and currency and the card's 9F69; the TVR records a failure."""
    objects = run.objects
    missing = [f"{name} ({tlv.tag_hex(tag)})" for tag, name in ODA_OBJECTS if tag not in objects]
    try:
        if missing:
            run.tvr = replace(run.tvr, icc_data_missing=True)
            raise OdaFailure(f"missing {', '.join(missing)}")
        card_data = objects.get(0x9F69, b"")
        version = card_data[0] if card_data else 0x00
        if version not in run.selected.config.kernel3.fdda_versions:
            raise OdaFailure(f"fDDA version {version:02X} is not supported by the reader")
        if not records.oda_records_valid:
            raise OdaFailure("a record signed for ODA is not a record template '70'")
        static_data = static_data_to_authenticate(records.static_data, objects)
        key = retrieve_icc_key(
            run.selected.terminal.ca_keys, run.selected.aid[:5], objects, static_data, today
        )
        terminal = {tag: run.sent.get(tag, bytes(size)) for tag, size in FDDA_TERMINAL}
        verify_fdda(key, objects, terminal)
    except OdaFailure as err:
        run.tvr = replace(run.tvr, dda_failed=True)
        run.decide(f"fDDA failed: {err}")
        return OdaResult("fDDA", "failed", str(err))
    run.decide("fDDA passed")
    return OdaResult("fDDA", "passed")


def _cvm(
    run: _Run, card: CardData, ttq: TTQ, *, online: bool, cdcvm_confirmed: bool = True
) -> Cvm | None:
    """:func:`select_cvm` with the reader's Kernel 3 settings, the choice in words."""
    cvm, reason = select_cvm(
        card.ctq,
        ttq,
        online=online,
        cdcvm_supported=run.selected.config.kernel3.cdcvm_supported,
        cdcvm_confirmed=cdcvm_confirmed,
    )
    run.decide(f"CVM: {reason}")
    return cvm


def _online(run: _Run, card: CardData, records: Records, ttq: TTQ, today: date) -> Outcome:
    """An ARQC: Online Request, with fDDA when the card signed and the reader does ODA
    for online authorisations; a failure is the issuer's to weigh (TVR). An offline-only
    reader cannot go online: Declined."""
    if ttq.offline_only_reader:
        run.tvr = replace(run.tvr, offline_data_authentication_not_performed=True)
        return declined("the card asks to go online (ARQC) but the reader is offline-only")
    if ttq.oda_for_online_authorizations_supported and 0x9F4B in run.objects:
        run.oda = _fdda(run, records, today)
    else:
        run.tvr = replace(run.tvr, offline_data_authentication_not_performed=True)
        why = "no SDAD (9F4B)"
        if not ttq.oda_for_online_authorizations_supported:
            why = "the reader does no ODA for online authorisations"
        run.oda = OdaResult(reason=why)
        run.decide(f"ODA not performed: {why}")
    cvm = _cvm(run, card, ttq, online=True)
    if cvm is None:
        return declined("no acceptable CVM for an online authorisation")
    return online_request(cvm, "the card asks to go online (ARQC)")


def _offline(
    run: _Run, card: CardData, records: Records, ttq: TTQ, today: date, *, expired: bool
) -> Outcome:
    """A TC: an offline approval after fDDA and the expiry check, else what the CTQ says."""
    if not card.aip.dda_supported:
        run.tvr = replace(run.tvr, offline_data_authentication_not_performed=True)
        run.oda = OdaResult(reason="the AIP (82) offers no fDDA")
        run.decide("ODA not possible: the AIP (82) offers no fDDA")
    else:
        run.oda = _fdda(run, records, today)
    status, reasons = offline_status(run.oda.result == "passed", expired, card.ctq, ttq)
    for reason in reasons:
        run.decide(f"TC not approved offline: {reason}")
    reason = "; ".join(reasons)
    if status == Status.TRY_ANOTHER_INTERFACE:
        return try_another_interface(reason, Message.INSERT_CARD, _contact_chip(ttq))
    if status == Status.DECLINED:
        return declined(reason)
    online = status == Status.ONLINE_REQUEST
    cvm = _cvm(run, card, ttq, online=online, cdcvm_confirmed=online or _cdcvm_signed(run, card))
    if cvm is None:
        return declined("no acceptable CVM")
    if online:
        return online_request(cvm, reason)
    return approved(cvm, "the card approved offline (TC), fDDA passed")


def _cdcvm_signed(run: _Run, card: CardData) -> bool:
    """Offline, CDCVM counts only when the CTQ in the signed Card Authentication Related
    Data (9F69, fDDA version 01) says so too (C-3 Annex C)."""
    signed = run.objects.get(0x9F69, b"")[CTQ_IN_CARD_AUTHENTICATION_DATA]
    return card.ctq is not None and signed == card.ctq.to_bytes()
