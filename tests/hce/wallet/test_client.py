"""The HTTPS token server client against a small local TLS server (a test double of the
token server API), including certificate pinning."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import ipaddress
import json
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emv.crypto import cbp
from emv.crypto.wrap import BatchKind
from hce.wallet import HttpTokenServer, Outcome, ServerError, Wallet

if TYPE_CHECKING:
    from conftest import Issuer

DEVICE_ID = "dev-1"
CREDENTIAL = "cred-0123456789"


def _self_signed(directory: Path, name: str) -> tuple[bytes, Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1: (DER, cert PEM path, key PEM path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert.public_bytes(serialization.Encoding.DER), cert_path, key_path


@dataclass
class Api:
    """The test double's state: what it was asked, what it answers."""

    wallet: Wallet
    issuer: Issuer
    url: str = ""
    der: bytes = b""
    cert_path: Path = Path()
    requests: list[dict[str, Any]] = field(default_factory=list)
    error: tuple[int, str, str] | None = None

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.error is not None:
            status, code, message = self.error
            return status, {"error": code, "message": message}
        if path == f"/api/v1/devices/{DEVICE_ID}/batches":
            if body["kind"] == "LUK":
                keys = [self.issuer.luk(n) for n in range(body["count"])]
                header, envelope = self.issuer.seal(self.wallet.device_point, keys)
            else:
                atcs = range(self.wallet.atc + 1, self.wallet.atc + 1 + body["count"])
                keys = self.issuer.suks(atcs)
                header, envelope = self.issuer.seal(self.wallet.device_point, keys, BatchKind.SUK)
            return 201, {
                "batch_id": header[4:12].hex(),
                "header": header.hex().upper(),
                "envelope": envelope.hex().upper(),
            }
        if path == f"/api/v1/devices/{DEVICE_ID}/log":
            return 200, {"accepted": len(body["entries"])}
        return 404, {"error": "not_found", "message": f"no route {path}"}


def _handler(api: Api) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            api.requests.append(
                {"path": self.path, "auth": self.headers["Authorization"], "body": body}
            )
            status, document = api.answer(self.path, body)
            raw = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    return Handler


@pytest.fixture
def api(wallet: Wallet, issuer: Issuer, tmp_path: Path) -> Iterator[Api]:
    """The token server double on 127.0.0.1 with a self-signed certificate."""
    state = Api(wallet, issuer)
    state.der, state.cert_path, key_path = _self_signed(tmp_path, "server")
    server = http.server.HTTPServer(("127.0.0.1", 0), _handler(state))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(state.cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.url = f"https://127.0.0.1:{server.server_address[1]}/api"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _client(api: Api, *, pin: bytes | None = None, ca: bool = True) -> HttpTokenServer:
    cafile = api.cert_path if ca else None
    return HttpTokenServer(api.url, DEVICE_ID, CREDENTIAL, pin_sha256=pin, cafile=cafile)


def test_replenish_over_https_with_ca_and_pin(wallet: Wallet, api: Api, issuer: Issuer) -> None:
    client = _client(api, pin=hashlib.sha256(api.der).digest())
    assert wallet.replenish_if_low(client, 1, count=2) == 2
    assert wallet.replenish_if_low(client, 3, family="SUK", count=3, pin=issuer.PIN) == 6
    assert api.requests == [
        {
            "path": f"/api/v1/devices/{DEVICE_ID}/batches",
            "auth": f"Bearer {CREDENTIAL}",
            "body": {"kind": "LUK", "count": 2},
        },
        {
            "path": f"/api/v1/devices/{DEVICE_ID}/batches",
            "auth": f"Bearer {CREDENTIAL}",
            "body": {"kind": "SUK", "count": 3, "pin": issuer.PIN},
        },
    ]
    assert wallet.take_suk(100, pin=issuer.PIN).key == cbp.derive_suk_uv(issuer.MK, b"\x00\x01")


def test_log_upload_over_https(wallet: Wallet, api: Api, issuer: Issuer) -> None:
    client = _client(api, pin=hashlib.sha256(api.der).digest(), ca=False)
    wallet.replenish_if_low(client, 1, count=1)
    grant = wallet.take_luk(100)
    data = issuer.terminal_data(grant.atc, 100)
    mac = wallet.record(
        grant, data, grant.cryptogram(data, b"\x00" * 4), b"\x80", Outcome.ONLINE_REQUESTED
    )
    _, entries, _ = wallet.pending_log()
    assert wallet.upload_log(client) == {"accepted": 1}
    assert api.requests[-1]["body"] == {
        "previous": "0000000000000000",
        "entries": [entries[0].hex().upper()],
        "macs": [mac.hex().upper()],
    }
    assert wallet.pending_log() == (mac, [], [])


def test_a_pin_mismatch_is_refused_before_the_request(wallet: Wallet, api: Api) -> None:
    wrong = hashlib.sha256(b"another certificate").digest()
    for client in (_client(api, pin=wrong), _client(api, pin=wrong, ca=False)):
        with pytest.raises(ServerError, match="does not match the pinned fingerprint"):
            wallet.replenish_if_low(client, 1, count=1)
    _client(api).upload_log(bytes(8), [b"\xe2\x00"], [bytes(8)])
    assert [r["path"] for r in api.requests] == [f"/api/v1/devices/{DEVICE_ID}/log"]
    assert wallet.usable_keys("LUK") == 0


def test_an_unknown_certificate_fails_ca_verification(wallet: Wallet, api: Api) -> None:
    with pytest.raises(ServerError, match="unreachable: SSLCertVerificationError"):
        wallet.replenish_if_low(_client(api, ca=False), 1, count=1)
    assert api.requests == []


def test_server_errors_name_status_and_message(wallet: Wallet, api: Api) -> None:
    api.error = (409, "too_many_keys", "device has 40 keys outstanding")
    with pytest.raises(ServerError, match="answered 409 too_many_keys: device has 40 keys") as err:
        wallet.replenish_if_low(_client(api), 1, count=1)
    assert (err.value.status, err.value.code) == (409, "too_many_keys")


def test_unreachable_server() -> None:
    client = HttpTokenServer("https://127.0.0.1:1/", DEVICE_ID, CREDENTIAL, timeout=2)
    with pytest.raises(
        ServerError, match=re.escape("127.0.0.1:1 unreachable: ConnectionRefusedError")
    ):
        client.upload_log(bytes(8), [], [])


def test_the_credential_stays_out_of_sight() -> None:
    client = HttpTokenServer("https://tokens.example/api", DEVICE_ID, CREDENTIAL)
    assert CREDENTIAL not in repr(client)
    assert repr(client) == f"HttpTokenServer(https://tokens.example:443/api/v1/devices/{DEVICE_ID})"
    with pytest.raises(ValueError, match="https://"):
        HttpTokenServer("http://tokens.example", DEVICE_ID, CREDENTIAL)
