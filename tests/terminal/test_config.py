"""The terminal configuration loader: the shipped configurations load and mean what
their comments say, every field of a broken file is named in a ConfigError with the
file, CA keys come from the shipped test keys, a key file or nowhere, and runtime CA
keys replace configured ones with the same RID and index."""

from __future__ import annotations

import copy
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from emv.bitfields import TTQ
from emv.crypto.oda import CaKeyStore, CaPublicKey, OdaError
from terminal.config import (
    ConfigError,
    Kernel2Settings,
    Kernel3Settings,
    Tacs,
    default_config,
    load_config,
    parse_config,
    shipped_configs,
    with_ca_keys,
)
from terminal.entry import pre_process

VISA = bytes.fromhex("A0000000031010")
MASTERCARD = bytes.fromhex("A0000000041010")
VISA_RID = bytes.fromhex("A000000003")
DELETE = object()


def _default_document() -> dict[str, Any]:
    text = resources.files("terminal").joinpath("configs", "default.yaml").read_text("utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def _write(tmp_path: Path, document: Any, name: str = "terminal.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _test_key_lines() -> list[str]:
    text = resources.files("emv.crypto").joinpath("vectors", "oda", "test_capk.txt").read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


# --- the shipped configurations ---------------------------------------------------------


def test_shipped_configurations_are_listed_and_load_by_name() -> None:
    assert {"default", "offline_only"} <= set(shipped_configs())
    for name in shipped_configs():
        assert load_config(name).name == name


def test_default_config_is_an_attended_online_gbp_pos_with_visa_and_mastercard() -> None:
    config = default_config()
    assert config.name == "default"
    assert config.terminal_type == 0x22 and config.online_capable
    assert config.capabilities == bytes.fromhex("E0F8C8")
    assert config.country == config.currency == bytes.fromhex("0826")
    assert config.currency_exponent == 2
    visa, mastercard = config.aid(VISA), config.aid(MASTERCARD)
    assert visa is not None and visa.kernel_id == 3
    assert mastercard is not None and mastercard.kernel_id == 2
    assert visa.ttq is not None
    ttq = TTQ.from_bytes(visa.ttq)
    assert ttq.emv_mode_supported and not ttq.mag_stripe_mode_supported
    assert ttq.online_pin_supported and ttq.signature_supported
    assert ttq.oda_for_online_authorizations_supported and not ttq.offline_only_reader
    assert mastercard.ttq is None
    assert mastercard.tacs == Tacs(
        bytes.fromhex("F45084800C"), bytes.fromhex("0000000000"), bytes.fromhex("F45084800C")
    )
    assert visa.kernel3 == Kernel3Settings() and mastercard.kernel2 == Kernel2Settings()


def test_default_config_holds_the_scheme_test_ca_keys() -> None:
    keys = default_config().ca_keys
    assert len(keys) == len(_test_key_lines())
    assert keys.lookup(VISA_RID, 0x92).public_key.size == 1408 // 8


def test_default_config_sends_a_12_34_tap_online_and_asks_cvm_from_30_00() -> None:
    config = default_config()
    for aid in config.aids:
        assert pre_process(aid, 1234, 2).floor_limit_exceeded
        assert not pre_process(aid, 2999, 2).cvm_required_limit_exceeded
        assert pre_process(aid, 3000, 2).cvm_required_limit_exceeded
    visa = config.aid(VISA)
    assert visa is not None
    ttq = pre_process(visa, 1234, 2).ttq
    assert ttq is not None and TTQ.from_bytes(ttq).online_cryptogram_required


def test_offline_only_config_lets_an_amount_under_the_floor_limit_stay_offline() -> None:
    config = load_config("offline_only")
    assert not config.online_capable
    visa = config.aid(VISA)
    assert visa is not None
    indicators = pre_process(visa, 1234, 2)
    assert not indicators.floor_limit_exceeded
    assert indicators.ttq is not None
    ttq = TTQ.from_bytes(indicators.ttq)
    assert ttq.offline_only_reader and not ttq.online_cryptogram_required
    assert pre_process(visa, 0, 2).contactless_application_not_allowed


def test_a_configuration_loads_the_same_by_path_as_by_name(tmp_path: Path) -> None:
    path = _write(tmp_path, _default_document())
    by_path, by_text, by_name = load_config(path), load_config(str(path)), default_config()
    assert list(by_path.ca_keys) == list(by_text.ca_keys) == list(by_name.ca_keys)
    no_keys = CaKeyStore()
    assert (
        replace(by_path, ca_keys=no_keys)
        == replace(by_text, ca_keys=no_keys)
        == replace(by_name, ca_keys=no_keys)
    )


# --- broken files -----------------------------------------------------------------------

BROKEN: list[tuple[tuple[Any, ...], Any, str, str]] = [
    (("name",), DELETE, "name", "missing field"),
    (("name",), "", "name", "printable ASCII"),
    (("colour",), "blue", "colour", "unknown field"),
    (("terminal",), "22", "terminal", "must be a mapping"),
    (("terminal", "type"), "27", "terminal.type", "1-3 then 1-6"),
    (("terminal", "type"), 22, "terminal.type", "in quotes"),
    (("terminal", "type"), DELETE, "terminal.type", "missing field"),
    (("terminal", "capabilities"), "E0F8", "terminal.capabilities", "3 bytes, got 2"),
    (("terminal", "capabilities"), "E0F8ZZ", "terminal.capabilities", "not hex"),
    (("terminal", "additional_capabilities"), "6000", "terminal.additional_capabilities", "5"),
    (("terminal", "country"), "826", "terminal.country", "4 digits"),
    (("terminal", "country"), "0999", "terminal.country", "ISO 3166"),
    (("terminal", "currency"), "0001", "terminal.currency", "ISO 4217"),
    (("terminal", "currency_exponent"), 3, "terminal.currency_exponent", "GBP has 2"),
    (("terminal", "merchant_category"), "59", "terminal.merchant_category", "4 digits"),
    (("terminal", "merchant_id"), "SHORT", "terminal.merchant_id", "15 printable"),
    (("terminal", "terminal_id"), "TOO LONG ID", "terminal.terminal_id", "8 printable"),
    (("terminal", "merchant_name"), "CAFÉ", "terminal.merchant_name", "printable ASCII"),
    (("terminal", "colour"), "blue", "terminal.colour", "unknown field"),
    (("retaps",), -1, "retaps", "0 to 10"),
    (("retaps",), True, "retaps", "whole number"),
    (("ca_keys",), DELETE, "ca_keys", "missing field"),
    (("ca_keys",), 5, "ca_keys", "test, none"),
    (("ca_keys",), "missing.txt", "ca_keys", "cannot read missing.txt"),
    (("aids",), [], "aids", "at least one"),
    (("aids", 0), "A0000000031010", "aids[0]", "must be a mapping"),
    (("aids", 0, "aid"), "A000", "aids[0].aid", "5 to 16 bytes"),
    (("aids", 1, "aid"), "A0000000031010", "aids[1].aid", "listed twice (also aids[0])"),
    (("aids", 1, "kernel"), 4, "aids[1].kernel", "one of 2, 3"),
    (("aids", 1, "kernel"), DELETE, "aids[1].kernel", "missing field"),
    (("aids", 0, "partial_selection"), "yes", "aids[0].partial_selection", "true or false"),
    (("aids", 0, "transaction_limit"), -1, "aids[0].transaction_limit", "whole number"),
    (("aids", 0, "floor_limit"), "0", "aids[0].floor_limit", "whole number"),
    (("aids", 0, "cvm_required_limit"), 10**12, "aids[0].cvm_required_limit", "999999999999"),
    (("aids", 0, "status_check"), 1, "aids[0].status_check", "true or false"),
    (("aids", 0, "ttq"), DELETE, "aids[0].ttq", "missing field"),
    (("aids", 0, "ttq"), "3720", "aids[0].ttq", "4 bytes, got 2"),
    (("aids", 0, "ttq"), "37E04000", "aids[0].ttq", "byte 2 bits 8-7"),
    (("aids", 1, "ttq"), "37204000", "aids[1].ttq", "Kernel 3 setting"),
    (("aids", 1, "tac", "online"), "F45084800C00", "aids[1].tac.online", "5 bytes, got 6"),
    (("aids", 1, "tac", "offline"), "0000000000", "aids[1].tac.offline", "unknown field"),
    (("aids", 0, "application_version"), "96", "aids[0].application_version", "2 bytes"),
    (("aids", 0, "kernel2"), {}, "aids[0].kernel2", "settings of Kernel 2"),
    (("aids", 1, "kernel2", "default_udol"), "9F6A", "aids[1].kernel2.default_udol", "length byte"),
    (("aids", 1, "kernel2", "emv_mode"), "on", "aids[1].kernel2.emv_mode", "true or false"),
    (
        ("aids", 1, "kernel2", "cvm_capability_cvm_required"),
        "6000",
        "aids[1].kernel2.cvm_capability_cvm_required",
        "1 bytes, got 2",
    ),
    (("aids", 1, "kernel2", "max_torn_records"), 300, "aids[1].kernel2.max_torn_records", "255"),
    (("aids", 1, "kernel2", "turbo"), True, "aids[1].kernel2.turbo", "unknown field"),
    (("aids", 0, "kernel3", "fdda_versions"), "01", "aids[0].kernel3.fdda_versions", "list"),
    (
        ("aids", 0, "kernel3", "fdda_versions"),
        ["00", "0001"],
        "aids[0].kernel3.fdda_versions[1]",
        "1 bytes, got 2",
    ),
]


@pytest.mark.parametrize(
    ("where", "value", "field", "problem"), BROKEN, ids=[case[2] for case in BROKEN]
)
def test_each_broken_field_is_named_with_the_file(
    tmp_path: Path, where: tuple[Any, ...], value: Any, field: str, problem: str
) -> None:
    document = copy.deepcopy(_default_document())
    parent: Any = document
    for key in where[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    path = _write(tmp_path, document)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert (error.file, error.field) == (str(path), field)
    assert problem in error.problem
    assert str(error) == f"{path}: {field}: {error.problem}"


def test_a_file_that_is_not_yaml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_config(path)
    assert caught.value.file == str(path)


def test_a_file_that_holds_no_mapping_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, ["default"])
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)


