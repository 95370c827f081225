"""The scenario runner (scenarios/runner.py) and the environments it builds (scenarios/tap.py).

* A scenario's verdict: passed (every check held), failed (one did not), errored
  (it could not run: one line, no traceback, the later taps not run, the
  environment closed).
* The environment follows the scenario: card and terminal overrides deep-merged
  into the YAML (an HCE profile with overrides is certified by the server's issuer
  key directly), the host mode, the phone and token server state.
* ``run`` gives the same verdicts in the same order on worker processes, results
  (traces included) pickle; ``select`` is pytest's ``-k``.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from emv.trace import EventKind, Trace
from scenarios import runner
from scenarios.expect import apdu_names
from scenarios.model import (
    CardSpec,
    Check,
    Expectation,
    Fault,
    Scenario,
    ScenarioResult,
    ServerState,
    Source,
    TapSpec,
    TerminalSpec,
)
from scenarios.runner import SelectError, run, run_scenario, select
from scenarios.tap import TapEnvironment, deep_merge, load_card, load_terminal
from terminal.config import ConfigError
from terminal.pos import TransactionResult

SOURCE = Source("packs/runner.yaml", 3)


def _tap(amount: str = "12.34", *faults: Fault, line: int = 10, **expect: Any) -> TapSpec:
    return TapSpec(
        amount, Source(SOURCE.file, line), faults=tuple(faults), expect=Expectation(**expect)
    )


def _scenario(
    card: str | CardSpec = "visa_qvsdc_plastic",
    *taps: TapSpec,
    id: str = "a-scenario",
    **fields: Any,
) -> Scenario:
    return Scenario(
        id=id,
        title=fields.pop("title", "a scenario"),
        requirement="Book B",
        card=card if isinstance(card, CardSpec) else CardSpec(card),
        taps=taps or (_tap(),),
        source=SOURCE,
        **fields,
    )


def _fault(kind: str, params: Any, line: int = 12) -> Fault:
    params = params if isinstance(params, dict) else {"value": params}
    return Fault(kind, params, Source(SOURCE.file, line))


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[TapEnvironment]]:
    """Every TapEnvironment the runner closes."""
    seen: list[TapEnvironment] = []
    close = TapEnvironment.close

    def spy(self: TapEnvironment) -> None:
        seen.append(self)
        close(self)

    monkeypatch.setattr(TapEnvironment, "close", spy)
    yield seen


# --- verdicts -------------------------------------------------------------------------------------


def test_a_scenario_whose_checks_hold_passes_with_a_masked_report_and_a_trace() -> None:
    result = run_scenario(
        _scenario(
            "visa_qvsdc_plastic",
            _tap(outcome="Approved", kernel="C-3", oda="fDDA passed", host_decision="approved"),
        )
    )
    assert (result.verdict, result.error) == ("passed", None)
    [tap] = result.taps
    assert [check.name for check in tap.checks] == ["outcome", "kernel", "oda", "host.decision"]
    assert all(check.passed for check in tap.checks)
    assert tap.checks[0].source == Source(SOURCE.file, 10)
    assert "476173******0010" in tap.report and "4761739001010010" not in tap.report
    assert tap.trace.events[0].kind is EventKind.FIELD_ON and tap.trace.commands()
    assert result.seconds > 0


def test_a_check_that_does_not_hold_fails_the_scenario() -> None:
    result = run_scenario(_scenario("visa_qvsdc_plastic", _tap(outcome="Declined")))
    assert (result.verdict, result.error) == ("failed", None)
    [check] = result.taps[0].checks
    assert (check.passed, check.expected) == (False, "Declined")
    assert check.actual.startswith("Approved")


def test_faults_run_with_their_taps_and_the_replay_answer_is_what_expect_host_checks() -> None:
    result = run_scenario(
        _scenario(
            "mastercard_mchip_plastic",
            _tap(
                "12.34",
                _fault("tear", {"after": "GENERATE AC"}),
                apdus=("*", "RECOVER AC"),
                taps=2,
                outcome="Approved",
            ),
            _tap(
                "5.00",
                _fault("replay", "previous"),
                outcome="Approved",
                host_decision="declined",
                host_reason="replay",
            ),
        )
    )
    assert result.verdict == "passed", [(c.name, c.actual) for t in result.taps for c in t.checks]
    assert "Replay of tap 1's ICC data to the host: declined (replay)" in result.taps[1].report


def test_a_fault_that_makes_no_sense_errors_before_anything_is_built(
    closed: list[TapEnvironment],
) -> None:
    bad = _fault("corrupt", {"command": "GET PROCESSING OPTIONS"}, line=21)
    result = run_scenario(_scenario("visa_qvsdc_plastic", _tap(), _tap("1.00", bad)))
    assert result.verdict == "errored" and result.taps == [] and closed == []
    assert result.error is not None and result.error.startswith("packs/runner.yaml:21: corrupt:")
    assert "\n" not in result.error and "Traceback" not in result.error


def test_an_error_in_a_tap_stops_the_scenario_and_the_environment_is_closed(
    closed: list[TapEnvironment],
) -> None:
    never = _fault("tear", {"after": "GENERATE AC"}, line=31)  # a Visa card gets none
    result = run_scenario(
        _scenario("visa_qvsdc_plastic", _tap(outcome="Approved"), _tap("2.00", never), _tap())
    )
    assert result.verdict == "errored"
    assert [tap.index for tap in result.taps] == [0, 1]  # the third tap did not run
    assert result.taps[0].passed and not result.taps[1].passed
    assert result.taps[1].error is not None
    assert result.taps[1].error.startswith("packs/runner.yaml:31: tear: no command")
    assert result.error == f"tap 2: {result.taps[1].error}"
    assert result.taps[1].trace.commands() and result.taps[1].report  # kept for the report
    assert len(closed) == 1


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        (_scenario("no_such_card"), "no_such_card: cannot read"),
        (_scenario(terminal=TerminalSpec("no_such_terminal")), "no_such_terminal: no such file"),
        (
            _scenario(CardSpec("visa_qvsdc_plastic", {"applications": [{"aip": "XYZ"}]})),
            "applications[0].aip",
        ),
        (_scenario(server=ServerState(cdcvm=True)), "server.cdcvm: profile visa_qvsdc_plastic"),
        (_scenario("visa_qvsdc_plastic", _tap("12.345")), "amount 12.345: more than 2 decimal"),
        (_scenario("visa_qvsdc_plastic", _tap("-1")), "amount '-1'"),
        (
            _scenario("visa_qvsdc_plastic", TapSpec("1.00", SOURCE, currency="XXQ")),
            "currency 'XXQ'",
        ),
        (
            _scenario("visa_qvsdc_plastic", TapSpec("1.00", SOURCE, type="loan")),
            "type 'loan'",
        ),
        (
            _scenario("visa_qvsdc_plastic", TapSpec("1.00", SOURCE, amount_other="0.50")),
            "amount_other is for type cashback only",
        ),
    ],
    ids=[
        "profile",
        "config",
        "override",
        "cdcvm-plastic",
        "decimals",
        "sign",
        "currency",
        "type",
        "other",
    ],
)
def test_a_scenario_that_cannot_run_errors_with_one_line(scenario: Scenario, message: str) -> None:
    result = run_scenario(scenario)
    assert result.verdict == "errored"
    assert result.error is not None and message in result.error, result.error
    assert "\n" not in result.error and "Traceback" not in result.error


def test_an_unexpected_exception_is_named_by_its_type() -> None:
    def broken(
        expect: Expectation, result: TransactionResult, trace: Trace, source: Source
    ) -> list[Check]:
        raise RuntimeError("the checker broke")

    result = run_scenario(_scenario(), check=broken)
    assert result.error == "tap 1: RuntimeError: the checker broke"


# --- the environment a scenario describes ---------------------------------------------------------


def test_deep_merge_merges_mappings_and_applications_by_position_and_replaces_the_rest() -> None:
    base: dict[str, Any] = {
        "name": "card",
        "applications": [{"aid": "A1", "limits": {"cvm": 1, "floor": 2}}, {"aid": "A2"}],
        "records": [1, 2, 3],
        "aids": [{"aid": "X"}],
    }
    overrides: dict[str, Any] = {
        "applications": [{"limits": {"cvm": 9}}],
        "records": [4],
        "aids": [{}, {"aid": "Y"}],
        "new": {"k": "v"},
    }
    merged = deep_merge(base, overrides)
    assert merged == {
        "name": "card",
        "applications": [{"aid": "A1", "limits": {"cvm": 9, "floor": 2}}, {"aid": "A2"}],
        "records": [4],
        "aids": [{"aid": "X"}, {"aid": "Y"}],
        "new": {"k": "v"},
    }
    assert base["applications"][0]["limits"] == {"cvm": 1, "floor": 2}  # not changed
    merged["new"]["k"] = "changed"
    assert overrides["new"] == {"k": "v"}


def test_card_and_terminal_overrides_change_the_checked_profile_and_configuration(
    tmp_path: Path,
) -> None:
    profile = load_card(CardSpec("visa_qvsdc_plastic", {"applications": [{"limits": {"cvm": 7}}]}))
    assert profile.applications[0].limits.cvm == 7
    config = load_terminal(TerminalSpec("default", {"retaps": 3, "aids": [{"floor_limit": 99}]}))
    assert (config.retaps, config.aids[0].floor_limit) == (3, 99)
    assert config.aids[1].floor_limit == load_terminal(TerminalSpec()).aids[1].floor_limit
    (tmp_path / "configs").mkdir()
    text = (Path(__file__).parents[2] / "terminal/configs/default.yaml").read_text()
    (tmp_path / "configs/mine.yaml").write_text(text.replace("name: default", "name: mine"))
    spec = TerminalSpec("configs/mine.yaml", {"retaps": 2})
    assert load_terminal(spec, tmp_path).name == "mine"  # relative to the scenario's folder
    with pytest.raises(ConfigError, match=r"configs/default\.yaml: retaps"):
        load_terminal(TerminalSpec("default", {"retaps": "many"}))


def test_an_hce_profile_with_overrides_is_certified_and_passes_oda() -> None:
    """The token server personalises only its shipped profiles; a changed one is
    certified with the server's issuer key directly, so ODA still passes."""
    card = CardSpec("mastercard_mchip_hce", {"applications": [{"label": "MY CARD"}]})
    result = run_scenario(
        _scenario(card, _tap(outcome="Approved", oda="CDA passed", host_reason="approved"))
    )
    assert result.verdict == "passed", [c.actual for t in result.taps for c in t.checks]
    assert "MY CARD" in result.taps[0].report


