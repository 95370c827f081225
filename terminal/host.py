"""The `Host` seam: online authorisation, as a terminal sees its acquirer.

After an Online Request outcome the terminal sends the kernel's data record (the
ICC data of ISO 8583 DE 55, BER-TLV) to a :class:`Host` and gets a
:class:`HostResponse`: the decision, the Authorisation Response Code (8A), and
the ARPC (with a Card Status Update for ARPC method 2) when the issuer verified
the cryptogram. A host that cannot be reached, times out, or answers something
unusable raises :class:`HostUnavailable`; the terminal then ends the transaction
the way its kernel prescribes for "unable to go online".

Implementations: :class:`HttpHost` (the token server's ``POST /v1/authorisations``
over HTTPS); the in-process adapter around a token server lives in ``scenarios``,
which is the only package that may wire the terminal to ``hce``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

__all__ = ["Host", "HostResponse", "HostUnavailable", "HttpHost"]


class HostUnavailable(Exception):
    """The host could not be asked or did not answer usably (down, time-out, garbage)."""


# What a kept connection that the server closed while idle gives (HttpHost docstring).
_STALE = (
    http.client.RemoteDisconnected,
    BrokenPipeError,
    ConnectionResetError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class _ClosedWhileIdle(HostUnavailable):
    """The connection was closed before any answer came (one of :data:`_STALE`)."""


@dataclass(frozen=True)
class HostResponse:
    """The authorisation response (Book 3 §10.9, Book 4 §12.2): ``arc`` is 8A (2 bytes,
    ASCII "00" approved), ``arpc`` and ``csu`` the issuer authentication data when the
    cryptogram verified; ``reason`` the host's reason in words (e.g. "replay")."""

    approved: bool
    reason: str
    arc: bytes
    arpc: bytes | None = None
    csu: bytes | None = None
    authorisation_id: str = ""


class Host(Protocol):
    """An acquirer / issuer that authorises online."""

    def authorise(self, icc_data: bytes) -> HostResponse:
        """Decide on the ICC data (BER-TLV, DE 55); raises :class:`HostUnavailable`."""
        ...


_HEX = re.compile(r"\A(?:[0-9A-Fa-f]{2})*\Z")
AUTHORISATIONS = "/v1/authorisations"


