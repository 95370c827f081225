"""The kernel's side of the link: one command, one checked response.

A kernel talks to the card only through :class:`CardSession.exchange`, which
sends a command APDU over the :class:`emv.link.Link` and parses the answer. What
can go wrong below the application level becomes one of two exceptions a kernel
maps to its outcome (Book A §6.3, the kernels' L1 error handling):

* :class:`CardLost`: the card left the field or the link failed (a tear, a mute
  card, a reader error): typically Try Again, "Present Card Again";
* :class:`CardDataError`: the card answered, but not in a form the kernel can
  use (no status word, malformed TLV, a missing or duplicated data object, an
  AFL that does not parse): typically End Application.

Status words other than '9000' are the kernel's business: :meth:`CardSession.exchange`
returns them.
"""

from __future__ import annotations

from emv.apdu import ApduError, CommandApdu, ResponseApdu, command_name
from emv.link import Link, LinkError

__all__ = ["CardDataError", "CardLost", "CardSession"]


class CardLost(Exception):
    """The exchange did not complete: card removed, mute, or the link failed."""

    def __init__(self, step: str, problem: str) -> None:
        super().__init__(f"{step}: {problem}")
        self.step = step


class CardDataError(Exception):
    """The card's answer cannot be used; the message names the command and the object."""


class CardSession:
    """Exchanges with one card in the field, counting the commands sent."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.commands = 0

    def exchange(self, command: CommandApdu) -> ResponseApdu:
        """Send ``command`` and return the parsed response (any status word). The
        exceptions name the command (:func:`emv.apdu.command_name`)."""
        self.commands += 1
        try:
            raw = self.link.transceive(command.to_bytes())
        except LinkError as err:
            raise CardLost(command_name(command), str(err) or type(err).__name__) from None
        try:
            return ResponseApdu.parse(raw)
        except ApduError as err:
            raise CardDataError(f"{command_name(command)}: response {err}") from None
