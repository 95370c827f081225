"""Kernel 2: the Mastercard contactless kernel (EMV Contactless Book C-2), M/Chip and
mag-stripe mode, with CDA and torn transaction recovery.

One :class:`Kernel2` serves many transactions and keeps the Torn Transaction Log
between them (Book C-2 §3.8, torn transaction recovery). A transaction runs:

* the FCI (S1.7): it must parse and hold the DF Name (84) and the FCI Proprietary
  Template (A5), else Select Next; the PDOL (9F38) is optional;
* GET PROCESSING OPTIONS with the PDOL related data (S1.13, S3): a status other than
  '9000' is Select Next (Start C, S3.9); the answer is a Format 2 ('77') or Format 1
  ('80': AIP || AFL) response holding the AIP (82) and AFL (94);
* the path (S3.15-S3.18): M/Chip ("EMV mode") when the AIP says EMV mode is supported
  (byte 2 bit 8) and the reader allows it, else mag-stripe mode when the reader allows
  it, else End Application;
* M/Chip (S3.30-S3.65, S4, S456, §7): READ RECORD of the AFL (the first entry
  '08010100' is the mag-stripe record and is skipped when the reader supports
  mag-stripe mode), the mandatory data check (PAN 5A, expiry 5F24, CDOL1 8C: End
  Application), the CDA prerequisites (8F, 90, 9F32, 9F46, 9F47, 9F4A, the CA key:
  else "CDA failed"), processing restrictions (:mod:`terminal.restrictions`), CVM
  selection (:mod:`terminal.cvm`), the floor limit and terminal action analysis
  (:mod:`terminal.risk`), RECOVER AC for a torn transaction of this card, then
  GENERATE AC with the CDOL1 related data, asking for CDA for a TC or an ARQC
  (GAC.20-GAC.29); the answer (S9, S910) gives the outcome: TC Approved, ARQC Online
  Request, AAC Declined (or Try Another Interface when the terminal has a contact
  interface and the card is not a mobile device, S910.74-S910.75), a CDA that does
  not verify End Application with "CDA failed";
* mag-stripe mode (S3.70-S3.78, S7, S78, S13): READ RECORD (only the mag-stripe record
  when the AFL starts '08010100'), Track 2 Data (9F6B), PCVC3 (9F65), PUNATC (9F66),
  NATC (9F67) and, with Track 1 Data (56), their Track 1 twins (9F62-9F64); nUN, the
  number of Unpredictable Number digits in the track, is the PUNATC bit count less
  NATC (0 to 8, the same for both tracks); COMPUTE CRYPTOGRAPHIC CHECKSUM with the
  UDOL (9F69, else the reader's default UDOL) related data holding the Unpredictable
  Number (Numeric) 9F6A; the track data for the host carries the CVC3, UN and ATC
  digits at the places the bitmaps mark, and nUN in the last discretionary digit
  (S13.18-S13.22); Online Request.

A card that leaves the field ends the kernel's part with a restart at Start B and
"Present Card Again" (S3.5, S4.5, S9.9-S9.10: End Application with Start B, given as
Try Again, the status emvtap's Entry Point restarts on). During GENERATE AC, when the
card has a DRDOL (9F51), the transaction is first logged as torn (S9.11-S9.15); on a
later tap of the same card (PAN and PSN) RECOVER AC asks for the torn answer
(S456.44-S456.49), which is processed like the lost GENERATE AC answer.

Not done: the Relay Resistance Protocol (the TVR says "not performed", S3.65), data
storage and the terminal's data exchange (IDS, DEK/DET, PUT DATA, balance reading), the
mag-stripe failed-transaction wait (S13.30-S13.31: no sleeping in a test harness), the
phone message table and second tap of a mobile's mag-stripe decline (S13.41-S13.45:
such a decline is Declined), and the Reader Contactless Transaction Limit check, which
Entry Point's pre-processing does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from emv import apdu, dol, tlv
from emv.apdu import CryptogramType, ResponseApdu
from emv.bitfields import AIP, TVR, BitfieldError
from terminal.config import Kernel2Settings
from terminal.cvm import CvmContext, CvmSelection, merge_tvr, select_cvm
from terminal.kernels import DATA_RECORD_TAGS, KernelResult, Selected
from terminal.oda import (
    OdaFailure,
    OdaResult,
    retrieve_icc_key,
    static_data_to_authenticate,
    verify_cda,
)
from terminal.outcome import (
    Cvm,
    Message,
    Outcome,
    ReaderStatus,
    Start,
    approved,
    declined,
    end_application,
    online_request,
    select_next,
    try_again,
    try_another_interface,
)
from terminal.records import AflEntry, parse_afl, read_records, store_objects
from terminal.restrictions import RestrictionContext, parse_yymmdd, processing_restrictions
from terminal.risk import ActionCodes, floor_limit_exceeded, terminal_action_analysis
from terminal.session import CardDataError, CardLost, CardSession

__all__ = [
    "Kernel2",
    "TornLog",
    "TornRecord",
    "TrackInputs",
    "build_track1",
    "build_track2",
    "mag_stripe_cvm",
    "number_of_un_digits",
    "transaction_time",
    "unpredictable_number_numeric",
]

NAME = "C-2"
MCHIP = "M/Chip"
MAG_STRIPE = "mag-stripe"

_MAG_STRIPE_AFL_ENTRY = bytes.fromhex("08010100")  # S3.30, S3.70
_CDA_OBJECTS = {  # S456.25
    0x8F: "CA Public Key Index",
    0x90: "Issuer Public Key Certificate",
    0x9F32: "Issuer Public Key Exponent",
    0x9F46: "ICC Public Key Certificate",
    0x9F47: "ICC Public Key Exponent",
    0x9F4A: "Static Data Authentication Tag List",
}
_MANDATORY_EMV = {0x5F24: "Application Expiration Date", 0x5A: "PAN", 0x8C: "CDOL1"}  # S456.16
_MANDATORY_TRACK2 = {  # S7.20
    0x9F6B: "Track 2 Data",
    0x9F65: "PCVC3(Track2)",
    0x9F66: "PUNATC(Track2)",
    0x9F67: "NATC(Track2)",
}
_MANDATORY_TRACK1 = {0x9F62: "PCVC3(Track1)", 0x9F63: "PUNATC(Track1)", 0x9F64: "NATC(Track1)"}
_TRACK2_BITMAP, _TRACK1_BITMAP = 2, 6  # bytes of PCVC3 / PUNATC for each track
_MAX_UN_DIGITS = 8
_PURCHASE_OR_CASH = frozenset({0x00, 0x01, 0x09, 0x17})
_CARD_DEVICE = b"00"  # Third Party Data device type '3030': a card (S910.74)
_MOBILE_SUPPORTED, _OD_CVM_REQUIRED = 0x01, 0x02  # Mobile Support Indicator 9F7E
_OD_CVM_VERIFIED = 0x10  # POS Cardholder Interaction Information DF4B byte 2 bit 5
_IC_WITH_CONTACTS = 0x20  # Terminal Capabilities byte 1 bit 6
_TABLE_26 = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)
_AS_SENT = frozenset((*_TABLE_26, 0x9F34, 0x9F35))
_NOT_IN_MCHIP_RECORD = frozenset({0x9F66, 0x9F6B, 0x56, 0x9F60, 0x9F61})  # '9F66' is PUNATC here
_NOT_IN_MAG_STRIPE_RECORD = frozenset(
    {0x95, 0x9F34, 0x9F26, 0x9F27, 0x9F10, 0x9F66, 0x57, 0x5A, 0x5F24}
)
_MAG_STRIPE_CVM = {0x0: Cvm.NO_CVM, 0x1: Cvm.SIGNATURE, 0x2: Cvm.ONLINE_PIN}
_UNFORESEEN = (ValueError, LookupError, ArithmeticError)


class _Exit(Exception):
    """Ends the transaction with ``outcome``."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


