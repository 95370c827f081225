"""``emvtap server``: set up and run the token server.

A server lives in one directory::

    DIR/server.json    what to open: the HSM backend, TLS files
    DIR/master.key     the soft HSM's master key (unless EMVTAP_HSM_MASTER_KEY is set)
    DIR/hsm.keys       the soft HSM's encrypted key file
    DIR/store.sqlite   the store (WAL): vault, devices, issued keys, decisions, audit

``init`` creates them and the HSM keys and prints what a terminal and an
operator need; ``run`` serves the HTTP API on 127.0.0.1; ``openapi`` prints the
API description. The endpoints are listed in ``emvtap server --help``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hce.hsm.keyfile import MASTER_KEY_ENV, read_master_key
from hce.hsm.soft import SoftHsm
from hce.server.api import ROUTES
from hce.server.http import ApiServer, tls_context
from hce.server.openapi import openapi_document
from hce.server.service import TokenService
from hce.server.store import SqliteStore
from hce.server.tls import make_test_pki
from scenarios.about import version
from scenarios.subcommands import Subcommands, command_group

__all__ = ["add_server_commands"]

CONFIG = "server.json"
MASTER_KEY = "master.key"
KEY_FILE = "hsm.keys"
STORE = "store.sqlite"


class ServerSetupError(Exception):
    """A server directory that cannot be used as asked: one line for the user."""


@dataclass(frozen=True)
class ServerDir:
    """The files of one server directory."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def master_key(self) -> Path:
        return self.path / MASTER_KEY

    @property
    def key_file(self) -> Path:
        return self.path / KEY_FILE

    @property
    def store(self) -> Path:
        return self.path / STORE

    def read_config(self) -> dict[str, Any]:
        if not self.config.exists():
            raise ServerSetupError(
                f"{self.path} is not a server directory: run 'emvtap server init {self.path}'"
            )
        config: dict[str, Any] = json.loads(self.config.read_text(encoding="utf-8"))
        return config

    def master(self) -> bytes:
        """The soft HSM master key: the environment variable wins over the file."""
        if os.environ.get(MASTER_KEY_ENV):
            return read_master_key()
        return read_master_key(self.master_key)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _endpoints() -> str:
    lines = ["endpoints (JSON; bytes as hex; 'Authorization: Bearer CREDENTIAL'):"]
    for route in ROUTES:
        roles = ", ".join(sorted(route.roles)) or "anyone"
        lines.append(f"  {route.method:<5}{route.path:<34} [{roles}] {route.summary}")
    lines.append(f"  {'GET':<5}{'/v1/openapi.json':<34} [anyone] The OpenAPI 3.1 description.")
    return "\n".join(lines)


def add_server_commands(commands: Subcommands) -> None:
    """Register ``emvtap server init|run|openapi``."""
    sub = command_group(
        commands,
        "server",
        "the token server: init, run, openapi",
        description="The emvtap token server: an HSM-backed cloud-based payments platform "
        "(enrolment, device key batches, online authorisation, reconciliation).",
        epilog=_endpoints(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    init = sub.add_parser(
        "init",
        help="create a server directory, its HSM keys and an admin credential",
        description="Create DIR with a soft HSM (master key in DIR/master.key unless "
        f"{MASTER_KEY_ENV} is set), the store, the issuer master key, vault and look-up "
        "keys, a test CA and issuer RSA key with its certificate, and an admin credential. "
        "Prints the KCVs, the CA public key entry a terminal needs and the credential "
        "(shown once).",
    )
    init.add_argument("directory", type=Path, metavar="DIR")
    init.add_argument(
        "--tls", action="store_true", help="also make a test TLS CA and server certificate"
    )
    init.set_defaults(handler=_init)

    run = sub.add_parser(
        "run",
        help="serve the HTTP API (127.0.0.1 by default)",
        description="Serve the token server's API from DIR. Serves HTTPS when DIR has TLS "
        "files from 'init --tls' or --tls-cert/--tls-key are given.",
    )
    run.add_argument("directory", type=Path, metavar="DIR")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    run.add_argument(
        "--port", type=int, default=8443, help="port (default 8443; 0 picks a free one)"
    )
    run.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    run.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    run.add_argument(
        "--no-tls", action="store_true", help="serve plain HTTP even if TLS files exist"
    )
    run.set_defaults(handler=_run)

    spec = sub.add_parser("openapi", help="print the OpenAPI description of the API")
    spec.set_defaults(handler=_openapi)


@contextmanager
def open_service(directory: ServerDir) -> Iterator[TokenService]:
    """The token service of a server directory, its store closed afterwards."""
    config = directory.read_config()
    if config.get("hsm") != "soft":
        raise ServerSetupError(f"{directory.config}: unsupported hsm {config.get('hsm')!r}")
    hsm = SoftHsm.open(directory.key_file, directory.master())
    store = SqliteStore(directory.store)
    try:
        yield TokenService(hsm, store, _utc_now)
    finally:
        store.close()


def _init(args: argparse.Namespace) -> int:
    directory = ServerDir(args.directory)
    if directory.config.exists():
        raise ServerSetupError(f"{directory.path} is already a server directory")
    directory.path.mkdir(parents=True, exist_ok=True)
    if os.environ.get(MASTER_KEY_ENV):
        master = read_master_key()
    else:
        master = secrets.token_bytes(32)
        fd = os.open(directory.master_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(master.hex() + "\n")
    SoftHsm.create(directory.key_file, master)
    config: dict[str, Any] = {"hsm": "soft", "tls": None}
    if args.tls:
        files = make_test_pki(directory.path / "tls")
        config["tls"] = {
            "certificate": str(files.certificate),
            "key": str(files.key),
            "ca": str(files.ca_certificate),
        }
    directory.config.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    with open_service(directory) as service:
        summary = service.initialise()
    print(f"server directory: {directory.path}")
    for label, kcv in sorted(summary.kcvs.items()):
        print(f"  key {label:<10} KCV {kcv}")
    print("CA public key entry for terminals (RID INDEX EXPONENT MODULUS SHA1):")
    print(f"  {summary.ca_key}")
    if summary.admin_credential:
        print(f"admin credential (shown once): {summary.admin_credential}")
    if args.tls:
        print(f"TLS: {files.certificate} (test CA {files.ca_certificate})")
        print(f"  pin for clients: SHA-256 {files.fingerprint}")
    return 0


def _run(args: argparse.Namespace) -> int:
    directory = ServerDir(args.directory)
    config = directory.read_config()
    tls = None
    if not args.no_tls:
        files = config.get("tls") or {}
        certificate = args.tls_cert or files.get("certificate")
        key = args.tls_key or files.get("key")
        if bool(certificate) != bool(key):
            raise ServerSetupError("give both --tls-cert and --tls-key")
        if certificate and key:
            tls = tls_context(Path(certificate), Path(key))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with open_service(directory) as service:
        server = ApiServer(service, args.host, args.port, tls, version=version())
        print(f"emvtap token server on {server.url} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


def _openapi(_args: argparse.Namespace) -> int:
    print(json.dumps(openapi_document(version()), indent=2))
    return 0
