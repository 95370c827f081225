"""Faults a scenario injects into a tap (docs/scenarios.md "Faults"), each applied where
it lives.

One class per fault kind, made from a :class:`scenarios.model.Fault` by
:func:`make_fault` (parameters are checked then: a fault that makes no sense is a
:class:`FaultError` whose message starts with the fault's ``file:line``).
:class:`TapFaults` holds the faults of one tap and applies them around
:meth:`scenarios.tap.TapEnvironment.tap`:

1. :meth:`TapFaults.prepare` before the tap: server faults change the phone or the
   token server, terminal faults make the configuration of this tap, host and
   replay faults check they can work in this environment;
2. link faults wrap the card's :class:`emv.link.Link` *under* the trace recorder (the
   trace shows what the terminal saw, including the error a tear or a mute raised),
   host faults wrap the terminal's :class:`terminal.host.Host`; several faults of
   one kind wrap in the order they are listed, the first innermost;
3. :meth:`TapFaults.finish` after the tap: the replay's answer is put into the
   result, and a link fault that never found its command is an error (a scenario
   that tears after GENERATE AC on a card that never gets one tests nothing).

What each kind does (COMMAND matches every command whose name, as
:func:`emv.apdu.command_name` prints it, starts with COMMAND; case is ignored):

* ``tear: {after: COMMAND}`` / ``{after_apdus: N}``: the card processes the first
  matching command (the N-th command of the tap; 0: before the first one), then
  leaves the field: the card is powered off, the response is lost and
  :class:`emv.link.CardRemoved` raised, and every command until the next power-on
  raises it again. The next power-on (Entry Point's Try Again, a retap) finds the
  card; the tear happens once per tap.
* ``second_tap: {tear_after: COMMAND}``: the same tear, but only in the first
  activation of the tap: Entry Point asks for the card again and the second
  activation goes through untouched.
* ``mute: {at: COMMAND}``: the first matching command never reaches the card and
  gets no answer: :class:`emv.link.LinkError` (time-out); the card stays mute until
  the next power-on.
* ``corrupt: {command: COMMAND, ...}``, once per tap: ``{tag, bit}`` flips a bit of
  the tag's value (bit 0 is the most significant bit of the value's first byte) in
  the first answer to a matching command that carries the tag; ``{byte, xor}`` XORs
  the hex bytes into the response data from byte ``byte`` (0 first, the status word
  is not data); ``{sw}`` answers another status word (the data is kept for 9000,
  61XX, 62XX, 63XX and dropped for an error, 64XX to 6FXX, which carries none:
  ISO/IEC 7816-4 §5.1.3); ``{tlv: drop|double|length, tag}``: the tag's first
  object is removed, or given twice in a row (enclosing template lengths follow),
  or its length says one byte more than its value has (enclosing lengths do not
  follow: the answer no longer parses).
* ``delay: {command: COMMAND, ms: N}``: every answer to a matching command arrives N
  ms later: the scenario clock (:class:`scenarios.tap.ScenarioClock`, the trace's and
  the token server's) moves on by N ms between the command and its response. A
  running token server (``--server``) keeps its own clock: there a delay of an hour
  or more (:data:`REMOTE_DELAY_LIMIT_MS`) is an error, a shorter one moves the trace's
  clock only.
* ``flip_signature: {tag: 9F4B|90|9F46, bit: N}``: ``corrupt {tag, bit}`` on any
  command: the first answer carrying the Signed Dynamic Application Data, the
  Issuer or the ICC Public Key Certificate has one bit flipped (ODA must fail).
* ``host: down``: the terminal's host refuses the connection:
  :class:`terminal.host.HostUnavailable` "connection refused", nothing is sent.
  ``host: slow``: the request reaches the host, which decides (and records the
  decision: the ATC is spent), but the answer comes after the terminal's time-out
  (:data:`HOST_TIMEOUT_S`, the scenario clock moves on by it):
  HostUnavailable "no answer within 10 s (time-out)". A tap that does not go online
  never meets either; that is not an error.
* ``replay: previous``: after this tap's own authorisation (or after the tap, when it
  did not go online), the host is sent the previous tap's ICC data again (the DE 55
  :attr:`terminal.pos.TransactionResult.icc_data` the terminal sent then). The
  terminal's outcome is the one its own authorisation gave; the result's
  :attr:`~terminal.pos.TransactionResult.host` then holds the host's answer to the
  *replay* (and ``host_error`` why there was none), so ``expect.host`` checks it;
  the report gets a line with the replay's answer. A first tap, or a previous tap
  that sent nothing to the host, is an error.
* ``keys: exhausted``: before the tap every usable key of the phone's wallet is used
  up (taken for nothing, as if spent on taps the server never saw) and the wallet is
  not replenished before this tap. ``keys: expired``: the phone is topped up if it is
  empty, then the token server's clock moves past the keys' time to live
  (``ServerConfig.ttl_hours`` + 1 hour); the phone's own clock does not move, so it
  still uses its keys and the server declines them (``expired_key``). HCE cards only;
  ``expired`` needs the embedded server (a running one, ``--server``, keeps its clock).
* ``ca_key: missing``: the terminal's CA key store lacks the card's CA key (RID and
  index) for this tap; ``ca_key: wrong``: it holds a freshly generated key of the
  same size and exponent under the card's RID and index. Cards with offline data
  authentication only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from emv import tlv
from emv.apdu import INS_NAMES, CommandApdu, command_name
from emv.crypto import oda
from emv.link import CardRemoved, Link, LinkError
from scenarios.model import Fault
from scenarios.tap import TapEnvironment
from terminal.config import TerminalConfig, with_ca_keys
from terminal.host import Host, HostResponse, HostUnavailable
from terminal.pos import TransactionResult

__all__ = [
    "HOST_TIMEOUT_S",
    "KINDS",
    "REMOTE_DELAY_LIMIT_MS",
    "CaKeyFault",
    "CorruptFault",
    "DelayFault",
    "FaultError",
    "FlipSignatureFault",
    "HostFault",
    "InjectedFault",
    "KeysFault",
    "LinkFault",
    "MuteFault",
    "ReplayFault",
    "SecondTapFault",
    "TapFaults",
    "TearFault",
    "make_fault",
]

HOST_TIMEOUT_S = 10.0
"""The terminal's host time-out a ``host: slow`` answer misses (HttpHost's default)."""
REMOTE_DELAY_LIMIT_MS = 3_600_000
"""The shortest ``delay`` that needs the embedded server: an hour, the unit of a key's
time to live (docs/cbp.md), from which on the token server's clock must move too."""
SIGNATURE_TAGS = {
    0x9F4B: "Signed Dynamic Application Data",
    0x90: "Issuer Public Key Certificate",
    0x9F46: "ICC Public Key Certificate",
}
_ERROR_SW1 = range(0x64, 0x70)  # ISO/IEC 7816-4 §5.1.3: execution and checking errors


