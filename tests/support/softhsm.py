"""A throw-away SoftHSMv2 token per test, and the Pkcs11Hsm logged in to it.

``make_pkcs11_hsm(tmp_path)`` writes a ``softhsm2.conf`` whose token directory is
in ``tmp_path``, points SOFTHSM2_CONF at it, initialises a token with
``softhsm2-util``, and makes the process's (single) SoftHSM module re-read its
configuration (C_Finalize + C_Initialize). The module is loaded once per process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from hce.hsm.interface import HsmError, KeyKind
from hce.hsm.pkcs11 import Pkcs11Hsm, library
from scenarios import softhsm as token

TOKEN_LABEL = "emvtap-test"
SO_PIN = "87654321"
USER_PIN = "1234"


def softhsm_module() -> str:
    """SOFTHSM2_MODULE if set, else the first SoftHSMv2 module found; skips (fails in CI)
    when there is none."""
    found = token.find_module()
    if found is None:
        reason = "no SoftHSMv2 module (libsofthsm2.so); set SOFTHSM2_MODULE"
        if os.environ.get("CI"):
            pytest.fail(f"pkcs11 backend cannot run in CI: {reason}")
        pytest.skip(reason)
    return found


def init_token(tmp_path: Path) -> Path:
    """A new token directory and its configuration file; SOFTHSM2_CONF points at it."""
    return token.init_token(tmp_path, TOKEN_LABEL, SO_PIN, USER_PIN)


@contextlib.contextmanager
def make_pkcs11_hsm(tmp_path: Path) -> Iterator[Pkcs11Hsm]:
    """A Pkcs11Hsm on a fresh SoftHSMv2 token in ``tmp_path``, removed afterwards."""
    module = softhsm_module()
    previous = os.environ.get("SOFTHSM2_CONF")
    token_dir = init_token(tmp_path)
    try:
        library(module).reinitialize()
        with Pkcs11Hsm(module, TOKEN_LABEL, USER_PIN) as hsm:
            yield hsm
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous
        shutil.rmtree(token_dir)


def open_use_and_close(module: str, start: Barrier, errors: Queue[list[str]], rounds: int) -> None:
    """``rounds`` times, as a scenario's environment does: a session with a label
    prefix of its own, a key made and used, the namespace destroyed, the session
    closed. Puts the errors met on ``errors``."""
    library(module)
    start.wait()
    met = []
    for round_ in range(rounds):
        prefix = f"p{os.getpid()}-{round_}/"
        try:
            with Pkcs11Hsm(module, TOKEN_LABEL, USER_PIN, label_prefix=prefix) as hsm:
                hsm.generate_key("lookup", KeyKind.AES128)
                hsm.keyed_digest("lookup", b"emvtap")
                hsm.destroy_namespace()
        except HsmError as err:
            met.append(str(err))
    errors.put(met)
