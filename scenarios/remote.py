"""A token server that is already running: tap scenarios over HTTPS (``--server URL``).

``emvtap run --server URL`` and ``emvtap tap --server URL`` set up every card on a
token server started elsewhere (``emvtap server init --tls ...`` then ``emvtap
server run``) instead of one made in the process. What they need:

* the URL, ``https://HOST:PORT``;
* the server's TLS certificate to pin: ``--server-cert FILE`` (PEM or DER; its
  SHA-256 is pinned) or ``--server-pin HEX`` (the SHA-256 ``init`` printed). With
  a pin the pin alone authenticates the server, as the phone's client does; with
  neither the system's CAs and the host name do;
* the admin credential ``init`` printed, in :data:`CREDENTIAL_ENV`;
* for plastic cards, the IMK-AC the server was initialised with
  (``init --import-imk-ac``), in :data:`IMK_AC_ENV` (32 hex digits): each plastic
  card's :class:`hce.card.SoftIssuer` derives the card's keys from it, so the
  server's issuer host verifies its cryptograms. Without it a plastic card is an
  error (its scenario errors; HCE cards do not need it).

Everything then goes over HTTPS: :func:`connect` checks the server answers
(``GET /v1/health``) and that the credential is an admin's by creating an acquirer
credential, once per run; :class:`RemoteBackOffice` is the admin's side of
:class:`scenarios.tap.BackOffice` (``POST /v1/tokens``, ``/v1/tokens/{id}/devices``,
``/v1/cards``, suspensions); :class:`RemoteDevice` is the phone's side: its key
batches and log through the wallet's own pinned client
(:class:`hce.wallet.HttpTokenServer`), its personalisation with its own
credential. The terminal's host is :class:`terminal.host.HttpHost` with the
acquirer credential; the CA key the terminal needs for an HCE card comes from the
personalisation answer (``ca_public_key``), and :func:`check_certified` makes sure
the certificates the server signed fit the card the phone built.

A server that cannot be reached, a certificate that does not match the pin, a
credential that is not an admin's: :class:`RemoteError`, one line naming the server
and the problem, never a credential (``emvtap run`` stops before the first scenario
with exit status 2). Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import secrets
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from cryptography import x509

from emv.crypto import oda
from hce.card.personalise import CardImage, IccCertificates
from hce.card.profile import CardProfile
from hce.server import vault
from hce.server.personalisation import Personalisation
from hce.server.service import TokenRecord
from hce.server.tls import certificate_fingerprint
from hce.wallet import HttpTokenServer, KeyFamily
from hce.wallet.client import certificate_matches, tls_context

__all__ = [
    "CREDENTIAL_ENV",
    "IMK_AC_ENV",
    "RemoteBackOffice",
    "RemoteDevice",
    "RemoteError",
    "RemoteServer",
    "add_server_options",
    "check_certified",
    "connect",
    "fresh_pan",
    "server_from_args",
]

CREDENTIAL_ENV = "EMVTAP_SERVER_CREDENTIAL"
"""The environment variable holding the token server's admin credential."""
IMK_AC_ENV = "EMVTAP_IMK_AC"
"""The environment variable holding the IMK-AC the server imported (plastic cards)."""
TIMEOUT_S = 10.0
_HEX = re.compile(r"\A(?:[0-9A-Fa-f]{2})*\Z")


class RemoteError(ValueError):
    """The token server cannot be used as asked: one line naming it and the problem."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _pin(text: str) -> bytes:
    """``--server-pin``: 64 hex digits (colons and blanks allowed between them)."""
    digits = re.sub(r"[\s:]", "", text)
    if len(digits) != 64 or not _HEX.match(digits):
        raise RemoteError(
            f"--server-pin {text!r}: expected the certificate's SHA-256, 64 hex digits"
        )
    return bytes.fromhex(digits)


def certificate_pin(path: Path) -> bytes:
    """The SHA-256 of the certificate in ``path`` (PEM or DER): what clients pin."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise RemoteError(f"--server-cert {path}: cannot read: {err.strerror}") from None
    try:
        if b"-----BEGIN" in raw:
            return bytes.fromhex(certificate_fingerprint(raw))
        x509.load_der_x509_certificate(raw)
    except ValueError:
        raise RemoteError(f"--server-cert {path}: not a PEM or DER certificate") from None
    return hashlib.sha256(raw).digest()


def _imk_ac(environ: Mapping[str, str]) -> bytes | None:
    text = environ.get(IMK_AC_ENV, "").strip()
    if not text:
        return None
    if len(text) != 32 or not _HEX.match(text):
        raise RemoteError(f"{IMK_AC_ENV}: expected the IMK-AC as 32 hex digits")
    return bytes.fromhex(text)