def _client_context(cafile: Path | None, pinned: bool) -> ssl.SSLContext:
    """CA verification against ``cafile`` (or the system CAs); none when the server is
    authenticated by its pinned certificate alone (as the wallet's client does)."""
    if cafile is not None or not pinned:
        context = ssl.create_default_context(cafile=cafile)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class HttpHost:
    """The token server's ``POST /v1/authorisations`` over HTTPS (standard library only).

    The request is ``{"icc_data": HEX}`` with ``Authorization: Bearer <credential>``
    (an acquirer's credential); the answer ``{"decision", "reason", "arc", "arpc",
    "csu", "authorisation_id"}`` with bytes as hex. The server is authenticated by
    ``cafile`` (a CA bundle), or by ``pin_sha256`` (the SHA-256 of its certificate's
    DER encoding, checked right after the handshake, before a byte of the request is
    sent), or both. Whatever goes wrong (refused, time-out, TLS, a status other than
    2xx, a body that is not the expected JSON) is :class:`HostUnavailable`, whose
    message names the host and the problem and never the credential.

    One connection serves every authorisation (HTTP/1.1 keep-alive: a TLS handshake
    costs more than the authorisation), opened and pin-checked when first needed and
    again after the server closes it; :meth:`close` (or ``with``) closes it. A request
    that fails on a connection that had already served one, before any answer came
    (the server closed it while idle), is sent once more on a new connection: the
    token server approves an ATC once at most, so a request that did reach it comes
    back declined as a replay, never approved twice.
    """

    def __init__(
        self,
        url: str,
        credential: str,
        *,
        cafile: Path | None = None,
        pin_sha256: bytes | None = None,
        timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"host URL must be an https:// URL, got {url!r}")
        if pin_sha256 is not None and len(pin_sha256) != hashlib.sha256().digest_size:
            raise ValueError("pin_sha256 must be the 32-byte SHA-256 of the certificate")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self._host = parts.hostname
        self._port = parts.port or 443
        self._path = parts.path.rstrip("/") + AUTHORISATIONS
        self._credential = credential
        self._pin = pin_sha256
        self._context = _client_context(cafile, pinned=pin_sha256 is not None)
        self._timeout = timeout
        self._connection: http.client.HTTPSConnection | None = None
        self._used = False  # the open connection has served a request
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpHost(https://{self._host}:{self._port}{self._path})"

    @property
    def where(self) -> str:
        """The host as messages name it."""
        return f"host {self._host}:{self._port}"

    def authorise(self, icc_data: bytes) -> HostResponse:
        """POST the ICC data; the answer as a :class:`HostResponse` (class docstring)."""
        status, raw = self._post({"icc_data": icc_data.hex().upper()})
        try:
            document = json.loads(raw) if raw else None
        except ValueError:
            document = None
        if not 200 <= status < 300:
            detail = ""
            if isinstance(document, dict):
                detail = f" {document.get('error', '')}: {document.get('message', '')}".rstrip()
            raise HostUnavailable(f"{self.where} answered HTTP {status}{detail}")
        if not isinstance(document, dict):
            raise HostUnavailable(f"{self.where} answered HTTP {status} without a JSON object")
        return self._response(document)

    def close(self) -> None:
        """Close the connection (the next authorisation opens a new one)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> HttpHost:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection, self._used = None, False

    def _post(self, body: dict[str, Any]) -> tuple[int, bytes]:
        data = json.dumps(body).encode("utf-8")
        with self._lock:
            reused = self._used
            try:
                return self._exchange(data)
            except _ClosedWhileIdle:
                self._drop()
                if not reused:
                    raise
            except BaseException:
                self._drop()
                raise
            try:  # the server closed the kept connection while idle: once more, anew
                return self._exchange(data)
            except BaseException:
                self._drop()
                raise

    def _exchange(self, data: bytes) -> tuple[int, bytes]:
        """One request on the open connection (opened and pin-checked if there is none)."""
        try:
            if self._connection is None:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, context=self._context, timeout=self._timeout
                )
                self._connection = connection
                connection.connect()
                self._check_pin(connection)
            self._connection.request(
                "POST",
                self._path,
                body=data,
                headers={
                    "Authorization": f"Bearer {self._credential}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
            )
            response = self._connection.getresponse()
            answer = response.status, response.read()
            if response.will_close:
                self._drop()
            else:
                self._used = True
            return answer
        except _STALE as err:
            problem = str(err) or type(err).__name__
            raise _ClosedWhileIdle(f"{self.where} unreachable: {problem}") from None
        except TimeoutError:
            raise HostUnavailable(
                f"{self.where}: no answer within {self._timeout:g} s (time-out)"
            ) from None
        except ssl.SSLError as err:
            raise HostUnavailable(f"{self.where}: TLS failed: {err.reason or err}") from None
        except ConnectionRefusedError:
            raise HostUnavailable(f"{self.where}: connection refused") from None
        except (OSError, http.client.HTTPException) as err:
            problem = str(err) or type(err).__name__
            raise HostUnavailable(f"{self.where} unreachable: {problem}") from None

    def _check_pin(self, connection: http.client.HTTPSConnection) -> None:
        if self._pin is None:
            return
        sock = connection.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        if der is None or not hmac.compare_digest(hashlib.sha256(der).digest(), self._pin):
            raise HostUnavailable(
                f"{self.where}: TLS failed: the certificate does not match the pinned SHA-256"
            )

    def _response(self, document: dict[str, Any]) -> HostResponse:
        decision = document.get("decision")
        if decision not in ("approved", "declined"):
            raise HostUnavailable(f"{self.where}: answer field 'decision' is not approved/declined")
        reason = document.get("reason")
        authorisation_id = document.get("authorisation_id", "")
        if not isinstance(reason, str) or not isinstance(authorisation_id, str):
            raise HostUnavailable(
                f"{self.where}: answer fields 'reason', 'authorisation_id' not text"
            )
        return HostResponse(
            approved=decision == "approved",
            reason=reason,
            arc=self._hex(document, "arc"),
            arpc=self._optional_hex(document, "arpc"),
            csu=self._optional_hex(document, "csu"),
            authorisation_id=authorisation_id,
        )

    def _hex(self, document: dict[str, Any], name: str) -> bytes:
        value = document.get(name)
        if not isinstance(value, str) or not _HEX.match(value):
            raise HostUnavailable(f"{self.where}: answer field {name!r} is not hex bytes")
        return bytes.fromhex(value)

    def _optional_hex(self, document: dict[str, Any], name: str) -> bytes | None:
        return None if document.get(name) is None else self._hex(document, name)
