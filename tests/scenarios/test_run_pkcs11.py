"""``emvtap run --hsm pkcs11:...`` and ``emvtap tap --hsm pkcs11:...`` on a SoftHSMv2 token.

Each test makes a token of its own (``tests/support/softhsm.py``: a throw-away
``SOFTHSM2_CONF`` in ``tmp_path``) and runs the CLI in process with the PIN in
``EMVTAP_HSM_PIN``. Pack scenarios of both kernels, HCE and plastic, and a replay,
pass with their token server keys on the token, each environment under a label
prefix of its own (seen on the token while the scenario runs), and the token is
empty again afterwards, with one worker or two. A bad spec, a wrong or missing PIN,
a missing module or token: one line, exit 2, no PIN shown.

Without SoftHSMv2 (or python-pkcs11) the tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import softhsm

from scenarios.cli import main
from scenarios.hsm_spec import ENVIRONMENT_PREFIX, PIN_ENV, Pkcs11Spec, parse_hsm
from scenarios.loader import load_paths
from scenarios.tap import TapEnvironment

ROOT = Path(__file__).resolve().parents[2]
PACKS = ROOT / "scenarios" / "packs"
# Both kernels, HCE and plastic, in process and over HTTPS; and the replay of each card.
APPROVALS = [
    PACKS / "token_server" / "hce_approvals.yaml",
    PACKS / "token_server" / "plastic_approvals.yaml",
]
REPLAY = PACKS / "token_server" / "replay.yaml"
SERVER_KEYS = {"imk-ac", "ca", "issuer"}  # hce.server.service: IMK_AC, CA_KEY, ISSUER_KEY
WRONG_PIN = "98765"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"pkcs11 backend cannot run in CI: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class Token:
    """A SoftHSMv2 token of the test's own: the module, its --hsm spec, where it keeps
    its objects."""

    module: str
    label: str
    pin: str
    directory: Path

    @property
    def spec(self) -> str:
        return f"pkcs11:{self.module}:{self.label}"

    def stored_objects(self) -> int:
        """How many objects the token holds (SoftHSMv2's file store: one file each)."""
        return sum(1 for path in self.directory.glob("*/*.object") if path.name != "token.object")

    def labels(self) -> list[str]:
        """Every label on the token (opened without a prefix, then closed)."""
        with Pkcs11Spec(self.module, self.label).open() as hsm:
            return hsm.labels()


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Token]:
    """A fresh token; SOFTHSM2_CONF and EMVTAP_HSM_PIN point at it for this test only
    (worker processes inherit them), and this process's module re-reads its configuration."""
    if importlib.util.find_spec("pkcs11") is None:
        _unavailable("python-pkcs11 is not installed")
    if shutil.which("softhsm2-util") is None:
        _unavailable("SoftHSMv2 is not installed (no softhsm2-util)")
    helper = softhsm
    module = helper.softhsm_module()
    monkeypatch.delenv("SOFTHSM2_CONF", raising=False)  # restored after the test
    directory = helper.init_token(tmp_path)  # sets SOFTHSM2_CONF
    monkeypatch.setenv(PIN_ENV, helper.USER_PIN)
    from hce.hsm.pkcs11 import library  # noqa: PLC0415  (python-pkcs11 may be missing)

    library(module).reinitialize()
    yield Token(module, helper.TOKEN_LABEL, helper.USER_PIN, directory)


@dataclass(frozen=True)
class Seen:
    """What an environment's HSM held just before the environment closed."""

    prefix: str
    labels: list[str]
    stored_objects: int


def _watch_environments(monkeypatch: pytest.MonkeyPatch, token: Token) -> list[Seen]:
    """Record every environment's HSM as it closes (runs in this process only)."""
    seen: list[Seen] = []
    close = TapEnvironment.close

    def watching(env: TapEnvironment) -> None:
        from hce.hsm.pkcs11 import Pkcs11Hsm  # noqa: PLC0415  (python-pkcs11 may be missing)

        hsm = getattr(env, "hsm", None)
        if hsm is not None:
            assert isinstance(hsm, Pkcs11Hsm)
            seen.append(Seen(hsm.label_prefix, hsm.labels(), token.stored_objects()))
        close(env)

    monkeypatch.setattr(TapEnvironment, "close", watching)
    return seen


