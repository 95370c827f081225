"""HttpHost: POST /v1/authorisations over HTTPS on loopback, and every way it can fail.

A small HTTPS server in this process (the standard library's, with a TLS PKI made
now by hce.server.tls) answers what each test sets and records what it was sent;
the real token server's ApiServer is used where its own answers are the point.
Failures (refused, time-out, TLS, non-2xx, not the expected JSON, a pin that does
not match) are HostUnavailable naming the host and the problem, never the
credential.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hce.hsm.soft import SoftHsm
from hce.server import ServerConfig, SqliteStore, TokenService
from hce.server.http import ApiServer, tls_context
from hce.server.tls import TlsFiles, make_test_pki
from terminal.host import HostResponse, HostUnavailable, HttpHost

POLL = 0.02  # seconds between the servers' shutdown checks (teardown latency)
CREDENTIAL = "acq-secret-credential-0123456789"
ICC_DATA = bytes.fromhex("9F2701809F360200019F26081122334455667788")
APPROVAL = {
    "authorisation_id": "a1b2c3d4e5f60718",
    "decision": "approved",
    "reason": "approved",
    "detail": "",
    "arc": "3030",
    "arpc": "0123456789ABCDEF",
    "csu": None,
}


@dataclass
class Canned:
    """What the fake host answers, and what it was asked."""

    status: int = 200
    body: bytes = json.dumps(APPROVAL).encode()
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # the client's port of each request
    close_after: bool = False  # close the connection after answering, without saying so
    hang_up: bool = False  # close the connection without answering


class _Handler(BaseHTTPRequestHandler):
    server: _FakeHost
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        canned = self.server.canned
        canned.requests.append(("POST", self.path, dict(self.headers.items()), body))
        canned.ports.append(self.client_address[1])
        if canned.hang_up:
            self.close_connection = True
            return
        self.close_connection = canned.close_after
        self.send_response(canned.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(canned.body)))
        self.end_headers()
        self.wfile.write(canned.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _FakeHost(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: TlsFiles) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.socket = tls_context(tls.certificate, tls.key).wrap_socket(
            self.socket, server_side=True
        )
        self.canned = Canned()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_test_pki(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def fake(tls: TlsFiles) -> Iterator[_FakeHost]:
    server = _FakeHost(tls)
    thread = threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def closed_hosts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every HttpHost a test makes is closed after it (it keeps its connection)."""
    made: list[HttpHost] = []
    init = HttpHost.__init__

    def recording(self: HttpHost, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(HttpHost, "__init__", recording)
    yield
    for host in made:
        host.close()


def _host(url: str, tls: TlsFiles, **options: Any) -> HttpHost:
    options.setdefault("cafile", tls.ca_certificate)
    return HttpHost(url, CREDENTIAL, **options)


def _unavailable(host: HttpHost) -> str:
    with pytest.raises(HostUnavailable) as caught:
        host.authorise(ICC_DATA)
    message = str(caught.value)
    assert CREDENTIAL not in message
    return message


# --- answers ---------------------------------------------------------------------------------


def test_an_approval_maps_to_a_host_response_with_the_arpc(fake: _FakeHost, tls: TlsFiles) -> None:
    answer = _host(fake.url, tls).authorise(ICC_DATA)
    assert answer == HostResponse(
        approved=True,
        reason="approved",
        arc=b"00",
        arpc=bytes.fromhex("0123456789ABCDEF"),
        csu=None,
        authorisation_id="a1b2c3d4e5f60718",
    )


def test_the_request_posts_the_icc_data_as_hex_with_the_bearer_credential(
    fake: _FakeHost, tls: TlsFiles
) -> None:
    HttpHost(fake.url + "/base/", CREDENTIAL, cafile=tls.ca_certificate).authorise(ICC_DATA)
    ((method, path, headers, body),) = fake.canned.requests
    assert (method, path) == ("POST", "/base/v1/authorisations")
    assert headers["Authorization"] == f"Bearer {CREDENTIAL}"
    assert json.loads(body) == {"icc_data": ICC_DATA.hex().upper()}


def test_a_decline_with_a_csu_maps_to_a_declined_response(fake: _FakeHost, tls: TlsFiles) -> None:
    fake.canned.body = json.dumps(
        {
            **APPROVAL,
            "decision": "declined",
            "reason": "over_amount",
            "arc": "3035",
            "csu": "00000000",
        }
    ).encode()
    answer = _host(fake.url, tls).authorise(ICC_DATA)
    assert (answer.approved, answer.reason, answer.arc, answer.csu) == (
        False,
        "over_amount",
        b"05",
        bytes(4),
    )


def test_a_pinned_certificate_alone_authenticates_the_server(
    fake: _FakeHost, tls: TlsFiles
) -> None:
    pin = bytes.fromhex(tls.fingerprint)
    assert _host(fake.url, tls, cafile=None, pin_sha256=pin).authorise(ICC_DATA).approved


# --- failures --------------------------------------------------------------------------------


def test_connection_refused_is_host_unavailable(tls: TlsFiles) -> None:
    with socket.socket() as probe:  # a port nobody listens on any more
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = _unavailable(_host(f"https://127.0.0.1:{port}", tls))
    assert f"127.0.0.1:{port}" in message and "refused" in message


def test_a_server_that_never_answers_times_out(tls: TlsFiles) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        message = _unavailable(_host(f"https://127.0.0.1:{port}", tls, timeout=0.2))
    assert "time-out" in message and "0.2 s" in message


def test_a_certificate_that_is_not_the_pinned_one_is_refused(
    fake: _FakeHost, tls: TlsFiles
) -> None:
    wrong = hashlib.sha256(b"another certificate").digest()
    message = _unavailable(_host(fake.url, tls, cafile=None, pin_sha256=wrong))
    assert "pinned" in message
    assert fake.canned.requests == [], "nothing is sent to a server that fails the pin"


def test_a_server_certificate_from_another_ca_fails_tls(fake: _FakeHost, tmp_path: Path) -> None:
    other = make_test_pki(tmp_path / "other")
    message = _unavailable(HttpHost(fake.url, CREDENTIAL, cafile=other.ca_certificate))
    assert "TLS failed" in message and "CERTIFICATE_VERIFY_FAILED" in message


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, b'{"error": "internal", "message": "boom"}', "HTTP 500 internal: boom"),
        (401, b'{"error": "unauthorised", "message": "unknown credential"}', "HTTP 401"),
        (502, b"<html>bad gateway</html>", "HTTP 502"),
    ],
    ids=["500-json", "401", "502-html"],
)
def test_a_status_other_than_2xx_is_host_unavailable(
    fake: _FakeHost, tls: TlsFiles, status: int, body: bytes, expected: str
) -> None:
    fake.canned.status, fake.canned.body = status, body
    assert expected in _unavailable(_host(fake.url, tls))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json at all", "without a JSON object"),
        (b"[1, 2, 3]", "without a JSON object"),
        (b"", "without a JSON object"),
        (json.dumps({**APPROVAL, "decision": "maybe"}).encode(), "'decision'"),
        (json.dumps({**APPROVAL, "arc": "3G30"}).encode(), "'arc' is not hex"),
        (json.dumps({**APPROVAL, "arc": None}).encode(), "'arc' is not hex"),
        (json.dumps({**APPROVAL, "arpc": 12}).encode(), "'arpc' is not hex"),
        (json.dumps({**APPROVAL, "reason": 7}).encode(), "'reason'"),
    ],
    ids=["text", "list", "empty", "decision", "arc-hex", "arc-missing", "arpc-type", "reason"],
)
def test_a_body_that_is_not_the_expected_json_is_host_unavailable(
    fake: _FakeHost, tls: TlsFiles, body: bytes, expected: str
) -> None:
    fake.canned.body = body
    assert expected in _unavailable(_host(fake.url, tls))