# --- the torn transaction log -------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    """A GENERATE AC as sent: what the CDA hash and the data record need."""

    kind: CryptogramType
    cda: bool
    pdol_data: bytes
    cdol1_data: bytes
    sent: Mapping[int, bytes]  # the CDOL1 related data by tag, as sent
    values: Mapping[int, bytes]  # every value the kernel had for the DOLs


@dataclass(frozen=True)
class TornRecord:
    """One Torn Transaction Log record (Book C-2 §3.8, Table 4.2 in spirit): the card (PAN
    and PSN), the DRDOL related data, the GENERATE AC as sent, the TVR and CVM of the torn
    transaction and when it happened (9A, 9F21)."""

    pan: bytes = field(repr=False)
    psn: bytes | None
    drdol_data: bytes
    request: _Request = field(repr=False)
    tvr: TVR
    cvm: CvmSelection
    when: datetime | None


class TornLog:
    """The Torn Transaction Log: at most ``max_records`` records, oldest first."""

    def __init__(self) -> None:
        self.records: list[TornRecord] = []

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: TornRecord, max_records: int) -> list[TornRecord]:
        """Log ``record``; return the records it displaced (the oldest, S9.13-S9.14)."""
        self.records.append(record)
        displaced = self.records[: max(len(self.records) - max_records, 0)]
        self.records = self.records[len(displaced) :]
        return displaced

    def find(self, pan: bytes | None, psn: bytes | None) -> TornRecord | None:
        """The newest record of the card with ``pan`` and ``psn`` (S456.44)."""
        if pan is None:
            return None
        for record in reversed(self.records):
            if record.pan == pan and record.psn == psn:
                return record
        return None

    def remove(self, record: TornRecord) -> None:
        self.records = [kept for kept in self.records if kept is not record]

    def clean(self, now: datetime | None, lifetime: int) -> list[TornRecord]:
        """Drop the records older than ``lifetime`` seconds (S1.5); a record whose time is
        unknown is dropped, and nothing is judged when ``now`` is unknown."""
        if now is None:
            return []
        kept: list[TornRecord] = []
        expired: list[TornRecord] = []
        for record in self.records:
            old = record.when is None or (now - record.when).total_seconds() > lifetime
            (expired if old else kept).append(record)
        self.records = kept
        return expired


def transaction_time(values: Mapping[int, bytes]) -> datetime | None:
    """The transaction's date and time from 9A (YYMMDD) and 9F21 (HHMMSS), None if invalid."""
    day = parse_yymmdd(values.get(0x9A))
    clock = values.get(0x9F21, b"")
    digits = clock.hex()
    if day is None or len(clock) != 3 or not digits.isdigit():
        return None
    try:
        return datetime(
            day.year, day.month, day.day, int(digits[:2]), int(digits[2:4]), int(digits[4:])
        )
    except ValueError:
        return None


# --- small pure helpers -------------------------------------------------------------------


def _bcd(value: bytes | None) -> int:
    """An n-format value (BCD) as an int; 0 when it is not BCD."""
    digits = (value or b"").hex()
    return int(digits) if digits.isdigit() else 0


def _missing(data: Mapping[int, bytes], wanted: Mapping[int, str]) -> list[str]:
    """The names (and tags) of the objects of ``wanted`` absent or empty in ``data``."""
    return [f"{name} ({tag:X})" for tag, name in wanted.items() if not data.get(tag)]


def number_of_un_digits(punatc: bytes, natc: bytes) -> int | None:
    """nUN (Book C-2 S7.22): the non-zero bits of PUNATC less NATC; None unless 0 to 8."""
    if len(natc) != 1:
        return None
    nun = sum(bin(byte).count("1") for byte in punatc) - natc[0]
    return nun if 0 <= nun <= _MAX_UN_DIGITS else None


def unpredictable_number_numeric(unpredictable_number: bytes, nun: int) -> bytes:
    """Unpredictable Number (Numeric) 9F6A (n 8, S78.15): nUN digits from the terminal's
    Unpredictable Number (9F37), the 8 - nUN most significant digits zero."""
    value = int.from_bytes(unpredictable_number, "big") % 10**nun
    return bytes.fromhex(f"{value:08d}")


def mag_stripe_cvm(capability: bytes) -> Cvm:
    """A Mag-stripe CVM Capability (DF811E / DF812C, Book C-2 Annex A) byte 1 bits 8-5:
    0000 No CVM, 0001 Obtain Signature, 0010 Online PIN, else N/A."""
    if not capability:
        return Cvm.NA
    return _MAG_STRIPE_CVM.get(capability[0] >> 4, Cvm.NA)


