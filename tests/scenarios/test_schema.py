"""scenarios/schema/scenario.schema.json: a valid draft 2020-12 schema whose enums are the
code's own values (so they cannot drift), that accepts every shipped scenario and the
doc's worked example, and rejects broken documents at the right place."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

from emv.apdu import CryptogramType
from emv.bitfields import TVR
from hce.server.authorisation import Reason
from scenarios.loader import load_file, load_paths, schema
from scenarios.model import FAULT_KINDS, HostMode, ServerState
from terminal.kernels.mastercard import MAG_STRIPE, MCHIP, Kernel2
from terminal.kernels.visa import Kernel3
from terminal.oda import Method, Result
from terminal.outcome import Cvm, Message, Status

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "scenarios" / "schema" / "scenario.schema.json"
PACKS = ROOT / "scenarios" / "packs"
PACK_FILES = sorted(
    path
    for path in PACKS.rglob("*")
    if path.suffix in (".yaml", ".yml") and not path.name.startswith("_")
)


def defs(name: str) -> dict[str, Any]:
    found: dict[str, Any] = schema()["$defs"][name]
    return found


def expect_property(name: str) -> dict[str, Any]:
    found: dict[str, Any] = defs("expect")["properties"][name]
    return found


def validator() -> Any:
    return Draft202012Validator(schema())


def worked_example() -> dict[str, Any]:
    text = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    found = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert found is not None
    document: dict[str, Any] = yaml.safe_load(found.group(1))
    return document


def test_the_schema_is_a_valid_draft_2020_12_schema_with_descriptions() -> None:
    document = schema()
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)
    assert all("description" in definition for definition in document["$defs"].values())
    assert all("description" in prop for prop in defs("expect")["properties"].values())


def test_the_packaged_schema_is_the_file_in_the_source_tree() -> None:
    assert schema() == json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


# --- the enums are the code's values ----------------------------------------------------


def test_outcome_statuses_are_the_terminals() -> None:
    assert expect_property("outcome")["enum"] == [status.value for status in Status]


def test_cvms_are_the_terminals() -> None:
    assert expect_property("cvm")["enum"] == [cvm.value for cvm in Cvm]


def test_kernels_are_the_kernels_names_and_none() -> None:
    assert set(expect_property("kernel")["enum"]) == {Kernel2().name, Kernel3().name, "none"}


def test_paths_are_the_kernels_paths_and_none() -> None:
    assert set(expect_property("path")["enum"]) == {"qVSDC", MCHIP, MAG_STRIPE, "none"}


def test_cryptogram_types_are_the_generate_ac_types_and_none() -> None:
    assert set(expect_property("cryptogram")["enum"]) == {kind.name for kind in CryptogramType} | {
        "none"
    }


def test_oda_results_are_every_method_and_result_or_not_performed() -> None:
    methods = [method for method in get_args(Method) if method != "none"]
    expected = {f"{method} {result}" for method in methods for result in get_args(Result)}
    assert set(expect_property("oda")["enum"]) == expected | {"not performed"}


def test_host_decisions_and_reasons_are_the_token_servers() -> None:
    host = expect_property("host")["properties"]
    assert host["decision"]["enum"] == ["approved", "declined", "none"]
    assert host["reason"]["enum"] == [*get_args(Reason), "none"]


def test_tvr_names_are_the_tvr_field_names() -> None:
    names = [item.name for item in fields(TVR) if item.name != "rfu"]
    assert defs("tvr_name")["enum"] == names


def test_ui_texts_are_the_message_texts() -> None:
    assert expect_property("ui")["items"]["enum"] == [message.text for message in Message]


def test_fault_kinds_are_the_models() -> None:
    assert list(defs("fault")["properties"]) == list(FAULT_KINDS)


def test_host_modes_and_token_states_are_the_models() -> None:
    assert schema()["properties"]["host"]["enum"] == list(get_args(HostMode))
    token = defs("server")["properties"]["token"]["enum"]
    assert token == list(get_args(get_type_hints(ServerState)["token"]))


# --- documents --------------------------------------------------------------------------


def test_the_worked_example_of_the_doc_is_valid() -> None:
    assert list(validator().iter_errors(worked_example())) == []


@pytest.mark.parametrize("path", PACK_FILES, ids=lambda path: str(path.relative_to(PACKS)))
def test_every_shipped_scenario_file_loads_through_the_schema(path: Path) -> None:
    assert load_file(path)


@pytest.mark.skipif(not PACK_FILES, reason="no scenario packs yet")
def test_the_shipped_packs_load_together_with_unique_ids() -> None:
    scenarios = load_paths([PACKS])
    assert len({scenario.id for scenario in scenarios}) == len(scenarios)


def broken(change: str, value: Any) -> dict[str, Any]:
    """The worked example with one value set at a dotted path (list indexes as numbers)."""
    document = copy.deepcopy(worked_example())
    *parents, last = [int(step) if step.isdigit() else step for step in change.split(".")]
    target: Any = document
    for step in parents:
        target = target[step]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return document


DELETE = object()


@pytest.mark.parametrize(
    ("change", "value", "path", "validator_name", "text"),
    [
        ("taps.0.expect.outcome", "Aproved", "taps.0.expect.outcome", "enum", "'Aproved'"),
        ("taps.0.expect.cvm", "Signature", "taps.0.expect.cvm", "enum", "'Signature'"),
        ("taps.0.expect.online", "yes", "taps.0.expect.online", "type", "'boolean'"),
        ("taps.0.expect.tvr.set", ["dda_faild"], "taps.0.expect.tvr.set.0", "enum", "dda_faild"),
        ("taps.0.expect.tags", {"9G27": "80"}, "taps.0.expect.tags", "pattern", "9G27"),
        ("taps.0.expect.tags", {"9F27": "8"}, "taps.0.expect.tags.9F27", "pattern", "'8'"),
        ("taps.0.expect.ui", ["Approved!"], "taps.0.expect.ui.0", "enum", "Approved!"),
        ("taps.0.expect.host", {"decision": "ok"}, "taps.0.expect.host.decision", "enum", "ok"),
        ("taps.0.expect.colour", "red", "taps.0.expect", "additionalProperties", "colour"),
        ("taps.0.amount", "12,34", "taps.0.amount", "pattern", "12,34"),
        ("taps.0.type", "sale", "taps.0.type", "enum", "sale"),
        ("taps.0.faults", [{"teer": {}}], "taps.0.faults.0", "additionalProperties", "teer"),
        ("taps.0.faults", [{"tear": {}}], "taps.0.faults.0.tear", "minProperties", "{}"),
        (
            "taps.0.faults",
            [{"corrupt": {"command": "GPO", "sw": "6985", "tlv": "drop", "tag": "90"}}],
            "taps.0.faults.0.corrupt",
            "oneOf",
            "valid under each",
        ),
        ("taps.0.faults", [{"replay": "twice"}], "taps.0.faults.0.replay", "enum", "twice"),
        ("id", "K3 Online", "id", "pattern", "K3 Online"),
        ("host", "remote", "host", "enum", "remote"),
        ("requirement", DELETE, "", "required", "'requirement'"),
        ("taps", [], "taps", "minItems", "[]"),
    ],
)
def test_a_broken_document_is_rejected_at_its_path(
    change: str, value: Any, path: str, validator_name: str, text: str
) -> None:
    errors = list(validator().iter_errors(broken(change, value)))
    assert len(errors) == 1
    (error,) = errors
    assert ".".join(str(step) for step in error.absolute_path) == path
    assert error.validator == validator_name
    assert text in error.message