def test_the_server_state_before_the_first_tap() -> None:
    above_cvm_limit = "40.00"

    def outcome(card: str, state: ServerState, *amounts: str) -> list[tuple[str, str]]:
        taps = [_tap(amount, outcome="anything") for amount in amounts]
        found = run_scenario(_scenario(card, *taps, server=state))
        assert found.error is None, found.error
        return [(t.checks[0].actual, t.report) for t in found.taps]

    [(actual, report)] = outcome("visa_qvsdc_hce", ServerState(cdcvm=True), above_cvm_limit)
    assert actual.startswith("Approved") and "Confirmation Code Verified" in report
    [(actual, _)] = outcome("visa_qvsdc_hce", ServerState(token="suspended"), "1.00")
    assert actual == "Declined (host declined: suspended_token)"
    [(actual, _)] = outcome("visa_qvsdc_plastic", ServerState(token="suspended"), "1.00")
    assert actual == "Declined (host declined: suspended_token)"
    first, second = outcome("mastercard_mchip_hce", ServerState(keys=1, replenish=False), "1", "2")
    assert first[0].startswith("Approved") and second[0].startswith("End Application")
    first, second = outcome("mastercard_mchip_hce", ServerState(keys=1), "1", "2")
    assert first[0].startswith("Approved") and second[0].startswith("Approved")


