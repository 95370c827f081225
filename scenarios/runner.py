"""Running tap scenarios: one (:func:`run_scenario`), many on worker processes
(:func:`run`), and the ``-k`` selection (:func:`select`).

:func:`run_scenario` builds the scenario's :class:`scenarios.tap.TapEnvironment` once
(card, token server, terminal, host: :meth:`TapEnvironment.from_scenario`), then runs
its taps in order, each with its faults (:class:`scenarios.faults.TapFaults`), and
checks each against its ``expect`` (:func:`scenarios.expect.check_tap`). Per tap the
:class:`scenarios.model.TapResult` keeps the checks, the transaction in words
(:func:`terminal.report.render`, PANs masked, plus a line per fault that has
something to say, e.g. the replay's answer) and the APDU trace.

The verdict: **passed** when every check of every tap held, **failed** when one did
not, **errored** when the scenario could not run: a fault or a tap that makes no
sense, a profile or configuration that does not load, anything that raised while
building or tapping. An error never escapes as a traceback: it becomes the result's
one-line :attr:`~scenarios.model.ScenarioResult.error` (``tap N: ...`` when a tap
raised it, the tap's own :attr:`~scenarios.model.TapResult.error` too), and the taps
after it do not run. The environment is always closed.

:func:`run` with ``jobs`` > 1 sends the scenarios to worker processes
(:class:`concurrent.futures.ProcessPoolExecutor`) in batches of a few consecutive ones
(:func:`_batches`) and gets their results back by pickling (traces included), in the
order given, whatever order they finish in; a worker that dies errors the scenarios it
had not sent back instead of hanging the run. The workers are forked from a
``forkserver`` that has imported the runner and the CLI once (a worker starts in
milliseconds, not the second a ``spawn`` takes), or spawned where there is no
forkserver (:func:`_worker_context`). They start with this process's environment
variables and folder as they are when :func:`run` is called, and with the keys of its
pool. As with any such start, a script that calls :func:`run` must guard its entry
point with ``if __name__ == "__main__":``.

Both take ``hsm``, what opens each environment's token server HSM (the soft HSM by
default): for ``emvtap run --hsm pkcs11:...`` it is
:meth:`scenarios.hsm_spec.Pkcs11Spec.environment_hsm`, a key namespace of the
scenario's own on the token, emptied when the scenario ends. With ``jobs`` > 1 it
goes to the workers by pickling (a bound method of a spec pickles; the PIN stays in
the environment, which the workers inherit).

Both take ``keys``, where an environment's RSA keys come from: :func:`run` gives every
scenario of a process the same :func:`scenarios.keypool.process_pool` (the k-th key
of a size in one scenario is the k-th in every other) unless ``fresh_keys``;
:func:`run_scenario` makes fresh keys unless given a pool.

They also take ``remote``, a token server that is already running
(:class:`scenarios.remote.RemoteServer`, ``emvtap run --server URL``): every
environment then sets its card up there over HTTPS (:class:`TapEnvironment`'s
``remote``); it pickles to the workers too.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import AbstractContextManager
from functools import partial
from multiprocessing.context import BaseContext
from multiprocessing.reduction import ForkingPickler
from types import MappingProxyType
from typing import Any, Literal

from emv.crypto import oda
from emv.trace import Trace
from hce.hsm.interface import Hsm
from scenarios.expect import check_tap
from scenarios.faults import TapFaults
from scenarios.keypool import RsaKeyPool, process_pool
from scenarios.links import LinkSpec, close_stations, parse_link
from scenarios.model import (
    Check,
    Expectation,
    Scenario,
    ScenarioResult,
    Source,
    TapResult,
    TapSpec,
)
from scenarios.remote import RemoteServer
from scenarios.tap import TapEnvironment
from scenarios.tap_cli import TYPES, currency_exponent, parse_amount, parse_currency
from terminal.config import TerminalConfig
from terminal.pos import TransactionResult
from terminal.report import render
from terminal.transaction import TransactionType

__all__ = [
    "CheckTap",
    "HsmSource",
    "Keep",
    "SelectError",
    "TapError",
    "run",
    "run_scenario",
    "select",
]

CheckTap = Callable[[Expectation, TransactionResult, Trace, Source], list[Check]]
"""How a tap is checked: :func:`scenarios.expect.check_tap`'s signature."""
Keep = Literal["all", "failures"]
"""Which taps a :class:`ScenarioResult` keeps: "all" (an HTML report or the trace files
show every tap), or "failures", the taps that did not pass, so that a soak test of
many thousand taps runs in constant memory (``taps_made`` counts them all)."""
HsmSource = Callable[[], AbstractContextManager[Hsm]]
"""What opens an environment's HSM (``TapEnvironment``'s ``hsm``); None: the soft HSM."""


