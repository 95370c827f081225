"""scenarios.loader: YAML scenario files into Scenario objects (docs/scenarios.md).

Good files (the worked example of the doc, defaults, every field), includes, matrix
expansion and its ids, unique ids, folders; and every kind of broken document, each
error naming the right file, line and field, as "file:line: field: problem".
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from scenarios.loader import LoadError, load_file, load_paths
from scenarios.model import CardSpec, Expectation, Fault, ServerState, Source, TerminalSpec

ROOT = Path(__file__).resolve().parents[2]
HEAD = """\
id: s
title: a scenario
requirement: Book B
card: visa_qvsdc_plastic
"""
MINIMAL = HEAD + 'taps:\n  - amount: "1.00"\n'


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def block(text: str) -> str:
    return textwrap.dedent(text)


def load_error(path: Path) -> LoadError:
    with pytest.raises(LoadError) as caught:
        load_paths([path])
    return caught.value


def doc_example() -> str:
    text = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    found = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert found is not None
    return found.group(1)


# --- good files -------------------------------------------------------------------------


def test_the_worked_example_of_the_doc_loads_with_every_expectation(tmp_path: Path) -> None:
    (scenario,) = load_file(write(tmp_path, "k3.yaml", doc_example()))
    assert scenario.id == "k3-online-above-floor-limit"
    assert scenario.card == CardSpec("visa_qvsdc_plastic")
    assert scenario.terminal == TerminalSpec("default")
    assert scenario.host == "inprocess"
    assert scenario.tags == ("kernel3", "online")
    (tap,) = scenario.taps
    assert (tap.amount, tap.currency, tap.type) == ("12.34", "GBP", "purchase")
    assert tap.expect == Expectation(
        outcome="Approved",
        kernel="C-3",
        path="qVSDC",
        cvm="No CVM",
        oda="fDDA passed",
        cryptogram="ARQC",
        online=True,
        host_decision="approved",
        host_reason="approved",
        tvr_set=(),
        tvr_clear=("dda_failed",),
        tags={0x9F27: b"\x80"},
        apdus=(
            "SELECT 2PAY.SYS.DDF01",
            "SELECT A0000000031010",
            "GET PROCESSING OPTIONS",
            "*",
        ),
        ui=("Present Card", "Card Read OK", "Authorising Please Wait", "Approved"),
    )


def test_a_minimal_scenario_takes_the_documented_defaults(tmp_path: Path) -> None:
    (scenario,) = load_file(write(tmp_path, "s.yaml", MINIMAL))
    assert scenario.terminal == TerminalSpec("default", {})
    assert scenario.host == "inprocess"
    assert scenario.server == ServerState(keys=3, cdcvm=False, token="active", replenish=True)
    assert scenario.tags == ()
    (tap,) = scenario.taps
    assert (tap.amount_other, tap.currency, tap.type, tap.faults) == ("0", None, "purchase", ())
    assert tap.expect == Expectation()


def test_amounts_keep_the_digits_as_written_whether_quoted_or_not(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        HEAD
        + block(
            """\
        taps:
          - {amount: 12.30, amount_other: 0.10, currency: 826}
          - {amount: 5}
          - {amount: "0.1"}
        """
        ),
    )
    taps = load_file(path)[0].taps
    assert [(tap.amount, tap.amount_other) for tap in taps] == [
        ("12.30", "0.10"),
        ("5", "0"),
        ("0.1", "0"),
    ]
    assert taps[0].currency == "826"


def test_card_terminal_server_and_host_read_their_mapping_forms(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        """\
        id: s
        title: t
        requirement: r
        card: {profile: visa_qvsdc_hce, overrides: {applications: [{limits: {cvm: 1000}}]}}
        terminal: {config: offline_only, overrides: {aids: [{floor_limit: 0}]}}
        host: http
        server: {keys: 1, cdcvm: true, token: suspended, replenish: false}
        taps: [{amount: 1}]
        """,
    )
    (scenario,) = load_file(path)
    assert scenario.card == CardSpec(
        "visa_qvsdc_hce", {"applications": [{"limits": {"cvm": 1000}}]}
    )
    assert scenario.terminal == TerminalSpec("offline_only", {"aids": [{"floor_limit": 0}]})
    assert scenario.host == "http"
    assert scenario.server == ServerState(keys=1, cdcvm=True, token="suspended", replenish=False)


def test_card_and_terminal_files_are_relative_to_the_yaml_that_names_them(tmp_path: Path) -> None:
    write(tmp_path, "pack/cards/my.yaml", "name: my\n")
    write(tmp_path, "shared/term.yaml", "name: t\n")
    write(tmp_path, "shared/_terminal.yaml", "terminal: term.yaml\n")
    path = write(
        tmp_path,
        "pack/s.yaml",
        """\
        include: ../shared/_terminal.yaml
        id: s
        title: t
        requirement: r
        card: cards/my.yaml
        taps: [{amount: 1}]
        """,
    )
    (scenario,) = load_file(path)
    assert Path(scenario.card.profile) == tmp_path / "pack" / "cards" / "my.yaml"
    assert Path(scenario.terminal.config) == tmp_path / "shared" / "term.yaml"


def test_every_part_keeps_the_line_it_was_written_on(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        HEAD
        + block(
            """\
        taps:
          - amount: 1
            faults:
              - tear: {after: GENERATE AC}
            expect:
              outcome: Approved
              host: {decision: approved}
              tvr:
                set: [floor_limit_exceeded]
              tags: {"9F27": "80"}
        """
        ),
    )
    (scenario,) = load_file(path)
    file = str(path)
    assert scenario.source == Source(file, 1)
    (tap,) = scenario.taps
    assert tap.source == Source(file, 6)
    assert tap.faults[0].source == Source(file, 8)
    lines = {name: where.line for name, where in tap.expect.sources.items()}
    assert lines == {"outcome": 10, "host.decision": 11, "tvr": 13, "tags.9F27": 14}


def test_faults_keep_their_parameters_and_one_word_faults_their_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        HEAD
        + block(
            """\
        taps:
          - amount: 1
            faults:
              - tear: {after_apdus: 3}
              - corrupt: {command: READ RECORD, tag: 90, bit: 7}
              - corrupt: {command: GENERATE AC, byte: 0, xor: 01}
              - corrupt: {command: GET PROCESSING OPTIONS, sw: 6985}
              - corrupt: {command: READ RECORD, tlv: drop, tag: 9f46}
              - flip_signature: {tag: 9F4B, bit: 0}
              - delay: {command: GENERATE AC, ms: 500}
              - mute: {at: GENERATE AC}
              - second_tap: {tear_after: GET PROCESSING OPTIONS}
              - replay: previous
              - keys: expired
              - host: down
              - ca_key: wrong
        """
        ),
    )
    faults = load_file(path)[0].taps[0].faults
    assert [(fault.kind, dict(fault.params)) for fault in faults] == [
        ("tear", {"after_apdus": 3}),
        ("corrupt", {"command": "READ RECORD", "tag": "90", "bit": 7}),
        ("corrupt", {"command": "GENERATE AC", "byte": 0, "xor": "01"}),
        ("corrupt", {"command": "GET PROCESSING OPTIONS", "sw": "6985"}),
        ("corrupt", {"command": "READ RECORD", "tlv": "drop", "tag": "9F46"}),
        ("flip_signature", {"tag": "9F4B", "bit": 0}),
        ("delay", {"command": "GENERATE AC", "ms": 500}),
        ("mute", {"at": "GENERATE AC"}),
        ("second_tap", {"tear_after": "GET PROCESSING OPTIONS"}),
        ("replay", {"value": "previous"}),
        ("keys", {"value": "expired"}),
        ("host", {"value": "down"}),
        ("ca_key", {"value": "wrong"}),
    ]
    assert all(isinstance(fault, Fault) for fault in faults)


def test_expected_tags_are_keyed_by_int_tag_with_bytes_values_quoted_or_not(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        HEAD
        + block(
            """\
        taps:
          - amount: 1
            expect:
              tags: {"9F27": 80, 9f36: "00ff", 95: 0000008000, 82: "2000"}
        """
        ),
    )
    tags = load_file(path)[0].taps[0].expect.tags
    assert tags == {
        0x9F27: b"\x80",
        0x9F36: b"\x00\xff",
        0x95: bytes.fromhex("0000008000"),
        0x82: b"\x20\x00",
    }


def test_a_file_may_hold_several_documents(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", MINIMAL + "---\n" + MINIMAL.replace("id: s", "id: t"))
    assert [scenario.id for scenario in load_file(path)] == ["s", "t"]
    assert [scenario.source.line for scenario in load_file(path)] == [1, 8]


# --- include ----------------------------------------------------------------------------


def test_includes_deep_merge_under_the_document_which_wins(tmp_path: Path) -> None:
    write(
        tmp_path,
        "_base.yaml",
        """\
        title: from the fragment
        requirement: Book B
        tags: [base, fragment]
        card: {profile: visa_qvsdc_plastic, overrides: {pan: "1", psn: "01"}}
        server: {keys: 1, cdcvm: true}
        """,
    )
    path = write(
        tmp_path,
        "s.yaml",
        """\
        include: _base.yaml
        id: s
        tags: [mine]
        card: {overrides: {pan: "2"}}
        server: {keys: 2}
        taps: [{amount: 1}]
        """,
    )
    (scenario,) = load_file(path)
    assert scenario.title == "from the fragment"
    assert scenario.tags == ("mine",)  # lists are replaced
    assert scenario.card == CardSpec("visa_qvsdc_plastic", {"pan": "2", "psn": "01"})
    assert scenario.server == ServerState(keys=2, cdcvm=True)


def test_includes_merge_in_order_and_nest_relative_to_their_own_file(tmp_path: Path) -> None:
    write(tmp_path, "common/_card.yaml", "card: visa_qvsdc_plastic\ntitle: card\n")
    write(tmp_path, "common/_k3.yaml", "include: _card.yaml\nrequirement: Book C-3\ntitle: k3\n")
    write(tmp_path, "_later.yaml", "title: later\n")
    path = write(
        tmp_path,
        "s.yaml",
        """\
        include: [common/_k3.yaml, _later.yaml]
        id: s
        taps: [{amount: 1}]
        """,
    )
    (scenario,) = load_file(path)
    assert (scenario.title, scenario.requirement, scenario.card.profile) == (
        "later",
        "Book C-3",
        "visa_qvsdc_plastic",
    )


def test_an_error_in_an_included_value_names_the_fragment_and_its_line(tmp_path: Path) -> None:
    write(tmp_path, "_expect.yaml", "taps:\n  - amount: 1\n    expect:\n      outcome: Aproved\n")
    path = write(tmp_path, "s.yaml", "include: _expect.yaml\n" + HEAD)
    error = load_error(path)
    assert (error.file, error.line, error.field) == (
        str(tmp_path / "_expect.yaml"),
        4,
        "taps[0].expect.outcome",
    )


def test_an_include_cycle_is_an_error_naming_the_cycle(tmp_path: Path) -> None:
    write(tmp_path, "_a.yaml", "include: _b.yaml\n")
    write(tmp_path, "_b.yaml", "title: t\ninclude: _a.yaml\n")
    path = write(tmp_path, "s.yaml", "include: _a.yaml\n" + MINIMAL)
    error = load_error(path)
    assert (error.file, error.line, error.field) == (str(tmp_path / "_b.yaml"), 2, "include")
    assert "include cycle" in error.problem
    assert error.problem.endswith(
        f"{tmp_path / '_a.yaml'} -> {tmp_path / '_b.yaml'} -> {tmp_path / '_a.yaml'}"
    )


def test_a_file_including_itself_is_a_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", MINIMAL + "include: s.yaml\n")
    error = load_error(path)
    assert (error.line, error.field) == (7, "include")
    assert "include cycle" in error.problem


def test_a_missing_include_names_the_including_line(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", MINIMAL + "include:\n  - _there.yaml\n  - _missing.yaml\n")
    write(tmp_path, "_there.yaml", "tags: [x]\n")
    error = load_error(path)
    assert (error.file, error.line, error.field) == (str(path), 9, "include[1]")
    assert error.problem == f"no such file: {tmp_path / '_missing.yaml'}"


def test_an_included_file_must_be_a_mapping(tmp_path: Path) -> None:
    write(tmp_path, "_list.yaml", "- 1\n")
    error = load_error(write(tmp_path, "s.yaml", "include: _list.yaml\n" + MINIMAL))
    assert (error.file, error.line, error.field) == (str(tmp_path / "_list.yaml"), 1, "document")


# --- matrix -----------------------------------------------------------------------------


def test_a_matrix_gives_one_scenario_per_combination_in_key_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        """\
        id: k3-floor
        title: ${card} for ${amount} ${currency}
        requirement: r
        card: ${card}
        matrix:
          card: [visa_qvsdc_plastic, visa_qvsdc_hce]
          amount: [1, 12.30]
          currency: [GBP]
        taps:
          - amount: ${amount}
            currency: ${currency}
        """,
    )
    scenarios = load_file(path)
    assert [scenario.id for scenario in scenarios] == [
        "k3-floor[card=visa_qvsdc_plastic,amount=1,currency=GBP]",
        "k3-floor[card=visa_qvsdc_plastic,amount=12.30,currency=GBP]",
        "k3-floor[card=visa_qvsdc_hce,amount=1,currency=GBP]",
        "k3-floor[card=visa_qvsdc_hce,amount=12.30,currency=GBP]",
    ]
    assert scenarios[1].title == "visa_qvsdc_plastic for 12.30 GBP"
    assert scenarios[1].card == CardSpec("visa_qvsdc_plastic")
    assert [scenario.taps[0].amount for scenario in scenarios] == ["1", "12.30", "1", "12.30"]
    assert {scenario.source for scenario in scenarios} == {Source(str(path), 1)}


def test_an_exact_matrix_reference_takes_the_values_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        HEAD
        + block(
            """\
        matrix:
          online: [true, false]
          server: [{keys: 0}]
        server: ${server}
        taps:
          - amount: 1
            expect: {online: "${online}", reason: "online=${online}"}
        """
        ),
    )
    scenarios = load_file(path)
    assert [scenario.taps[0].expect.online for scenario in scenarios] == [True, False]
    assert [scenario.taps[0].expect.reason for scenario in scenarios] == [
        "online=true",
        "online=false",
    ]
    assert scenarios[0].server == ServerState(keys=0)
    assert scenarios[0].id == 's[online=true,server={"keys":0}]'


def test_a_mapping_matrix_value_is_read_afresh_for_every_combination(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        HEAD
        + block(
            """\
            matrix:
              expect: [{tags: {9f27: 80}, outcome: Approved}]
              amount: [1, 2]
            taps:
              - {amount: "${amount}", expect: "${expect}"}
            """
        ),
    )
    scenarios = load_file(path)
    assert [scenario.taps[0].expect.tags for scenario in scenarios] == [{0x9F27: b"\x80"}] * 2
    assert [scenario.taps[0].amount for scenario in scenarios] == ["1", "2"]
    assert scenarios[0].taps[0].expect.sources["outcome"] == Source(str(path), 6)


def test_a_matrix_value_that_breaks_the_schema_names_the_line_and_combination(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        HEAD
        + block(
            """\
        matrix: {status: [Approved, Aproved]}
        taps:
          - amount: 1
            expect: {outcome: "${status}"}
        """
        ),
    )
    error = load_error(path)
    assert (error.line, error.field) == (8, "taps[0].expect.outcome")
    assert error.problem.startswith('"Aproved" is not one of: Approved, Declined')
    assert error.problem.endswith("(matrix combination [status=Aproved])")


@pytest.mark.parametrize(
    ("extra", "line", "problem"),
    [
        ("matrix: {a: [1]}\ntitle: ${b}\n", 7, "unknown ${b} (the matrix defines: a)"),
        ("title: x ${b} y\n", 6, "unknown ${b} (no matrix)"),
    ],
)
def test_an_unknown_matrix_name_is_an_error_naming_its_line(
    tmp_path: Path, extra: str, line: int, problem: str
) -> None:
    path = write(tmp_path, "s.yaml", MINIMAL.replace("title: a scenario\n", "") + extra)
    error = load_error(path)
    assert (error.line, error.field, error.problem) == (line, "title", problem)


# --- ids and folders --------------------------------------------------------------------


def test_a_duplicate_id_in_one_file_names_both_places(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", MINIMAL + "---\n" + MINIMAL)
    error = load_error(path)
    assert str(error) == f"{path}:8: id: duplicate id 's': also at {path}:1"


def test_a_duplicate_id_across_files_names_both_places(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", MINIMAL)
    second = write(tmp_path, "b/c.yaml", "# comment\n" + MINIMAL)
    with pytest.raises(LoadError) as caught:
        load_paths([tmp_path])
    assert str(caught.value) == f"{second}:2: id: duplicate id 's': also at {first}:1"


def test_a_folder_loads_its_yaml_files_recursively_sorted_without_fragments(
    tmp_path: Path,
) -> None:
    write(tmp_path, "z.yaml", MINIMAL.replace("id: s", "id: z"))
    write(tmp_path, "a/b.yml", MINIMAL.replace("id: s", "id: b"))
    write(tmp_path, "a/a.yaml", MINIMAL.replace("id: s", "id: a"))
    write(tmp_path, "a/_fragment.yaml", "title: not a scenario\n")
    write(tmp_path, "a/notes.txt", "not yaml\n")
    scenarios = load_paths([tmp_path, tmp_path / "z.yaml"])  # z reached twice: read once
    assert [scenario.id for scenario in scenarios] == ["a", "b", "z"]


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nowhere")
    assert str(error) == f"{tmp_path / 'nowhere'}: file: no such file or folder"


# --- broken documents -------------------------------------------------------------------

TAP = HEAD + "taps:\n  - amount: 1\n"  # the tap's keys go on line 7 and after


@pytest.mark.parametrize(
    ("text", "line", "field", "problem"),
    [
        pytest.param(
            HEAD + "taps: [\n  {amount: 1}\n",
            7,
            "YAML",
            "expected ',' or ']'",
            id="yaml-syntax",
        ),
        pytest.param(
            HEAD + "title: again\n" + "taps: [{amount: 1}]\n",
            5,
            "title",
            "duplicate key (also at line 2)",
            id="duplicate-key",
        ),
        pytest.param(
            TAP + "    amout: 2\n",
            7,
            "taps[0].amout",
            "unknown key (expected one of: amount, amount_other, currency, type, faults, "
            "expect, repeat)",
            id="unknown-key",
        ),
        pytest.param(
            HEAD + "colour: blue\ntaps: [{amount: 1}]\n",
            5,
            "colour",
            "unknown key (expected one of:",
            id="unknown-top-level-key",
        ),
        pytest.param(
            TAP + "    expect: {online: maybe}\n",
            7,
            "taps[0].expect.online",
            '"maybe" is text, expected true or false',
            id="wrong-type",
        ),
        pytest.param(
            HEAD + "taps: {amount: 1}\n",
            5,
            "taps",
            "is a mapping, expected a list",
            id="wrong-container",
        ),
        pytest.param(
            TAP + "    expect:\n      cvm: no cvm\n",
            8,
            "taps[0].expect.cvm",
            '"no cvm" is not one of: No CVM, Obtain Signature, Online PIN',
            id="bad-enum",
        ),
        pytest.param(
            TAP + "    expect:\n      tvr: {clear: [dda_faild]}\n",
            8,
            "taps[0].expect.tvr.clear[0]",
            '"dda_faild" is not an allowed value; did you mean dda_failed',
            id="bad-tvr-name",
        ),
        pytest.param(
            TAP + "    expect:\n      tags:\n        9G27: '80'\n",
            9,
            "taps[0].expect.tags.9G27",
            '"9G27" is not a tag in hex',
            id="bad-hex-tag",
        ),
        pytest.param(
            TAP + "    expect:\n      tags:\n        9F: '80'\n",
            9,
            "taps[0].expect.tags.9F",
            "not a well-formed tag: ",
            id="malformed-tag",
        ),
        pytest.param(
            TAP + "    expect:\n      tags:\n        9F27: 8\n",
            9,
            "taps[0].expect.tags.9F27",
            '"8" is not an even number of hex digits',
            id="odd-hex-value",
        ),
        pytest.param(
            TAP + "    expect:\n      tags: {9f27: '80', 9F27: '80'}\n",
            8,
            "taps[0].expect.tags.9F27",
            "the same tag as '9F27' (line 8)",
            id="same-tag-twice",
        ),
        pytest.param(
            TAP + "    expect:\n      tvr: {set: [cda_failed], clear: [cda_failed]}\n",
            8,
            "taps[0].expect.tvr",
            "cda_failed: both set and clear",
            id="tvr-set-and-clear",
        ),
        pytest.param(
            HEAD + "taps:\n  - currency: GBP\n",
            6,
            "taps[0].amount",
            "missing (required)",
            id="missing-required",
        ),
        pytest.param(
            HEAD + "taps: []\n",
            5,
            "taps",
            "must not be empty",
            id="no-taps",
        ),
        pytest.param(
            TAP + "    amount_other: 1,50\n",
            7,
            "taps[0].amount_other",
            '"1,50" is not a decimal amount',
            id="bad-amount",
        ),
        pytest.param(
            TAP + "    faults:\n      - teer: {after: GENERATE AC}\n",
            8,
            "taps[0].faults[0].teer",
            "unknown key (expected one of: tear, mute, corrupt, delay, flip_signature,",
            id="unknown-fault",
        ),
        pytest.param(
            TAP + "    faults:\n      - {tear: {after: GENERATE AC}, mute: {at: GPO}}\n",
            8,
            "taps[0].faults[0]",
            "a fault is a one-key mapping",
            id="two-faults-in-one",
        ),
        pytest.param(
            TAP + "    faults:\n      - corrupt: {command: READ RECORD, sw: 6985, xor: 01}\n",
            8,
            "taps[0].faults[0].corrupt",
            "xor needs byte",
            id="corrupt-xor-without-byte",
        ),
        pytest.param(
            TAP + "    faults:\n      - corrupt: {command: READ RECORD}\n",
            8,
            "taps[0].faults[0].corrupt",
            "give exactly one of: {tag, bit}, {byte, xor}, sw, {tlv, tag}",
            id="corrupt-without-change",
        ),
        pytest.param(
            TAP + "    faults:\n      - flip_signature: {tag: 9F10, bit: 1}\n",
            8,
            "taps[0].faults[0].flip_signature.tag",
            '"9F10" is not one of 9F4B, 90, 9F46',
            id="flip-signature-tag",
        ),
        pytest.param(
            TAP + "    faults:\n      - keys: lost\n",
            8,
            "taps[0].faults[0].keys",
            '"lost" is not one of: exhausted, expired',
            id="fault-value",
        ),
        pytest.param(
            MINIMAL.replace("id: s", "id: Big Id"),
            1,
            "id",
            '"Big Id" is not an id of lower-case letters',
            id="bad-id",
        ),
        pytest.param(
            MINIMAL.replace("card: visa_qvsdc_plastic", "card: 5"),
            4,
            "card",
            "a profile name, a profile file, or {profile, overrides}",
            id="card-wrong-type",
        ),
        pytest.param(
            MINIMAL.replace("card: visa_qvsdc_plastic", "card: {profil: visa_qvsdc_plastic}"),
            4,
            "card.profil",
            "unknown key (expected one of: profile, overrides)",
            id="card-unknown-key",
        ),
        pytest.param(
            MINIMAL.replace("card: visa_qvsdc_plastic", "card: visa_platinum"),
            4,
            "card",
            "no shipped card profile 'visa_platinum' (shipped: ",
            id="unknown-profile",
        ),
        pytest.param(
            MINIMAL.replace("card: visa_qvsdc_plastic", "card: cards/none.yaml"),
            4,
            "card",
            "no such card profile file: ",
            id="missing-profile-file",
        ),
        pytest.param(
            MINIMAL + "terminal: {config: kiosk}\n",
            7,
            "terminal.config",
            "no shipped terminal configuration 'kiosk'",
            id="unknown-terminal",
        ),
        pytest.param(
            MINIMAL + "matrix: {amount: []}\n",
            7,
            "matrix.amount",
            "must not be empty",
            id="empty-matrix-values",
        ),
        pytest.param("- id: s\n", 1, "document", "is a list, expected a mapping", id="a-list"),
        pytest.param(
            MINIMAL + "server: {keys: &k [*k]}\n",
            7,
            "server.keys[0]",
            "recursive alias",
            id="recursive-alias",
        ),
        pytest.param(
            MINIMAL + "tags: !!python/name:os.system ''\n",
            7,
            "tags",
            "could not determine a constructor for the tag",
            id="unsafe-tag",
        ),
    ],
)
def test_a_broken_document_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, problem: str
) -> None:
    path = write(tmp_path, "broken.yaml", text)
    error = load_error(path)
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert problem in error.problem
    assert str(error) == f"{path}:{line}: {field}: {error.problem}"


def test_the_first_error_in_the_file_is_the_one_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        TAP + "    expect: {cvm: none, outcome: Aproved}\n  - amount: x\n",
    )
    error = load_error(path)
    assert (error.line, error.field) == (7, "taps[0].expect.cvm")


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.yaml", "# nothing here\n")
    assert str(load_error(path)) == f"{path}: file: no YAML document in the file"


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("title: caf\xe9\n".encode("latin-1"))
    assert str(load_error(path)) == f"{path}: file: not UTF-8 text"


def test_load_error_reads_file_line_field_problem() -> None:
    assert str(LoadError("a.yaml", 3, "taps[0].amount", "bad")) == "a.yaml:3: taps[0].amount: bad"
    assert str(LoadError("a.yaml", None, "file", "gone")) == "a.yaml: file: gone"