def test_the_http_host_mode_serves_the_token_server_over_https() -> None:
    result = run_scenario(
        _scenario("visa_qvsdc_plastic", _tap(host_decision="approved"), host="http")
    )
    assert result.verdict == "passed"


# --- many scenarios -------------------------------------------------------------------------------


def test_a_result_with_its_traces_pickles() -> None:
    result = run_scenario(_scenario())
    again = pickle.loads(pickle.dumps(result))
    assert again.taps[0].trace == result.taps[0].trace
    assert again.taps[0].checks == result.taps[0].checks
    assert again.scenario == result.scenario


def test_run_on_two_workers_gives_the_same_verdicts_in_the_same_order() -> None:
    scenarios = [
        _scenario("visa_qvsdc_plastic", _tap(outcome="Approved"), id="ok"),
        _scenario("visa_qvsdc_plastic", _tap(outcome="Declined"), id="bad-check"),
        _scenario("no_such_card", id="no-card"),
        _scenario("mastercard_mchip_hce", _tap(outcome="Approved"), id="hce"),
    ]
    seen: list[ScenarioResult] = []
    serial = run(scenarios)
    parallel = run(scenarios, jobs=2, progress=seen.append)
    verdicts = [(r.scenario.id, r.verdict) for r in serial]
    assert verdicts == [
        ("ok", "passed"),
        ("bad-check", "failed"),
        ("no-card", "errored"),
        ("hce", "passed"),
    ]
    assert [(r.scenario.id, r.verdict) for r in parallel] == verdicts
    assert sorted(r.scenario.id for r in seen) == sorted(s.id for s in scenarios)
    assert apdu_names(parallel[0].taps[0].trace) == apdu_names(serial[0].taps[0].trace)