@dataclass(frozen=True)
class RemoteServer:
    """A running token server and what it takes to use it (module docstring). Picklable:
    ``emvtap run -j N`` hands it to its workers. Secrets stay out of its repr."""

    url: str
    admin_credential: str = field(repr=False)
    pin_sha256: bytes | None = None
    cafile: Path | None = None
    imk_ac: bytes | None = field(default=None, repr=False)
    acquirer_credential: str | None = field(default=None, repr=False)
    timeout: float = TIMEOUT_S

    def __post_init__(self) -> None:
        _address(self.url)
        if self.pin_sha256 is not None and len(self.pin_sha256) != 32:
            raise RemoteError("the pin is the 32-byte SHA-256 of the server's certificate")
        if not self.admin_credential:
            raise RemoteError(f"--server: no admin credential (set {CREDENTIAL_ENV})")

    @classmethod
    def from_options(
        cls,
        url: str,
        *,
        certificate: Path | None = None,
        pin: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> RemoteServer:
        """From the command line's ``--server``, ``--server-cert``, ``--server-pin`` and
        the environment (:data:`CREDENTIAL_ENV`, :data:`IMK_AC_ENV`)."""
        env = os.environ if environ is None else environ
        _address(url)
        if certificate is not None and pin is not None:
            raise RemoteError("give --server-cert or --server-pin, not both")
        credential = env.get(CREDENTIAL_ENV, "").strip()
        if not credential:
            raise RemoteError(
                f"--server {url}: the token server's admin credential goes in the "
                f"environment variable {CREDENTIAL_ENV} ('emvtap server init' printed it)"
            )
        sha256 = certificate_pin(certificate) if certificate is not None else None
        if pin is not None:
            sha256 = _pin(pin)
        return cls(url.rstrip("/"), credential, sha256, None, _imk_ac(env))

    @property
    def where(self) -> str:
        """The server as messages name it."""
        host, port = _address(self.url)
        return f"token server {host}:{port}"

    def client(self) -> ApiClient:
        """An API client for this server."""
        return ApiClient(self)

    def wallet_client(self, device_id: str, credential: str) -> HttpTokenServer:
        """The phone's own client (the wallet's), pinned the same way."""
        return HttpTokenServer(
            self.url,
            device_id,
            credential,
            pin_sha256=self.pin_sha256,
            cafile=self.cafile,
            timeout=self.timeout,
        )


def _address(url: str) -> tuple[str, int]:
    """``https://HOST:PORT`` -> (HOST, PORT); a RemoteError for anything else."""
    problem = f"--server {url!r}: expected https://HOST:PORT"
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise RemoteError(problem) from None
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise RemoteError(problem)
    return parts.hostname, port


# --- the API over HTTPS --------------------------------------------------------------------------


class ApiClient:
    """JSON requests to the token server's API over pinned HTTPS (standard library)."""

    def __init__(self, server: RemoteServer) -> None:
        self.server = server
        self._host, self._port = _address(server.url)
        self._prefix = urlsplit(server.url).path.rstrip("/")
        self._context = tls_context(server.cafile, pinned=server.pin_sha256 is not None)

    def __repr__(self) -> str:
        return f"ApiClient({self.server.url})"

    def call(
        self, method: str, path: str, body: Mapping[str, Any] | None, credential: str | None
    ) -> dict[str, Any]:
        """One request; the JSON object of a 2xx answer, else :class:`RemoteError`."""
        where = self.server.where
        connection = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=self.server.timeout
        )
        headers = {"Accept": "application/json"}
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            connection.connect()
            self._check_pin(connection)
            connection.request(method, self._prefix + path, body=data, headers=headers)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except TimeoutError:
            raise RemoteError(
                f"{where}: no answer within {self.server.timeout:g} s (time-out)"
            ) from None
        except ssl.SSLError as err:
            raise RemoteError(f"{where}: TLS failed: {err.reason or err}") from None
        except ConnectionRefusedError:
            raise RemoteError(f"{where}: connection refused") from None
        except (OSError, http.client.HTTPException) as err:
            raise RemoteError(f"{where} unreachable: {str(err) or type(err).__name__}") from None
        finally:
            connection.close()
        return _answer(where, method, path, status, raw)

    def _check_pin(self, connection: http.client.HTTPSConnection) -> None:
        pin = self.server.pin_sha256
        if pin is not None and not certificate_matches(connection, pin):
            raise RemoteError(
                f"{self.server.where}: TLS failed: the certificate does not match the pinned "
                "SHA-256 (--server-cert / --server-pin)"
            )


def _answer(where: str, method: str, path: str, status: int, raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw) if raw else None
    except ValueError:
        document = None
    if 200 <= status < 300 and isinstance(document, dict):
        return document
    endpoint = re.sub(r"/[0-9a-fA-F]{16,}(?=/|$)", "/{id}", path)  # ids are not secrets; short
    if not isinstance(document, dict):
        raise RemoteError(
            f"{where}: {method} {endpoint} answered HTTP {status} without a JSON object", status
        )
    code, message = document.get("error", ""), document.get("message", "")
    raise RemoteError(
        f"{where}: {method} {endpoint} answered HTTP {status} {code}: {message}", status
    )