def _positions(bitmap: bytes, length: int) -> list[int] | None:
    """The discretionary data positions (0 = leftmost) a PCVC3 / PUNATC bitmap marks, left
    to right; its least significant bit is the last position. None when a bit lies
    beyond the discretionary data."""
    value = int.from_bytes(bitmap, "big")
    marked = [bit for bit in range(len(bitmap) * 8) if value >> bit & 1]
    if any(bit >= length for bit in marked):
        return None
    return sorted(length - 1 - bit for bit in marked)


def _digits(value: int, count: int) -> str:
    """The ``count`` least significant decimal digits of ``value`` (zero-padded)."""
    return str(value).zfill(count)[-count:] if count > 0 else ""


@dataclass(frozen=True)
class TrackInputs:
    """One track's dynamic data: the card's PCVC3 and PUNATC bitmaps and NATC, the CVC3 the
    card computed (2 bytes), the terminal's UN digits (nUN of them), the ATC (2 bytes) and
    the digit that ends the discretionary data (nUN, or nUN + 5 mod 10 after on-device
    cardholder verification, S13.14.8)."""

    pcvc3: bytes
    punatc: bytes
    natc: int
    cvc3: bytes
    un_digits: str
    atc: bytes
    last_digit: int


def _fill(discretionary: str, track: TrackInputs) -> str | None:
    """Book C-2 S13.18-S13.19 (S13.21-S13.22): the CVC3 digits at the PCVC3 positions, the
    ATC digits (NATC of them) then the UN digits at the PUNATC positions, and the last
    digit. None when the bitmaps do not fit the discretionary data."""
    cvc3_at = _positions(track.pcvc3, len(discretionary))
    punatc_at = _positions(track.punatc, len(discretionary))
    if not discretionary or cvc3_at is None or punatc_at is None:
        return None
    if len(punatc_at) != track.natc + len(track.un_digits):
        return None
    chars = list(discretionary)
    cvc3_digits = _digits(int.from_bytes(track.cvc3, "big"), len(cvc3_at))
    for position, digit in zip(cvc3_at, cvc3_digits, strict=True):
        chars[position] = digit
    punatc_digits = _digits(int.from_bytes(track.atc, "big"), track.natc) + track.un_digits
    for position, digit in zip(punatc_at, punatc_digits, strict=True):
        chars[position] = digit
    chars[-1] = str(track.last_digit % 10)
    return "".join(chars)


def build_track2(track2: bytes, inputs: TrackInputs) -> bytes | None:
    """Track 2 Data (9F6B) for the host (S13.18-S13.19): PAN 'D' YYMM service code and the
    discretionary data filled in; None when the track is not PAN 'D' YYMM SSS data."""
    text = track2.hex().upper().rstrip("F")
    pan, separator, rest = text.partition("D")
    if not separator or not pan.isdigit() or len(rest) < 7 or not rest.isdigit():
        return None
    filled = _fill(rest[7:], inputs)
    if filled is None:
        return None
    out = f"{pan}D{rest[:7]}{filled}"
    return bytes.fromhex(out + "F" * (len(out) % 2))


def build_track1(track1: bytes, inputs: TrackInputs) -> bytes | None:
    """Track 1 Data (56) for the host (S13.21-S13.22): 'B' PAN '^' name '^' YYMM service
    code and the discretionary data filled in; None when the track does not read so."""
    try:
        text = track1.decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = text.split("^")
    if len(parts) != 3 or len(parts[2]) < 7:
        return None
    tail = parts[2]
    filled = _fill(tail[7:], inputs)
    if filled is None:
        return None
    return "^".join((parts[0], parts[1], tail[:7] + filled)).encode("ascii")


# --- one transaction ----------------------------------------------------------------------


@dataclass
class _Tx:
    """One transaction's state: the card's data, the kernel's values for the DOLs, the TVR,
    what was decided and why."""

    session: CardSession
    selected: Selected
    values: dict[int, bytes]
    fci: dict[int, bytes] = field(default_factory=dict)
    card: dict[int, bytes] = field(default_factory=dict)
    response: dict[int, bytes] = field(default_factory=dict)
    tvr: TVR = field(default_factory=TVR)
    decisions: list[str] = field(default_factory=list)
    path: str = ""
    oda: OdaResult = field(default_factory=OdaResult)
    cvm: CvmSelection | None = None
    cryptogram_type: CryptogramType | None = None
    data_record: dict[int, bytes] = field(default_factory=dict)
    pdol_data: bytes = b""
    static_data: bytes = b""

    @property
    def settings(self) -> Kernel2Settings:
        return self.selected.config.kernel2

    @property
    def amount(self) -> int:
        return _bcd(self.values.get(0x9F02))

    @property
    def transaction_type(self) -> int:
        kind = self.values.get(0x9C, b"\x00")
        return kind[0] if kind else 0

    @property
    def cvm_required(self) -> bool:
        """Reader CVM Required Limit exceeded (Entry Point's indicator, or the amount)."""
        limit = self.selected.config.cvm_required_limit
        return self.selected.indicators.cvm_required_limit_exceeded or (
            limit is not None and self.amount > limit
        )

    def note(self, words: str) -> None:
        self.decisions.append(words)

    def set_tvr(self, bits: TVR) -> None:
        self.tvr = merge_tvr(self.tvr, bits)

    def end(self, reason: str, message: Message = Message.TRY_ANOTHER_CARD) -> _Exit:
        """S3.90, S456.17, S910.50-S910.53: End Application, by default with "Error –
        other card" ("Insert, Swipe or Try Another Card"), noted in the decisions."""
        self.note(reason)
        return _Exit(end_application(reason, message))

    def result(self, outcome: Outcome) -> KernelResult:
        self.note(
            f"outcome: {outcome.status}"
            + (f" (Start {outcome.start})" if outcome.start != Start.NA else "")
        )
        return KernelResult(
            outcome=outcome,
            kernel=NAME,
            path=self.path,
            oda=self.oda,
            tvr=self.tvr.to_bytes(),
            cryptogram_type=self.cryptogram_type,
            data_record=self.data_record,
            card_data={**self.fci, **self.card, **self.response},
            decisions=self.decisions,
        )