def test_run_calls_progress_in_order_on_one_worker_and_refuses_no_workers() -> None:
    seen: list[str] = []
    unknown = [_scenario("no_such_card", id="x"), _scenario("no_such_card", id="y")]
    run(unknown, progress=lambda result: seen.append(result.scenario.id))
    assert seen == ["x", "y"]
    assert run([]) == []
    with pytest.raises(ValueError, match="jobs must be a whole number >= 1"):
        run([], jobs=0)


# --- -k -------------------------------------------------------------------------------------------

SELECTABLE = [
    _scenario(id="k3-online", title="Kernel 3 online", tags=("kernel3", "online")),
    _scenario(id="k2-tear", title="Kernel 2 torn GENERATE AC", tags=("kernel2", "tear")),
    _scenario(id="k3-tear[profile=visa]", title="Kernel 3 tear", tags=("kernel3", "tear")),
    _scenario(id="host-down", title="The host is down", tags=("host",)),
]


@pytest.mark.parametrize(
    ("expression", "chosen"),
    [
        ("kernel3", ["k3-online", "k3-tear[profile=visa]"]),
        ("TEAR", ["k2-tear", "k3-tear[profile=visa]"]),  # case is ignored
        ("kernel3 and not tear", ["k3-online"]),
        ("kernel2 or host", ["k2-tear", "host-down"]),
        ("not (kernel2 or kernel3)", ["host-down"]),
        ("(kernel3 or kernel2) and tear and not k2", ["k3-tear[profile=visa]"]),
        ("profile=visa", ["k3-tear[profile=visa]"]),  # ids with matrix suffixes
        ("torn", ["k2-tear"]),  # the title
        ("not not host", ["host-down"]),
        ("", [s.id for s in SELECTABLE]),
        ("nothing", []),
    ],
)
def test_select_is_pytests_k(expression: str, chosen: list[str]) -> None:
    assert [s.id for s in select(SELECTABLE, expression)] == chosen


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("kernel3 and", "expected a word, 'not' or '\\(' at the end"),
        ("(kernel3", "expected '\\)'"),
        ("kernel3 tear", "column 9: unexpected 'tear'"),
        ("or tear", "column 1: expected a word"),
        ("kernel3)", "unexpected '\\)'"),
    ],
)
def test_select_refuses_what_does_not_parse(expression: str, problem: str) -> None:
    with pytest.raises(SelectError, match=problem):
        select(SELECTABLE, expression)