def test_an_unknown_name_lists_the_shipped_configurations() -> None:
    with pytest.raises(ConfigError, match=r"shipped: .*default") as caught:
        load_config("no_such_terminal")
    assert caught.value.file == "no_such_terminal"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="cannot read") as caught:
        load_config(path)
    assert caught.value.file == str(path)


def test_omitted_optional_fields_take_their_defaults(tmp_path: Path) -> None:
    document = _default_document()
    for name in ("merchant_category", "merchant_id", "terminal_id", "ifd_serial"):
        del document["terminal"][name]
    del document["retaps"]
    mastercard = document["aids"][1]
    for name in ("transaction_limit", "floor_limit", "cvm_required_limit", "tac", "kernel2"):
        del mastercard[name]
    mastercard["tac"] = {"denial": "0010000000"}
    config = load_config(_write(tmp_path, document))
    assert config.retaps == 1 and config.terminal_id == "EMVTAP01"
    entry = config.aids[1]
    assert (entry.transaction_limit, entry.floor_limit, entry.cvm_required_limit) == (
        None,
        None,
        None,
    )
    assert entry.tacs == Tacs(denial=bytes.fromhex("0010000000"))
    assert entry.kernel2 == Kernel2Settings()


# --- CA keys ----------------------------------------------------------------------------


