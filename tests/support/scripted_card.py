"""A scripted fake card for terminal tests: an :class:`emv.link.Link` that answers each
command APDU from a table, builders for the answers Entry Point reads (the PPSE's FCI
with its directory entries, an application's FCI), and :func:`ppse_card`, a card with
a PPSE whose applications answer SELECT with their FCI.

Tests are not packages (pytest runs with ``--import-mode=importlib``); the helper
modules in ``tests/support`` are on pytest's ``pythonpath``: ``import scripted_card as sc``.

A script maps a command (its bytes, or a :class:`emv.apdu.CommandApdu`) to a reply:
response bytes (data + SW1 SW2), an exception to raise (``CardRemoved()`` for a card
that leaves the field), or a list of those given in turn, the last one repeated.
Commands not in the script get ``default`` ('6A82', file not found).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emv import apdu, tlv
from emv.apdu import PPSE, CommandApdu
from emv.link import CardRemoved
from emv.tlv import Tlv

__all__ = [
    "ATS",
    "VISA_PDOL",
    "Reply",
    "ScriptedCard",
    "answer",
    "application_fci",
    "directory_entry",
    "ppse_card",
    "ppse_fci",
    "select",
]

ATS = bytes.fromhex("0578807002")
VISA_PDOL = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
"""A qVSDC PDOL: it asks for the TTQ '9F66', so a Visa AID stays with Kernel 3 (Book B §3.3.3.6)."""

Reply = bytes | BaseException | Sequence[bytes | BaseException]


def answer(data: bytes = b"", sw: int = 0x9000) -> bytes:
    """A response APDU: ``data`` then SW1 SW2."""
    return data + sw.to_bytes(2, "big")


def select(name: bytes) -> bytes:
    """The SELECT command Entry Point sends for ``name`` (ADF name or PPSE), as a script key."""
    return apdu.select(name).to_bytes()


def directory_entry(
    aid: bytes | None,
    *,
    label: str | None = None,
    priority: int | bytes | None = None,
    kernel_id: bytes | None = None,
    extra: Sequence[Tlv] = (),
) -> Tlv:
    """A Directory Entry '61' (Book B §3.3.2.4): ADF Name '4F', Application Label '50',
    Application Priority Indicator '87' (an int for one byte, bytes as they are),
    Kernel Identifier '9F2A'; None leaves the object out."""
    children = []
    if aid is not None:
        children.append(Tlv.primitive(0x4F, aid))
    if label is not None:
        children.append(Tlv.primitive(0x50, label.encode("ascii")))
    if priority is not None:
        value = bytes((priority,)) if isinstance(priority, int) else priority
        children.append(Tlv.primitive(0x87, value))
    if kernel_id is not None:
        children.append(Tlv.primitive(0x9F2A, kernel_id))
    return Tlv.template(0x61, *children, *extra)


def ppse_fci(*entries: Tlv) -> bytes:
    """The PPSE's FCI: '6F' { '84' 2PAY.SYS.DDF01, 'A5' { 'BF0C' { entries } } }."""
    directory = Tlv.template(0xBF0C, *entries)
    return Tlv.template(0x6F, Tlv.primitive(0x84, PPSE), Tlv.template(0xA5, directory)).to_bytes()


def application_fci(
    df_name: bytes, *, label: str = "TEST", pdol: bytes | None = VISA_PDOL
) -> bytes:
    """An application's FCI: '6F' { '84' DF name, 'A5' { '50' label, '9F38' PDOL } }."""
    proprietary = [Tlv.primitive(0x50, label.encode("ascii"))]
    if pdol is not None:
        proprietary.append(Tlv.primitive(0x9F38, pdol))
    return Tlv.template(
        0x6F, Tlv.primitive(0x84, df_name), Tlv.template(0xA5, *proprietary)
    ).to_bytes()


def ppse_card(
    *entries: Tlv, apps: Mapping[bytes, Reply] | None = None, **kwargs: Any
) -> ScriptedCard:
    """A scripted card with a PPSE of ``entries`` that answers SELECT of each entry's ADF
    name with an :func:`application_fci`, or with ``apps[name]`` when given; ``kwargs``
    go to :class:`ScriptedCard`."""
    script: dict[bytes | CommandApdu, Reply] = {select(PPSE): answer(ppse_fci(*entries))}
    for entry in entries:
        found = tlv.find([entry], 0x4F)
        if found is not None:
            script[select(found.value)] = answer(application_fci(found.value))
    for name, reply in (apps or {}).items():
        script[select(name)] = reply
    return ScriptedCard(script, **kwargs)


@dataclass
class ScriptedCard:
    """A card in a field that answers from ``script`` (see the module docstring).

    ``absent_taps``: the first so many power-ons find no card (:class:`CardRemoved`).
    ``log`` holds (tap number, command) for every command received, ``taps`` counts
    power-ons, ``power_offs`` the field switched off."""

    script: Mapping[bytes | CommandApdu, Reply] = field(default_factory=dict)
    default: bytes = bytes.fromhex("6A82")
    absent_taps: int = 0
    taps: int = 0
    power_offs: int = 0
    powered: bool = False
    log: list[tuple[int, bytes]] = field(default_factory=list)
    _asked: dict[bytes, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.script = {
            key.to_bytes() if isinstance(key, CommandApdu) else key: reply
            for key, reply in self.script.items()
        }

    # --- the Link ----------------------------------------------------------------------------

    def power_on(self) -> bytes:
        self.taps += 1
        if self.taps <= self.absent_taps:
            raise CardRemoved("no card in the field")
        self.powered = True
        return ATS

    def power_off(self) -> None:
        if self.powered:
            self.power_offs += 1
        self.powered = False

    def transceive(self, command: bytes) -> bytes:
        if not self.powered:
            raise CardRemoved("the card is not powered")
        self.log.append((self.taps, bytes(command)))
        reply = self._next(bytes(command))
        if isinstance(reply, BaseException):
            if isinstance(reply, CardRemoved):
                self.powered = False
            raise reply
        return reply

    def _next(self, command: bytes) -> bytes | BaseException:
        reply = self.script.get(command, self.default)
        if isinstance(reply, bytes | BaseException):
            return reply
        turn = self._asked.get(command, 0)
        self._asked[command] = turn + 1
        return reply[min(turn, len(reply) - 1)]

    # --- what happened -----------------------------------------------------------------------

    @property
    def commands(self) -> list[bytes]:
        """Every command received, in order."""
        return [command for _, command in self.log]

    def selected(self) -> list[bytes]:
        """The names of every SELECT received (PPSE and ADF names), in order."""
        return [
            parsed.data
            for parsed in (CommandApdu.parse(command) for command in self.commands)
            if parsed.ins == 0xA4
        ]