class TapError(ValueError):
    """A tap that makes no sense (amount, currency, type): names the tap's source."""


class SelectError(ValueError):
    """A ``-k`` expression that does not parse: says where."""


# --- one scenario --------------------------------------------------------------------------------


def _one_line(err: BaseException) -> str:
    """An exception as one line: its message (with its type when it is not one of the
    errors that already say what and where)."""
    text = " ".join(str(err).split())
    if isinstance(err, ValueError) and text:
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _transaction(
    tap: TapSpec, config: TerminalConfig
) -> tuple[int, str | None, TransactionType, int]:
    """The tap's amount (minor units), currency (5F2A hex or None), type, amount other."""
    where = str(tap.source)
    try:
        currency = parse_currency(tap.currency) if tap.currency is not None else None
    except ValueError:
        raise TapError(
            f"{where}: currency {tap.currency!r}: not an ISO 4217 currency (e.g. GBP, 0826)"
        ) from None
    kind = TYPES.get(tap.type)
    if kind is None:
        raise TapError(f"{where}: type {tap.type!r}: expected one of {', '.join(TYPES)}")
    exponent = currency_exponent(currency or config.currency.hex(), config)
    try:
        amount = parse_amount(str(tap.amount), exponent, "amount")
        other = parse_amount(str(tap.amount_other), exponent, "amount_other")
    except ValueError as err:
        raise TapError(f"{where}: {err}") from None
    if other > amount:
        raise TapError(f"{where}: amount_other {tap.amount_other} is more than amount (its total)")
    if other and kind != TransactionType.PURCHASE_WITH_CASHBACK:
        raise TapError(f"{where}: amount_other is for type cashback only")
    return amount, currency, kind, other


def _made(scenario: Scenario) -> Iterator[tuple[int, TapSpec]]:
    """The taps to make in order, each with its position in ``scenario.taps`` (a tap
    with ``repeat: N`` comes N times)."""
    for spec, tap in enumerate(scenario.taps):
        for _ in range(tap.repeat):
            yield spec, tap


class _TapFailed(Exception):
    """A tap raised: which one, and why (one line)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"tap {index + 1}: {message}")


def _run_tap(
    env: TapEnvironment, tap: TapSpec, out: TapResult, check: CheckTap, keep: Keep
) -> None:
    """One tap with its faults, into ``out``; its report rendered only for a tap the
    result keeps (``keep``), or one that raised after the terminal's answer."""
    amount, currency, kind, other = _transaction(tap, env.config)
    faults = TapFaults(tap.faults)
    faults.prepare(env)
    try:
        result, trace = env.tap(amount, currency, kind, amount_other=other, **faults.tap_options())
    finally:
        out.trace = env.trace
    out.trace = trace
    try:
        faults.finish(env, result)
        out.checks = list(check(tap.expect, result, trace, tap.source))
    except BaseException:
        out.report = _report(result, faults)
        raise
    if keep == "all" or not out.passed:
        out.report = _report(result, faults)


def _report(result: TransactionResult, faults: TapFaults) -> str:
    """The transaction's report (:func:`terminal.report.render`), then the faults' notes."""
    report = render(result)
    notes = faults.notes()
    if notes:
        report = report.rstrip("\n") + "\n" + "\n".join(notes) + "\n"
    return report