def connect(server: RemoteServer, name: str = "emvtap-run") -> RemoteServer:
    """Check ``server`` is usable before anything runs: it answers ``GET /v1/health``
    over the pinned connection, and the admin credential creates an acquirer
    credential (named ``name`` and a random suffix); ``server`` with that credential."""
    client = server.client()
    health = client.call("GET", "/v1/health", None, None)
    if health.get("status") != "ok":
        raise RemoteError(f"{server.where}: /v1/health answered {health!r}, not status ok")
    acquirer = RemoteBackOffice(server).create_credential("acquirer", name)
    return replace(server, acquirer_credential=acquirer)


# --- the admin's side and the phone's side -------------------------------------------------------


def _text(document: Mapping[str, Any], name: str, where: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise RemoteError(f"{where}: answer field {name!r} is not text")
    return value


def _hex(document: Mapping[str, Any], name: str, where: str) -> bytes:
    value = _text(document, name, where)
    if not _HEX.match(value):
        raise RemoteError(f"{where}: answer field {name!r} is not hex bytes")
    return bytes.fromhex(value)


def _certificate(document: Any, where: str) -> oda.PublicKeyCertificate:
    if not isinstance(document, Mapping):
        raise RemoteError(f"{where}: a certificate is not an object")
    return oda.PublicKeyCertificate(
        _hex(document, "certificate", where),
        _hex(document, "remainder", where),
        _hex(document, "exponent", where),
    )


def parse_personalisation(document: Mapping[str, Any], where: str) -> Personalisation:
    """The answer of ``POST /v1/devices/{id}/personalisation`` as the service's type."""
    icc = document.get("icc_certificates")
    ca_index = document.get("ca_index")
    if not isinstance(icc, list) or not isinstance(ca_index, int):
        raise RemoteError(f"{where}: the personalisation answer lacks icc_certificates/ca_index")
    ca = document.get("ca_public_key")
    ca_key = None
    if isinstance(ca, Mapping):
        ca_key = oda.RsaPublicKey.from_bytes(
            _hex(ca, "modulus", where), _hex(ca, "exponent", where)
        )
    certificates = IccCertificates(
        _certificate(document.get("issuer_certificate"), where),
        {_hex(item, "aid", where): _certificate(item, where) for item in icc},
    )
    return Personalisation(
        _text(document, "token_id", where),
        _text(document, "profile", where),
        _hex(document, "psn", where),
        _hex(document, "expiry", where),
        _hex(document, "ca_rid", where),
        ca_index,
        certificates,
        ca_key,
    )


@dataclass(frozen=True)
class RemoteDevice:
    """A registered phone's view of the remote token server (:class:`scenarios.tap.Device`):
    batches and log through the wallet's :class:`hce.wallet.HttpTokenServer`, its
    personalisation with its own credential."""

    device_id: str
    wallet_client: HttpTokenServer
    client: ApiClient = field(repr=False)
    credential: str = field(repr=False)

    def fetch_batch(self, kind: KeyFamily, count: int, pin: str | None) -> tuple[bytes, bytes]:
        return self.wallet_client.fetch_batch(kind, count, pin)

    def upload_log(
        self, previous: bytes, entries: Sequence[bytes], macs: Sequence[bytes]
    ) -> dict[str, Any]:
        return self.wallet_client.upload_log(previous, entries, macs)

    def personalise(self, profile: CardProfile, icc_key: oda.RsaPublicKey) -> Personalisation:
        """The server's certificates for the shipped profile of ``profile``'s name (a
        profile with overrides is checked against them by :func:`check_certified`)."""
        body = {
            "profile": profile.name,
            "icc_modulus": icc_key.modulus.to_bytes(icc_key.size, "big").hex().upper(),
            "icc_exponent": icc_key.exponent,
        }
        path = f"/v1/devices/{quote(self.device_id, safe='')}/personalisation"
        answer = self.client.call("POST", path, body, self.credential)
        return parse_personalisation(answer, self.client.server.where)


class RemoteBackOffice:
    """The admin's side of a remote token server (:class:`scenarios.tap.BackOffice`)."""

    def __init__(self, server: RemoteServer) -> None:
        self.server = server
        self.client = server.client()

    def __repr__(self) -> str:
        return f"RemoteBackOffice({self.server.url})"

    def _admin(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            return self.client.call("POST", path, body or {}, self.server.admin_credential)
        except RemoteError as err:
            if err.status not in (401, 403):
                raise
            raise RemoteError(
                f"{err} ({CREDENTIAL_ENV} must hold the server's admin credential)", err.status
            ) from None

    def create_credential(self, role: str, name: str) -> str:
        """A new credential of ``role``, named ``name`` and a random suffix."""
        answer = self._admin(
            "/v1/credentials", {"role": role, "name": f"{name}-{secrets.token_hex(4)}"}
        )
        return _text(answer, "credential", self.server.where)

    def enrol_token(self, funding_pan: str, expiry: str, psn: str, scheme: str) -> TokenRecord:
        answer = self._admin(
            "/v1/tokens",
            {"funding_pan": funding_pan, "expiry": expiry, "psn": psn, "scheme": scheme},
        )
        where = self.server.where
        status = _text(answer, "status", where)
        return TokenRecord(
            _text(answer, "token_id", where),
            scheme,
            _text(answer, "token_pan", where),
            _text(answer, "psn", where),
            _text(answer, "expiry", where),
            "suspended" if status == "suspended" else "active",
        )

    def register_device(self, token_id: str, public_key: bytes) -> RemoteDevice:
        answer = self._admin(
            f"/v1/tokens/{quote(token_id, safe='')}/devices",
            {"public_key": public_key.hex().upper()},
        )
        where = self.server.where
        device_id = _text(answer, "device_id", where)
        credential = _text(answer, "credential", where)
        return RemoteDevice(
            device_id, self.server.wallet_client(device_id, credential), self.client, credential
        )

    def enrol_card(
        self, pan: str, expiry: str, psn: str, scheme: str, cryptogram_version: str
    ) -> str:
        answer = self._admin(
            "/v1/cards",
            {
                "pan": pan,
                "expiry": expiry,
                "psn": psn,
                "scheme": scheme,
                "cryptogram_version": cryptogram_version,
            },
        )
        return _text(answer, "card_id", self.server.where)

    def suspend_token(self, token_id: str) -> None:
        self._admin(f"/v1/tokens/{quote(token_id, safe='')}/suspend")

    def suspend_card(self, card_id: str) -> None:
        self._admin(f"/v1/cards/{quote(card_id, safe='')}/suspend")


# --- what the environment checks ------------------------------------------------------------------


def check_certified(image: CardImage, ca_key: oda.RsaPublicKey, today: date) -> None:
    """Every ODA application of ``image`` carries certificates a terminal holding
    ``ca_key`` accepts over its own static data: the server certified the shipped
    profile of that name, so a card whose overrides change the signed records or the
    AIP would fail ODA for a reason no scenario asked for."""
    profile = image.profile
    for app in image.applications:
        if not app.profile.oda.enabled:
            continue
        data = app.data
        try:
            issuer = oda.recover_issuer_public_key(
                ca_key,
                oda.PublicKeyCertificate(data[0x90], data.get(0x92, b""), data[0x9F32]),
                profile.pan,
                today,
            )
            oda.recover_icc_public_key(
                issuer.public_key,
                oda.PublicKeyCertificate(data[0x9F46], data.get(0x9F48, b""), data[0x9F47]),
                pan=profile.pan,
                static_data=app.static_data,
                today=today,
            )
        except (KeyError, oda.OdaError) as err:
            raise RemoteError(
                f"profile {profile.name}: the token server certified its shipped profile, "
                f"whose signed data differs from this card's (overrides?): {err}; "
                "this card needs the embedded server (no --server)"
            ) from None


def fresh_pan(pan: str) -> str:
    """A random Luhn-valid PAN of ``pan``'s length and first six digits (its BIN, the
    issuer identifier its certificates name): a server enrols a PAN only once."""
    return vault.new_token_pan(pan[:6], len(pan))


# --- the command line ------------------------------------------------------------------------


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """``--server URL``, ``--server-cert FILE``, ``--server-pin HEX``."""
    group = parser.add_argument_group(
        "a token server already running",
        f"The admin credential comes from {CREDENTIAL_ENV}; plastic cards need the IMK-AC "
        f"the server was initialised with in {IMK_AC_ENV} (32 hex digits).",
    )
    group.add_argument(
        "--server",
        metavar="URL",
        help="use the token server at URL (https://HOST:PORT) instead of one in this process",
    )
    group.add_argument(
        "--server-cert", type=Path, metavar="FILE", help="the server's certificate to pin (PEM)"
    )
    group.add_argument(
        "--server-pin", metavar="HEX", help="the SHA-256 of the server's certificate, to pin"
    )


def server_from_args(args: argparse.Namespace) -> RemoteServer | None:
    """The :class:`RemoteServer` of :func:`add_server_options`' options (None without
    ``--server``)."""
    if args.server is None:
        if args.server_cert is not None or args.server_pin is not None:
            raise RemoteError("--server-cert and --server-pin go with --server URL")
        return None
    return RemoteServer.from_options(args.server, certificate=args.server_cert, pin=args.server_pin)