class FaultError(ValueError):
    """A fault that makes no sense (here, or in this environment, or that never
    happened): the message starts with the fault's ``file:line`` and kind."""


def _command(raw: bytes) -> str:
    """A command's name as traces print it ("" for bytes that are no command)."""
    try:
        return command_name(CommandApdu.parse(raw))
    except ValueError:
        return ""


# --- the base ----------------------------------------------------------------------------------


class InjectedFault:
    """One fault of one tap. Subclasses override the hooks where the fault lives."""

    kind: ClassVar[str] = ""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.fired = False  # whether it did what it says, in this tap
        self.problem: str | None = None  # what went wrong while applying it

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.fault.params)!r} at {self.fault.source})"

    def error(self, problem: str) -> FaultError:
        """A :class:`FaultError` about this fault."""
        return FaultError(f"{self.fault.source}: {self.kind}: {problem}")

    # hooks, in the order a tap uses them

    def prepare(self, env: TapEnvironment) -> None:
        """Before the tap (server state, checks that need the environment)."""

    @property
    def replenish(self) -> bool:
        """Whether the phone may be topped up before this tap."""
        return True

    def config(self, config: TerminalConfig) -> TerminalConfig:
        """The terminal configuration of this tap."""
        return config

    def link(self, card: Link, env: TapEnvironment | None = None) -> Link:
        """The link the terminal uses (under the trace recorder)."""
        return card

    def host(self, host: Host | None) -> Host | None:
        """The host the terminal uses."""
        return host

    def verify(self) -> None:
        """Raise :class:`FaultError` if the fault could not be applied as written."""
        if self.problem is not None:
            raise self.error(self.problem)

    def finish(self, env: TapEnvironment, result: TransactionResult) -> None:
        """After the tap: :meth:`verify`, then change the result if the fault does."""
        self.verify()

    def notes(self) -> list[str]:
        """Lines for the tap's report."""
        return []