def run_scenario(
    scenario: Scenario,
    *,
    check: CheckTap | None = None,
    hsm: HsmSource | None = None,
    remote: RemoteServer | None = None,
    link: LinkSpec | str = "inprocess",
    keys: RsaKeyPool | None = None,
    keep: Keep = "all",
) -> ScenarioResult:
    """Run ``scenario`` (module docstring); ``check`` checks each tap (default:
    :func:`scenarios.expect.check_tap`), ``hsm`` opens the token server's HSM (default:
    a soft HSM), ``remote`` is a running token server to use instead of one in this
    process, ``link`` how the terminal reaches the card (:class:`TapEnvironment`'s
    ``link``), ``keys`` the pool its RSA keys come from (None: fresh keys), ``keep``
    which taps the result keeps (:data:`Keep`). Never raises for anything the
    scenario does."""
    started = time.perf_counter()
    result = ScenarioResult(scenario, "passed")
    try:
        checker = check or check_tap
        for tap in scenario.taps:  # every fault checked before anything is built
            TapFaults(tap.faults)
        rsa_keys = oda.generate_rsa_key if keys is None else keys.source()
        with TapEnvironment.from_scenario(
            scenario, hsm=hsm, remote=remote, link=link, rsa_keys=rsa_keys
        ) as env:
            for index, (spec, tap) in enumerate(_made(scenario)):
                out = TapResult(index, spec)
                result.taps.append(out)
                result.taps_made += 1
                try:
                    _run_tap(env, tap, out, checker, keep)
                except Exception as err:
                    out.error = _one_line(err)
                    raise _TapFailed(index, out.error) from err
                if keep == "failures" and out.passed:
                    result.taps.pop()
    except _TapFailed as err:
        result.error = str(err)
    except Exception as err:
        result.error = _one_line(err)
    if result.error is not None:
        result.verdict = "errored"
    elif not all(tap.passed for tap in result.taps):
        result.verdict = "failed"
    result.seconds = time.perf_counter() - started
    return result


# --- many, on worker processes ----------------------------------------------------------------


def _mapping_proxy(content: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(content)


def _reduce_mapping_proxy(
    proxy: MappingProxyType[Any, Any],
) -> tuple[Callable[[dict[Any, Any]], MappingProxyType[Any, Any]], tuple[dict[Any, Any]]]:
    return _mapping_proxy, (dict(proxy),)


# Scenarios and results cross to workers by pickling; read-only mappings in them must too.
ForkingPickler.register(MappingProxyType, _reduce_mapping_proxy)


_Indexed = tuple[int, Scenario]  # a scenario and its position in the run
BATCH = 4  # scenarios a worker's job runs at most (_batches)


def _run_indexed(
    item: _Indexed,
    *,
    hsm: HsmSource | None = None,
    remote: RemoteServer | None = None,
    link: LinkSpec | str = "inprocess",
    fresh_keys: bool = False,
    keep: Keep = "all",
) -> tuple[int, ScenarioResult]:
    """One scenario of a worker's batch (:func:`_run_batch`), with its position, its RSA
    keys from the worker's :func:`process_pool` unless ``fresh_keys``; a result that
    would not pickle back comes back errored (without its traces) rather than failing
    the run."""
    index, scenario = item
    keys = None if fresh_keys else process_pool()
    result = run_scenario(scenario, hsm=hsm, remote=remote, link=link, keys=keys, keep=keep)
    try:
        ForkingPickler.dumps(result)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        result = ScenarioResult(
            scenario,
            "errored",
            seconds=result.seconds,
            error=f"the result could not be sent back from the worker: {_one_line(err)}",
        )
    return index, result


def _worker_context() -> BaseContext:
    """How workers start (module docstring): forked from a forkserver that imported
    :func:`_preloaded`; spawned where the platform has no forkserver. (Workers on one
    SoftHSMv2 token need no other start: hce/hsm/pkcs11.py opens and closes sessions
    one process at a time.)"""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_preloaded())
    return context


