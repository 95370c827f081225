"""RSA keys made once per process and handed to every scenario in turn.

An RSA key takes 10 to 70 ms to generate, and an environment needs five of them (the
token server's CA and issuer keys, the plastic issuer's CA and issuer keys, the ICC
key), so a run that makes every key anew spends most of its time there. The runner
therefore gives each environment a :meth:`RsaKeyPool.source`: the k-th key an
environment asks for of a given size and exponent is the pool's k-th key of that size
and exponent, generated on first demand. Within one environment every key is a
different key, exactly as with fresh keys; across environments of one process the
same keys come back, as a lab re-personalises one set of test cards. Nothing else is
shared: each scenario still has its own HSM, store, card state and counters.

The keys are real keys generated at run time by :func:`emv.crypto.oda.generate_rsa_key`,
held in this process's memory only. ``emvtap run --fresh-keys`` (``run(...,
fresh_keys=True)``) makes every key anew instead. A fault that needs a key the card
does not have (``bad_capk``) makes its own, never from the pool.
"""

from __future__ import annotations

import threading
from collections import Counter
from functools import cache

from emv.crypto import oda

__all__ = ["RsaKeyPool", "process_pool"]


class RsaKeyPool:
    """Keys by (bits, exponent), in the order they were first asked for."""

    def __init__(self, generate: oda.RsaKeySource = oda.generate_rsa_key) -> None:
        self._generate = generate
        self._keys: dict[tuple[int, int], list[oda.RsaPrivateKey]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{len(keys)} x {bits}/{e}" for (bits, e), keys in self._keys.items())
        return f"RsaKeyPool({sizes or 'empty'})"

    def _key(self, bits: int, exponent: int, index: int) -> oda.RsaPrivateKey:
        """The ``index``-th key of this size and exponent, made when it is the next one."""
        with self._lock:
            keys = self._keys.setdefault((bits, exponent), [])
            if index == len(keys):
                keys.append(self._generate(bits, exponent))
            return keys[index]

    def keys(self) -> dict[tuple[int, int], list[oda.RsaPrivateKey]]:
        r"""Every key made so far, by (bits, exponent), in order: what a worker process
        :meth:`adopt`\ s so that it need not make them again."""
        with self._lock:
            return {size: list(keys) for size, keys in self._keys.items()}

    def adopt(self, keys: dict[tuple[int, int], list[oda.RsaPrivateKey]]) -> None:
        """Take the keys another process's pool made (:meth:`keys`) where this one has
        none of that size yet."""
        with self._lock:
            for size, made in keys.items():
                self._keys.setdefault(size, list(made))

    def source(self) -> oda.RsaKeySource:
        """A key source for one environment: each call gives the next key of that size
        and exponent, so no two calls of one source give the same key."""
        taken: Counter[tuple[int, int]] = Counter()

        def key(bits: int, exponent: int) -> oda.RsaPrivateKey:
            index = taken[bits, exponent]
            taken[bits, exponent] += 1
            return self._key(bits, exponent, index)

        return key


@cache
def process_pool() -> RsaKeyPool:
    """This process's pool: the runner's, shared by every scenario the process runs
    (each worker process of ``-j N`` has its own)."""
    return RsaKeyPool()