def _initial_values(selected: Selected) -> dict[int, bytes]:
    """The kernel's values for the DOLs (S1.9): the transaction's data objects, the
    terminal's version (9F09), Terminal Capabilities with byte 2 (the CVM capability)
    zero until CVM selection, the Mobile Support Indicator and a clear TVR."""
    values = dict(selected.terminal_data)
    capabilities = bytearray(values.get(0x9F33, selected.terminal.capabilities).ljust(3, b"\x00"))
    capabilities[1] = 0
    values[0x9F33] = bytes(capabilities[:3])
    values[0x9F09] = selected.config.application_version
    values.setdefault(0x9F35, bytes((selected.terminal.terminal_type,)))
    values[0x9F7E] = bytes((_MOBILE_SUPPORTED,))
    values[0x95] = bytes(5)
    return values


def _read_fci(tx: _Tx) -> list[dol.DolEntry]:
    """S1.7-S1.8: the FCI ('6F' with 84 and A5) and its PDOL; else Select Next."""
    try:
        found = tlv.decode(tx.selected.fci)
    except tlv.TlvError as err:
        raise _Exit(select_next(f"FCI: {err}")) from None
    if len(found) != 1 or found[0].tag != 0x6F or found[0].children is None:
        raise _Exit(select_next("FCI: not one FCI Template (6F)"))
    tx.fci = tlv.index(found)
    if 0x84 not in tx.fci or tlv.find(found, 0xA5) is None:
        raise _Exit(select_next("FCI: DF Name (84) or FCI Proprietary Template (A5) missing"))
    try:
        return dol.parse_dol(tx.fci.get(0x9F38, b""))
    except dol.DolError as err:
        raise _Exit(select_next(f"PDOL (9F38): {err}")) from None


def _gpo_answer(tx: _Tx, answer: ResponseApdu) -> tuple[AIP, bytes]:
    """S3.8-S3.14: the AIP and AFL of a Format 2 ('77') or Format 1 ('80') answer."""
    if not answer.ok:
        tx.note(f"GET PROCESSING OPTIONS answered {answer.sw:04X}: select the next application")
        raise _Exit(select_next(f"GET PROCESSING OPTIONS status {answer.sw:04X}"))
    try:
        found = tlv.decode(answer.data)
    except tlv.TlvError as err:
        raise tx.end(f"GET PROCESSING OPTIONS: {err}") from None
    if len(found) != 1:
        raise tx.end("GET PROCESSING OPTIONS: not one response template")
    top = found[0]
    if top.tag == 0x77 and top.children is not None:
        store_objects(tx.card, top.children, "GET PROCESSING OPTIONS")
    elif top.tag == 0x80 and len(top.value) >= 6 and (len(top.value) - 2) % 4 == 0:
        tx.card[0x82], tx.card[0x94] = top.value[:2], top.value[2:]
    else:
        raise tx.end("GET PROCESSING OPTIONS: not a Format 1 (80) or Format 2 (77) response")
    aip, afl = tx.card.get(0x82), tx.card.get(0x94)
    if not aip or not afl:
        raise tx.end("GET PROCESSING OPTIONS: AIP (82) or AFL (94) missing")
    try:
        return AIP.from_bytes(aip), afl
    except BitfieldError:
        raise tx.end("GET PROCESSING OPTIONS: the AIP (82) is not 2 bytes") from None


def _afl_entries(tx: _Tx, afl: bytes, *, mag_stripe: bool) -> list[AflEntry]:
    """S3.30-S3.32 and S3.70-S3.72: the AFL entries to read; an AFL starting '08010100'
    holds the mag-stripe record first."""
    if afl.startswith(_MAG_STRIPE_AFL_ENTRY):
        if mag_stripe:
            afl = _MAG_STRIPE_AFL_ENTRY
        elif tx.settings.mag_stripe_mode and len(afl) > len(_MAG_STRIPE_AFL_ENTRY):
            afl = afl[len(_MAG_STRIPE_AFL_ENTRY) :]
    return parse_afl(afl)


def _read(tx: _Tx, entries: list[AflEntry]) -> None:
    """S4: READ RECORD every record the AFL names, keeping the static data to authenticate."""
    try:
        records = read_records(tx.session, entries, tx.card)
    except apdu.ApduError as err:
        raise tx.end(f"AFL (94): {err}") from None
    tx.static_data = records.static_data
    tx.note(f"read {len(records.read)} record(s)")


