"""The ``--hsm SPEC`` option of ``emvtap server init``, ``emvtap run`` and ``emvtap tap``.

SPEC is ``soft`` (the default: keys in a file under a master key) or
``pkcs11:MODULE[:TOKEN]``: the PKCS#11 module at the path MODULE and the token
labelled TOKEN on it (without TOKEN, the module's only initialised token). The
user PIN comes from the environment variable ``EMVTAP_HSM_PIN`` (:data:`PIN_ENV`),
never from the command line, and is never printed. A module path cannot contain
``:``.

:func:`parse_hsm` reads SPEC; a :class:`Pkcs11Spec` opens the token
(:meth:`Pkcs11Spec.open`), checks it can (:meth:`Pkcs11Spec.check`, so a wrong PIN
is a usage error before anything runs), and gives a tap environment a key namespace
of its own (:meth:`Pkcs11Spec.environment_hsm`): a fresh label prefix
``emvtap-env-<16 hex digits>/`` on the token, whose keys are destroyed when the
environment closes. Scenarios running at once, in one process one after another or
on ``-j N`` worker processes (each logs in on its own session), never see each
other's keys. A spec is a plain frozen dataclass: it pickles to worker processes
without the PIN, which each worker reads from its (inherited) environment.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hce.hsm.interface import Hsm
    from hce.hsm.pkcs11 import Pkcs11Hsm

__all__ = [
    "ENVIRONMENT_PREFIX",
    "PIN_ENV",
    "HsmSpecError",
    "Pkcs11Spec",
    "parse_hsm",
    "pkcs11_pin",
]

PIN_ENV = "EMVTAP_HSM_PIN"
ENVIRONMENT_PREFIX = "emvtap-env-"
"""How the labels of a tap environment's keys start on a shared token."""
SPEC_FORMS = "'soft' or 'pkcs11:MODULE[:TOKEN]'"


class HsmSpecError(ValueError):
    """An ``--hsm`` value that does not parse, or a PKCS#11 HSM without its PIN: one line."""


@dataclass(frozen=True)
class Pkcs11Spec:
    """A PKCS#11 module path and, optionally, a token label."""

    module: str
    token: str | None = None

    def __str__(self) -> str:
        return f"pkcs11:{self.module}" + (f":{self.token}" if self.token else "")

    def open(self, *, label_prefix: str = "") -> Pkcs11Hsm:
        """The token, logged in with the PIN of :data:`PIN_ENV` (close it after use);
        :class:`HsmSpecError` without a PIN, :class:`hce.hsm.interface.HsmError` when
        the module, the token or the login fails."""
        from hce.hsm.pkcs11 import Pkcs11Hsm  # noqa: PLC0415  (python-pkcs11 is an optional extra)

        return Pkcs11Hsm(self.module, self.token, pkcs11_pin(), label_prefix=label_prefix)

    def check(self) -> None:
        """Open the token and close it again: fails now, with one line, if it cannot be used."""
        self.open().close()

    @contextmanager
    def environment_hsm(self) -> Iterator[Hsm]:
        """The token under a label prefix of its own (module docstring); on exit every
        key made under it is destroyed and the session closed."""
        hsm = self.open(label_prefix=f"{ENVIRONMENT_PREFIX}{secrets.token_hex(8)}/")
        try:
            yield hsm
        finally:
            try:
                hsm.destroy_namespace()
            finally:
                hsm.close()


def parse_hsm(spec: str) -> Pkcs11Spec | None:
    """``soft`` -> None; ``pkcs11:MODULE[:TOKEN]`` -> its :class:`Pkcs11Spec`;
    anything else -> :class:`HsmSpecError` naming the value."""
    if spec == "soft":
        return None
    parts = spec.split(":")
    if parts[0] != "pkcs11" or len(parts) not in (2, 3) or not all(parts[1:]):
        raise HsmSpecError(f"--hsm {spec!r}: expected {SPEC_FORMS}")
    return Pkcs11Spec(parts[1], parts[2] if len(parts) == 3 else None)


def pkcs11_pin() -> str:
    """The user PIN of :data:`PIN_ENV`; :class:`HsmSpecError` when it is not set."""
    pin = os.environ.get(PIN_ENV)
    if not pin:
        raise HsmSpecError(
            f"a PKCS#11 HSM needs its user PIN in the environment variable {PIN_ENV}"
        )
    return pin