def _preloaded() -> list[str]:
    """The modules the forkserver imports once for every worker: this one, the CLI (all
    the ``emvtap`` script imports), the loader (which a script that runs scenarios
    imports) and the main module by name when it ran with ``-m``. A worker runs the
    main module again, as multiprocessing does, and finds its imports done: without
    them each worker of ``emvtap run -j N`` spent about 80 ms importing the CLI.
    ("__main__" is asked for too, but Python 3.11's forkserver never gets the main
    script's path, so it cannot import it.)"""
    names = ["__main__", __name__, "scenarios.cli", "scenarios.loader"]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name not in names:
        names.append(spec.name)
    return names


def _start_worker(
    environ: dict[str, str], cwd: str, keys: dict[tuple[int, int], list[oda.RsaPrivateKey]]
) -> None:
    """A worker's start: this run's environment variables (``EMVTAP_HSM_PIN``...) and
    folder, not those the forkserver started with; its pool takes the parent's keys."""
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    process_pool().adopt(keys)


def _run_serially(
    items: list[Scenario],
    progress: Callable[[ScenarioResult], None] | None,
    *,
    hsm: HsmSource | None,
    remote: RemoteServer | None,
    link: LinkSpec,
    keys: RsaKeyPool | None,
    keep: Keep,
) -> list[ScenarioResult]:
    results = []
    for scenario in items:
        results.append(
            run_scenario(scenario, hsm=hsm, remote=remote, link=link, keys=keys, keep=keep)
        )
        if progress is not None:
            progress(results[-1])
    return results


def run(
    scenarios: Iterable[Scenario],
    jobs: int = 1,
    progress: Callable[[ScenarioResult], None] | None = None,
    *,
    hsm: HsmSource | None = None,
    remote: RemoteServer | None = None,
    link: LinkSpec | str = "inprocess",
    fresh_keys: bool = False,
    keep: Keep = "all",
) -> list[ScenarioResult]:
    """Run every scenario; the results in the order given. ``jobs`` > 1 runs them on
    that many worker processes (module docstring); ``progress`` is called in this
    process with each result as it comes (in the order they finish); ``hsm`` opens
    each scenario's HSM (module docstring; default: a soft HSM); ``remote`` a running
    token server every scenario uses instead (module docstring); ``link`` how each
    terminal reaches its card (:class:`TapEnvironment`'s ``link``; a link with one
    reader, pcsc, runs one scenario at a time, and its station is closed at the end);
    ``fresh_keys`` makes every scenario's RSA keys anew instead of taking them from
    the process's key pool (module docstring); ``keep`` which taps each result keeps
    (:data:`Keep`)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number >= 1, got {jobs!r}")
    spec = parse_link(link) if isinstance(link, str) else link
    items = list(scenarios)
    spec.check_jobs(jobs)
    keys = None if fresh_keys else process_pool()
    if spec.exclusive:
        try:
            return _run_serially(
                items, progress, hsm=hsm, remote=remote, link=spec, keys=keys, keep=keep
            )
        finally:
            close_stations()
    if jobs == 1 or len(items) <= 1:
        return _run_serially(
            items, progress, hsm=hsm, remote=remote, link=spec, keys=keys, keep=keep
        )
    done: list[ScenarioResult | None] = [None] * len(items)
    with ProcessPoolExecutor(
        min(jobs, len(items)),
        mp_context=_worker_context(),
        initializer=_start_worker,
        initargs=(dict(os.environ), os.getcwd(), {} if keys is None else keys.keys()),
    ) as pool:
        job = partial(
            _run_indexed, hsm=hsm, remote=remote, link=spec, fresh_keys=fresh_keys, keep=keep
        )
        batches = _batches(list(enumerate(items)), jobs)
        futures = {pool.submit(_run_batch, batch, job): batch for batch in batches}
        for future in as_completed(futures):
            try:
                finished = future.result()
            except Exception as err:  # a worker that died (BrokenProcessPool) or could not start
                failure = f"its worker process failed: {_one_line(err)}"
                finished = [
                    (index, ScenarioResult(scenario, "errored", error=failure))
                    for index, scenario in futures[future]
                ]
            for index, result in finished:
                done[index] = result
                if progress is not None:
                    progress(result)
    return [result for result in done if result is not None]


def _batches(items: list[_Indexed], jobs: int) -> list[list[_Indexed]]:
    """``items`` in batches of consecutive scenarios, one batch a job for a worker: up to
    :data:`BATCH` scenarios, fewer where there are too few for every worker to get
    several batches. A job costs a round trip through the pool's queues (about a
    millisecond), which a one-tap scenario of about 10 ms would otherwise pay each."""
    size = max(1, min(BATCH, len(items) // (jobs * 4)))
    return [items[start : start + size] for start in range(0, len(items), size)]


def _run_batch(
    batch: list[_Indexed], job: Callable[[_Indexed], tuple[int, ScenarioResult]]
) -> list[tuple[int, ScenarioResult]]:
    """A worker's job: the scenarios of one batch, in order (:func:`_run_indexed`)."""
    return [job(item) for item in batch]


