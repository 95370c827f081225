"""A private pcscd with vsmartcard's vpcd readers, for tests and benchmarks.

pcsc-lite allows one pcscd per ``/run/pcscd`` (it keeps its socket ``pcscd.comm`` and
its pid file there), and vsmartcard's ``ifd-vpcd`` driver listens for virtual cards on
every interface. :class:`PrivatePcscd` therefore runs pcscd in **mount and network
namespaces of its own** (``unshare``, root only):

* the mount namespace binds a directory of the caller's over ``/run/pcscd``, so the
  daemon's socket is ``DIR/run/pcscd.comm`` and nothing of the host's pcscd is touched;
  clients anywhere reach it by setting ``PCSCLITE_CSOCK_NAME`` to that path
  (:attr:`PrivatePcscd.env`; pcsc-lite reads it once per process, at the first call);
* the network namespace has only its own loopback, so vpcd's port (35963 and 35964
  for the readers ``Virtual PCD 00 00`` and ``00 01``) is free and reachable only from
  inside: a card process joins it with :meth:`PrivatePcscd.in_netns` (``nsenter``).

The namespaces are held by a small ``sh`` process that lives as long as its stdin is
open; pcscd runs in them with ``setpriv --pdeathsig KILL``, so neither outlives the
process that started them. :meth:`PrivatePcscd.restart` kills pcscd and starts it
again in the same namespaces (a card process inside keeps its network). The daemon's
own reader configuration is written to ``DIR/conf/vpcd`` (pcscd ``--config``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from emv.vpcd import VPCD_PORT

__all__ = ["VPCD_DRIVER", "VPCD_READERS", "PcscdError", "PrivatePcscd", "unavailable_reason"]

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
"""Debian's vsmartcard-vpcd driver."""
FRIENDLY_NAME = "Virtual PCD"
VPCD_READERS = (f"{FRIENDLY_NAME} 00 00", f"{FRIENDLY_NAME} 00 01")
"""The readers the driver makes: slot 0 on the configured port, slot 1 on the next."""
TOOLS = ("unshare", "nsenter", "setpriv", "ip", "mount", "pcscd")
START_TIMEOUT = 10.0  # seconds for the namespaces and the daemon to be ready
_POLL = 0.01  # seconds between looks at the daemon's socket while it starts


class PcscdError(RuntimeError):
    """The private pcscd could not be started (the message says which step and why)."""


def unavailable_reason() -> str | None:
    """Why a private pcscd cannot run here (None: it can): not root, a missing tool, or
    no vpcd driver."""
    if os.geteuid() != 0:
        return "a private pcscd needs root (mount and network namespaces)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (Debian: pcscd, util-linux, iproute2)"
    if not VPCD_DRIVER.exists():
        return f"no vpcd driver at {VPCD_DRIVER} (Debian: vsmartcard-vpcd)"
    return None


def reader_conf(port: int = VPCD_PORT, driver: Path = VPCD_DRIVER) -> str:
    """The reader.conf entry for vpcd listening on ``port`` (its ``CHANNELID``)."""
    return (
        f'FRIENDLYNAME "{FRIENDLY_NAME}"\n'
        f"DEVICENAME /dev/null:0x{port:04X}\n"
        f"LIBPATH {driver}\n"
        f"CHANNELID 0x{port:04X}\n"
    )


# The namespace holder: loopback up, DIR/run over /run/pcscd, "ready", then wait for
# the end of stdin (the parent closing it, or dying).
_HOLDER = (
    'ip link set lo up && mkdir -p /run/pcscd && mount --bind "$1" /run/pcscd '
    "&& echo ready && exec cat >/dev/null"
)


