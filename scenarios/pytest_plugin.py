"""The ``emvtap`` pytest plugin: tap scenario YAML files run as pytest tests.

Registered through the ``pytest11`` entry point, so any ``pytest`` in an
environment where emvtap is installed has it (``-p no:emvtap`` turns it off).
One pytest item per scenario (one per matrix combination), named by the
scenario's id; its tags are keywords, so ``-k kernel3`` selects by tag as
``emvtap run -k`` does. A failing item prints the same text as ``emvtap run``
(the failed checks with expected and actual values and the YAML line that asked,
the transaction, the decoded APDU trace) and points at the scenario's file:line.
Items are ordinary pytest items, so ``pytest -n 2`` (pytest-xdist) spreads them
over workers.

Which YAML files are collected (``*.yaml`` and ``*.yml``):

* every file given on the command line (``pytest my_scenario.yaml``);
* files found under a directory that holds a ``.emvtap-scenarios`` marker file
  (in the directory itself or any directory above it);
* files whose path contains ``scenarios/packs`` (the shipped packs).

Files named ``_*.yaml`` found in a folder are include fragments, not scenarios
(as for ``emvtap run``). Nothing else is collected: card profiles, terminal
configurations, CI files and other YAML in a repository are left alone.

Options: ``--emvtap-clear`` shows PANs in clear in failure reports (they are
masked by default); ``--emvtap-link LINK`` runs every scenario over that link
(:mod:`scenarios.links`: ``vpcd-direct``, ``nfc-udp``, ``pcsc[:READER][@HOST:PORT]``;
pcsc has one reader, so not with ``-n``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the plugin loads in every pytest run: import the runner only when used
    from _pytest._code.code import TracebackStyle

    from scenarios.model import Scenario, ScenarioResult

__all__ = [
    "MARKER_FILE",
    "ScenarioFailed",
    "ScenarioFile",
    "ScenarioItem",
    "is_scenario_file",
    "pytest_addoption",
    "pytest_collect_file",
]

MARKER_FILE = ".emvtap-scenarios"
SUFFIXES = frozenset({".yaml", ".yml"})
_PACKS = ("scenarios", "packs")
_EXPLICIT = pytest.StashKey[frozenset[Path]]()
_MARKED = pytest.StashKey[dict[Path, bool]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--emvtap-clear``: PANs in clear in failure reports; ``--emvtap-link``."""
    group = parser.getgroup("emvtap", "emvtap tap scenarios")
    group.addoption(
        "--emvtap-clear",
        action="store_true",
        default=False,
        help="show PANs in clear in scenario failure reports (masked by default)",
    )
    group.addoption(
        "--emvtap-link",
        default="inprocess",
        metavar="LINK",
        help="run the scenarios over this link: inprocess (default), vpcd-direct, "
        "nfc-udp or pcsc[:READER][@HOST:PORT] (not with -n)",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    """A :class:`ScenarioFile` for each scenario YAML file (see the module's rule)."""
    if file_path.suffix not in SUFFIXES:
        return None
    config = parent.config
    if _EXPLICIT not in config.stash:
        base = config.invocation_params.dir
        config.stash[_EXPLICIT] = frozenset(
            (base / arg.split("::")[0]).resolve() for arg in config.args
        )
        config.stash[_MARKED] = {}
    if is_scenario_file(file_path, config.stash[_EXPLICIT], config.stash[_MARKED]):
        file: ScenarioFile = ScenarioFile.from_parent(parent, path=file_path)
        return file
    return None


def is_scenario_file(
    path: Path,
    explicit: frozenset[Path] = frozenset(),
    marked: dict[Path, bool] | None = None,
) -> bool:
    """Whether ``path`` is collected: a YAML file given explicitly, or, unless it is a
    ``_*`` fragment, under a directory with a ``.emvtap-scenarios`` marker or under
    ``scenarios/packs``. ``marked`` caches what is known of directories (marker or
    not) between calls."""
    if path.suffix not in SUFFIXES:
        return False
    resolved = path.resolve()
    if resolved in explicit:
        return True
    if path.name.startswith("_"):  # an include fragment (as scenarios.loader skips them)
        return False
    parts = resolved.parts
    if any(parts[i : i + 2] == _PACKS for i in range(len(parts) - 1)):
        return True
    return _marked(resolved.parent, {} if marked is None else marked)


def _marked(directory: Path, known: dict[Path, bool]) -> bool:
    """Whether ``directory`` or one above it holds the marker file."""
    if directory not in known:
        known[directory] = (directory / MARKER_FILE).is_file() or (
            directory.parent != directory and _marked(directory.parent, known)
        )
    return known[directory]


class ScenarioFailed(Exception):
    """A scenario that did not pass (failed checks or an error): carries its result."""

    def __init__(self, result: ScenarioResult) -> None:
        super().__init__(f"scenario {result.scenario.id} {result.verdict}")
        self.result = result


class ScenarioLoadFailed(Exception):
    """A scenario file that does not load: its message is the loader's one line."""


class ScenarioFile(pytest.File):
    """A YAML file of scenarios: one item per scenario it defines."""

    def collect(self) -> Iterator[ScenarioItem]:
        """Load the file with :func:`scenarios.loader.load_paths`; a load error is a
        collection error of one line (``file:line: field: problem``)."""
        from scenarios.loader import LoadError, load_paths  # noqa: PLC0415

        try:
            loaded = load_paths([self.path])
        except LoadError as err:
            raise ScenarioLoadFailed(str(err)) from None
        for scenario in loaded:
            yield ScenarioItem.from_parent(self, name=scenario.id, scenario=scenario)

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str:
        """The load error's line, without a Python traceback."""
        if isinstance(excinfo.value, ScenarioLoadFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))


class ScenarioItem(pytest.Item):
    """One scenario: runs it with :func:`scenarios.runner.run_scenario`."""

    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.extra_keyword_matches.update(scenario.tags)
        self.result: ScenarioResult | None = None

    def runtest(self) -> None:
        """Run the scenario; anything but ``passed`` raises :class:`ScenarioFailed`."""
        from scenarios.keypool import process_pool  # noqa: PLC0415
        from scenarios.runner import run_scenario  # noqa: PLC0415

        link = str(self.config.getoption("emvtap_link", default="inprocess"))
        self.result = run_scenario(self.scenario, link=link, keys=process_pool(), keep="failures")
        self.user_properties.append(("seconds", f"{self.result.seconds:.3f}"))
        if self.result.verdict != "passed":
            raise ScenarioFailed(self.result)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: TracebackStyle | None = None,
    ) -> str:
        """The same text as ``emvtap run`` prints for a failure (PANs masked unless
        ``--emvtap-clear``); other exceptions keep pytest's own report."""
        if isinstance(excinfo.value, ScenarioFailed):
            from scenarios.reports import failure_text  # noqa: PLC0415

            clear = bool(self.config.getoption("emvtap_clear", default=False))
            return failure_text(excinfo.value.result, clear=clear).rstrip("\n")
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int, str]:
        """The scenario's file and line (pytest counts lines from 0)."""
        return self.path, self.scenario.source.line - 1, f"scenario {self.scenario.id}"