def _emvtap(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_pack_scenarios_pass_with_keys_on_the_token_and_none_left(
    token: Token, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _watch_environments(monkeypatch, token)
    paths = [str(path) for path in [*APPROVALS, REPLAY]]
    status, out, err = _emvtap(capsys, "run", *paths, "--hsm", token.spec, "-q")
    assert status == 0, out
    assert "12 passed, 0 failed, 0 errored" in out
    assert len(seen) == 12
    for environment in seen:  # while it ran: its keys, on the token, under its own prefix
        assert environment.prefix.startswith(ENVIRONMENT_PREFIX)
        assert set(environment.labels) >= SERVER_KEYS
        assert environment.stored_objects >= len(environment.labels)
    assert len({environment.prefix for environment in seen}) == 12
    assert token.labels() == [] and token.stored_objects() == 0
    assert token.pin not in out + err


def test_parallel_workers_keep_their_keys_apart(
    token: Token, capsys: pytest.CaptureFixture[str]
) -> None:
    module_only = f"pkcs11:{token.module}"  # the module's only token
    status, out, _ = _emvtap(capsys, "run", str(REPLAY), "-j", "2", "--hsm", module_only, "-q")
    assert status == 0, out
    assert "4 passed, 0 failed, 0 errored" in out
    assert token.labels() == [] and token.stored_objects() == 0


def test_tap_uses_the_token_and_leaves_it_empty(
    token: Token, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _watch_environments(monkeypatch, token)
    argv = ["tap", "--card", "mastercard_mchip_hce", "--amount", "5", "--hsm", token.spec]
    status, out, _ = _emvtap(capsys, *argv)
    assert status == 0, out
    assert "Outcome:      Approved" in out
    assert len(seen) == 1 and set(seen[0].labels) >= SERVER_KEYS
    assert token.labels() == [] and token.stored_objects() == 0


BAD_SPEC = "expected 'soft' or 'pkcs11:MODULE[:TOKEN]'"


@pytest.mark.parametrize("command", ["run", "tap"])
@pytest.mark.parametrize(
    "case",
    [  # --hsm value, EMVTAP_HSM_PIN (None: the token's), what the error says
        pytest.param(("pkcs11", None, f"--hsm 'pkcs11': {BAD_SPEC}"), id="no-module"),
        pytest.param(("pkcs11:{module}:a:b", None, BAD_SPEC), id="too-many-parts"),
        pytest.param(("hsm", None, f"--hsm 'hsm': {BAD_SPEC}"), id="not-pkcs11"),
        pytest.param(
            ("pkcs11:{module}", WRONG_PIN, "login refused (PinIncorrect)"), id="wrong-pin"
        ),
        pytest.param(("pkcs11:{module}", "", f"environment variable {PIN_ENV}"), id="no-pin"),
        pytest.param(
            ("pkcs11:/nonexistent/missing.so", None, "/nonexistent/missing.so: no such file"),
            id="no-file",
        ),
        pytest.param(("pkcs11:{module}:nope", None, "token 'nope' of"), id="no-token"),
    ],
)
def test_an_hsm_that_cannot_be_used_is_one_line_and_exit_2(
    token: Token,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    case: tuple[str, str | None, str],
) -> None:
    spec, pin, message = case
    if pin is not None:
        monkeypatch.setenv(PIN_ENV, pin)
    value = spec.format(module=token.module)
    if command == "run":
        argv = ["run", str(REPLAY), "--hsm", value]
    else:
        argv = ["tap", "--card", "visa_qvsdc_plastic", "--amount", "1", "--hsm", value]
    status, out, err = _emvtap(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("emvtap: error: ")
    assert message in err
    assert token.pin not in err and WRONG_PIN not in err
    assert token.stored_objects() == 0


def test_a_module_without_a_named_token_needs_exactly_one(
    token: Token, capsys: pytest.CaptureFixture[str]
) -> None:
    helper = softhsm
    subprocess.run(  # a second token beside the first (SOFTHSM2_CONF is the test's)
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "emvtap-second",
            "--so-pin",
            helper.SO_PIN,
            "--pin",
            token.pin,
        ],
        check=True,
        capture_output=True,
    )
    from hce.hsm.pkcs11 import library  # noqa: PLC0415  (python-pkcs11 may be missing)

    library(token.module).reinitialize()
    status, _, err = _emvtap(capsys, "run", str(REPLAY), "--hsm", f"pkcs11:{token.module}")
    assert status == 2 and err.count("\n") == 1
    assert re.search(r"several tokens \(.*'emvtap-second'.*\): name one", err)
    status, out, _ = _emvtap(
        capsys, "run", str(REPLAY), "-k", "visa_qvsdc_hce", "--hsm", token.spec
    )
    assert status == 0, out


def test_the_spec_parses_once_for_every_command() -> None:
    assert parse_hsm("soft") is None
    assert parse_hsm("pkcs11:/lib/p11.so") == Pkcs11Spec("/lib/p11.so")
    assert parse_hsm("pkcs11:/lib/p11.so:tok") == Pkcs11Spec("/lib/p11.so", "tok")
    assert str(Pkcs11Spec("/lib/p11.so", "tok")) == "pkcs11:/lib/p11.so:tok"
    for bad in ("", "pkcs11:", "pkcs11::tok", "pkcs11:/lib/p11.so:", "PKCS11:/x"):
        with pytest.raises(ValueError, match="expected 'soft' or 'pkcs11:MODULE"):
            parse_hsm(bad)


def test_the_kernel_packs_pass_with_softhsm_behind_the_token_server(
    token: Token, capsys: pytest.CaptureFixture[str]
) -> None:
    packs = [PACKS / "kernel2", PACKS / "kernel3"]
    count = len(load_paths(packs))
    status, out, _ = _emvtap(capsys, "run", *map(str, packs), "--hsm", token.spec, "-j", "2", "-q")
    assert status == 0, out
    assert f"{count} passed, 0 failed, 0 errored" in out
    assert token.labels() == []
