"""``emvtap run``: run YAML tap scenarios (docs/scenarios.md) and report.

``emvtap run PATH... [-k EXPR] [-j N] [--junit FILE] [--html FILE] [--trace-dir DIR]
[--hsm SPEC] [--link MODE] [--fresh-keys] [--clear] [--quiet]`` loads every scenario
in the files and folders given (:func:`scenarios.loader.load_paths`), keeps those ``-k`` selects
(:func:`scenarios.runner.select`), runs them on ``-j`` workers
(:func:`scenarios.runner.run`) and prints:

* progress on standard error: a bar when it is a terminal, else one character a
  scenario (``.`` passed, ``F`` failed, ``E`` errored);
* the summary: passed, failed and errored counts and the slowest scenarios;
* each scenario that did not pass (:func:`scenarios.reports.failure_text`): its id
  and file:line, each failed check (expected, actual, the YAML line that asked),
  the transaction and the decoded APDU trace of the tap; an error's message;
* a last line with the tally.

``--junit``, ``--html`` and ``--trace-dir`` write the reports of
:mod:`scenarios.reports`. PANs are masked everywhere unless ``--clear``.
``--hsm pkcs11:MODULE[:TOKEN]`` (:mod:`scenarios.hsm_spec`, PIN in ``EMVTAP_HSM_PIN``)
puts every scenario's token server keys on that PKCS#11 token, each scenario under
a label prefix of its own, destroyed when it ends; the token is opened once first,
so a bad spec, module, token or PIN is a usage error before anything runs.
``--link`` puts a real link between each terminal and its card (:mod:`scenarios.links`):
``vpcd-direct`` a loopback vpcd socket, ``pcsc[:READER][@HOST:PORT]`` pcscd with
vsmartcard's vpcd driver (one scenario at a time), ``nfc-udp`` nfcpy's simulated RF
link; the default ``inprocess`` hands the card object over.
Each process makes each RSA key once and hands it to every scenario it runs
(:mod:`scenarios.keypool`); ``--fresh-keys`` makes every scenario's keys anew.
``--server URL`` (with ``--server-cert FILE`` or ``--server-pin HEX``, the admin
credential in ``EMVTAP_SERVER_CREDENTIAL``, and for plastic cards the server's
IMK-AC in ``EMVTAP_IMK_AC``: :mod:`scenarios.remote`) runs every scenario against
that running token server instead of one in the process; the server is checked
first (it answers, the pin matches, the credential is an admin's, which makes the
run's acquirer credential), so a server that cannot be used is a usage error
before anything runs; a scenario the server cannot serve (``keys: expired``, a
plastic card without ``EMVTAP_IMK_AC``) errors with the reason.

Exit status: 0 when every scenario passed, 1 when any failed or errored, 2 for a
usage error (a file that does not load: ``emvtap: error: FILE:LINE: FIELD: PROBLEM``,
no scenario found or selected, a bad option, an HSM that cannot be opened, a
token server that cannot be used).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from scenarios import reports
from scenarios.hsm_spec import PIN_ENV, parse_hsm
from scenarios.links import LINK_HELP
from scenarios.remote import add_server_options, connect, server_from_args
from scenarios.subcommands import Subcommands, mask_option

if TYPE_CHECKING:
    from scenarios.links import LinkSpec
    from scenarios.model import Scenario, ScenarioResult

__all__ = ["EXIT_FAILED", "Progress", "RunUsageError", "add_run_command"]

EXIT_FAILED = 1
_MARKS = {"passed": ".", "failed": "F", "errored": "E"}


class RunUsageError(ValueError):
    """A mistake in the command line or the scenario files: one line, exit status 2."""


def _jobs(text: str) -> int:
    """``-j N``: a positive number of workers, or ``auto`` (one per CPU)."""
    if text == "auto":
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive number or 'auto'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive number or 'auto'")
    return value


def add_run_command(commands: Subcommands) -> None:
    """Register ``emvtap run``."""
    run = commands.add_parser(
        "run",
        help="run YAML tap scenarios and report (JUnit XML, HTML, traces)",
        description="Run the tap scenarios in the YAML files and folders given "
        "(docs/scenarios.md), print a summary and every failure with the expected and "
        "actual values and the decoded APDU trace. Exit status 0 when all passed, 1 when "
        "any failed or errored, 2 for a usage error or a scenario file that does not load.",
    )
    run.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="scenario files or folders of them"
    )
    run.add_argument(
        "-k",
        dest="select",
        metavar="EXPR",
        help="run only the scenarios EXPR selects (words match ids and tags; "
        "and, or, not, parentheses)",
    )
    run.add_argument(
        "-j",
        "--jobs",
        type=_jobs,
        default=1,
        metavar="N",
        help="run N scenarios at once ('auto': one per CPU; default 1)",
    )
    run.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML to FILE")
    run.add_argument("--html", type=Path, metavar="FILE", help="write an HTML report to FILE")
    run.add_argument(
        "--trace-dir",
        type=Path,
        metavar="DIR",
        help="write each tap's trace to DIR/<scenario-id>/tap-<n>.txt and .pcapng",
    )
    run.add_argument(
        "--hsm",
        default="soft",
        metavar="SPEC",
        help="the token servers' HSM: 'soft' (default: a key file per scenario) or "
        "'pkcs11:MODULE[:TOKEN]' (a PKCS#11 module path and token label, by default the "
        f"module's only token; the user PIN comes from {PIN_ENV}); each scenario's keys "
        "get a label prefix of their own and are destroyed when it ends",
    )
    run.add_argument(
        "--link",
        default="inprocess",
        metavar="LINK",
        help=LINK_HELP,
    )
    run.add_argument(
        "--fresh-keys",
        action="store_true",
        help="make every scenario's RSA keys anew (about 0.2 s a scenario) instead of "
        "generating each key once per process and reusing it in every scenario",
    )
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress and no summary table: only failures and the last line",
    )
    add_server_options(run)
    mask_option(run)
    run.set_defaults(handler=_run)


class Progress:
    """The progress of a run on ``stream``: a bar redrawn in place on a terminal,
    else ``.``/``F``/``E`` per scenario on one line. Safe to call from any thread."""

    def __init__(self, total: int, stream: TextIO, *, bar: bool) -> None:
        self.total = total
        self.stream = stream
        self.bar = bar
        self.counts = {"passed": 0, "failed": 0, "errored": 0}
        self._lock = threading.Lock()
        self._shown = False

    def __call__(self, result: ScenarioResult) -> None:
        with self._lock:
            self.counts[result.verdict] += 1
            self._shown = True
            if self.bar:
                self.stream.write("\r" + self._bar_line(result.scenario.id) + "\x1b[K")
            else:
                self.stream.write(_MARKS[result.verdict])
            self.stream.flush()

    def _bar_line(self, last: str) -> str:
        done = sum(self.counts.values())
        width = 24
        filled = width * done // max(self.total, 1)
        line = (
            f"[{'#' * filled}{' ' * (width - filled)}] {done}/{self.total}"
            f"  {self.counts['failed']} failed, {self.counts['errored']} errored  {last}"
        )
        columns = shutil.get_terminal_size((80, 24)).columns
        return line[: max(columns - 1, 10)]

    def close(self) -> None:
        """End the progress line (a bar is erased)."""
        with self._lock:
            if self._shown:
                self.stream.write("\r\x1b[K" if self.bar else "\n")
                self.stream.flush()
            self._shown = False


def _load(args: argparse.Namespace) -> list[Scenario]:
    from scenarios.loader import LoadError, load_paths  # noqa: PLC0415
    from scenarios.runner import select  # noqa: PLC0415

    try:
        loaded = load_paths(args.paths)
    except LoadError as err:
        raise RunUsageError(str(err)) from None
    if not loaded:
        raise RunUsageError(
            f"no scenarios in {', '.join(str(path) for path in args.paths)} (*.yaml files)"
        )
    if args.select is None:
        return loaded
    chosen = select(loaded, args.select)
    if not chosen:
        raise RunUsageError(f"-k {args.select}: selects none of the {len(loaded)} scenario(s)")
    return chosen


def _prepare_outputs(args: argparse.Namespace) -> None:
    """Make the folders of the report files now, so a bad path fails before the run."""
    for file in (args.junit, args.html):
        if file is not None:
            if file.is_dir():
                raise RunUsageError(f"{file}: is a directory, not a file to write")
            file.parent.mkdir(parents=True, exist_ok=True)
    if args.trace_dir is not None:
        args.trace_dir.mkdir(parents=True, exist_ok=True)


def _link(args: argparse.Namespace) -> LinkSpec:
    """``--link``, checked: its reader is there (a usage error before anything runs)."""
    from emv.link import LinkError  # noqa: PLC0415
    from scenarios.links import check_link, parse_link  # noqa: PLC0415

    try:
        link = parse_link(args.link)
        link.check_jobs(args.jobs)
        check_link(link)
    except (ValueError, LinkError) as err:
        raise RunUsageError(str(err)) from None
    return link


def _run(args: argparse.Namespace) -> int:
    from scenarios.runner import run  # noqa: PLC0415

    pkcs11 = parse_hsm(args.hsm)
    remote = server_from_args(args)
    if remote is not None and pkcs11 is not None:
        raise RunUsageError("--hsm: a running token server (--server) has its own HSM")
    link = _link(args)
    chosen = _load(args)
    if pkcs11 is not None:
        pkcs11.check()
    if remote is not None:
        remote = connect(remote)  # one acquirer credential for the whole run
    _prepare_outputs(args)
    progress = Progress(len(chosen), sys.stderr, bar=sys.stderr.isatty())
    started = time.monotonic()
    try:
        results = run(
            chosen,
            jobs=args.jobs,
            progress=None if args.quiet else progress,
            hsm=None if pkcs11 is None else pkcs11.environment_hsm,
            remote=remote,
            link=link,
            fresh_keys=args.fresh_keys,
            keep="all" if args.html or args.trace_dir else "failures",
        )
    finally:
        progress.close()
    seconds = time.monotonic() - started
    blocks = [] if args.quiet else [reports.summary_text(results, seconds)]
    blocks += [
        reports.failure_text(result, clear=args.clear)
        for result in results
        if result.verdict != "passed"
    ]
    counts = reports.tally(results)
    blocks.append(
        f"emvtap run: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['errored']} errored in {seconds:.2f} s\n"
    )
    sys.stdout.write("\n".join(blocks))
    sys.stdout.flush()
    _write_reports(args, results, seconds)  # after the results are out: a bad disk hides none
    return 0 if counts["passed"] == len(results) else EXIT_FAILED


def _write_reports(args: argparse.Namespace, results: list[ScenarioResult], seconds: float) -> None:
    """``--junit``, ``--html`` and ``--trace-dir``; what was written goes to stderr."""
    written: list[str] = []
    if args.junit is not None:
        args.junit.write_text(reports.junit_xml(results, clear=args.clear), encoding="utf-8")
        written.append(f"JUnit XML: {args.junit}")
    if args.html is not None:
        args.html.write_text(
            reports.html_report(results, clear=args.clear, seconds=seconds), encoding="utf-8"
        )
        written.append(f"HTML report: {args.html}")
    if args.trace_dir is not None:
        files = reports.write_traces(results, args.trace_dir, clear=args.clear)
        written.append(f"traces: {len(files)} file(s) in {args.trace_dir}")
    if written and not args.quiet:
        print("\n".join(written), file=sys.stderr)
