"""Entry Point (EMV Contactless Book B): from "a card is in the field" to a kernel's outcome.

:class:`EntryPoint` runs Book B's four steps and its outcome processing for one
transaction:

1. **Pre-processing** (Book B §3.1.1): for every configured AID (a Combination of
   AID and kernel) the Entry Point Pre-Processing Indicators from the amount and
   the reader limits (:func:`pre_process`); when no combination is allowed the
   outcome is Try Another Interface.
2. **Protocol activation** (§3.2): the field on (:meth:`emv.link.Link.power_on`),
   a User Interface Request "Present Card" or the one the last outcome asked for on
   restart (§3.2.1.2).
3. **Combination selection** (§3.3): SELECT PPSE, its directory entries
   (:func:`directory_entries`), the kernel each asks for (:func:`requested_kernel_id`),
   the Candidate List in priority order (:func:`build_candidates`); then final
   selection (§3.3.3): SELECT of the first candidate, removed on a status word other
   than '9000' or an answer that is no FCI, the next one tried.
4. **Kernel activation** (§3.4): the kernel of the selected combination runs with a
   :class:`terminal.kernels.Selected` (FCI, indicators, the terminal's data objects).

**Outcome processing** (§3.5, Book A §6.2): the outcome's UI Request is sent;
Select Next removes the candidate and goes back to final selection (Start C); Try
Again switches the field off and asks for the card again (Start B: a new tap, up to
``TerminalConfig.retaps`` times); every other outcome is final: the field goes off
and :meth:`EntryPoint.process` returns it. A communication error during
activation or selection also returns to Start B (§3.3.3.7).

Start D (restart at kernel activation with an online response, e.g. issuer update
processing on a second tap) is not used by the kernels emvtap implements (Kernel 2
and Kernel 3 finish in one tap); an outcome asking for it is returned as it is.

Where emvtap chooses what Book B leaves open, or departs from it:

* Book B's reader polls until a card comes; here each protocol activation is one tap
  and Entry Point gives up after ``1 + retaps`` of them with End Application
  ("Insert, Swipe or Try Another Card"), so a Try Again is never the final status;
* the field goes off for every Try Again (the next tap is a new power-on), whatever
  the outcome's Field Off Request says;
* a power-on that fails with :class:`emv.link.CardRemoved` is "no card"; any other
  :class:`emv.link.LinkError` is taken for a collision ("Please Present One Card
  Only", §3.2.1.4);
* partial matching of ADF names (§3.3.2.5 B) applies only to AIDs configured with
  ``partial_selection``;
* final selection also removes a candidate whose '9000' answer is not one FCI
  template '6F', so every kernel gets an FCI it can parse;
* a directory entry without '9F2A' whose RID has no default kernel (Table 3-6) asks
  for the kernel the configuration gives its AID;
* the PPSE's FCI is decoded strictly: malformed BER-TLV counts as no directory entry;
* Extended Selection ('9F29', §3.3.3.3) and per-transaction-type combination sets
  (Book A §5.8) are not supported: one combination set serves every transaction type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from emv import apdu, dol, tlv
from emv.apdu import ApduError, CommandApdu, ResponseApdu, sw_meaning
from emv.bitfields import TTQ, BitfieldError, KernelIdentifier
from emv.link import CardRemoved, Link, LinkError
from terminal.config import AidConfig, TerminalConfig
from terminal.kernels import Indicators, Kernel, KernelResult, Selected
from terminal.outcome import (
    Message,
    Outcome,
    ReaderStatus,
    Status,
    UiRequest,
    end_application,
    select_next,
    try_again,
    try_another_interface,
)
from terminal.session import CardSession
from terminal.transaction import Transaction, terminal_data

__all__ = [
    "DEFAULT_KERNELS",
    "PRESENT_CARD",
    "Attempt",
    "Candidate",
    "DirectoryEntry",
    "EntryPoint",
    "EntryResult",
    "PpseError",
    "build_candidates",
    "directory_entries",
    "pre_process",
    "requested_kernel_id",
]

DEFAULT_KERNELS: Mapping[bytes, int] = {
    bytes.fromhex("A000000004"): 2,  # Mastercard: Kernel 2 (Book C-2)
    bytes.fromhex("A000000003"): 3,  # Visa: Kernel 3 (Book C-3)
    bytes.fromhex("A000000025"): 4,  # American Express: Kernel 4 (Book C-4)
    bytes.fromhex("A000000065"): 5,  # JCB: Kernel 5 (Book C-5)
    bytes.fromhex("A000000152"): 6,  # Discover: Kernel 6 (Book C-6)
    bytes.fromhex("A000000333"): 7,  # UnionPay: Kernel 7 (Book C-7)
}
"""The kernel a directory entry without a Kernel Identifier asks for, by the RID of the
matching AID (Book B §3.3.2.5 C, Table 3-6 "Default Kernel ID")."""

PRESENT_CARD = UiRequest(Message.PRESENT_CARD, ReaderStatus.READY_TO_READ)
"""The User Interface Request of a protocol activation that is not a restart (Book B §3.2.1.2)."""
_NOT_STARTED = end_application("", reader=ReaderStatus.READY_TO_READ, field_off=False)
"""EntryResult's outcome until the transaction has one."""
_VISA_RID = bytes.fromhex("A000000003")
_KERNEL_1, _KERNEL_3 = 1, 3
_ADF_NAME_MIN, _ADF_NAME_MAX = 5, 16  # an AID is 5 to 16 bytes (EMV 4.4 Book 1 §12.2.1)
_LOWEST_PRIORITY = 16  # after priorities 1 (highest) to 15 (Book B §3.3.3.2)
_TTQ_ONLINE_CRYPTOGRAM_REQUIRED = 0x80  # byte 2 bit 8
_TTQ_CVM_REQUIRED = 0x40  # byte 2 bit 7
_FLOOR_LIMIT_MAX = 0xFFFFFFFF  # Terminal Floor Limit 9F1B is b 4


