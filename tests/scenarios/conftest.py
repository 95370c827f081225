"""A token server in a process of its own: ``emvtap server init --tls`` then ``emvtap
server run`` on 127.0.0.1 with a port the system picks, for the tests that talk to it
over the wire (test_token_server_e2e.py, test_run_remote.py).

:func:`start_token_server` (a fixture) starts one and stops it at the end of the
session at the latest; the server's log (stderr) is drained by a thread, so a busy
server never blocks on a full pipe: :meth:`TokenServerProcess.wait_log` waits (with a
deadline, woken by each line) for the log to say something, and
:meth:`TokenServerProcess.stop` returns it.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "scenarios.cli"]
START_TIMEOUT_S = 300  # init makes RSA keys; a PKCS#11 token is slower


@dataclass
class TokenServerProcess:
    """A running `emvtap server run` and what `init` printed."""

    url: str
    directory: Path
    admin: str
    pin: bytes
    context: ssl.SSLContext
    process: subprocess.Popen[str]
    init_output: str
    _log: list[str] = field(default_factory=list, repr=False)
    _drain: threading.Thread | None = field(default=None, repr=False)
    _logged: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def log(self) -> str:
        """The server's log so far."""
        with self._logged:
            return "".join(self._log)

    def wait_log(self, done: Callable[[str], bool], timeout: float = 30) -> str:
        """The log once ``done(log)`` holds; fails the test after ``timeout`` seconds. The
        server logs a request before it answers, so the line is in the pipe by then."""
        with self._logged:
            if not self._logged.wait_for(lambda: done("".join(self._log)), timeout):
                pytest.fail(f"the token server's log never said it: {''.join(self._log)[-2000:]}")
            return "".join(self._log)

    def call(
        self, path: str, body: dict[str, Any] | None, credential: str | None, method: str = "POST"
    ) -> tuple[int, Any]:
        host, port = self.url.removeprefix("https://").split(":")
        connection = http.client.HTTPSConnection(host, int(port), context=self.context, timeout=30)
        headers = {"Content-Type": "application/json"}
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, payload, headers)
            answer = connection.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            connection.close()

    def ok(self, path: str, body: dict[str, Any], credential: str | None) -> Any:
        status, answer = self.call(path, body, credential)
        assert status == 200, answer
        return answer

    def stop(self) -> str:
        """Stop the server (if it runs); its log."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)
        if self._drain is not None:
            self._drain.join(timeout=30)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return "".join(self._log)


def _drain(stream: Any, into: list[str], logged: threading.Condition) -> None:
    for line in stream:
        with logged:
            into.append(line)
            logged.notify_all()


def _start(
    directory: Path, init_args: Sequence[str], env: Mapping[str, str] | None
) -> TokenServerProcess:
    init = subprocess.run(
        [*CLI, "server", "init", str(directory), "--tls", *init_args],
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        check=False,
        timeout=START_TIMEOUT_S,
    )
    assert init.returncode == 0, init.stderr
    admin = re.search(r"admin credential \(shown once\): (\S+)", init.stdout)
    pin = re.search(r"pin for clients: SHA-256 ([0-9A-F]{64})", init.stdout)
    assert admin and pin, init.stdout
    process = subprocess.Popen(
        [*CLI, "server", "run", str(directory), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else dict(env),
    )
    assert process.stderr is not None
    banner = process.stderr.readline()  # written once the socket listens
    found = re.search(r"on (https://127\.0\.0\.1:\d+)", banner)
    if not found:
        process.kill()
        process.wait(timeout=30)
        pytest.fail(f"emvtap server run did not start: {banner}")
    log: list[str] = [banner]
    logged = threading.Condition()
    drain = threading.Thread(target=_drain, args=(process.stderr, log, logged), daemon=True)
    drain.start()
    context = ssl.create_default_context(cafile=str(directory / "tls" / "ca.pem"))
    return TokenServerProcess(
        found.group(1),
        directory,
        admin.group(1),
        bytes.fromhex(pin.group(1)),
        context,
        process,
        init.stdout,
        log,
        drain,
        logged,
    )


StartTokenServer = Callable[..., TokenServerProcess]


@pytest.fixture(scope="session")
def start_token_server() -> Iterator[StartTokenServer]:
    """``start(directory, init_args=(), env=None)``: `emvtap server init DIR --tls
    *init_args` then `emvtap server run DIR --port 0` (``env``: the processes'
    environment, default this one's); every server started is stopped at the end."""
    started: list[TokenServerProcess] = []

    def start(
        directory: Path, init_args: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> TokenServerProcess:
        server = _start(directory, init_args, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
