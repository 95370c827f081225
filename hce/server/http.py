"""Serving the API over HTTP(S) with the standard library, on loopback by default.

A :class:`ApiServer` is a threading HTTP server whose handler reads a bounded
JSON body, hands it to :func:`hce.server.api.dispatch` and writes the JSON
answer. Given a certificate and key it serves TLS only. The access log names
method, path, status and time, never a body or a credential.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hce.server.api import MAX_BODY, dispatch
from hce.server.openapi import openapi_document
from hce.server.service import TokenService

__all__ = ["ApiServer", "tls_context"]

log = logging.getLogger("emvtap.server.access")


def tls_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later) from PEM files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


class ApiServer(ThreadingHTTPServer):
    """The token server's HTTP(S) endpoint."""

    daemon_threads = True

    def __init__(
        self,
        service: TokenService,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        *,
        version: str = "0",
    ) -> None:
        super().__init__((host, port), _Handler)
        self.service = service
        self.version = version
        self.scheme = "https" if tls else "http"
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "emvtap"
    # TCP_NODELAY: the headers and the body leave in two writes; with Nagle the second
    # waits for the client's delayed ACK (~40 ms an answer).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        status, body = self._route(method, path)
        payload = json.dumps(body, indent=None).encode()
        # logged before the answer leaves, so a client that has it finds it in the log
        log.info("%s %s %d %.1f ms", method, path, status, (time.perf_counter() - started) * 1000)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(self, method: str, path: str) -> tuple[int, Any]:
        if method == "GET" and path == "/v1/openapi.json":
            return 200, openapi_document(self.server.version)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return 413, {"error": "too_large", "message": f"body over {MAX_BODY} bytes"}
        body = self.rfile.read(length) if length else b""
        return dispatch(self.server.service, method, path, self.headers.get("Authorization"), body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr log: :meth:`_answer` logs without secrets."""