# --- data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One entry of the Candidate List (Book B §3.3.2): a PPSE directory entry the
    reader supports, with its configuration."""

    aid: bytes  # ADF Name (4F)
    label: str  # Application Label (50), "" when absent
    priority: int | None  # Application Priority Indicator (87) bits 4-1, None when absent
    kernel_id: int  # the kernel identifier Entry Point resolved (Book B §3.3.2.5)
    config: AidConfig


@dataclass
class Attempt:
    """One kernel activation (a candidate, or a new tap): what was selected, how it ended.

    Candidates removed in final selection and taps that ended before a kernel ran are
    attempts too, with ``kernel`` None and the outcome Entry Point gave them (Select
    Next, Try Again) and its reason."""

    aid: bytes | None
    kernel: KernelResult | None
    outcome: Outcome


@dataclass
class EntryResult:
    """Entry Point's result for one transaction, restarts included."""

    outcome: Outcome  # the outcome Entry Point ends with
    kernel: KernelResult | None  # the last kernel activation's result, None if none ran
    indicators: dict[bytes, Indicators] = field(default_factory=dict)  # by AID (pre-processing)
    candidates: list[Candidate] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    ui: list[UiRequest] = field(default_factory=list)  # every UI request, in order
    taps: int = 0  # how many times the card was activated (power on)


@dataclass(frozen=True)
class DirectoryEntry:
    """One Directory Entry '61' of the PPSE's FCI (Book B §3.3.2.4), as read.

    ``priority`` is the Application Priority Indicator's bits 4-1 (None when '87' is
    absent or not one byte), ``kernel_identifier`` the raw Kernel Identifier '9F2A'
    (None when absent), ``position`` the entry's place in the PPSE (0 first)."""

    adf_name: bytes
    label: str
    priority: int | None
    kernel_identifier: bytes | None
    position: int


class PpseError(ValueError):
    """The PPSE's answer holds no usable FCI; the message says what is wrong."""


# --- pre-processing (Book B §3.1.1) ---------------------------------------------------------