def test_ca_keys_none_gives_an_empty_store(tmp_path: Path) -> None:
    document = _default_document()
    document["ca_keys"] = "none"
    assert len(load_config(_write(tmp_path, document)).ca_keys) == 0


def test_ca_keys_from_a_file_relative_to_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    lines = _test_key_lines()[:2]
    (tmp_path / "keys" / "capk.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    document = _default_document()
    document["ca_keys"] = "keys/capk.txt"
    config = load_config(_write(tmp_path, document))
    assert sorted((k.rid, k.index) for k in config.ca_keys) == [(VISA_RID, 0x92), (VISA_RID, 0x94)]
    document["ca_keys"] = str(tmp_path / "keys" / "capk.txt")  # an absolute path too
    assert len(load_config(_write(tmp_path, document, "absolute.yaml")).ca_keys) == 2


def test_a_broken_ca_key_file_is_named_under_ca_keys(tmp_path: Path) -> None:
    line = _test_key_lines()[0]
    (tmp_path / "capk.txt").write_text(line[:-1] + "0\n", encoding="utf-8")  # checksum off
    document = _default_document()
    document["ca_keys"] = "capk.txt"
    path = _write(tmp_path, document)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == "ca_keys" and "line 1" in caught.value.problem


def test_a_relative_ca_key_path_needs_a_configuration_file() -> None:
    document = _default_document()
    document["ca_keys"] = "capk.txt"
    with pytest.raises(ConfigError, match="relative path") as caught:
        parse_config(yaml.safe_dump(document), "<text>")
    assert caught.value.field == "ca_keys"


def test_with_ca_keys_replaces_the_key_with_the_same_rid_and_index_and_adds_new_ones() -> None:
    config = default_config()
    shipped = config.ca_keys.lookup(VISA_RID, 0x92)
    other = config.ca_keys.lookup(VISA_RID, 0x94).public_key
    replacement = CaPublicKey(VISA_RID, 0x92, other)
    added = CaPublicKey(bytes.fromhex("A000000099"), 0x01, other)
    combined = with_ca_keys(config, [replacement, added])
    assert combined.ca_keys.lookup(VISA_RID, 0x92) == replacement
    assert combined.ca_keys.lookup(bytes.fromhex("A000000099"), 0x01) == added
    assert len(combined.ca_keys) == len(config.ca_keys) + 1
    assert config.ca_keys.lookup(VISA_RID, 0x92) == shipped  # the original is unchanged
    assert combined.aids == config.aids


def test_with_ca_keys_keeps_the_last_of_two_runtime_keys_for_one_slot() -> None:
    config = replace(default_config(), ca_keys=CaKeyStore())
    keys = list(default_config().ca_keys)[:2]
    first = CaPublicKey(VISA_RID, 0x01, keys[0].public_key)
    second = CaPublicKey(VISA_RID, 0x01, keys[1].public_key)
    combined = with_ca_keys(config, [first, second])
    assert list(combined.ca_keys) == [second]
    with pytest.raises(OdaError):
        combined.ca_keys.lookup(VISA_RID, 0x92)