def test_the_runner_module_exports_its_api() -> None:
    assert {"run", "run_scenario", "select"} <= set(runner.__all__)


def _repeated(times: int, **expect: Any) -> TapSpec:
    return TapSpec("12.34", Source(SOURCE.file, 10), expect=Expectation(**expect), repeat=times)


def test_a_repeated_tap_is_made_that_many_times_and_keep_failures_keeps_none_that_passed() -> None:
    scenario = _scenario("visa_qvsdc_plastic", _repeated(3, outcome="Approved"), _tap(line=20))
    every = run_scenario(scenario)
    assert every.verdict == "passed" and every.taps_made == 4
    assert [(t.index, t.spec) for t in every.taps] == [(0, 0), (1, 0), (2, 0), (3, 1)]
    assert all(t.trace.events for t in every.taps)
    only = run_scenario(scenario, keep="failures")
    assert (only.verdict, only.taps_made, only.taps) == ("passed", 4, [])


def test_keep_failures_keeps_each_failing_repetition_and_the_report_names_its_spec() -> None:
    from scenarios.reports import failure_text  # noqa: PLC0415

    scenario = _scenario("visa_qvsdc_plastic", _tap(line=8), _repeated(2, outcome="Declined"))
    result = run_scenario(scenario, keep="failures")
    assert result.verdict == "failed" and result.taps_made == 3
    assert [(t.index, t.spec) for t in result.taps] == [(1, 1), (2, 1)]
    assert all("Approved" in t.report for t in result.taps)  # what the terminal said
    text = failure_text(result)
    assert "tap 2 of 3" in text and "tap 3 of 3" in text and "packs/runner.yaml:10" in text


def test_a_tap_whose_check_raises_keeps_its_report_even_when_only_failures_are_kept() -> None:
    def broken_check(*_: object) -> list[Check]:
        raise RuntimeError("the check broke")

    scenario = _scenario("visa_qvsdc_plastic", _tap(line=8))
    result = run_scenario(scenario, check=broken_check, keep="failures")
    assert result.verdict == "errored" and "the check broke" in (result.error or "")
    (tap,) = result.taps
    assert "the check broke" in (tap.error or "") and "Approved" in tap.report


def test_each_environment_starts_with_an_empty_store_of_its_own() -> None:
    def authorisations(env: TapEnvironment) -> int:
        with sqlite3.connect(env.directory / "store.sqlite") as db:
            return int(db.execute("SELECT count(*) FROM authorisations").fetchone()[0])

    with (
        TapEnvironment("visa_qvsdc_plastic") as first,
        TapEnvironment("visa_qvsdc_plastic") as second,
    ):
        assert first.tap(1234)[0].approved and first.tap(1234)[0].approved
        assert (authorisations(first), authorisations(second)) == (2, 0)
        assert second.tap(1234)[0].approved and authorisations(second) == 1


def test_the_environment_keeps_only_its_last_tap() -> None:
    with TapEnvironment("visa_qvsdc_plastic") as env:
        assert (env.last, env.taps) == (None, 0)
        first, _ = env.tap(100)
        second, _ = env.tap(200)
        assert env.taps == 2 and env.last is second and second is not first