class Kernel2:
    """Kernel 2 (Book C-2); one instance keeps its Torn Transaction Log across transactions."""

    name = NAME

    def __init__(self) -> None:
        self.torn = TornLog()

    def run(self, session: CardSession, selected: Selected) -> KernelResult:
        """Run the transaction on the selected application; never raises for card behaviour."""
        tx = _Tx(session, selected, _initial_values(selected))
        try:
            outcome = self._transaction(tx)
        except _Exit as stop:
            outcome = stop.outcome
        except CardLost as lost:
            tx.note(f"card lost: {lost}")
            # S3.5, S4.5, S9.9-S9.10: Book C-2 words this End Application with Start B and
            # "Present Card Again" on restart, which Book A calls a restart after a
            # communication error; emvtap's Entry Point restarts at Start B on a Try Again.
            outcome = try_again(f"card lost during {lost.step}", field_off=False)
        except CardDataError as err:
            tx.note(f"card data error: {err}")
            outcome = end_application(f"card data error: {err}")
        except _UNFORESEEN as err:  # a last guard: the kernel never raises for card data
            tx.note(f"card data the kernel could not use ({type(err).__name__})")
            outcome = end_application("card data the kernel could not use")
        return tx.result(outcome)

    # --- the transaction ------------------------------------------------------------------

    def _transaction(self, tx: _Tx) -> Outcome:
        """S1-S3: the FCI, GET PROCESSING OPTIONS, and the path."""
        self._clean_torn_log(tx)
        pdol = _read_fci(tx)
        tx.pdol_data = dol.build_dol_data(pdol, tx.values)
        answer = tx.session.exchange(apdu.get_processing_options(tx.pdol_data))
        aip, afl = _gpo_answer(tx, answer)
        settings = tx.settings
        if settings.emv_mode and aip.emv_mode_supported:
            tx.path = MCHIP
            tx.note("EMV mode: the card (AIP byte 2 bit 8) and the reader support it")
            return self._mchip(tx, aip, afl)
        if settings.mag_stripe_mode:
            tx.path = MAG_STRIPE
            tx.note("mag-stripe mode: EMV mode is not supported by both card and reader")
            return _mag_stripe(tx, aip, afl)
        raise tx.end("neither EMV mode nor mag-stripe mode is possible (S3.18)")

    def _clean_torn_log(self, tx: _Tx) -> None:
        """S1.5: drop the torn records older than their Max Lifetime (DF811C)."""
        now = transaction_time(tx.values)
        expired = self.torn.clean(now, tx.settings.torn_record_lifetime)
        if expired:
            tx.note(f"{len(expired)} torn record(s) past their lifetime removed from the log")

    # --- M/Chip -----------------------------------------------------------------------------

    def _mchip(self, tx: _Tx, aip: AIP, afl: bytes) -> Outcome:
        """S3.30-S456.46: records, checks, CVM, risk, then RECOVER AC or GENERATE AC."""
        entries = _afl_entries(tx, afl, mag_stripe=False)
        tx.set_tvr(TVR(relay_resistance_performed=1))  # S3.65: RRP not performed
        _read(tx, entries)
        missing = _missing(tx.card, _MANDATORY_EMV)
        if missing:
            tx.set_tvr(TVR(icc_data_missing=True))
            raise tx.end(f"mandatory data missing: {', '.join(missing)}")
        cda = _cda_prerequisites(tx, aip)
        _cvm_and_risk(tx, aip)
        kind = _action_analysis(tx)
        recovered = self._recover(tx)
        if recovered is not None:
            return recovered
        request = _prepare_generate_ac(tx, aip, kind, cda=cda)
        command = apdu.generate_ac(request.kind, request.cdol1_data, cda=request.cda)
        tx.note(f"GENERATE AC {request.kind.name}" + (" with CDA" if request.cda else ""))
        try:
            answer = tx.session.exchange(command)
        except CardLost:
            self._log_tear(tx, request)
            raise
        return _complete(tx, request, answer)

    def _recover(self, tx: _Tx) -> Outcome | None:
        """S456.44, S456.47-S456.49 and S10: RECOVER AC for this card's torn transaction."""
        record = self.torn.find(tx.card.get(0x5A), tx.card.get(0x5F34))
        if record is None:
            return None
        tx.note("the Torn Transaction Log holds a record of this card: RECOVER AC")
        answer = tx.session.exchange(apdu.recover_ac(record.drdol_data))
        self.torn.remove(record)
        if not answer.ok:
            tx.note(f"RECOVER AC answered {answer.sw:04X}: record dropped, GENERATE AC as usual")
            return None
        tx.note("RECOVER AC gave the torn GENERATE AC answer")
        tx.tvr, tx.cvm = record.tvr, record.cvm
        return _complete(tx, record.request, answer)

    def _log_tear(self, tx: _Tx, request: _Request) -> None:
        """S9.5, S9.11-S9.15: log the torn GENERATE AC when the card has a DRDOL (9F51)."""
        drdol = tx.card.get(0x9F51)
        max_records = tx.settings.max_torn_records
        if not drdol or max_records <= 0 or tx.cvm is None:
            why = "the card has no DRDOL (9F51)" if not drdol else "the log holds no records"
            tx.note(f"card removed during GENERATE AC; no torn transaction recovery: {why}")
            return
        try:
            drdol_data = dol.build_dol_data(
                dol.parse_dol(drdol), {**request.values, **request.sent}
            )
        except dol.DolError as err:
            tx.note(f"card removed during GENERATE AC; DRDOL (9F51) unusable: {err}")
            return
        if not drdol_data:
            tx.note("card removed during GENERATE AC; the DRDOL asks for nothing")
            return
        record = TornRecord(
            pan=tx.card[0x5A],
            psn=tx.card.get(0x5F34),
            drdol_data=drdol_data,
            request=request,
            tvr=tx.tvr,
            cvm=tx.cvm,
            when=transaction_time(tx.values),
        )
        displaced = self.torn.add(record, max_records)
        tx.note("card removed during GENERATE AC: transaction logged as torn")
        if displaced:
            tx.note(f"{len(displaced)} older torn record(s) displaced from the full log")


def _cda_prerequisites(tx: _Tx, aip: AIP) -> bool:
    """S3R1 / S456.24-S456.27: whether CDA is the ODA method (the card's AIP and the
    reader's configuration), with "ICC data missing" / "CDA failed" when its data or the
    CA key are missing."""
    if not (aip.cda_supported and tx.settings.cda):
        tx.set_tvr(TVR(offline_data_authentication_not_performed=True))
        tx.note("offline data authentication not performed: CDA not supported by both")
        return False
    tag_list = tx.card.get(0x9F4A)
    if tag_list is not None and tag_list != b"\x82":
        raise tx.end("Static Data Authentication Tag List (9F4A) names other than the AIP")
    missing = _missing(tx.card, _CDA_OBJECTS)
    if missing:
        tx.set_tvr(TVR(icc_data_missing=True, cda_failed=True))
        tx.oda = OdaResult("CDA", "failed", f"missing {', '.join(missing)}")
        tx.note(f"CDA failed: missing {', '.join(missing)}")
        return True
    rid, index = tx.selected.aid[:5], tx.card[0x8F]
    known = len(index) == 1 and any(
        key.rid == rid and key.index == index[0] for key in tx.selected.terminal.ca_keys
    )
    if not known:
        reason = f"no CA public key {rid.hex().upper()} index {index.hex().upper()}"
        tx.set_tvr(TVR(cda_failed=True))
        tx.oda = OdaResult("CDA", "failed", reason)
        tx.note(f"CDA failed: {reason}")
    return True