@pytest.mark.parametrize(
    ("url", "options", "problem"),
    [
        ("http://127.0.0.1:1", {}, "https://"),
        ("https://127.0.0.1:1", {"pin_sha256": b"short"}, "32-byte"),
        ("https://127.0.0.1:1", {"timeout": 0}, "timeout"),
    ],
)
def test_a_host_that_cannot_be_configured_says_why(
    url: str, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        HttpHost(url, CREDENTIAL, **options)


def test_the_credential_does_not_appear_in_the_repr() -> None:
    assert CREDENTIAL not in repr(HttpHost("https://127.0.0.1:8443", CREDENTIAL))


# --- the real token server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(
    tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles
) -> Iterator[tuple[str, str]]:
    """The token server's ApiServer over TLS, and an acquirer credential for it."""
    directory = tmp_path_factory.mktemp("token-server")
    store = SqliteStore(directory / "store.sqlite")
    service = TokenService(
        SoftHsm.create(directory / "keys", bytes(32)),
        store,
        lambda: datetime.now(UTC),
        ServerConfig(ca_bits=1024, issuer_bits=1024),
    )
    summary = service.initialise()
    assert summary.admin_credential is not None
    admin = service.authenticate(summary.admin_credential)
    acquirer = service.create_credential("acquirer", "pos", actor=admin)
    api = ApiServer(service, "127.0.0.1", 0, tls_context(tls.certificate, tls.key))
    thread = threading.Thread(target=api.serve_forever, args=(POLL,), daemon=True)
    thread.start()
    yield api.url, acquirer
    api.shutdown()
    api.server_close()
    thread.join()
    store.close()


