"""The ``hsm`` fixture: a fresh, empty backend per test, for every backend emvtap has.

``soft`` always runs. ``pkcs11`` needs ``hce.hsm.pkcs11`` (python-pkcs11) and
SoftHSMv2; it uses ``make_pkcs11_hsm(tmp_path)`` from ``tests/support/softhsm.py``, a
context manager that yields an HSM on its own throw-away token. Where
either is missing the pkcs11 tests skip, except in CI (the ``CI`` environment
variable set), where a backend that cannot run is a failure.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import softhsm

from hce.hsm.interface import Hsm
from hce.hsm.soft import SoftHsm

BACKENDS = ["soft", "pkcs11"]


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"pkcs11 backend cannot run in CI: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def _pkcs11_hsm(tmp_path: Path) -> Iterator[Hsm]:
    try:
        importlib.import_module("hce.hsm.pkcs11")
    except ImportError as err:
        _unavailable(f"hce.hsm.pkcs11 cannot be imported ({err})")
    if shutil.which("softhsm2-util") is None:
        _unavailable("SoftHSMv2 is not installed (no softhsm2-util)")
    with softhsm.make_pkcs11_hsm(tmp_path) as hsm:
        yield hsm


@pytest.fixture(params=BACKENDS)
def hsm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hsm]:
    """A new, empty HSM of the backend named by the parameter."""
    if request.param == "soft":
        yield SoftHsm.create(tmp_path / "keys.hsm", os.urandom(32))
        return
    with _pkcs11_hsm(tmp_path) as backend:
        yield backend