# --- -k selection --------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\()|(\))|([^\s()]+))")
_KEYWORDS = frozenset({"and", "or", "not"})
Predicate = Callable[[Scenario], bool]


def _matches(word: str) -> Predicate:
    """A word: a case-insensitive substring of the id, the title or a tag."""
    needle = word.lower()

    def match(scenario: Scenario) -> bool:
        texts = (scenario.id, scenario.title, *scenario.tags)
        return any(needle in text.lower() for text in texts)

    return match


class _Parser:
    """``expr := or; or := and ("or" and)*; and := not ("and" not)*;
    not := "not" not | "(" or ")" | WORD`` (pytest's ``-k`` grammar)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens: list[tuple[int, str]] = []
        position = 0
        while position < len(expression):
            found = _TOKEN.match(expression, position)
            if found is None or found.end() == position:  # only trailing blanks are left
                break
            start = found.start(found.lastindex or 0)
            self.tokens.append((start, found.group(found.lastindex or 0)))
            position = found.end()
        self.at = 0

    def fail(self, problem: str) -> SelectError:
        where = self.tokens[self.at][0] + 1 if self.at < len(self.tokens) else len(self.expression)
        return SelectError(f"-k {self.expression}: column {where}: {problem}")

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self) -> str:
        token = self.tokens[self.at][1]
        self.at += 1
        return token

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda _scenario: True
        predicate = self.either()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()!r}")
        return predicate

    def either(self) -> Predicate:
        parts = [self.both()]
        while self.peek() == "or":
            self.take()
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else lambda s: any(p(s) for p in parts)

    def both(self) -> Predicate:
        parts = [self.negation()]
        while self.peek() == "and":
            self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else lambda s: all(p(s) for p in parts)

    def negation(self) -> Predicate:
        token = self.peek()
        if token is None:
            raise self.fail("expected a word, 'not' or '(' at the end")
        if token == "not":
            self.take()
            inner = self.negation()
            return lambda s: not inner(s)
        if token == "(":
            self.take()
            inner = self.either()
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.take()
            return inner
        if token == ")" or token in _KEYWORDS:
            raise self.fail(f"expected a word, 'not' or '(', got {token!r}")
        return _matches(self.take())


def select(scenarios: Iterable[Scenario], expression: str) -> list[Scenario]:
    """The scenarios ``expression`` selects, in their order (``emvtap run -k``).

    As pytest's ``-k``: words joined by ``and``, ``or``, ``not`` and parentheses; a
    word matches a scenario when it is a case-insensitive substring of its id, its
    title or one of its tags (``-k "kernel3 and not tear"``). An empty expression
    selects everything; one that does not parse raises :class:`SelectError`."""
    predicate = _Parser(expression).parse()
    return [scenario for scenario in scenarios if predicate(scenario)]
