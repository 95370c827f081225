"""What every payment applet shares, and what a brand's applet adds.

An applet is one application of the card (one AID). The card
(:class:`hce.card.card.Card`) parses each command, checks CLA and INS, handles
SELECT and the PPSE, and hands every other command of the selected application
to the applet's handler for its INS. A handler returns the response data or
raises :class:`StatusError` with the status word (ISO/IEC 7816-4 §5.6; EMV 4.4
Book 3 §6.5 for which one each command returns).

:class:`Applet` implements what is the same for every brand:

* SELECT: answer the FCI and start a new transaction (:meth:`Applet.reset`);
* READ RECORD (Book 3 §6.5.11): the records the AFL names, only once processing
  options were given (GET PROCESSING OPTIONS, or whatever the brand says via
  :attr:`Applet.processing`);
* GET DATA (Book 3 §6.5.7): the ATC and whatever :meth:`Applet.data_object` adds.

It also reads what terminals send the same way to every brand: the Command
Template '83' of GET PROCESSING OPTIONS (:func:`command_template`), DOL-related
data (:func:`dol_values`), the amount (:func:`amount`) and the Table 26 data of
a cryptogram (:func:`cryptogram_data`).

A brand subclasses it, extends :meth:`Applet.handlers` with its own commands
(GET PROCESSING OPTIONS, GENERATE AC, ...) and :meth:`Applet.reset` with its
transaction state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from emv import dol
from emv.apdu import CommandApdu, ResponseApdu
from emv.crypto import ac
from emv.tlv import Tlv, decode
from hce.card.keys import CardKeys, Counters, PlasticKeys
from hce.card.personalise import AppImage

__all__ = [
    "CLA_EMV",
    "CLA_ISO",
    "SW_CONDITIONS_NOT_SATISFIED",
    "SW_DATA_NOT_FOUND",
    "SW_FILE_NOT_FOUND",
    "SW_OK",
    "SW_RECORD_NOT_FOUND",
    "SW_WRONG_DATA",
    "SW_WRONG_LENGTH",
    "SW_WRONG_P1P2",
    "TERMINAL_DATA",
    "Applet",
    "AppletFactory",
    "Handler",
    "StatusError",
    "amount_authorised",
    "command_template",
    "cryptogram_data",
    "dol_values",
    "require",
    "response",
]

CLA_ISO = 0x00
CLA_EMV = 0x80

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_WRONG_P1P2 = 0x6A86
SW_DATA_NOT_FOUND = 0x6A88

# Table 26 (Book 2 §8.1.1): the terminal's data objects in cryptogram order, with their
# lengths: all but the last two (AIP and ATC), which are the card's.
TERMINAL_DATA = tuple(
    (name, tag, ac.CryptogramData.FIELD_LENGTHS[name])
    for name, tag in ac.TABLE_26_TAGS.items()
    if name not in ("aip", "atc")
)


class StatusError(Exception):
    """A command refused with status word ``sw`` (no data)."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"status {sw:04X}")
        self.sw = sw


class Handler(NamedTuple):
    """The class byte a command must carry and the function that answers it."""

    cla: int
    handle: Callable[[CommandApdu], bytes]


def response(data: bytes = b"", sw: int = SW_OK) -> bytes:
    """A response APDU: ``data`` then SW1 SW2."""
    return ResponseApdu(data, sw >> 8, sw & 0xFF).to_bytes()


def require(condition: bool, sw: int) -> None:
    """Refuse the command with ``sw`` unless ``condition`` holds."""
    if not condition:
        raise StatusError(sw)


def command_template(data: bytes) -> bytes:
    """The PDOL data out of the Command Template '83' of GET PROCESSING OPTIONS (Book 3
    §6.5.8.3): '6700' without a data field, '6A80' when it is not one '83' object."""
    require(bool(data), SW_WRONG_LENGTH)
    try:
        template = decode(data)
    except ValueError:
        raise StatusError(SW_WRONG_DATA) from None
    require(len(template) == 1 and template[0].tag == 0x83, SW_WRONG_DATA)
    return template[0].value


