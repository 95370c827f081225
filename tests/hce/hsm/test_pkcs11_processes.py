"""Several processes on one SoftHSMv2 token at once, as ``emvtap run -j N --hsm pkcs11:...``
puts them: every worker opens and closes a Pkcs11Hsm per scenario while the others
make and destroy keys (hce/hsm/pkcs11.py, "Sessions open and close one process at a
time"). The workers are spawned: their function is
:func:`softhsm.open_use_and_close`, which a new process can import."""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import Queue
from pathlib import Path

import pytest
import softhsm

ROUNDS = 150
PROCESSES = 2


def test_processes_that_open_and_close_sessions_at_once_all_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = softhsm.softhsm_module()
    monkeypatch.setenv("SOFTHSM2_CONF", "")  # put back afterwards; init_token sets it
    softhsm.init_token(tmp_path)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    errors: Queue[list[str]] = context.Queue()
    workers = [
        context.Process(target=softhsm.open_use_and_close, args=(module, start, errors, ROUNDS))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    met = [errors.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join()
    assert met == [[]] * PROCESSES
