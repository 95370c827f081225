"""Profiles: every shipped one loads; a broken one gives one ProfileError naming the
file and the field path, and never a full PAN."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hce.card import BRANDS, ProfileError, load_profile, shipped_profiles
from hce.card.profile import PROFILES_DIR

PAN = "4761739001010010"


@pytest.fixture
def document() -> dict[str, Any]:
    text = (PROFILES_DIR / "visa_qvsdc_plastic.yaml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@pytest.fixture
def broken(tmp_path: Path, document: dict[str, Any]) -> Callable[..., ProfileError]:
    """Apply ``change`` to a copy of the plastic profile, load it, return the error."""

    def load(change: Callable[[dict[str, Any]], object]) -> ProfileError:
        changed = copy.deepcopy(document)
        change(changed)
        path = tmp_path / "broken.yaml"
        path.write_text(yaml.safe_dump(changed), encoding="utf-8")
        with pytest.raises(ProfileError) as caught:
            load_profile(path)
        assert caught.value.file == str(path)
        assert str(path) in str(caught.value)
        assert PAN not in str(caught.value)
        return caught.value

    return load


def app(doc: dict[str, Any]) -> dict[str, Any]:
    application: dict[str, Any] = doc["applications"][0]
    return application


@pytest.mark.parametrize("path", shipped_profiles(), ids=lambda p: p.stem)
def test_every_shipped_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert profile.brand in BRANDS
    assert profile.applications
    assert PAN not in repr(profile)


def test_shipped_profiles_cover_both_key_modes() -> None:
    modes = {load_profile(path).key_mode for path in shipped_profiles()}
    assert modes == {"plastic", "hce"}


def test_a_bare_name_finds_a_shipped_profile() -> None:
    assert load_profile("visa_qvsdc_hce").name == "visa_qvsdc_hce"


def test_the_afl_is_built_from_the_records() -> None:
    profile = load_profile("visa_qvsdc_hce")
    assert profile.applications[0].afl == bytes.fromhex("1001010118010200")


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (lambda d: app(d).update(aip="20ZZ"), "applications[0].aip", "is not hex"),
        (
            lambda d: app(d)["records"][0]["tags"].append("9F99"),
            "applications[0].records[0].tags[2]",
            "cut off",
        ),
        (lambda d: app(d).update(aip="200000"), "applications[0].aip", "must be 2 bytes, got 3"),
        (lambda d: app(d).update(aip=2000), "applications[0].aip", "must be hex text in quotes"),
        (
            lambda d: app(d)["iac"].update(online="DC4004F8"),
            "applications[0].iac.online",
            "5 bytes",
        ),
        (lambda d: d.pop("pan"), "pan", "missing field"),
        (lambda d: app(d).pop("pdol"), "applications[0].pdol", "missing field"),
        (lambda d: d.update(brand="acme"), "brand", "unknown brand 'acme'"),
        (lambda d: d.update(key_mode="chip"), "key_mode", "plastic or hce"),
        (lambda d: d.update(pan="47617390010100AB"), "pan", "digits"),
        (lambda d: d.update(expiry="291331"), "expiry", "date YYMMDD"),
        (lambda d: app(d).update(colour="blue"), "applications[0].colour", "unknown field"),
        (lambda d: app(d).update(pdol="9F6604 9F02"), "applications[0].pdol", "no length byte"),
        (
            lambda d: app(d).update(cryptogram_version="C1"),
            "applications[0].cryptogram_version",
            "plastic",
        ),
        (lambda d: d["keys"].pop("imk_ac"), "keys.imk_ac", "missing key name"),
        (lambda d: d["keys"].pop("ca"), "keys.ca", "missing key name"),
        (
            lambda d: app(d).update(afl="08010100"),
            "applications[0].afl",
            "080101001001010118010200",
        ),
        (
            lambda d: app(d)["records"][3].update(number=3),
            "applications[0].records[3]",
            "numbered 1, 2",
        ),
        (
            lambda d: [app(d).pop("afl"), *(app(d)["records"][i].update(oda=True) for i in (2, 3))],
            "applications[0].records[3].tags[0]",
            "cannot be in a record signed for ODA",
        ),
        (
            lambda d: app(d)["records"].append(
                {"sfi": 3, "number": 3, "oda": True, "tags": ["9F42"]}
            ),
            "applications[0].records[2]",
            "signed for ODA must come first",
        ),
        (
            lambda d: app(d)["records"][0]["tags"].append("9F7E"),
            "applications[0].records[0].tags[2]",
            "9F7E is not a data object",
        ),
        (
            lambda d: app(d)["records"][0]["tags"].append("5A"),
            "applications[0].records[1].tags[0]",
            "already in another record",
        ),
        (
            lambda d: app(d)["records"][0].update(sfi=31),
            "applications[0].records[0].sfi",
            "1 to 30",
        ),
        (lambda d: app(d)["oda"].update(icc_key_bits=1160), "applications[0].oda", "must not grow"),
        (lambda d: app(d)["oda"].update(method="sda"), "applications[0].oda.method", "fdda"),
        (lambda d: app(d)["data"].update({"5A": "00"}), "applications[0].data.5A", "built from"),
        (lambda d: app(d)["limits"].update(cvm=-1), "applications[0].limits.cvm", "from 0"),
        (lambda d: d.update(applications=[]), "applications", "at least one"),
    ],
)
def test_a_broken_profile_names_the_field(
    broken: Callable[..., ProfileError],
    change: Callable[[dict[str, Any]], object],
    field: str,
    problem: str,
) -> None:
    error = broken(change)
    assert error.field == field
    assert problem in error.problem


def test_yaml_that_does_not_parse(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("brand: [visa\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(path)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "nowhere.yaml")
