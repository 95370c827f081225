"""The card: a :class:`emv.link.Link` that answers APDUs from a card image and its keys.

It does what ISO/IEC 7816-4 asks of every card, whatever the application:

* every command gets an answer that ends in a status word, whatever its bytes:
  a command that does not parse is '6700' (wrong length), an unknown class byte
  '6E00', an unknown instruction '6D00', a known instruction in the wrong class
  '6E00', and an internal failure '6F00' (no precise diagnosis), such as a counter
  file that cannot be read (:class:`hce.card.keys.CounterError`) or written;
* SELECT by DF name (EMV 4.4 Book 1 §11.3; P1 '04', P2 '00' first or '02' next
  occurrence, else '6A86'): the PPSE '2PAY.SYS.DDF01' answers its FCI with one
  directory entry per application (EMV Contactless Book B §3.3), an AID (or the
  start of one, for partial selection) selects that application and starts a new
  transaction; a name the card does not have is '6A82' and leaves nothing selected;
* other commands go to the selected application's applet (:mod:`hce.card.applet`);
  with none selected (or the PPSE) they are '6985' (conditions of use not satisfied).

Each power-on is a new tap: nothing is selected and no transaction is under way.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from emv import isodep
from emv.apdu import INS_NAMES, PPSE, ApduError, CommandApdu
from emv.link import CardRemoved
from hce.card.applet import (
    CLA_EMV,
    CLA_ISO,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    Applet,
    AppletFactory,
    StatusError,
    require,
    response,
)
from hce.card.keys import CardKeys
from hce.card.mastercard import MastercardApplet
from hce.card.personalise import CardImage
from hce.card.visa import VisaApplet

__all__ = ["APPLETS", "ATS", "Card"]

ATS = isodep.ATS
"""The card's ISO/IEC 14443-4 ATS (:func:`emv.isodep.build_ats`): 256-byte frames,
FWI 14, no CID or NAD, no historical bytes (``05 78 80 E0 00``), whatever the link."""

APPLETS: Mapping[str, AppletFactory] = MappingProxyType(
    {"visa": VisaApplet, "mastercard": MastercardApplet}
)
"""Brand -> applet factory; a second brand adds its applet here (and its rules in
``hce.card.profile.BRANDS``)."""

SW_CLA_NOT_SUPPORTED = 0x6E00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_NO_PRECISE_DIAGNOSIS = 0x6F00
_INS_SELECT = 0xA4
_SELECT_BY_NAME = 0x04
_SELECT_FIRST, _SELECT_NEXT = 0x00, 0x02


class Card:
    """A personalised card in the field (see the module docstring)."""

    def __init__(
        self,
        image: CardImage,
        keys: CardKeys,
        applets: Mapping[str, AppletFactory] = APPLETS,
    ) -> None:
        factory = applets[image.profile.brand]
        self.image = image
        self.keys = keys
        self.applets: tuple[Applet, ...] = tuple(factory(app, keys) for app in image.applications)
        self._handlers = {applet: applet.handlers() for applet in self.applets}
        """Each applet's INS -> handler table, read once (an applet's commands do not change)."""
        self.selected: Applet | None = None
        self.powered = False

    def __repr__(self) -> str:
        return f"Card({self.image.profile!r}, {len(self.applets)} application(s))"

    # --- the Link --------------------------------------------------------------------------

    def power_on(self) -> bytes:
        """A new tap: nothing selected. Returns the ATS."""
        self.powered = True
        self.selected = None
        return ATS

    def power_off(self) -> None:
        self.powered = False
        self.selected = None

    def transceive(self, command: bytes) -> bytes:
        """Answer one command APDU; every answer ends in a status word. A card that is
        not powered is not in the field: :class:`emv.link.CardRemoved`."""
        if not self.powered:
            raise CardRemoved("the card is not powered")
        try:
            return response(self._process(command))
        except StatusError as refused:
            return response(sw=refused.sw)
        except Exception:  # a card answers whatever happens inside it
            return response(sw=SW_NO_PRECISE_DIAGNOSIS)

    # --- dispatch --------------------------------------------------------------------------

    def _process(self, raw: bytes) -> bytes:
        try:
            command = CommandApdu.parse(raw)
        except ApduError:
            raise StatusError(SW_WRONG_LENGTH) from None
        require(command.cla in (CLA_ISO, CLA_EMV), SW_CLA_NOT_SUPPORTED)
        if command.ins == _INS_SELECT:
            require(command.cla == CLA_ISO, SW_CLA_NOT_SUPPORTED)
            return self._select(command)
        if self.selected is None:
            require(command.ins in INS_NAMES, SW_INS_NOT_SUPPORTED)
            raise StatusError(SW_CONDITIONS_NOT_SATISFIED)
        handler = self._handlers[self.selected].get(command.ins)
        if handler is None:
            raise StatusError(SW_INS_NOT_SUPPORTED)
        require(command.cla == handler.cla, SW_CLA_NOT_SUPPORTED)
        return handler.handle(command)

    def _select(self, command: CommandApdu) -> bytes:
        """SELECT by DF name (Book 1 §11.3.2): the PPSE or an application."""
        require(command.p1 == _SELECT_BY_NAME, SW_WRONG_P1P2)
        require(command.p2 in (_SELECT_FIRST, _SELECT_NEXT), SW_WRONG_P1P2)
        require(bool(command.data), SW_WRONG_LENGTH)
        previous = self.selected
        self.selected = None
        if command.data == PPSE:
            return self.image.ppse_fci
        matches = [a for a in self.applets if a.aid.startswith(command.data)]
        if command.p2 == _SELECT_NEXT and previous in matches:
            matches = matches[matches.index(previous) + 1 :]
        require(bool(matches), SW_FILE_NOT_FOUND)
        self.selected = matches[0]
        return self.selected.select()