def _cvm_and_risk(tx: _Tx, aip: AIP) -> None:
    """S456.30-S456.38: Terminal Capabilities byte 2, processing restrictions, CVM
    selection, the floor limit."""
    settings, selected = tx.settings, tx.selected
    cvm_required = tx.cvm_required
    capability = (
        settings.cvm_capability_cvm_required
        if cvm_required
        else settings.cvm_capability_no_cvm_required
    )[:1] or b"\x00"
    capabilities = bytearray(tx.values[0x9F33])
    capabilities[1] = capability[0]
    tx.values[0x9F33] = bytes(capabilities)
    restrictions = processing_restrictions(
        tx.card,
        RestrictionContext(
            terminal_version=selected.config.application_version,
            transaction_date=tx.values.get(0x9A, b""),
            transaction_type=tx.transaction_type,
            amount_other=_bcd(tx.values.get(0x9F03)),
            terminal_country=tx.values.get(0x9F1A, selected.terminal.country),
            terminal_type=selected.terminal.terminal_type,
            additional_capabilities=tx.values.get(
                0x9F40, selected.terminal.additional_capabilities
            ),
        ),
    )
    tx.set_tvr(restrictions.tvr)
    tx.decisions.extend(restrictions.words)
    selection = select_cvm(
        card_supports_cv=aip.cardholder_verification_supported,
        on_device=aip.on_device_cardholder_verification_supported and settings.on_device_cvm,
        cvm_required=cvm_required,
        cvm_list=tx.card.get(0x8E),
        ctx=CvmContext(
            amount=tx.amount,
            transaction_currency=tx.values.get(0x5F2A, selected.terminal.currency),
            application_currency=tx.card.get(0x9F42),
            transaction_type=tx.transaction_type,
            terminal_type=selected.terminal.terminal_type,
            capability=capability[0],
        ),
    )
    tx.cvm = selection
    tx.set_tvr(selection.tvr)
    tx.values[0x9F34] = selection.results
    tx.decisions.extend(selection.words)
    tx.note(f"CVM: {selection.cvm}, CVM Results {selection.results.hex().upper()}")
    if selected.indicators.floor_limit_exceeded or floor_limit_exceeded(
        tx.amount, selected.config.floor_limit
    ):
        tx.set_tvr(TVR(floor_limit_exceeded=True))
        tx.note("transaction exceeds the floor limit")


def _action_analysis(tx: _Tx) -> CryptogramType:
    """S456.39, Book C-2 §7.8: the cryptogram to ask for."""
    decision = terminal_action_analysis(
        tx.tvr.to_bytes(),
        tx.selected.config.tacs,
        ActionCodes.from_card(tx.card),
        tx.selected.terminal.terminal_type,
    )
    tx.note(f"terminal action analysis: {decision.cryptogram.name} ({decision.reason})")
    return decision.cryptogram


def _prepare_generate_ac(tx: _Tx, aip: AIP, kind: CryptogramType, *, cda: bool) -> _Request:
    """GAC.20-GAC.29: the reference control parameter and the CDOL1 related data."""
    request_cda = False
    if cda and tx.tvr.cda_failed:
        if aip.on_device_cardholder_verification_supported and tx.settings.on_device_cvm:
            kind = CryptogramType.AAC  # GAC.22-GAC.23
            tx.note("CDA failed on a device with on-device CVM: AAC")
        tx.note("CDA not requested: CDA already failed")
    elif cda and kind != CryptogramType.AAC:
        request_cda = True
    elif cda:
        tx.oda = OdaResult("CDA", "not performed", "an AAC is not signed")
    tx.values[0x95] = tx.tvr.to_bytes()
    values = {**tx.fci, **tx.card, **tx.values}
    try:
        entries = dol.parse_dol(tx.card[0x8C])
    except dol.DolError as err:
        raise tx.end(f"CDOL1 (8C): {err}") from None
    cdol1_data = dol.build_dol_data(entries, values)
    if not cdol1_data:
        raise tx.end("CDOL1 (8C) asks for nothing")
    sent = dol.split_dol_data(entries, cdol1_data)
    return _Request(kind, request_cda, tx.pdol_data, cdol1_data, sent, values)


def _ac_response(tx: _Tx, answer: ResponseApdu) -> tuple[dict[int, bytes], bytes]:
    """S9.16-S9.20: the data objects of a Format 1 ('80') or Format 2 ('77') GENERATE AC
    answer, and the response's data objects as CDA hashes them (all but the SDAD)."""
    if not answer.ok:
        raise tx.end(f"GENERATE AC status {answer.sw:04X}")
    try:
        found = tlv.decode(answer.data)
    except tlv.TlvError as err:
        raise tx.end(f"GENERATE AC: {err}") from None
    if len(found) != 1:
        raise tx.end("GENERATE AC: not one response template")
    top = found[0]
    objects: dict[int, bytes] = {}
    if top.tag == 0x80 and 11 <= len(top.value) <= 43:
        value = top.value
        objects = {0x9F27: value[:1], 0x9F36: value[1:3], 0x9F26: value[3:11]}
        if len(value) > 11:
            objects[0x9F10] = value[11:]
        return objects, b""
    if top.tag != 0x77 or top.children is None:
        raise tx.end("GENERATE AC: not a Format 1 (80) or Format 2 (77) response")
    children = list(top.children)
    store_objects(objects, children, "GENERATE AC")
    hashed = b"".join(obj.to_bytes() for obj in children if obj.tag != 0x9F4B)
    return objects, hashed


def _check_cid(tx: _Tx, request: _Request, objects: Mapping[int, bytes]) -> CryptogramType:
    """S9.21-S9.24: the ATC and CID are there, and the card gave no more than was asked:
    an AAC always, a TC for a TC, an ARQC for a TC or an ARQC."""
    cid, atc = objects.get(0x9F27), objects.get(0x9F36)
    if not cid or not atc:
        raise tx.end("GENERATE AC: CID (9F27) or ATC (9F36) missing")
    if len(cid) != 1 or len(atc) != 2:
        raise tx.end("GENERATE AC: CID (9F27) or ATC (9F36) of the wrong length")
    try:
        kind = CryptogramType(cid[0] & 0xC0)
    except ValueError:
        raise tx.end(f"GENERATE AC: CID {cid.hex().upper()} is an AAR") from None
    allowed = {
        CryptogramType.AAC: True,
        CryptogramType.TC: request.kind == CryptogramType.TC,
        CryptogramType.ARQC: request.kind in (CryptogramType.TC, CryptogramType.ARQC),
    }
    if not allowed[kind]:
        raise tx.end(f"GENERATE AC: {kind.name} returned for {request.kind.name}")
    return kind