class PrivatePcscd:
    """pcscd with vpcd readers in namespaces of its own (module docstring), files under
    ``directory``; ``debug`` logs APDUs (``pcscd -a -d``) to ``directory/pcscd.log``.
    Use as a context manager, or :meth:`start` and :meth:`close`."""

    def __init__(self, directory: Path, *, port: int = VPCD_PORT, debug: bool = False) -> None:
        self.directory = directory
        self.port = port
        self.debug = debug
        self.run_dir = directory / "run"
        self.conf_dir = directory / "conf"
        self.log_path = directory / "pcscd.log"
        self._holder: subprocess.Popen[bytes] | None = None
        self._daemon: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"PrivatePcscd({self.directory}, vpcd port {self.port}, {state})"

    @property
    def socket_path(self) -> Path:
        """The daemon's client socket."""
        return self.run_dir / "pcscd.comm"

    @property
    def env(self) -> dict[str, str]:
        """What a PC/SC client's environment needs to reach this daemon."""
        return {"PCSCLITE_CSOCK_NAME": str(self.socket_path)}

    @property
    def readers(self) -> tuple[str, ...]:
        """The vpcd readers' names."""
        return VPCD_READERS

    @property
    def running(self) -> bool:
        """Whether the daemon is running."""
        return self._daemon is not None and self._daemon.poll() is None

    @property
    def vpcd_address(self) -> tuple[str, int]:
        """Where a card connects to reader ``00 00`` (inside the network namespace)."""
        return "127.0.0.1", self.port

    def in_netns(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the daemon's network namespace (to reach vpcd), killed
        when the thread that starts it ends (a test that dies leaves no card behind)."""
        if self._holder is None:
            raise PcscdError("the private pcscd is not started")
        target = str(self._holder.pid)
        return ["nsenter", "-t", target, "--net", "--", "setpriv", "--pdeathsig", "KILL", *argv]

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Make the namespaces (first time) and start the daemon; returns once clients
        can connect. :class:`PcscdError` when a step fails."""
        reason = unavailable_reason()
        if reason is not None:
            raise PcscdError(reason)
        if self._holder is None:
            self._start_holder()
        self._start_daemon()

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL); the namespaces stay."""
        daemon, self._daemon = self._daemon, None
        if daemon is None:
            return
        daemon.terminate()
        try:
            daemon.wait(5)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()

    def kill(self) -> None:
        """Kill the daemon at once (SIGKILL), as a crash would."""
        if self._daemon is not None:
            self._daemon.kill()
            self._daemon.wait()
            self._daemon = None

    def restart(self) -> None:
        """Stop the daemon and start it again in the same namespaces."""
        self.stop()
        self._start_daemon()

    def close(self) -> None:
        """Stop the daemon and end the namespaces."""
        self.stop()
        holder, self._holder = self._holder, None
        if holder is not None:
            if holder.stdin is not None:
                holder.stdin.close()
            try:
                holder.wait(5)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
            for pipe in (holder.stdout, holder.stderr):
                if pipe is not None:
                    pipe.close()

    def __enter__(self) -> PrivatePcscd:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- steps -------------------------------------------------------------------------------

    def _start_holder(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "vpcd").write_text(reader_conf(self.port), encoding="ascii")
        holder = subprocess.Popen(
            ["unshare", "--mount", "--net", "--propagation", "private", "--",
             "sh", "-c", _HOLDER, "sh", str(self.run_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self._holder = holder
        assert holder.stdout is not None and holder.stderr is not None
        line = holder.stdout.readline()
        if line.strip() != b"ready":
            holder.wait(5)
            error = holder.stderr.read().decode(errors="replace").strip()
            self._holder = None
            raise PcscdError(f"could not make pcscd's namespaces: {error or 'no reason given'}")

    def _start_daemon(self) -> None:
        for stale in ("pcscd.comm", "pcscd.pid"):
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / stale).unlink()
        assert self._holder is not None
        flags = ["--apdu", "--debug"] if self.debug else []
        command = [
            "nsenter", "-t", str(self._holder.pid), "--mount", "--net", "--",
            "setpriv", "--pdeathsig", "KILL",
            "pcscd", "--foreground", "--config", str(self.conf_dir), *flags,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until a client can connect to the daemon's socket (or it died, or time ran out)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._daemon is None or self._daemon.poll() is not None:
                raise PcscdError(f"pcscd exited at start; its log: {self.log_path}")
            if _accepts(self.socket_path):
                return
            time.sleep(_POLL)
        self.kill()
        raise PcscdError(f"pcscd not ready in {START_TIMEOUT} s; its log: {self.log_path}")


def _accepts(path: Path) -> bool:
    """Whether a Unix socket at ``path`` accepts a connection."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