def pre_process(config: AidConfig, amount: int, currency_exponent: int) -> Indicators:
    """The Entry Point Pre-Processing Indicators of one combination (Book B §3.1.1.1-§3.1.1.12).

    ``amount`` is Amount, Authorised in minor units; ``currency_exponent`` says how
    many minor units make one unit of currency (status check, §3.1.1.3).

    * Status Check Requested: status check configured and the amount is one unit (§3.1.1.3);
    * zero amount: not allowed when the Zero Amount Allowed flag is 0, else the Zero
      Amount indicator (§3.1.1.4);
    * Contactless Application Not Allowed: amount >= Reader Contactless Transaction
      Limit (§3.1.1.5);
    * Reader Contactless Floor Limit Exceeded: amount > the floor limit (§3.1.1.6);
    * Reader CVM Required Limit Exceeded: amount >= the CVM required limit (§3.1.1.8);
    * the Copy of TTQ (when a TTQ is configured): byte 2 bits 8-7 cleared (§3.1.1.2),
      then bit 8 "online cryptogram required" for floor limit exceeded, status check or
      zero amount (§3.1.1.9-§3.1.1.11; zero amount on an offline-only reader, TTQ
      byte 1 bit 4, is not allowed instead), bit 7 "CVM required" for CVM required
      limit exceeded (§3.1.1.12).
    """
    status_check = config.status_check and amount == 10**currency_exponent
    zero = amount == 0
    not_allowed = zero and not config.zero_amount_allowed
    zero_amount = zero and config.zero_amount_allowed
    if config.transaction_limit is not None and amount >= config.transaction_limit:
        not_allowed = True
    floor_exceeded = config.floor_limit is not None and amount > config.floor_limit
    cvm_exceeded = config.cvm_required_limit is not None and amount >= config.cvm_required_limit
    ttq = None
    if config.ttq is not None:
        copy = bytearray(config.ttq)
        copy[1] &= ~(_TTQ_ONLINE_CRYPTOGRAM_REQUIRED | _TTQ_CVM_REQUIRED) & 0xFF
        if floor_exceeded or status_check:
            copy[1] |= _TTQ_ONLINE_CRYPTOGRAM_REQUIRED
        if zero_amount:
            if TTQ.from_bytes(bytes(copy)).offline_only_reader:
                not_allowed = True
            else:
                copy[1] |= _TTQ_ONLINE_CRYPTOGRAM_REQUIRED
        if cvm_exceeded:
            copy[1] |= _TTQ_CVM_REQUIRED
        ttq = bytes(copy)
    return Indicators(
        status_check_requested=status_check,
        contactless_application_not_allowed=not_allowed,
        zero_amount=zero_amount,
        cvm_required_limit_exceeded=cvm_exceeded,
        floor_limit_exceeded=floor_exceeded,
        ttq=ttq,
    )


# --- combination selection (Book B §3.3.2) --------------------------------------------------


def directory_entries(fci: bytes) -> list[DirectoryEntry]:
    """The Directory Entries '61' of the PPSE's FCI: '6F' > 'A5' > 'BF0C' > '61' (Book B
    §3.3.2.4), in PPSE order. An entry without a well-formed ADF Name '4F' (5 to 16
    bytes) is left out (§3.3.2.5 A). Raises :class:`PpseError` when the FCI is not
    well-formed BER-TLV or not an FCI template with an issuer discretionary data template."""
    try:
        objects = tlv.decode(fci)
    except tlv.TlvError as err:
        raise PpseError(f"FCI is not BER-TLV ({err})") from None
    template = _child(objects, 0x6F)
    proprietary = _child(template.children or () if template else (), 0xA5)
    discretionary = _child(proprietary.children or () if proprietary else (), 0xBF0C)
    if discretionary is None:
        raise PpseError("no FCI template '6F' > 'A5' > 'BF0C'")
    entries: list[DirectoryEntry] = []
    for obj in discretionary.children or ():
        if obj.tag != 0x61 or obj.children is None:
            continue
        entry = _directory_entry(obj.children, len(entries))
        if entry is not None:
            entries.append(entry)
    return entries


def _child(objects: Sequence[tlv.Tlv], tag: int) -> tlv.Tlv | None:
    """The first object with ``tag`` among ``objects`` (one level, no search into templates)."""
    return next((obj for obj in objects if obj.tag == tag), None)


def _directory_entry(children: tuple[tlv.Tlv, ...], position: int) -> DirectoryEntry | None:
    name = _child(children, 0x4F)
    if name is None or not _ADF_NAME_MIN <= len(name.value) <= _ADF_NAME_MAX:
        return None
    label = _child(children, 0x50)
    priority = _child(children, 0x87)
    kernel = _child(children, 0x9F2A)
    return DirectoryEntry(
        adf_name=name.value,
        label=label.value.decode("ascii", "replace") if label else "",
        priority=priority.value[0] & 0x0F if priority and len(priority.value) == 1 else None,
        kernel_identifier=kernel.value if kernel else None,
        position=position,
    )


