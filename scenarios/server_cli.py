"""``emvtap server``: set up and run the token server.

A server lives in one directory::

    DIR/server.json    what to open: the HSM backend, TLS files
    DIR/master.key     the soft HSM's master key (unless EMVTAP_HSM_MASTER_KEY is set)
    DIR/hsm.keys       the soft HSM's encrypted key file (none with --hsm pkcs11:...)
    DIR/store.sqlite   the store (WAL): vault, devices, issued keys, decisions, audit

``init`` creates them and the HSM keys and prints what a terminal and an
operator need (with ``--import-imk-ac`` the IMK-AC is the given one, so the
server's issuer host can authorise plastic cards personalised under it);
``run`` serves the HTTP API on 127.0.0.1; ``openapi`` prints the API
description; ``personalise`` certifies an ICC key for a token's card (as the
admin holding the directory). The endpoints are listed in ``emvtap server --help``.
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

from emv.crypto import oda
from hce.card.profile import load_profile
from hce.hsm.interface import Hsm
from hce.hsm.keyfile import MASTER_KEY_ENV, read_master_key
from hce.hsm.soft import SoftHsm
from hce.server.api import ROUTES, personalisation_json
from hce.server.credentials import Principal
from hce.server.http import ApiServer, tls_context
from hce.server.openapi import openapi_document
from hce.server.service import InitSummary, KeyImport, TokenService
from hce.server.store import SqliteStore
from hce.server.tls import TlsFiles, make_test_pki
from scenarios.about import version
from scenarios.hsm_spec import PIN_ENV, parse_hsm, pkcs11_pin
from scenarios.subcommands import Subcommands, command_group

__all__ = ["add_server_commands"]

CONFIG = "server.json"
MASTER_KEY = "master.key"
KEY_FILE = "hsm.keys"
STORE = "store.sqlite"
CLI_ADMIN = Principal("admin", "server-cli")
"""Who the audit log names for what the CLI does: whoever holds the server directory."""


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
    """Register ``emvtap server init|run|openapi|personalise``."""
    sub = command_group(
        commands,
        "server",
        "the token server: init, run, openapi, personalise",
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
    init.add_argument(
        "--hsm",
        default="soft",
        metavar="SPEC",
        help="'soft' (default: an encrypted key file in DIR) or 'pkcs11:MODULE[:TOKEN]' "
        "(a PKCS#11 module path and token label, by default the module's only token; "
        f"the user PIN comes from {PIN_ENV})",
    )
    init.add_argument(
        "--import-imk-ac",
        metavar="HEX",
        help="import this 2-key 3DES IMK-AC (32 hex digits) instead of making one: the "
        "issuer master key plastic cards to authorise were personalised under (test keys "
        "only: a command line is visible to other local users)",
    )
    init.add_argument(
        "--imk-ac-kcv",
        metavar="HEX",
        help="the check value (6 hex digits) the imported IMK-AC must have",
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
    _add_personalise(sub)


def _add_personalise(sub: Subcommands) -> None:
    personalise = sub.add_parser(
        "personalise",
        help="certify an ICC public key for a token's card (prints the certificates, JSON)",
        description="Personalise the shipped HCE profile NAME for the token: sign the ICC "
        "Public Key Certificate of the given ICC public key with the issuer key in the HSM "
        "and print it with the issuer certificate and CA index, as JSON (the answer of "
        "POST /v1/devices/{device_id}/personalisation). Without --icc-modulus a throw-away "
        "key of the profile's size is certified, to inspect the result.",
    )
    personalise.add_argument("directory", type=Path, metavar="DIR")
    personalise.add_argument("--token", required=True, metavar="TOKEN_ID")
    personalise.add_argument("--profile", required=True, metavar="NAME")
    personalise.add_argument("--icc-modulus", metavar="HEX", help="the ICC public key's modulus")
    personalise.add_argument(
        "--icc-exponent", type=int, metavar="E", help="its exponent (default: the profile's)"
    )
    personalise.set_defaults(handler=_personalise)


@contextmanager
def open_hsm(directory: ServerDir, spec: str) -> Iterator[Hsm]:
    """The HSM named by ``spec`` ('soft' or 'pkcs11:MODULE[:TOKEN]', read by
    :func:`scenarios.hsm_spec.parse_hsm`), closed afterwards."""
    pkcs11 = parse_hsm(spec)
    if pkcs11 is None:
        yield SoftHsm.open(directory.key_file, directory.master())
        return
    with pkcs11.open() as hsm:
        yield hsm


@contextmanager
def open_service(directory: ServerDir) -> Iterator[TokenService]:
    """The token service of a server directory, its HSM and store closed afterwards."""
    config = directory.read_config()
    with open_hsm(directory, str(config.get("hsm"))) as hsm:
        store = SqliteStore(directory.store)
        try:
            yield TokenService(hsm, store, _utc_now)
        finally:
            store.close()


def _init(args: argparse.Namespace) -> int:
    directory = ServerDir(args.directory)
    if directory.config.exists():
        raise ServerSetupError(f"{directory.path} is already a server directory")
    if parse_hsm(args.hsm) is not None:
        pkcs11_pin()
    imk_ac = _imk_ac_import(args)
    created = not directory.path.exists()
    existed = set() if created else set(directory.path.iterdir())
    directory.path.mkdir(parents=True, exist_ok=True)
    try:
        summary, tls = _initialise(directory, args.hsm, args.tls, imk_ac)
    except BaseException:
        _remove_new_files(directory.path, existed)
        if created:
            directory.path.rmdir()
        raise
    print(f"server directory: {directory.path}")
    for label, kcv in sorted(summary.kcvs.items()):
        print(f"  key {label:<10} KCV {kcv}")
    print("CA public key entry for terminals (RID INDEX EXPONENT MODULUS SHA1):")
    print(f"  {summary.ca_key}")
    if summary.admin_credential:
        print(f"admin credential (shown once): {summary.admin_credential}")
    if tls is not None:
        print(f"TLS: {tls.certificate} (test CA {tls.ca_certificate})")
        print(f"  pin for clients: SHA-256 {tls.fingerprint}")
    return 0


def _imk_ac_import(args: argparse.Namespace) -> KeyImport | None:
    """The IMK-AC of ``--import-imk-ac`` with its ``--imk-ac-kcv`` (both or neither)."""
    if args.import_imk_ac is None and args.imk_ac_kcv is None:
        return None
    if args.import_imk_ac is None or args.imk_ac_kcv is None:
        raise ServerSetupError("give both --import-imk-ac and --imk-ac-kcv")
    try:
        value, kcv = bytes.fromhex(args.import_imk_ac), bytes.fromhex(args.imk_ac_kcv)
    except ValueError:
        raise ServerSetupError("--import-imk-ac, --imk-ac-kcv: expected hexadecimal") from None
    if len(value) != 16 or len(kcv) != 3:
        raise ServerSetupError("--import-imk-ac: 32 hex digits; --imk-ac-kcv: 6 hex digits")
    return KeyImport(value, kcv)


def _initialise(
    directory: ServerDir, hsm: str, with_tls: bool, imk_ac: KeyImport | None
) -> tuple[InitSummary, TlsFiles | None]:
    """Make the HSM keys, the store and the TLS files; server.json is written last, so
    a directory without it was never completely initialised."""
    if hsm == "soft":
        _create_soft_hsm(directory)
    tls = make_test_pki(directory.path / "tls") if with_tls else None
    with open_hsm(directory, hsm) as opened:
        store = SqliteStore(directory.store)
        try:
            summary = TokenService(opened, store, _utc_now).initialise(imk_ac=imk_ac)
        finally:
            store.close()
    config: dict[str, Any] = {"hsm": hsm, "tls": None}
    if tls is not None:
        config["tls"] = {
            "certificate": str(tls.certificate),
            "key": str(tls.key),
            "ca": str(tls.ca_certificate),
        }
    directory.config.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return summary, tls


def _remove_new_files(path: Path, existed: set[Path]) -> None:
    """Undo a failed init: remove what it created, leaving what was there before."""
    for entry in sorted(set(path.rglob("*")) - existed, reverse=True):
        if any(entry.is_relative_to(old) for old in existed):
            continue
        if entry.is_dir():
            entry.rmdir()
        else:
            entry.unlink()


def _create_soft_hsm(directory: ServerDir) -> None:
    """A new soft HSM key file under the master key of the environment, or a new one
    written to DIR/master.key (mode 0600)."""
    if os.environ.get(MASTER_KEY_ENV):
        master = read_master_key()
    else:
        master = secrets.token_bytes(32)
        fd = os.open(directory.master_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(master.hex() + "\n")
    SoftHsm.create(directory.key_file, master)


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


def _icc_key(args: argparse.Namespace) -> oda.RsaPublicKey:
    """The ICC public key of the command line, or a throw-away one of the profile's size."""
    specs = [app.oda for app in load_profile(args.profile).applications if app.oda.enabled]
    if not specs:
        raise ServerSetupError(f"profile {args.profile!r} does no offline data authentication")
    spec = specs[0]
    exponent = args.icc_exponent or spec.icc_exponent
    if args.icc_modulus is None:
        return oda.generate_rsa_key(spec.icc_key_bits, exponent).public_key
    try:
        return oda.RsaPublicKey(int(args.icc_modulus, 16), exponent)
    except ValueError:
        raise ServerSetupError("--icc-modulus: expected hexadecimal") from None


def _personalise(args: argparse.Namespace) -> int:
    key = _icc_key(args)
    with open_service(ServerDir(args.directory)) as service:
        result = service.personalise_token(args.token, args.profile, key, actor=CLI_ADMIN)
    print(json.dumps(personalisation_json(result), indent=2))
    return 0


def _openapi(_args: argparse.Namespace) -> int:
    print(json.dumps(openapi_document(version()), indent=2))
    return 0
