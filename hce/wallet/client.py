"""The token server over HTTPS, standard library only: the wallet's :class:`TokenServer`.

The API (JSON bodies, bytes as uppercase hex, ``Authorization: Bearer <credential>``)::

    POST {base}/v1/devices/{device_id}/batches  {"kind", "count", "pin"?}
         -> {"batch_id", "header", "envelope"}
    POST {base}/v1/devices/{device_id}/log      {"entries": [...], "macs": [...]}
         -> report

Errors come back as non-2xx with ``{"error": code, "message": text}``. The client
can pin the server's certificate: the SHA-256 of its DER encoding is checked right
after the TLS handshake, before a byte of the request is sent; with a pin and no
CA file, the pin alone authenticates the server.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from hce.wallet.errors import ServerError
from hce.wallet.wallet import KeyFamily

__all__ = ["HttpTokenServer", "certificate_matches", "tls_context"]


def tls_context(cafile: Path | None, pinned: bool) -> ssl.SSLContext:
    """CA verification against ``cafile`` (or the system CAs); none when the server is
    authenticated by its pinned certificate only. TLS 1.2 at least, as the server."""
    if cafile is not None or not pinned:
        context = ssl.create_default_context(cafile=cafile)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def certificate_matches(connection: http.client.HTTPSConnection, pin_sha256: bytes) -> bool:
    """True when the connected server's certificate (DER) has the SHA-256 ``pin_sha256``;
    checked right after the handshake, before a byte of the request is sent."""
    sock = connection.sock
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    return der is not None and hmac.compare_digest(hashlib.sha256(der).digest(), pin_sha256)


class HttpTokenServer:
    """One device's view of the token server API."""

    def __init__(
        self,
        base_url: str,
        device_id: str,
        credential: str,
        *,
        pin_sha256: bytes | None = None,
        cafile: Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"base_url must be an https:// URL, got {base_url!r}")
        if pin_sha256 is not None and len(pin_sha256) != 32:
            raise ValueError("pin_sha256 must be the 32-byte SHA-256 of the certificate")
        self._host, self._port = url.hostname, url.port or 443
        self._prefix = f"{url.path.rstrip('/')}/v1/devices/{quote(device_id, safe='')}"
        self._credential = credential
        self._pin = pin_sha256
        self._context = tls_context(cafile, pinned=pin_sha256 is not None)
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"HttpTokenServer(https://{self._host}:{self._port}{self._prefix})"

    def fetch_batch(self, kind: KeyFamily, count: int, pin: str | None) -> tuple[bytes, bytes]:
        """POST .../batches: a new batch of ``count`` keys (an SUK batch needs the PIN to
        mask its SUK-UVs)."""
        body: dict[str, Any] = {"kind": kind, "count": count}
        if pin is not None:
            body["pin"] = pin
        answer = self._post("/batches", body)
        try:
            return bytes.fromhex(answer["header"]), bytes.fromhex(answer["envelope"])
        except (KeyError, TypeError, ValueError):
            raise ServerError(
                "token server answered a batch without hex header and envelope"
            ) from None

    def upload_log(
        self, previous: bytes, entries: Sequence[bytes], macs: Sequence[bytes]
    ) -> dict[str, Any]:
        """POST .../log: the pending entries, their chained MACs and the MAC they chain
        from; the server's report."""
        body = {
            "previous": previous.hex().upper(),
            "entries": [e.hex().upper() for e in entries],
            "macs": [m.hex().upper() for m in macs],
        }
        return self._post("/log", body)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        where = f"token server {self._host}:{self._port}"
        connection = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=self._timeout
        )
        try:
            connection.connect()
            self._check_pin(connection, where)
            connection.request(
                "POST",
                self._prefix + path,
                body=json.dumps(body).encode("utf-8"),
                headers={
                    "Authorization": f"Bearer {self._credential}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
            )
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except (OSError, http.client.HTTPException) as err:
            raise ServerError(f"{where} unreachable: {type(err).__name__}: {err}") from None
        finally:
            connection.close()
        return _answer(where, status, raw)

    def _check_pin(self, connection: http.client.HTTPSConnection, where: str) -> None:
        if self._pin is not None and not certificate_matches(connection, self._pin):
            raise ServerError(f"{where}: certificate does not match the pinned fingerprint")


def _answer(where: str, status: int, raw: bytes) -> dict[str, Any]:
    """The JSON object of a 2xx answer; ServerError naming status, code and message else."""
    try:
        document = json.loads(raw) if raw else {}
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ServerError(f"{where} answered {status} without a JSON object", status)
    if not 200 <= status < 300:
        code, message = str(document.get("error", "")), str(document.get("message", ""))
        raise ServerError(f"{where} answered {status} {code}: {message}", status, code)
    return document