def test_a_throw_away_environment_goes_to_emvtap_scratch_or_ram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scenarios import tap  # noqa: PLC0415

    monkeypatch.setenv(tap.SCRATCH_ENV, str(tmp_path))
    with TapEnvironment("visa_qvsdc_plastic") as env:
        assert env.directory.parent == tmp_path and (env.directory / "store.sqlite").is_file()
    assert not env.directory.exists()
    monkeypatch.delenv(tap.SCRATCH_ENV)
    monkeypatch.setattr(tap, "RAM_FOLDER", tmp_path / "shm")
    assert tap.scratch_root() == Path(tap.tempfile.gettempdir())
    (tmp_path / "shm").mkdir()
    assert tap.scratch_root() == tmp_path / "shm"


def test_a_profile_and_a_configuration_are_checked_once_per_text(tmp_path: Path) -> None:
    profile = tmp_path / "card.yaml"
    shipped = load_card(CardSpec("visa_qvsdc_plastic")).path
    profile.write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    first = load_card(CardSpec(str(profile)))
    assert load_card(CardSpec(str(profile))) is first
    profile.write_text(
        shipped.read_text(encoding="utf-8").replace("name: visa_qvsdc_plastic", "name: changed"),
        encoding="utf-8",
    )
    assert load_card(CardSpec(str(profile))).name == "changed"
    assert load_terminal(TerminalSpec()) is load_terminal(TerminalSpec())


@pytest.mark.parametrize(
    ("count", "jobs", "size"), [(73, 2, 4), (202, 2, 4), (10, 2, 1), (1, 4, 1)]
)
def test_workers_take_scenarios_in_batches_that_leave_each_several(
    count: int, jobs: int, size: int
) -> None:
    items = [(n, _scenario(id=f"s{n}")) for n in range(count)]
    batches = runner._batches(items, jobs)
    assert [item for batch in batches for item in batch] == items
    assert {len(batch) for batch in batches[:-1]} <= {size} and 0 < len(batches[-1]) <= size


def test_a_worker_that_dies_errors_its_scenarios_and_the_run_ends() -> None:
    scenarios = [_scenario(id=f"s{n}") for n in range(5)]
    die = partial(os._exit, 3)  # opening the HSM ends the worker, as a crash would
    results = run(scenarios, jobs=2, hsm=die)  # type: ignore[arg-type]
    assert [r.scenario.id for r in results] == [f"s{n}" for n in range(5)]
    assert all(r.verdict == "errored" for r in results)
    assert all("its worker process failed" in (r.error or "") for r in results)


def test_workers_see_the_environment_and_folder_of_the_run_not_of_their_forkserver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenarios = [_scenario(id="one"), _scenario(id="two")]
    assert [r.verdict for r in run(scenarios, jobs=2)] == ["passed", "passed"]
    not_a_folder = tmp_path / "scratch"
    not_a_folder.write_text("a file", encoding="utf-8")
    monkeypatch.setenv("EMVTAP_SCRATCH", str(not_a_folder))
    results = run(scenarios, jobs=2)
    assert [r.verdict for r in results] == ["errored", "errored"]
    assert all(str(not_a_folder) in (r.error or "") for r in results)


def test_workers_fork_from_a_forkserver_that_imported_the_cli_for_them() -> None:
    context = runner._worker_context()
    assert context.get_start_method() == "forkserver"
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        asked = "{name: name in __import__('sys').modules for name in ['scenarios.cli']}"
        assert pool.submit(eval, asked).result() == {"scenarios.cli": True}


@pytest.mark.parametrize(
    ("profile", "schemes"),
    [
        ("mastercard_mchip_hce", {"mastercard"}),
        ("visa_qvsdc_hce", {"visa"}),
        ("visa_qvsdc_plastic", set()),
    ],
)
def test_the_environments_token_server_certifies_an_hce_cards_scheme_only(
    profile: str, schemes: set[str]
) -> None:
    with TapEnvironment(profile) as env:
        assert env.service.config.token_bins.keys() == schemes
        assert len(env._issuer_certificates) == len(schemes)
        assert env.tap(1234)[0].approved