def requested_kernel_id(kernel_identifier: bytes | None, matching_aid: bytes) -> int | None:
    """The Requested Kernel ID of a directory entry (Book B §3.3.2.5 C).

    * Kernel Identifier '9F2A' absent or empty: the default kernel for the matching
      AID's RID (:data:`DEFAULT_KERNELS`, Table 3-6); None for a RID not in the table;
    * kernel type (byte 1 bits 8-7) '00' or '01': byte 1, which for an international
      kernel (type '00') is its Short Kernel ID;
    * a domestic kernel (type '10' or '11'): bytes 1-3 as a number (never one of the
      international kernels), all the bytes when the Short Kernel ID is 0 (outside
      Book B's scope);
    * a domestic identifier shorter than 3 bytes, or one longer than 8 bytes, names no
      kernel: -1.
    """
    if not kernel_identifier:
        return DEFAULT_KERNELS.get(matching_aid[:5])
    try:
        identifier = KernelIdentifier.from_bytes(kernel_identifier)
    except BitfieldError:
        return -1
    if not identifier.domestic:
        return kernel_identifier[0]
    if identifier.extended_kernel_id is None:
        return -1
    used = kernel_identifier[:3] if identifier.short_kernel_id else kernel_identifier
    return int.from_bytes(used, "big")


def _matches(entry: DirectoryEntry, config: AidConfig) -> bool:
    """ADF Name equal to the AID, or beginning with it when partial selection is
    allowed (Book B §3.3.2.5 B)."""
    if entry.adf_name == config.aid:
        return True
    return config.partial_selection and entry.adf_name.startswith(config.aid)


def build_candidates(
    entries: Sequence[DirectoryEntry],
    aids: Sequence[AidConfig],
    indicators: Mapping[bytes, Indicators],
    kernels: Collection[int],
) -> list[Candidate]:
    """The Candidate List (Book B §3.3.2.5-§3.3.2.6, §3.3.3.2), highest priority first.

    A directory entry and a configured AID make a candidate when the ADF Name matches
    the AID, the combination is allowed (pre-processing), the Requested Kernel ID is
    zero or the combination's kernel, and the reader has that kernel. A RID without a
    default kernel (Table 3-6) and no '9F2A' asks for the combination's own kernel.
    Priority 1 is highest; 0 or no '87' is lowest; equal priorities keep PPSE order,
    and one entry matching several AIDs keeps the configuration's order."""
    candidates: list[tuple[int, int, Candidate]] = []
    for entry in entries:
        for config in aids:
            allowed = not indicators[config.aid].contactless_application_not_allowed
            if not (allowed and _matches(entry, config) and config.kernel_id in kernels):
                continue
            requested = requested_kernel_id(entry.kernel_identifier, config.aid)
            if requested not in (None, 0, config.kernel_id):
                continue
            rank = entry.priority if entry.priority else _LOWEST_PRIORITY
            candidate = Candidate(
                entry.adf_name, entry.label, entry.priority, config.kernel_id, config
            )
            candidates.append((rank, entry.position, candidate))
    candidates.sort(key=lambda item: item[:2])
    return [candidate for _, _, candidate in candidates]


# --- final selection (Book B §3.3.3) --------------------------------------------------------


def _fci_template(data: bytes) -> tlv.Tlv | None:
    """The SELECT answer as one FCI template '6F', or None when it is not one."""
    try:
        objects = tlv.decode(data)
    except tlv.TlvError:
        return None
    if len(objects) != 1 or objects[0].tag != 0x6F or objects[0].children is None:
        return None
    return objects[0]


def _pdol_asks_for_ttq(fci: tlv.Tlv) -> bool:
    """Whether the PDOL '9F38' in the FCI's proprietary template 'A5' lists the TTQ '9F66'."""
    proprietary = _child(fci.children or (), 0xA5)
    pdol = _child(proprietary.children or (), 0x9F38) if proprietary else None
    if pdol is None:
        return False
    try:
        return any(item.tag == 0x9F66 for item in dol.parse_dol(pdol.value))
    except dol.DolError:
        return False


def _kernel_for(candidate: Candidate, fci: tlv.Tlv, kernels: Collection[int]) -> int | None:
    """The kernel to activate (Book B §3.3.3.6): a Visa AID selected for Kernel 3 whose
    PDOL does not ask for the TTQ is a Kernel 1 card: Kernel 1 if the reader has it,
    else None (the candidate is removed)."""
    if candidate.kernel_id != _KERNEL_3 or candidate.aid[:5] != _VISA_RID:
        return candidate.kernel_id
    if _pdol_asks_for_ttq(fci):
        return candidate.kernel_id
    return _KERNEL_1 if _KERNEL_1 in kernels else None