def test_the_token_server_declines_icc_data_it_cannot_read(
    token_server: tuple[str, str], tls: TlsFiles
) -> None:
    url, acquirer = token_server
    answer = HttpHost(url, acquirer, cafile=tls.ca_certificate).authorise(ICC_DATA)
    assert (answer.approved, answer.reason, answer.arc, answer.arpc) == (
        False,
        "malformed",
        b"05",
        None,
    )
    assert len(answer.authorisation_id) == 16


def test_the_token_server_refusing_the_credential_is_host_unavailable(
    token_server: tuple[str, str], tls: TlsFiles
) -> None:
    url, _ = token_server
    message = _unavailable(HttpHost(url, CREDENTIAL, cafile=tls.ca_certificate))
    assert "HTTP 401 unauthorised" in message


# --- the kept connection -----------------------------------------------------------------------


def test_one_connection_serves_every_authorisation_until_closed(
    fake: _FakeHost, tls: TlsFiles
) -> None:
    with _host(fake.url, tls) as host:
        for _ in range(3):
            assert host.authorise(ICC_DATA).approved
    host.authorise(ICC_DATA)  # closed: a new connection
    ports = fake.canned.ports
    assert len(ports) == 4 and len(set(ports[:3])) == 1 and ports[3] != ports[0]


def test_a_connection_the_server_closed_while_idle_is_opened_again_once(
    fake: _FakeHost, tls: TlsFiles
) -> None:
    fake.canned.close_after = True  # every answer's connection is then closed
    host = _host(fake.url, tls)
    assert host.authorise(ICC_DATA).approved
    assert host.authorise(ICC_DATA).approved  # the kept one was closed: sent again, anew
    ports = fake.canned.ports
    assert len(ports) == 2 and ports[0] != ports[1]


def test_a_new_connection_closed_without_an_answer_is_not_sent_again(
    fake: _FakeHost, tls: TlsFiles
) -> None:
    fake.canned.hang_up = True
    message = _unavailable(_host(fake.url, tls))
    assert "unreachable" in message and len(fake.canned.requests) == 1