def dol_values(entries: Sequence[dol.DolEntry], data: bytes) -> dict[int, bytes]:
    """DOL-related data by tag (Book 3 §5.4); '6700' when it is not as long as the DOL."""
    try:
        return dol.split_dol_data(entries, data)
    except dol.DolError:
        raise StatusError(SW_WRONG_LENGTH) from None


def amount_authorised(value: bytes) -> int:
    """Amount, Authorised (9F02, n 12) in minor units; '6A80' when it is not BCD."""
    digits = value.hex()
    require(digits.isdigit(), SW_WRONG_DATA)
    return int(digits)


def cryptogram_data(values: Mapping[int, bytes], aip: bytes, atc: bytes) -> ac.CryptogramData:
    """Table 26 from the terminal's DOL data, each fitted to its length (Book 3 §5.4);
    what the DOL did not ask for is zeros."""
    fields = {
        name: dol.fit_value(tag, values[tag], length) if tag in values else bytes(length)
        for name, tag, length in TERMINAL_DATA
    }
    return ac.CryptogramData(aip=aip, atc=atc, **fields)


class Applet:
    """The brand-independent part of an applet (see the module docstring)."""

    def __init__(self, image: AppImage, keys: CardKeys) -> None:
        self.image = image
        self.keys = keys
        self.processing = False
        """True once the processing options were given in this transaction."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.image.aid.hex().upper()})"

    @property
    def aid(self) -> bytes:
        return self.image.aid

    def select(self) -> bytes:
        """SELECT of this application (Book 1 §11.3): a new transaction, and the FCI."""
        self.reset()
        return self.image.fci

    def reset(self) -> None:
        """Forget the transaction: a new SELECT or a new tap starts from here."""
        self.processing = False

    def handlers(self) -> Mapping[int, Handler]:
        """INS -> handler; a brand adds its own commands to these."""
        return {0xB2: Handler(CLA_ISO, self.read_record), 0xCA: Handler(CLA_EMV, self.get_data)}

    def read_record(self, command: CommandApdu) -> bytes:
        """READ RECORD (Book 3 §6.5.11): P1 the record number, P2 = SFI << 3 | 100."""
        require(not command.data, SW_WRONG_LENGTH)
        require(command.p2 & 0x07 == 0x04 and command.p1 != 0, SW_WRONG_P1P2)
        require(self.processing, SW_CONDITIONS_NOT_SATISFIED)
        sfi = command.p2 >> 3
        require(any(s == sfi for s, _ in self.image.records), SW_FILE_NOT_FOUND)
        record = self.image.records.get((sfi, command.p1))
        if record is None:
            raise StatusError(SW_RECORD_NOT_FOUND)
        return record

    def get_data(self, command: CommandApdu) -> bytes:
        """GET DATA (Book 3 §6.5.7): the data object P1 P2 as one TLV, '6A88' if not served."""
        require(not command.data, SW_WRONG_LENGTH)
        tag = command.p1 << 8 | command.p2
        value = self.data_object(tag) if command.p1 or command.p2 else None
        if value is None:
            raise StatusError(SW_DATA_NOT_FOUND)
        return Tlv(tag, value).to_bytes()

    def plastic_counters(self) -> Counters | None:
        """A plastic card's counters, read once by the command that needs them (its
        decision and its ATC come from the same read); None for a phone."""
        return self.keys.counters if isinstance(self.keys, PlasticKeys) else None

    def data_object(self, tag: int) -> bytes | None:
        """A data object GET DATA may read: the ATC (9F36); a brand adds more."""
        if tag == 0x9F36:
            return self.keys.atc.to_bytes(2, "big")
        return None


AppletFactory = Callable[[AppImage, CardKeys], Applet]
"""Makes a brand's applet for one personalised application and the card's keys."""