def _verify_signature(tx: _Tx, request: _Request, cid: int, sdad: bytes, hashed: bytes) -> bytes:
    """S910.1-S910.7: recover the ICC key and verify the SDAD; the AC it carries. A
    failure is "CDA failed" and End Application (S910.7.1-S910.7.2, S910.50-S910.53)."""
    today = parse_yymmdd(request.values.get(0x9A))
    try:
        if today is None:
            raise OdaFailure("Transaction Date (9A) is not a date")
        static = static_data_to_authenticate(tx.static_data, tx.card)
        icc_key = retrieve_icc_key(
            tx.selected.terminal.ca_keys, tx.selected.aid[:5], tx.card, static, today
        )
        cryptogram = verify_cda(
            icc_key,
            sdad,
            unpredictable_number=request.sent.get(0x9F37, request.values.get(0x9F37, b"")),
            cid=cid,
            pdol_data=request.pdol_data,
            cdol1_data=request.cdol1_data,
            response_tlvs=hashed,
        )
    except OdaFailure as err:
        tx.set_tvr(TVR(cda_failed=True))
        tx.oda = OdaResult("CDA", "failed", str(err))
        raise tx.end(f"CDA failed: {err}") from None
    tx.oda = OdaResult("CDA", "passed")
    tx.note("CDA passed: the Application Cryptogram comes from the SDAD")
    return cryptogram


def _complete(tx: _Tx, request: _Request, answer: ResponseApdu) -> Outcome:
    """S9, S910: check the GENERATE AC (or RECOVER AC) answer and end the transaction."""
    objects, hashed = _ac_response(tx, answer)
    tx.response = objects
    kind = _check_cid(tx, request, objects)
    sdad = objects.get(0x9F4B)
    if sdad is not None:
        cryptogram = _verify_signature(tx, request, objects[0x9F27][0], sdad, hashed)
    else:
        ac = objects.get(0x9F26)
        if not ac:
            raise tx.end("GENERATE AC: Application Cryptogram (9F26) missing")
        if request.cda and kind != CryptogramType.AAC:
            tx.set_tvr(TVR(cda_failed=True))
            tx.oda = OdaResult("CDA", "failed", f"{kind.name} without SDAD (9F4B)")
            raise tx.end(f"GENERATE AC: CDA asked for, {kind.name} returned without SDAD")
        if request.cda:
            tx.oda = OdaResult("CDA", "not performed", "the card declined (AAC)")
        cryptogram = ac
    tx.cryptogram_type = kind
    tx.data_record = _mchip_data_record(tx, request, cryptogram)
    return _cid_outcome(tx, kind)


def _mchip_data_record(tx: _Tx, request: _Request, cryptogram: bytes) -> dict[int, bytes]:
    """The data record (Book C-2 Annex A, EMV mode): Table 26 data, CVM Results and Terminal
    Type exactly as the CDOL1 data carried them, the AC (from the SDAD under CDA)."""
    sources: dict[int, bytes] = {**tx.fci, **tx.card, **request.values, **tx.response}
    sources[0x84] = tx.selected.aid
    sources[0x9F26] = cryptogram
    for tag in _AS_SENT:
        if tag in request.sent:
            sources[tag] = request.sent[tag]
    return {
        tag: sources[tag]
        for tag in DATA_RECORD_TAGS
        if tag in sources and tag not in _NOT_IN_MCHIP_RECORD
    }


def _contact_possible(tx: _Tx) -> bool:
    """S910.74: the terminal has a contact interface and the card is not a device that has
    none (Third Party Data 9F6E with a device type other than '3030', a card)."""
    capabilities = tx.selected.terminal.capabilities
    if not capabilities or not capabilities[0] & _IC_WITH_CONTACTS:
        return False
    third_party = tx.card.get(0x9F6E, b"")
    if len(third_party) >= 6 and not third_party[2] & 0x80:
        return third_party[4:6] == _CARD_DEVICE
    return True


def _cid_outcome(tx: _Tx, kind: CryptogramType) -> Outcome:
    """S910.74-S910.75: the outcome of the card's decision."""
    selection = tx.cvm
    cvm = selection.cvm if selection is not None else Cvm.NA
    if kind == CryptogramType.TC:
        return approved(cvm, "the card approved offline (TC)")
    if kind == CryptogramType.ARQC:
        return online_request(
            cvm, "the card asks to go online (ARQC)", reader=ReaderStatus.CARD_READ_SUCCESSFULLY
        )
    if tx.transaction_type not in _PURCHASE_OR_CASH:
        return end_application("AAC for a transaction other than a purchase or cash", None)
    if _contact_possible(tx):
        return try_another_interface(
            "the card declined contactless (AAC): try the contact interface",
            Message.INSERT_CARD,
            "contact chip",
        )
    return declined("the card declined (AAC)", cvm=cvm)


# --- mag-stripe mode ----------------------------------------------------------------------


def _track_inputs(
    tx: _Tx, tags: tuple[int, int, int], size: int, dynamic: tuple[bytes, str, bytes, int]
) -> TrackInputs:
    """One track's bitmaps (``size`` bytes each) and NATC, with the dynamic data."""
    pcvc3, punatc, natc = (tx.card[tag] for tag in tags)
    if len(pcvc3) != size or len(punatc) != size or len(natc) != 1:
        raise tx.end(f"mag-stripe: PCVC3/PUNATC ({size} bytes) or NATC of the wrong length")
    cvc3, un_digits, atc, last_digit = dynamic
    return TrackInputs(pcvc3, punatc, natc[0], cvc3, un_digits, atc, last_digit)


def _mag_stripe_data(tx: _Tx) -> int:
    """S7.20-S7.24: the mandatory mag-stripe data and nUN."""
    missing = _missing(tx.card, _MANDATORY_TRACK2)
    if 0x56 in tx.card:
        missing += _missing(tx.card, _MANDATORY_TRACK1)
    if missing:
        raise tx.end(f"mag-stripe data missing: {', '.join(missing)}")
    nun = number_of_un_digits(tx.card[0x9F66], tx.card[0x9F67])
    if nun is None:
        raise tx.end("mag-stripe: PUNATC(Track2) and NATC(Track2) give no nUN of 0 to 8")
    if 0x56 in tx.card and number_of_un_digits(tx.card[0x9F63], tx.card[0x9F64]) != nun:
        raise tx.end("mag-stripe: Track 1 and Track 2 disagree on nUN")
    return nun