def _exchange(link: Link, command: CommandApdu) -> ResponseApdu | None:
    """One command; None when the answer has no status word. LinkError passes through."""
    raw = link.transceive(command.to_bytes())
    try:
        return ResponseApdu.parse(raw)
    except ApduError:
        return None


def _answered(step: str, response: ResponseApdu | None) -> str:
    if response is None:
        return f"{step}: the answer has no status word"
    return f"{step} answered {response.sw:04X} ({sw_meaning(response.sw)})"


# --- Entry Point ----------------------------------------------------------------------------


class EntryPoint:
    """Entry Point for one terminal configuration and its kernels (by kernel id)."""

    def __init__(self, config: TerminalConfig, kernels: Mapping[int, Kernel]) -> None:
        self.config = config
        self.kernels = kernels

    def process(self, link: Link, transaction: Transaction) -> EntryResult:
        """Pre-processing, protocol activation, combination selection, kernel activation,
        outcome processing with restarts (Book B §3.1-§3.5). Never raises for card behaviour."""
        result = EntryResult(outcome=_NOT_STARTED, kernel=None)
        exponent = self.config.currency_exponent
        result.indicators = {
            aid.aid: pre_process(aid, transaction.amount, exponent) for aid in self.config.aids
        }
        if all(i.contactless_application_not_allowed for i in result.indicators.values()):
            outcome = try_another_interface(
                f"no AID allows contactless for amount {transaction.amount} (Book B §3.1.1.13)",
                Message.INSERT_OR_SWIPE_CARD,
                reader=ReaderStatus.PROCESSING_ERROR,
                field_off=False,
            )
            return self._final(result, outcome)
        restart_ui: UiRequest | None = None
        while True:
            result.ui.append(restart_ui or PRESENT_CARD)  # Book B §3.2.1.2
            result.taps += 1
            outcome = self._tap(link, transaction, result)
            if outcome.status != Status.TRY_AGAIN:
                break
            _field_off(link)  # Try Again: Start B, a new tap (Book B §3.5.1.3)
            if result.taps > self.config.retaps:
                outcome = end_application(  # Book B §3.5.1.3: no more retaps
                    f"card not read after {result.taps} tap(s): {outcome.reason}",
                    reader=ReaderStatus.READY_TO_READ,
                    field_off=False,
                )
                break
            restart_ui = outcome.ui_request_on_restart
        _field_off(link)
        return self._final(result, outcome)

    def _final(self, result: EntryResult, outcome: Outcome) -> EntryResult:
        """A final outcome (Book B §3.5.1.4) handed to the reader. Its UI Request is sent
        here unless it is the outcome of the last activation, already sent by :meth:`_note`."""
        announced = bool(result.attempts) and result.attempts[-1].outcome is outcome
        if outcome.ui_request is not None and not announced:
            result.ui.append(outcome.ui_request)
        result.outcome = outcome
        return result

    def _note(self, result: EntryResult, attempt: Attempt) -> None:
        """Record an activation and send its outcome's UI Request (Book B §3.5.1.1)."""
        result.attempts.append(attempt)
        if attempt.outcome.ui_request is not None:
            result.ui.append(attempt.outcome.ui_request)

    def _tap(self, link: Link, transaction: Transaction, result: EntryResult) -> Outcome:
        """One card presentation: protocol activation to an outcome other than Select Next."""
        try:
            link.power_on()
        except CardRemoved as err:
            return self._lost(result, None, f"no card in the field: {err}")
        except LinkError as err:  # Book B §3.2.1.4: a collision, or a reader that failed
            collision = UiRequest(Message.PRESENT_ONE_CARD_ONLY, ReaderStatus.PROCESSING_ERROR)
            outcome = try_again(f"protocol activation failed: {err}", collision, on_restart=None)
            self._note(result, Attempt(None, None, outcome))
            return outcome
        try:
            response = _exchange(link, apdu.select_ppse())
        except LinkError as err:
            return self._lost(result, None, f"SELECT PPSE: {err}")
        candidates, problem = self._combinations(response, result)
        result.candidates = list(candidates)
        for candidate in candidates:
            outcome = self._activate(link, transaction, candidate, result)
            if outcome.status != Status.SELECT_NEXT:
                return outcome
            problem = "every candidate was removed or asked for the next one"
        return end_application(
            f"empty Candidate List: {problem} (Book B §3.3.2.7)",
            reader=ReaderStatus.READY_TO_READ,
            field_off=False,
        )

    def _lost(self, result: EntryResult, aid: bytes | None, reason: str) -> Outcome:
        outcome = try_again(reason, on_restart=None)  # Book B §3.3.3.7
        self._note(result, Attempt(aid, None, outcome))
        return outcome

    def _combinations(
        self, response: ResponseApdu | None, result: EntryResult
    ) -> tuple[list[Candidate], str]:
        """Steps 1 and 2 of combination selection (Book B §3.3.2.2-§3.3.2.5): the
        candidates, or none and why."""
        if response is None or not response.ok:  # §3.3.2.3
            return [], _answered("SELECT PPSE", response)
        try:
            entries = directory_entries(response.data)
        except PpseError as err:
            return [], f"PPSE: {err}"
        if not entries:  # §3.3.2.4
            return [], "PPSE has no directory entry with an ADF name"
        candidates = build_candidates(
            entries, self.config.aids, result.indicators, self.kernels.keys()
        )
        return candidates, "no directory entry matches an allowed AID and kernel"

    def _activate(
        self, link: Link, transaction: Transaction, candidate: Candidate, result: EntryResult
    ) -> Outcome:
        """Final selection of ``candidate`` (Book B §3.3.3.4-§3.3.3.6) and, when it is
        selected, kernel activation (§3.4) and the kernel's outcome."""
        aid = candidate.aid
        step = f"SELECT {aid.hex().upper()}"
        try:
            response = _exchange(link, apdu.select(aid))
        except LinkError as err:
            return self._lost(result, aid, f"{step}: {err}")
        fci = _fci_template(response.data) if response is not None and response.ok else None
        if fci is None:
            problem = _answered(step, response) if response is None or not response.ok else ""
            reason = problem or f"{step}: the answer is not an FCI template '6F'"
            outcome = select_next(reason)
            self._note(result, Attempt(aid, None, outcome))
            return outcome
        kernel_id = _kernel_for(candidate, fci, self.kernels.keys())
        if kernel_id is None:
            outcome = select_next(
                f"{step}: a Visa AID whose PDOL does not ask for the TTQ needs Kernel 1, "
                "which this reader does not have (Book B §3.3.3.6)"
            )
            self._note(result, Attempt(aid, None, outcome))
            return outcome
        selected = self._selected(candidate, fci, transaction, result.indicators)
        kernel_result = self.kernels[kernel_id].run(CardSession(link), selected)
        result.kernel = kernel_result
        result.ui.extend(kernel_result.ui)  # those the kernel sent on the way (Book A §7.1)
        self._note(result, Attempt(selected.aid, kernel_result, kernel_result.outcome))
        return kernel_result.outcome

    def _selected(
        self,
        candidate: Candidate,
        fci: tlv.Tlv,
        transaction: Transaction,
        indicators: Mapping[bytes, Indicators],
    ) -> Selected:
        """What the kernel gets (Book B §3.4.1): the selected ADF Name (the FCI's DF Name
        '84' when it is one), the FCI, the combination's configuration and
        pre-processing indicators (§3.4.1.2), and the terminal's data objects."""
        config = candidate.config
        found = _child(fci.children or (), 0x84)
        name_ok = found is not None and _ADF_NAME_MIN <= len(found.value) <= _ADF_NAME_MAX
        aid = found.value if found is not None and name_ok else candidate.aid
        ours = indicators[config.aid]
        data = terminal_data(transaction, self.config.constants())
        data[0x9F06] = config.aid  # Application Identifier (AID) - terminal
        data[0x9F09] = config.application_version
        if config.floor_limit is not None and config.floor_limit <= _FLOOR_LIMIT_MAX:
            data[0x9F1B] = config.floor_limit.to_bytes(4, "big")  # Terminal Floor Limit
        if ours.ttq is not None:
            data[0x9F66] = ours.ttq
        return Selected(aid, fci.to_bytes(), config, self.config, ours, data)


def _field_off(link: Link) -> None:
    """Switch the field off (Book B §3.5.1.2); a reader that fails to is not a card problem."""
    with contextlib.suppress(LinkError):
        link.power_off()
