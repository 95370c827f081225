"""The POS: Entry Point and the kernels for one transaction, then the host when the
kernel asks to go online.

:meth:`Terminal.transact` runs Entry Point (:mod:`terminal.entry`, EMV Contactless
Book B) over a card :class:`emv.link.Link`. When the outcome is Online Request
(Book A §6.2.1, Table 6-1), the POS sends the kernel's data record, BER-TLV in
the order of :data:`terminal.kernels.DATA_RECORD_TAGS` (the ICC data of ISO 8583
DE 55), to its :class:`terminal.host.Host` and ends the transaction on the answer:

* approved (with a usable answer): Approved, "Approved" or, when the kernel's CVM
  is signature, "Approved Please Sign" with a receipt (Book A §7.1, Table 7-1
  messages '03' and '1A');
* declined: Declined, "Not Authorised" (message '07');
* no answer: the host is down, times out, or answers something unusable (an
  approval without an ARPC, an Authorisation Response Code 8A that is not 2 bytes:
  Book 3 Annex A gives 8A as an2, and an issuer that verified the ARQC answers
  with its ARPC, Book 2 §8.2), or the POS has no host: Declined with reason
  ``host unavailable: ...``.

Why Declined when the POS cannot go online (emvtap's choice; no text of Books A,
B, C-2 or C-3 at hand names another): in EMV contact the terminal would ask the
card for a second GENERATE AC coded "unable to go online" and let the Terminal
and Issuer Action Codes - Default decide (Book 3 §10.7). Kernels 2 and 3 have no
such step in a single tap: the Online Request outcome comes with the card's only
cryptogram (an ARQC, or a TC Kernel 3 sends online because its fDDA failed) and
the card may already be out of the field (Book C-3, qVSDC; Book C-2, EMV mode,
first GENERATE AC). Nothing was approved offline, so the POS declines, with a
reason that says why. The ARPC is not sent to the card in a single tap (issuer
update processing needs a second presentment): its presence is all the POS checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from emv.link import Link
from terminal.config import TerminalConfig
from terminal.entry import EntryPoint, EntryResult
from terminal.host import Host, HostResponse, HostUnavailable
from terminal.kernels import DATA_RECORD_TAGS, Kernel, KernelResult
from terminal.kernels.mastercard import Kernel2
from terminal.kernels.visa import Kernel3
from terminal.outcome import Outcome, ReaderStatus, Status, UiRequest, approved, declined
from terminal.transaction import Transaction, encode_data

__all__ = ["ARC_LENGTH", "Terminal", "TransactionResult", "default_kernels", "icc_data"]

ARC_LENGTH = 2  # Authorisation Response Code 8A, an 2 (Book 3 Annex A)


def default_kernels() -> dict[int, Kernel]:
    """One Kernel 2 (Book C-2) and one Kernel 3 (Book C-3), by kernel identifier."""
    return {2: Kernel2(), 3: Kernel3()}


def icc_data(kernel: KernelResult) -> bytes:
    """The kernel's data record as BER-TLV, in :data:`DATA_RECORD_TAGS` order (DE 55)."""
    return encode_data(kernel.data_record, DATA_RECORD_TAGS)


@dataclass
class TransactionResult:
    """One transaction: what Entry Point and the kernel did, the host's answer (or why
    there was none), and the final outcome."""

    transaction: Transaction
    entry: EntryResult
    outcome: Outcome  # the final outcome, after the host when the kernel went online
    host: HostResponse | None = None  # the host's answer, also when it was unusable
    host_error: str | None = None  # why the host gave no usable answer (None: it did)
    icc_data: bytes = b""  # what was sent to the host, b"" when it was not asked
    ui: list[UiRequest] = field(default_factory=list)  # every UI request, in order

    @property
    def approved(self) -> bool:
        return self.outcome.status == Status.APPROVED

    @property
    def online(self) -> bool:
        """True when the kernel asked to go online (the host was asked, or could not be)."""
        return self.entry.outcome.status == Status.ONLINE_REQUEST

    @property
    def kernel(self) -> KernelResult | None:
        """The last kernel activation's result."""
        return self.entry.kernel


class Terminal:
    """A POS with one configuration, its kernels (made once: Kernel 2 keeps its torn
    transaction log across transactions) and an optional host."""

    def __init__(
        self,
        config: TerminalConfig,
        host: Host | None,
        kernels: Mapping[int, Kernel] | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.kernels = dict(kernels) if kernels is not None else default_kernels()
        self.entry_point = EntryPoint(config, self.kernels)

    def transact(self, link: Link, transaction: Transaction) -> TransactionResult:
        """Run ``transaction`` with the card on ``link`` (module docstring)."""
        entry = self.entry_point.process(link, transaction)
        result = TransactionResult(transaction, entry, entry.outcome, ui=list(entry.ui))
        online = entry.outcome
        if online.status != Status.ONLINE_REQUEST:
            return result
        ok, reason = self._authorise(result)
        if ok:
            outcome = approved(
                online.cvm, reason, reader=ReaderStatus.NOT_READY, receipt=online.receipt
            )
        else:
            outcome = declined(
                reason, cvm=online.cvm, reader=ReaderStatus.NOT_READY, receipt=online.receipt
            )
        result.outcome = outcome
        if outcome.ui_request is not None:
            result.ui.append(outcome.ui_request)
        return result

    def _authorise(self, result: TransactionResult) -> tuple[bool, str]:
        """Send the kernel's data record to the host: whether it approved, and why."""
        kernel = result.entry.kernel
        if kernel is None:
            return False, "online request without data"
        result.icc_data = icc_data(kernel)
        try:
            if self.host is None:
                raise HostUnavailable("no host configured")
            response = result.host = self.host.authorise(result.icc_data)
            _check_usable(response)
        except HostUnavailable as err:
            result.host_error = str(err) or type(err).__name__
            return False, f"host unavailable: {result.host_error}"
        if not response.approved:
            return False, f"host declined: {response.reason}"
        words = response.reason
        return True, "host approved" if words in ("", "approved") else f"host approved: {words}"


def _check_usable(response: HostResponse) -> None:
    """An answer the POS can act on (module docstring); HostUnavailable otherwise."""
    if len(response.arc) != ARC_LENGTH:
        raise HostUnavailable(
            f"unusable answer: Authorisation Response Code (8A) has {len(response.arc)} "
            f"byte(s), expected {ARC_LENGTH}"
        )
    if response.approved and not response.arpc:
        raise HostUnavailable("unusable answer: an approval without an ARPC")