def _mag_stripe_cvm(tx: _Tx, aip: AIP) -> bool:
    """S78.16-S78.20 and S13.24-S13.26: the CVM from the Mag-stripe CVM Capability; with
    on-device CVM, the Mobile Support Indicator asks the device for it. True when the
    device must verify its user."""
    on_device = aip.on_device_cardholder_verification_supported and tx.settings.on_device_cvm
    if on_device and tx.cvm_required:
        tx.values[0x9F7E] = bytes((_MOBILE_SUPPORTED | _OD_CVM_REQUIRED,))
        return True
    capability = (
        tx.settings.mag_stripe_cvm_required
        if tx.cvm_required
        else tx.settings.mag_stripe_no_cvm_required
    )
    cvm = mag_stripe_cvm(capability)
    tx.cvm = CvmSelection(cvm, b"", receipt=cvm == Cvm.SIGNATURE)
    tx.note(f"mag-stripe CVM: {cvm} (Mag-stripe CVM Capability {capability.hex().upper()})")
    return False


def _ccc_answer(tx: _Tx, answer: ResponseApdu) -> dict[int, bytes]:
    """S13.9-S13.16: the COMPUTE CRYPTOGRAPHIC CHECKSUM answer's data objects."""
    if not answer.ok:
        raise tx.end(f"COMPUTE CRYPTOGRAPHIC CHECKSUM status {answer.sw:04X}")
    try:
        found = tlv.decode(answer.data)
    except tlv.TlvError as err:
        raise tx.end(f"COMPUTE CRYPTOGRAPHIC CHECKSUM: {err}") from None
    if len(found) != 1 or found[0].tag != 0x77 or found[0].children is None:
        raise tx.end("COMPUTE CRYPTOGRAPHIC CHECKSUM: not one response template (77)")
    objects: dict[int, bytes] = {}
    store_objects(objects, found[0].children, "COMPUTE CRYPTOGRAPHIC CHECKSUM")
    atc = objects.get(0x9F36, b"")
    if len(atc) != 2:
        raise tx.end("COMPUTE CRYPTOGRAPHIC CHECKSUM: ATC (9F36) missing")
    return objects


def _mag_stripe(tx: _Tx, aip: AIP, afl: bytes) -> Outcome:
    """S3.70-S3.78, S7, S78, S13: READ RECORD, COMPUTE CRYPTOGRAPHIC CHECKSUM, the track
    data for the host, Online Request."""
    _read(tx, _afl_entries(tx, afl, mag_stripe=True))
    nun = _mag_stripe_data(tx)
    un_numeric = unpredictable_number_numeric(tx.values.get(0x9F37, bytes(4)), nun)
    tx.values[0x9F6A] = un_numeric
    device_cvm = _mag_stripe_cvm(tx, aip)
    udol = tx.card.get(0x9F69) or tx.settings.default_udol
    try:
        udol_data = dol.build_dol_data(dol.parse_dol(udol), {**tx.card, **tx.values})
    except dol.DolError as err:
        raise tx.end(f"UDOL (9F69): {err}") from None
    if not udol_data:
        raise tx.end("UDOL (9F69) asks for nothing")
    tx.note(f"COMPUTE CRYPTOGRAPHIC CHECKSUM with {nun} UN digit(s) in the track data")
    answer = tx.session.exchange(apdu.compute_cryptographic_checksum(udol_data))
    objects = _ccc_answer(tx, answer)
    tx.response = objects
    nun_digit = nun
    verified = len(objects.get(0xDF4B, b"")) >= 2 and bool(objects[0xDF4B][1] & _OD_CVM_VERIFIED)
    if verified:
        nun_digit = (nun + 5) % 10  # S13.14.8
        tx.cvm = CvmSelection(Cvm.CONFIRMATION_CODE_VERIFIED, b"")
        tx.note("the device verified its user (POS Cardholder Interaction Information)")
    elif device_cvm:
        raise tx.end("on-device CVM required and not performed by the device")
    if not objects.get(0x9F61):
        if 0xDF4B in objects:
            return declined("the card gave no CVC3 (declined)", reader=ReaderStatus.NOT_READY)
        raise tx.end("COMPUTE CRYPTOGRAPHIC CHECKSUM: CVC3 Track 2 (9F61) missing")
    if 0x56 in tx.card and not objects.get(0x9F60):
        raise tx.end("COMPUTE CRYPTOGRAPHIC CHECKSUM: CVC3 Track 1 (9F60) missing")
    tx.data_record = _mag_stripe_record(tx, objects, nun, nun_digit)
    selection = tx.cvm or CvmSelection(Cvm.NA, b"")
    return online_request(
        selection.cvm,
        "mag-stripe mode: CVC3 computed, authorise online",
        reader=ReaderStatus.CARD_READ_SUCCESSFULLY,
        receipt=selection.receipt,
    )


def _mag_stripe_record(
    tx: _Tx, objects: Mapping[int, bytes], nun: int, nun_digit: int
) -> dict[int, bytes]:
    """S13.18-S13.22: the tracks for the host, and the mag-stripe data record."""
    atc = objects[0x9F36]
    un_digits = tx.values[0x9F6A].hex()[_MAX_UN_DIGITS - nun :] if nun else ""
    track2_inputs = _track_inputs(
        tx, (0x9F65, 0x9F66, 0x9F67), _TRACK2_BITMAP, (objects[0x9F61], un_digits, atc, nun_digit)
    )
    track2 = build_track2(tx.card[0x9F6B], track2_inputs)
    if track2 is None:
        raise tx.end("mag-stripe: Track 2 Data (9F6B) cannot hold the dynamic data")
    built: dict[int, bytes] = {0x9F6B: track2}
    if 0x56 in tx.card:
        track1_inputs = _track_inputs(
            tx,
            (0x9F62, 0x9F63, 0x9F64),
            _TRACK1_BITMAP,
            (objects[0x9F60], un_digits, atc, nun_digit),
        )
        track1 = build_track1(tx.card[0x56], track1_inputs)
        if track1 is None:
            raise tx.end("mag-stripe: Track 1 Data (56) cannot hold the dynamic data")
        built[0x56] = track1
    tx.note("track data built with the CVC3, UN and ATC digits")
    sources = {**tx.fci, **tx.card, **tx.values, **objects, **built, 0x84: tx.selected.aid}
    record = {
        tag: sources[tag]
        for tag in DATA_RECORD_TAGS
        if tag in sources and tag not in _NOT_IN_MAG_STRIPE_RECORD
    }
    record[0x9F6A] = tx.values[0x9F6A]
    return record
