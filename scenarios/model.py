"""What a tap scenario says, and what running it gave (docs/scenarios.md).

The loader (:mod:`scenarios.loader`) turns a YAML document into a
:class:`Scenario` (one per matrix combination); the runner
(:mod:`scenarios.runner`) runs it into a :class:`ScenarioResult`; the reports
(:mod:`scenarios.reports`) and the pytest plugin read results only. Every part
of a scenario keeps its :class:`Source` (file and line), so a failure points at
the YAML that asked for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from emv.trace import Trace

__all__ = [
    "FAULT_KINDS",
    "CardSpec",
    "Check",
    "Expectation",
    "Fault",
    "Scenario",
    "ScenarioResult",
    "ServerState",
    "Source",
    "TapResult",
    "TapSpec",
    "TerminalSpec",
]

HostMode = Literal["inprocess", "http", "none"]
Verdict = Literal["passed", "failed", "errored"]

FAULT_KINDS = (
    "tear",
    "mute",
    "corrupt",
    "delay",
    "flip_signature",
    "replay",
    "keys",
    "host",
    "ca_key",
    "second_tap",
)
"""The fault kinds of docs/scenarios.md "Faults", in the table's order (the schema's
fault keys; a test keeps them equal)."""


@dataclass(frozen=True)
class Source:
    """Where something was written: the YAML file and its 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Fault:
    """One fault to inject (docs/scenarios.md "Faults"): its kind (one of
    :data:`FAULT_KINDS`) and its parameters as written: the mapping of a mapping form
    (``tear: {after: GENERATE AC}`` -> ``{"after": "GENERATE AC"}``; hex values as
    upper-case text), ``{"value": ...}`` for a one-word form (``replay: previous`` ->
    ``{"value": "previous"}``)."""

    kind: str
    params: Mapping[str, Any]
    source: Source


@dataclass(frozen=True)
class Expectation:
    """What must come out of a tap; None (or empty) means "not checked".

    ``sources`` says where each expectation was written, by check name (``outcome``,
    ``host.decision``, ``tvr``, ``tags.9F27``...: the names of
    :func:`scenarios.expect.check_tap`'s checks); a check without one points at the tap."""

    outcome: str | None = None
    kernel: str | None = None
    path: str | None = None
    cvm: str | None = None
    oda: str | None = None
    cryptogram: str | None = None
    online: bool | None = None
    host_decision: str | None = None
    host_reason: str | None = None
    tvr_set: tuple[str, ...] = ()
    tvr_clear: tuple[str, ...] = ()
    tags: Mapping[int, bytes] = field(default_factory=dict)
    apdus: tuple[str, ...] | None = None
    ui: tuple[str, ...] | None = None
    taps: int | None = None
    reason: str | None = None
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class TapSpec:
    """One tap: the transaction (``amount`` and ``amount_other`` as decimal text in the
    currency, ``currency`` an ISO 4217 code or number, None for the terminal's), its
    faults and its expectation."""

    amount: str
    source: Source
    amount_other: str = "0"
    currency: str | None = None
    type: str = "purchase"
    faults: tuple[Fault, ...] = ()
    expect: Expectation = field(default_factory=Expectation)
    repeat: int = 1  # the tap is made this many times in a row, each checked


@dataclass(frozen=True)
class CardSpec:
    """The card: a shipped profile name or a profile file, and overrides deep-merged into it."""

    profile: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TerminalSpec:
    """The terminal: a shipped configuration name or a file, and overrides deep-merged into it."""

    config: str = "default"
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerState:
    """The token server and phone before the first tap (HCE cards)."""

    keys: int = 3
    cdcvm: bool = False
    token: Literal["active", "suspended"] = "active"
    replenish: bool = True


@dataclass(frozen=True)
class Scenario:
    """One runnable scenario (a matrix combination has its own, with its id suffix)."""

    id: str
    title: str
    requirement: str
    card: CardSpec
    taps: tuple[TapSpec, ...]
    source: Source
    terminal: TerminalSpec = field(default_factory=TerminalSpec)
    host: HostMode = "inprocess"
    server: ServerState = field(default_factory=ServerState)
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """One expectation checked: what was expected, what came out, where it was asked."""

    name: str
    expected: str
    actual: str
    passed: bool
    source: Source


@dataclass
class TapResult:
    """One tap as it ran: the checks, the readable transaction, the trace. ``index``
    counts the taps made (from 0), ``spec`` is the position of its
    :class:`TapSpec` in the scenario's ``taps`` (they differ after a ``repeat``)."""

    index: int
    spec: int
    checks: list[Check] = field(default_factory=list)
    report: str = ""  # terminal.report.render() of the transaction (PANs masked)
    trace: Trace = field(default_factory=Trace)
    error: str | None = None  # the tap could not run (e.g. a broken override)

    @property
    def passed(self) -> bool:
        return self.error is None and all(check.passed for check in self.checks)


@dataclass
class ScenarioResult:
    """A scenario's verdict: passed (every check), failed (a check did not hold), or
    errored (it could not run: the message says why)."""

    scenario: Scenario
    verdict: Verdict
    taps: list[TapResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    taps_made: int = 0  # taps made; ``taps`` keeps them all, or only those that did not pass