# --- parameters ----------------------------------------------------------------------------------


def _params(fault: Fault, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
    """The fault's parameters as a dict: only ``allowed`` names, ``required`` present."""
    params = fault.params
    if not isinstance(params, Mapping):
        raise FaultError(f"{fault.source}: {fault.kind}: expected a mapping of parameters")
    unknown = [str(name) for name in params if name not in allowed]
    if unknown:
        raise FaultError(
            f"{fault.source}: {fault.kind}: unknown parameter(s) {', '.join(unknown)} "
            f"(expected: {', '.join(allowed)})"
        )
    missing = [name for name in required if name not in params]
    if missing:
        raise FaultError(f"{fault.source}: {fault.kind}: missing {', '.join(missing)}")
    return dict(params)


def _word(fault: Fault, choices: Sequence[str]) -> str:
    """The value of a fault written as ``kind: word`` (the loader gives it as the
    string itself, or as ``{"value": word}`` / ``{kind: word}``)."""
    params: Any = fault.params
    value: Any = params
    if isinstance(params, Mapping):
        if len(params) == 1 and next(iter(params)) in ("value", fault.kind):
            value = next(iter(params.values()))
        elif len(params) == 1 and next(iter(params.values())) is None:
            value = next(iter(params))  # {word: None}
    if value not in choices:
        raise FaultError(
            f"{fault.source}: {fault.kind}: expected one of {', '.join(choices)}, got {value!r}"
        )
    return str(value)


def _integer(fault: Fault, name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FaultError(
            f"{fault.source}: {fault.kind}: {name} must be a whole number >= {minimum}, "
            f"got {value!r}"
        )
    return value


def _hex(fault: Fault, name: str, value: Any, size: int | None = None) -> bytes:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if not raw or (size is not None and len(raw) != size):
        what = f"{size} byte(s) in hex" if size is not None else "bytes in hex"
        raise FaultError(f"{fault.source}: {fault.kind}: {name} must be {what}, got {value!r}")
    return raw


def _tag(fault: Fault, value: Any) -> int:
    text = value if isinstance(value, str) else ""
    try:
        return tlv.parse_tag(text)
    except ValueError:
        raise FaultError(
            f"{fault.source}: {fault.kind}: tag must be a BER-TLV tag in hex (e.g. 9F4B), "
            f"got {value!r}"
        ) from None


class _Matcher:
    """Commands whose name starts with ``prefix`` (case ignored)."""

    def __init__(self, fault: Fault, name: str, value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            raise FaultError(f"{fault.source}: {fault.kind}: {name} must be a command name")
        self.prefix = " ".join(value.split()).upper()
        known = INS_NAMES.values()
        if not self.prefix.startswith("UNKNOWN") and not any(
            self.prefix.startswith(n) or n.startswith(self.prefix) for n in known
        ):
            raise FaultError(
                f"{fault.source}: {fault.kind}: {name} {value!r} names no command "
                f"(commands: {', '.join(sorted(known))})"
            )

    def __call__(self, command: bytes) -> bool:
        return _command(command).upper().startswith(self.prefix)


# --- link faults ---------------------------------------------------------------------------------


class LinkFault(InjectedFault):
    """A fault on the link: a :class:`emv.link.Link` around the card (made by
    :meth:`link`). It counts power-ons and commands, and can lose the card until the
    next power-on (:meth:`lose`)."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        self._card: Link | None = None
        self._env: TapEnvironment | None = None
        self.activations = 0
        self.commands = 0
        self._lost: tuple[type[LinkError], str] | None = None

    def link(self, card: Link, env: TapEnvironment | None = None) -> Link:
        self._card, self._env = card, env
        return self

    @property
    def card(self) -> Link:
        if self._card is None:
            raise RuntimeError(f"{self!r} is not wrapped around a card")
        return self._card

    def lose(self, kind: type[LinkError], message: str) -> LinkError:
        """From now until the next power-on every command raises ``kind(message)``."""
        self._lost = (kind, message)
        return kind(message)

    def power_on(self) -> bytes:
        self.activations += 1
        self._lost = None
        return self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def transceive(self, command: bytes) -> bytes:
        if self._lost is not None:
            kind, message = self._lost
            raise kind(message)
        self.commands += 1
        return self.exchange(command)

    def exchange(self, command: bytes) -> bytes:
        """One command (the card not lost): pass it on, or not."""
        return self.card.transceive(command)

    def never(self) -> str:
        """Why it never fired (for the error after the tap)."""
        return "never happened in this tap"

    def verify(self) -> None:
        super().verify()
        if not self.fired:
            raise self.error(self.never())


class TearFault(LinkFault):
    """``tear: {after: COMMAND}`` / ``{after_apdus: N}`` (module docstring)."""

    kind = "tear"

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        self.after: _Matcher | None = None
        self.after_apdus: int | None = None
        if self.kind == TearFault.kind:
            params = _params(fault, ("after", "after_apdus"))
            if len(params) != 1:
                raise self.error("give one of: after (a command), after_apdus (a number)")
            if "after" in params:
                self.after = _Matcher(fault, "after", params["after"])
            else:
                self.after_apdus = _integer(fault, "after_apdus", params["after_apdus"])

    def due(self, command: bytes) -> bool:
        """Whether the card leaves the field after ``command``."""
        if self.after is not None:
            return self.after(command)
        return self.commands == self.after_apdus

    def exchange(self, command: bytes) -> bytes:
        if not self.fired and self.after_apdus == 0:
            self.fired = True
            self.card.power_off()
            raise self.lose(
                CardRemoved, f"the card left the field at once ({self.kind}, {self.fault.source})"
            )
        response = self.card.transceive(command)
        if not self.fired and self.due(command):
            self.fired = True
            self.card.power_off()
            raise self.lose(
                CardRemoved,
                f"the card left the field after {_command(command)} "
                f"({self.kind}, {self.fault.source})",
            )
        return response

    def never(self) -> str:
        if self.after is not None:
            return f"no command {self.after.prefix!r} in this tap: the card was never torn"
        return f"the tap had {self.commands} command(s), fewer than {self.after_apdus}"


class SecondTapFault(TearFault):
    """``second_tap: {tear_after: COMMAND}``: a tear in the tap's first activation only."""

    kind = "second_tap"

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        params = _params(fault, ("tear_after",), ("tear_after",))
        self.after = _Matcher(fault, "tear_after", params["tear_after"])

    def due(self, command: bytes) -> bool:
        return self.activations == 1 and super().due(command)

    def never(self) -> str:
        assert self.after is not None
        return f"no command {self.after.prefix!r} in the first activation: nothing was torn"


class MuteFault(LinkFault):
    """``mute: {at: COMMAND}`` (module docstring)."""

    kind = "mute"

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        self.at = _Matcher(fault, "at", _params(fault, ("at",), ("at",))["at"])

    def exchange(self, command: bytes) -> bytes:
        if not self.fired and self.at(command):
            self.fired = True
            raise self.lose(
                LinkError,
                f"no answer to {_command(command)}: time-out ({self.kind}, {self.fault.source})",
            )
        return self.card.transceive(command)

    def never(self) -> str:
        return f"no command {self.at.prefix!r} in this tap: the card was never mute"


def _value_span(data: bytes, obj: tlv.Tlv) -> tuple[int, int, int]:
    """Where ``obj`` (decoded from ``data``) has its length field and its value:
    (length field start, value start, value end)."""
    _, length_at = tlv.read_tag(data, obj.offset)
    first = data[length_at]
    value_at = length_at + 1 + (first & 0x7F if first & 0x80 else 0)
    return length_at, value_at, value_at + len(obj.value)


def _first(data: bytes, tag: int) -> tlv.Tlv | None:
    """The first object with ``tag`` in ``data`` (depth first, lenient decoding)."""
    try:
        return tlv.find(tlv.decode(data, strict=False), tag)
    except ValueError:
        return None


def _edit(objects: Sequence[tlv.Tlv], tag: int, double: bool) -> tuple[list[tlv.Tlv], bool]:
    """``objects`` with the first object of ``tag`` dropped (or doubled); templates
    around it re-encoded; whether it was found."""
    out: list[tlv.Tlv] = []
    done = False
    for obj in objects:
        if not done and obj.tag == tag:
            done = True
            out.extend([obj, obj] if double else [])
            continue
        kept = obj
        if not done and obj.children is not None:
            children, done = _edit(obj.children, tag, double)
            if done:
                kept = tlv.Tlv(obj.tag, tlv.encode(children), tuple(children))
        out.append(kept)
    return out, done


class CorruptFault(LinkFault):
    """``corrupt: {command, tag, bit}`` / ``{command, byte, xor}`` / ``{command, sw}`` /
    ``{command, tlv, tag}`` (module docstring)."""

    kind = "corrupt"
    _SHAPES = "give exactly one of: {tag, bit}, {byte, xor}, sw, {tlv, tag}"

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        params = _params(fault, ("command", "tag", "bit", "byte", "xor", "sw", "tlv"))
        self.command: _Matcher | None = None
        if "command" in params or self.kind == "corrupt":
            self.command = _Matcher(fault, "command", params.pop("command", None))
        shape = frozenset(params)
        self.tag: int | None = None
        self.bit: int | None = None
        self.byte: int | None = None
        self.xor = b""
        self.sw: bytes | None = None
        self.tlv: str | None = None
        if shape == {"tag", "bit"}:
            self.tag, self.bit = _tag(fault, params["tag"]), _integer(fault, "bit", params["bit"])
        elif shape == {"byte", "xor"}:
            self.byte = _integer(fault, "byte", params["byte"])
            self.xor = _hex(fault, "xor", params["xor"])
        elif shape == {"sw"}:
            self.sw = _hex(fault, "sw", params["sw"], 2)
        elif shape == {"tlv", "tag"}:
            if params["tlv"] not in ("drop", "double", "length"):
                raise self.error(f"tlv must be drop, double or length, got {params['tlv']!r}")
            self.tag, self.tlv = _tag(fault, params["tag"]), str(params["tlv"])
        else:
            raise self.error(self._SHAPES)

    def exchange(self, command: bytes) -> bytes:
        response = self.card.transceive(command)
        if self.fired or (self.command is not None and not self.command(command)):
            return response
        data, sw = response[:-2], response[-2:]
        if self.tag is not None:
            found = _first(data, self.tag)
            if found is None:
                return response  # the first matching answer that carries the tag
            self.fired = True
            return self._tag_change(data, found) + sw
        self.fired = True
        if self.sw is not None:
            kept = b"" if self.sw[0] in _ERROR_SW1 else data
            return kept + self.sw
        assert self.byte is not None
        end = self.byte + len(self.xor)
        if end > len(data):
            self.problem = (
                f"byte {self.byte} + {len(self.xor)} byte(s) of xor: the answer to "
                f"{_command(command)} has {len(data)} byte(s) of data"
            )
            return response
        changed = bytes(a ^ b for a, b in zip(data[self.byte : end], self.xor, strict=True))
        return data[: self.byte] + changed + data[end:] + sw

    def _tag_change(self, data: bytes, found: tlv.Tlv) -> bytes:
        assert self.tag is not None
        if self.tlv in ("drop", "double"):
            edited, _ = _edit(tlv.decode(data, strict=False), self.tag, self.tlv == "double")
            return tlv.encode(edited)
        length_at, value_at, end = _value_span(data, found)
        if self.tlv == "length":
            size = value_at - length_at
            field = data[length_at:value_at]
            if size == 1:
                wrong = bytes(((field[0] + 1) & 0xFF,))
            else:
                declared = int.from_bytes(field[1:], "big") + 1
                wrong = field[:1] + declared.to_bytes(size - 1, "big")
            return data[:length_at] + wrong + data[value_at:]
        assert self.bit is not None
        if self.bit >= 8 * (end - value_at):
            self.problem = (
                f"bit {self.bit}: the value of {tlv.tag_hex(self.tag)} has "
                f"{8 * (end - value_at)} bit(s)"
            )
            return data
        at = value_at + self.bit // 8
        return data[:at] + bytes((data[at] ^ (0x80 >> self.bit % 8),)) + data[at + 1 :]

    def never(self) -> str:
        where = f"command {self.command.prefix!r}" if self.command is not None else "any command"
        if self.tag is not None:
            return f"no answer to {where} carried tag {tlv.tag_hex(self.tag)}: nothing changed"
        return f"no {where} in this tap: nothing changed"


class FlipSignatureFault(CorruptFault):
    """``flip_signature: {tag: 9F4B|90|9F46, bit: N}``: one bit of the first signature or
    certificate of that tag, in whichever answer carries it."""

    kind = "flip_signature"

    def __init__(self, fault: Fault) -> None:
        params = _params(fault, ("tag", "bit"), ("tag", "bit"))
        super().__init__(fault)
        if self.tag not in SIGNATURE_TAGS:
            names = ", ".join(f"{tlv.tag_hex(t)} ({n})" for t, n in SIGNATURE_TAGS.items())
            raise self.error(f"tag must be one of {names}, got {params['tag']!r}")


class DelayFault(LinkFault):
    """``delay: {command: COMMAND, ms: N}``: every matching answer N ms later on the
    scenario clock."""

    kind = "delay"

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        params = _params(fault, ("command", "ms"), ("command", "ms"))
        self.command = _Matcher(fault, "command", params["command"])
        self.ms = _integer(fault, "ms", params["ms"])

    def prepare(self, env: TapEnvironment) -> None:
        if env.remote is not None and self.ms >= REMOTE_DELAY_LIMIT_MS:
            raise self.error(
                f"{self.ms} ms: a delay of an hour or more moves the token server's clock "
                "too (limited-use keys live for hours): needs the embedded server, not a "
                "running one (--server)"
            )

    def exchange(self, command: bytes) -> bytes:
        response = self.card.transceive(command)
        if self.command(command):
            if self._env is None:
                raise RuntimeError(f"{self!r}: a delay needs the environment's clock")
            self.fired = True
            self._env.scenario_clock.advance(self.ms / 1000)
        return response

    def never(self) -> str:
        return f"no command {self.command.prefix!r} in this tap: nothing was delayed"


# --- host faults ---------------------------------------------------------------------------------


class _RefusingHost:
    """A host that cannot be reached."""

    def __init__(self, fault: HostFault) -> None:
        self._fault = fault

    def authorise(self, icc_data: bytes) -> HostResponse:
        self._fault.fired = True
        raise HostUnavailable("connection refused")


class _LateHost:
    """A host that decides, but answers after the terminal gave up."""

    def __init__(self, host: Host, fault: HostFault, env: TapEnvironment) -> None:
        self._host, self._fault, self._env = host, fault, env

    def authorise(self, icc_data: bytes) -> HostResponse:
        self._fault.fired = True
        with contextlib.suppress(HostUnavailable):
            self._host.authorise(icc_data)  # the host decides; the answer is too late
        self._env.scenario_clock.advance(HOST_TIMEOUT_S)
        raise HostUnavailable(f"no answer within {HOST_TIMEOUT_S:g} s (time-out)")


class HostFault(InjectedFault):
    """``host: down|slow`` (module docstring)."""

    kind = "host"

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        self.mode = _word(fault, ("down", "slow"))
        self._env: TapEnvironment | None = None

    def prepare(self, env: TapEnvironment) -> None:
        if env.host is None:
            raise self.error(f"{self.mode}: the scenario has no host (host: none)")
        self._env = env

    def host(self, host: Host | None) -> Host | None:
        if host is None or self._env is None:
            raise self.error(f"{self.mode}: the scenario has no host (host: none)")
        if self.mode == "down":
            return _RefusingHost(self)
        return _LateHost(host, self, self._env)


class _ReplayingHost:
    """The host, which after each authorisation is sent the previous tap's data again."""

    def __init__(self, host: Host, fault: ReplayFault) -> None:
        self._host, self._fault = host, fault

    def authorise(self, icc_data: bytes) -> HostResponse:
        try:
            return self._host.authorise(icc_data)
        finally:
            self._fault.replay(self._host)


class ReplayFault(InjectedFault):
    """``replay: previous`` (module docstring)."""

    kind = "replay"

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        _word(fault, ("previous",))
        self.previous = b""
        self.tap = 0  # the replayed tap, 1-based
        self.answer: HostResponse | None = None
        self.host_error: str | None = None
        self._host: Host | None = None

    def prepare(self, env: TapEnvironment) -> None:
        if env.host is None:
            raise self.error("previous: the scenario has no host (host: none)")
        if env.last is None:
            raise self.error("previous: this is the first tap: there is nothing to replay")
        self.tap = env.taps
        self.previous = env.last.icc_data
        if not self.previous:
            raise self.error(
                f"previous: tap {self.tap} sent nothing to the host: there is nothing to replay"
            )

    def host(self, host: Host | None) -> Host | None:
        if host is None:
            raise self.error("previous: the scenario has no host (host: none)")
        self._host = host
        return _ReplayingHost(host, self)

    def replay(self, host: Host) -> None:
        """Send the previous tap's ICC data (once)."""
        if self.fired:
            return
        self.fired = True
        try:
            self.answer = host.authorise(self.previous)
        except HostUnavailable as err:
            self.host_error = str(err) or type(err).__name__

    def finish(self, env: TapEnvironment, result: TransactionResult) -> None:
        super().finish(env, result)
        if not self.fired:
            assert self._host is not None
            self.replay(self._host)
        result.host, result.host_error = self.answer, self.host_error

    def notes(self) -> list[str]:
        if self.answer is not None:
            decision = "approved" if self.answer.approved else "declined"
            said = f"{decision} ({self.answer.reason})"
        else:
            said = f"no answer: {self.host_error}"
        return [f"Replay of tap {self.tap}'s ICC data to the host: {said}"]


# --- server faults -------------------------------------------------------------------------------


class KeysFault(InjectedFault):
    """``keys: exhausted|expired`` (module docstring)."""

    kind = "keys"

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        self.mode = _word(fault, ("exhausted", "expired"))
        self.used_up = 0  # keys (taps) used up by "exhausted"

    @property
    def replenish(self) -> bool:
        return False

    def prepare(self, env: TapEnvironment) -> None:
        phone = env.phone
        if phone is None:
            raise self.error(
                f"{self.mode}: profile {env.profile.name} is a plastic card (no limited-use keys)"
            )
        if self.mode == "expired" and env.remote is not None:
            raise self.error(
                "expired: needs the embedded server (it moves the token server's clock), "
                "not a running one (--server)"
            )
        self.fired = True
        if self.mode == "expired":
            env.replenish()
            env.scenario_clock.advance((env.service.config.ttl_hours + 1) * 3600)
            return
        wallet = phone.wallet
        while wallet.usable_keys(phone.family) > 0:
            if phone.family == "LUK":
                wallet.take_luk(0)
            else:
                wallet.take_suk(0)
            self.used_up += 1


# --- terminal faults -----------------------------------------------------------------------------


class CaKeyFault(InjectedFault):
    """``ca_key: missing|wrong`` (module docstring)."""

    kind = "ca_key"

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        self.mode = _word(fault, ("missing", "wrong"))
        self.card_key: oda.CaPublicKey | None = None
        self.other: oda.CaPublicKey | None = None

    def prepare(self, env: TapEnvironment) -> None:
        key = env.ca_key
        if key is None:
            raise self.error(
                f"{self.mode}: profile {env.profile.name} does no offline data "
                "authentication (it has no CA key)"
            )
        self.card_key = key
        if self.mode == "wrong":
            public = key.public_key
            other = oda.generate_rsa_key(public.size * 8, public.exponent)
            self.other = oda.CaPublicKey(key.rid, key.index, other.public_key)
        self.fired = True

    def config(self, config: TerminalConfig) -> TerminalConfig:
        key = self.card_key
        if key is None:
            raise self.error("not prepared for this environment")
        if self.other is not None:
            return with_ca_keys(config, [self.other])
        kept = [k for k in config.ca_keys if (k.rid, k.index) != (key.rid, key.index)]
        return replace(config, ca_keys=oda.CaKeyStore(kept))


# --- all of them ---------------------------------------------------------------------------------

KINDS: Mapping[str, Callable[[Fault], InjectedFault]] = {
    "tear": TearFault,
    "mute": MuteFault,
    "corrupt": CorruptFault,
    "delay": DelayFault,
    "flip_signature": FlipSignatureFault,
    "replay": ReplayFault,
    "keys": KeysFault,
    "host": HostFault,
    "ca_key": CaKeyFault,
    "second_tap": SecondTapFault,
}
"""Fault kind -> its class (docs/scenarios.md "Faults")."""


def make_fault(fault: Fault) -> InjectedFault:
    """The fault, its parameters checked (:class:`FaultError` otherwise)."""
    kind = KINDS.get(fault.kind)
    if kind is None:
        raise FaultError(
            f"{fault.source}: unknown fault {fault.kind!r} (known: {', '.join(KINDS)})"
        )
    return kind(fault)


class TapFaults:
    """The faults of one tap, applied around :meth:`TapEnvironment.tap`::

    faults = TapFaults(tap.faults)
    faults.prepare(env)
    result, trace = env.tap(amount, ..., **faults.tap_options())
    faults.finish(env, result)
    """

    def __init__(self, faults: Sequence[Fault]) -> None:
        self.items = [make_fault(fault) for fault in faults]
        self._env: TapEnvironment | None = None

    @property
    def env(self) -> TapEnvironment:
        if self._env is None:
            raise RuntimeError("TapFaults.prepare(env) first")
        return self._env

    def prepare(self, env: TapEnvironment) -> None:
        """Server and terminal faults, and checks against the environment."""
        self._env = env
        for item in self.items:
            item.prepare(env)

    def tap_options(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`TapEnvironment.tap` for these faults."""
        options: dict[str, Any] = {"replenish": all(item.replenish for item in self.items)}
        env = self.env
        if any(type(item).link is not InjectedFault.link for item in self.items):
            options["fault"] = self._link
        if any(type(item).host is not InjectedFault.host for item in self.items):
            options["host"] = self._host
        if any(type(item).config is not InjectedFault.config for item in self.items):
            config = env.config
            for item in self.items:
                config = item.config(config)
            options["config"] = config
        return options

    def _link(self, card: Link) -> Link:
        for item in self.items:
            card = item.link(card, self.env)
        return card

    def _host(self, host: Host | None) -> Host | None:
        for item in self.items:
            host = item.host(host)
        return host

    def finish(self, env: TapEnvironment, result: TransactionResult) -> None:
        """Each fault's last word (the replay's answer; an error for a fault that never
        happened or could not be applied)."""
        for item in self.items:
            item.finish(env, result)

    def notes(self) -> list[str]:
        """Lines for the tap's report."""
        return [line for item in self.items for line in item.notes()]
