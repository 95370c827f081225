"""A throw-away SoftHSMv2 token, for the tests and the benchmarks.

:func:`find_module` finds SoftHSMv2's PKCS#11 module (``SOFTHSM2_MODULE`` first);
:func:`init_token` writes a ``softhsm2.conf`` whose token directory is in a folder of
the caller's, points ``SOFTHSM2_CONF`` at it and initialises a token there with
``softhsm2-util``. A process that has loaded the module already must make it read
the new configuration (``hce.hsm.pkcs11.library(module).reinitialize()``); putting
``SOFTHSM2_CONF`` back and removing the folder is the caller's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = [
    "CONF_ENV",
    "MODULE_CANDIDATES",
    "MODULE_ENV",
    "TOKEN_DIR",
    "find_module",
    "init_token",
]

MODULE_ENV = "SOFTHSM2_MODULE"
CONF_ENV = "SOFTHSM2_CONF"
TOKEN_DIR = "softhsm-tokens"  # the token directory's name in the caller's folder
MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",  # Debian, Ubuntu
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",  # Fedora
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",  # macOS
)


def find_module() -> str | None:
    """``SOFTHSM2_MODULE`` if set, else the first of :data:`MODULE_CANDIDATES` that is a
    file; None when there is none."""
    candidates = (os.environ.get(MODULE_ENV, ""), *MODULE_CANDIDATES)
    return next((path for path in candidates if path and Path(path).is_file()), None)


def init_token(folder: Path, label: str, so_pin: str, user_pin: str) -> Path:
    """A token labelled ``label`` in a new directory of ``folder``, its configuration
    file beside it and ``SOFTHSM2_CONF`` pointing at that file; the token directory."""
    token_dir = folder / TOKEN_DIR
    token_dir.mkdir()
    config = folder / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    os.environ[CONF_ENV] = str(config)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--so-pin", so_pin, "--pin", user_pin],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return token_dir
