"""The token server's HTTP API: routes, roles, JSON in and out (docs: ``/v1/openapi.json``).

Every route is one entry of :data:`ROUTES`: method, path pattern, the roles
allowed to call it, a summary for the OpenAPI document, and a function from
the request to a JSON-able answer. Bytes travel as uppercase hex. Errors are
``{"error": code, "message": text}`` with the HTTP status that fits; a message
never carries a secret (PANs, keys, PINs and credentials stay out of answers,
errors and the access log).

Authentication is ``Authorization: Bearer <credential>``; the service keeps only
a hash of each credential. A device may only reach its own resources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from emv.crypto import oda
from hce.server.credentials import Principal
from hce.server.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceError,
    Unauthorised,
)
from hce.server.service import CardRecord, Personalisation, TokenService

__all__ = ["ROUTES", "ApiError", "Request", "Route", "dispatch", "personalisation_json"]

Json = dict[str, Any]
HEX = re.compile(r"\A(?:[0-9A-Fa-f]{2})*\Z")
MAX_BODY = 1 << 20


class ApiError(Exception):
    """An answer other than success: HTTP status, a stable code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> Json:
        return {"error": self.code, "message": self.message}


@dataclass(frozen=True)
class Request:
    """What a route sees: who is calling, the path parameters and the JSON body."""

    principal: Principal | None
    params: Mapping[str, str]
    body: Json

    @property
    def actor(self) -> Principal:
        """The authenticated caller (every route but the open ones has one)."""
        if self.principal is None:
            raise Unauthorised("missing credential")
        return self.principal

    def text(self, name: str, *, pattern: str | None = None, default: str | None = None) -> str:
        value = self.body.get(name, default)
        if not isinstance(value, str):
            raise ApiError(400, "bad_request", f"field {name!r} must be a string")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ApiError(400, "bad_request", f"field {name!r} is not of the expected form")
        return value

    def hex(self, name: str) -> bytes:
        value = self.text(name)
        if not HEX.match(value):
            raise ApiError(400, "bad_request", f"field {name!r} must be hexadecimal bytes")
        return bytes.fromhex(value)

    def number(self, name: str, *, low: int, high: int) -> int:
        value = self.body.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ApiError(400, "bad_request", f"field {name!r} must be an integer {low}..{high}")
        return value

    def hex_list(self, name: str) -> list[bytes]:
        values = self.body.get(name)
        if not isinstance(values, list) or not all(
            isinstance(v, str) and HEX.match(v) for v in values
        ):
            raise ApiError(400, "bad_request", f"field {name!r} must be a list of hex strings")
        return [bytes.fromhex(v) for v in values]


Handler = Callable[[TokenService, Request], Json]


@dataclass(frozen=True)
class Route:
    """One endpoint of the API."""

    method: str
    path: str  # with {name} placeholders
    roles: frozenset[str]  # empty: no authentication
    summary: str
    handler: Handler
    request: Json = field(default_factory=dict)  # OpenAPI request body schema
    response: Json = field(default_factory=dict)  # OpenAPI 200 response schema

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("\\A" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "\\Z")


# --- handlers --------------------------------------------------------------------------------


def _health(_service: TokenService, _request: Request) -> Json:
    return {"status": "ok"}


def _create_credential(service: TokenService, request: Request) -> Json:
    role: Literal["admin", "acquirer"] = (
        "admin" if request.text("role", pattern="admin|acquirer") == "admin" else "acquirer"
    )
    name = request.text("name", pattern=r"[\w.@-]{1,64}")
    credential = service.create_credential(role, name, actor=request.actor)
    return {"role": role, "name": name, "credential": credential}


def _enrol(service: TokenService, request: Request) -> Json:
    record = service.enrol_token(
        request.text("funding_pan", pattern=r"\d{12,19}"),
        request.text("expiry", pattern=r"\d{2}(0[1-9]|1[0-2])"),
        psn=request.text("psn", pattern=r"\d{2}", default="00"),
        scheme=request.text("scheme", pattern="visa|mastercard", default="visa"),
        actor=request.actor,
    )
    return _token_json(record)


def _token_json(record: Any) -> Json:
    return {
        "token_id": record.token_id,
        "token_pan": record.token_pan,
        "psn": record.psn,
        "expiry": record.expiry,
        "status": record.status,
    }


def _suspend(service: TokenService, request: Request) -> Json:
    return _token_json(service.suspend(request.params["token_id"], actor=request.actor))


def _resume(service: TokenService, request: Request) -> Json:
    return _token_json(service.resume(request.params["token_id"], actor=request.actor))


def _enrol_card(service: TokenService, request: Request) -> Json:
    record = service.enrol_card(
        request.text("pan", pattern=r"\d{12,19}"),
        request.text("expiry", pattern=r"\d{2}(0[1-9]|1[0-2])"),
        request.text("psn", pattern=r"\d{2}", default="00"),
        request.text("scheme", pattern="visa|mastercard"),
        request.text("cryptogram_version", pattern=r"\d{2}"),
        actor=request.actor,
    )
    return _card_json(record)


def _card_json(record: CardRecord) -> Json:
    return {
        "card_id": record.card_id,
        "scheme": record.scheme,
        "psn": record.psn,
        "expiry": record.expiry,
        "cryptogram_version": record.cryptogram_version,
        "status": record.status,
    }


def _suspend_card(service: TokenService, request: Request) -> Json:
    return _card_json(service.suspend_card(request.params["card_id"], actor=request.actor))


def _resume_card(service: TokenService, request: Request) -> Json:
    return _card_json(service.resume_card(request.params["card_id"], actor=request.actor))


def _register_device(service: TokenService, request: Request) -> Json:
    record = service.register_device(
        request.params["token_id"], request.hex("public_key"), actor=request.actor
    )
    return {"device_id": record.device_id, "credential": record.credential}


def _issue_batch(service: TokenService, request: Request) -> Json:
    kind: Literal["LUK", "SUK"] = (
        "LUK" if request.text("kind", pattern="LUK|SUK") == "LUK" else "SUK"
    )
    count = request.number("count", low=1, high=100)
    pin = request.body.get("pin")
    if pin is not None and not (isinstance(pin, str) and re.fullmatch(r"\d{4,12}", pin)):
        raise ApiError(400, "bad_request", "field 'pin' must be 4 to 12 digits")
    batch = service.issue_batch(request.params["device_id"], kind, count, pin, actor=request.actor)
    return {
        "batch_id": batch.batch_id.upper(),
        "header": batch.header.to_bytes().hex().upper(),
        "envelope": batch.envelope.hex().upper(),
    }


def _personalise(service: TokenService, request: Request) -> Json:
    modulus = request.hex("icc_modulus")
    if not modulus or modulus[0] == 0:
        raise ApiError(400, "bad_request", "field 'icc_modulus' must be a modulus, no leading 00")
    exponent = request.number("icc_exponent", low=3, high=65537)
    if exponent not in (3, 65537):
        raise ApiError(400, "bad_request", "field 'icc_exponent' must be 3 or 65537")
    result = service.personalise_device(
        request.params["device_id"],
        request.text("profile", pattern=r"[a-z0-9_]{1,64}"),
        oda.RsaPublicKey(int.from_bytes(modulus, "big"), exponent),
        actor=request.actor,
    )
    return personalisation_json(result)


def _certificate_json(certificate: oda.PublicKeyCertificate) -> Json:
    return {
        "certificate": certificate.certificate.hex().upper(),
        "remainder": certificate.remainder.hex().upper(),
        "exponent": certificate.exponent.hex().upper(),
    }


def personalisation_json(result: Personalisation) -> Json:
    """The answer of the personalisation route (and ``emvtap server personalise``)."""
    return {
        "token_id": result.token_id,
        "profile": result.profile,
        "psn": result.psn.hex().upper(),
        "expiry": result.expiry.hex().upper(),
        "ca_rid": result.ca_rid.hex().upper(),
        "ca_index": result.ca_index,
        "issuer_certificate": _certificate_json(result.certificates.issuer),
        "icc_certificates": [
            {"aid": aid.hex().upper(), **_certificate_json(certificate)}
            for aid, certificate in result.certificates.icc.items()
        ],
        "ca_public_key": None if result.ca_key is None else _public_key_json(result.ca_key),
    }


def _public_key_json(key: oda.RsaPublicKey) -> Json:
    return {
        "modulus": key.modulus.to_bytes(key.size, "big").hex().upper(),
        "exponent": key.exponent_bytes.hex().upper(),
    }


def _authorise(service: TokenService, request: Request) -> Json:
    result = service.authorise(request.hex("icc_data"), actor=request.actor)
    return {
        "authorisation_id": result.authorisation_id,
        "decision": result.decision,
        "reason": result.reason,
        "detail": result.detail,
        "arc": result.arc.hex().upper(),
        "arpc": result.arpc.hex().upper() if result.arpc else None,
        "csu": result.csu.hex().upper() if result.csu else None,
    }


def _reconcile(service: TokenService, request: Request) -> Json:
    previous = request.hex("previous") if "previous" in request.body else bytes(8)
    report = service.reconcile(
        request.params["device_id"],
        request.hex_list("entries"),
        request.hex_list("macs"),
        previous,
        actor=request.actor,
    )
    return report.as_dict()


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/health", frozenset(), "Liveness: answers when the server runs.", _health),
    Route(
        "POST",
        "/v1/credentials",
        frozenset({"admin"}),
        "Create an admin or acquirer credential (shown once).",
        _create_credential,
        {"role": "admin|acquirer", "name": "string"},
        {"role": "string", "name": "string", "credential": "string"},
    ),
    Route(
        "POST",
        "/v1/tokens",
        frozenset({"admin"}),
        "Enrol a funding PAN: returns a fresh token PAN; the vault keeps both encrypted.",
        _enrol,
        {"funding_pan": "digits", "expiry": "YYMM", "psn": "2 digits", "scheme": "visa|mastercard"},
        {
            "token_id": "string",
            "token_pan": "digits",
            "psn": "string",
            "expiry": "YYMM",
            "status": "string",
        },
    ),
    Route(
        "POST", "/v1/tokens/{token_id}/suspend", frozenset({"admin"}), "Suspend a token.", _suspend
    ),
    Route("POST", "/v1/tokens/{token_id}/resume", frozenset({"admin"}), "Resume a token.", _resume),
    Route(
        "POST",
        "/v1/cards",
        frozenset({"admin"}),
        "Enrol a plastic card for the issuer host: its ARQCs are verified under MK-AC "
        "Option A from the IMK-AC, by cryptogram version; the vault keeps the PAN encrypted.",
        _enrol_card,
        {
            "pan": "digits",
            "expiry": "YYMM",
            "psn": "2 digits",
            "scheme": "visa|mastercard",
            "cryptogram_version": "18|22 (visa), 16|17|20|21 (mastercard)",
        },
        {
            "card_id": "string",
            "scheme": "string",
            "psn": "string",
            "expiry": "YYMM",
            "cryptogram_version": "string",
            "status": "string",
        },
    ),
    Route(
        "POST",
        "/v1/cards/{card_id}/suspend",
        frozenset({"admin"}),
        "Suspend a plastic card.",
        _suspend_card,
    ),
    Route(
        "POST",
        "/v1/cards/{card_id}/resume",
        frozenset({"admin"}),
        "Resume a plastic card.",
        _resume_card,
    ),
    Route(
        "POST",
        "/v1/tokens/{token_id}/devices",
        frozenset({"admin"}),
        "Register a device's P-256 public key for a token; returns its credential (shown once).",
        _register_device,
        {"public_key": "hex, 65-byte uncompressed P-256 point"},
        {"device_id": "hex fingerprint", "credential": "string"},
    ),
    Route(
        "POST",
        "/v1/devices/{device_id}/batches",
        frozenset({"device", "admin"}),
        "Provision or replenish: a batch of LUKs or SUKs (+ masked SUK-UVs) sealed for the device.",
        _issue_batch,
        {"kind": "LUK|SUK", "count": "1..100", "pin": "digits (SUK batches)"},
        {"batch_id": "hex", "header": "hex", "envelope": "hex"},
    ),
    Route(
        "POST",
        "/v1/devices/{device_id}/personalisation",
        frozenset({"device", "admin"}),
        "Personalise: certify the ICC public key the device made for its token's card "
        "of a shipped HCE profile (the private key stays on the device).",
        _personalise,
        {"profile": "shipped profile name", "icc_modulus": "hex", "icc_exponent": "3|65537"},
        {
            "token_id": "string",
            "profile": "string",
            "psn": "hex",
            "expiry": "hex YYMMDD",
            "ca_rid": "hex",
            "ca_index": "integer",
            "issuer_certificate": "{certificate, remainder, exponent}: hex",
            "icc_certificates": "list of {aid, certificate, remainder, exponent}: hex",
            "ca_public_key": "{modulus, exponent}: hex, the CA key terminals check 90 with",
        },
    ),
    Route(
        "POST",
        "/v1/authorisations",
        frozenset({"acquirer", "admin"}),
        "Online authorisation: verify the ARQC in the ICC data, decide, return the ARPC.",
        _authorise,
        {
            "icc_data": "hex BER-TLV: 5A, 5F34, 9F26, 9F27, 9F36, 9F10, "
            "9F02, 9F03, 9F1A, 95, 5F2A, 9A, 9C, 9F37, 82"
        },
        {
            "authorisation_id": "string",
            "decision": "approved|declined",
            "reason": "string",
            "arc": "hex",
            "arpc": "hex|null",
            "csu": "hex|null",
        },
    ),
    Route(
        "POST",
        "/v1/devices/{device_id}/log",
        frozenset({"device", "admin"}),
        "Reconciliation: upload the MAC-chained transaction log; "
        "returns what matched and what did not.",
        _reconcile,
        {
            "entries": "list of hex E2 templates",
            "macs": "list of hex MACs",
            "previous": "hex MAC the entries chain from (default 00..00: the first upload)",
        },
        {"matched": "list", "gaps": "list", "forged": "list", "unseen": "list"},
    ),
)


def dispatch(
    service: TokenService, method: str, path: str, authorization: str | None, body: bytes
) -> tuple[int, Json]:
    """Route one request; returns the HTTP status and the JSON answer."""
    try:
        route, params = _match(method, path)
        principal = _authenticate(service, route, authorization)
        request = Request(principal, params, _parse_body(body))
        return 200, route.handler(service, request)
    except ApiError as err:
        return err.status, err.body()
    except ServiceError as err:
        status, code = _STATUS.get(type(err), (500, "server_error"))
        message = str(err) if status < 500 else "the server could not complete the request"
        return status, {"error": code, "message": message}


_STATUS: dict[type[ServiceError], tuple[int, str]] = {
    InvalidRequest: (400, "bad_request"),
    Unauthorised: (401, "unauthorised"),
    Forbidden: (403, "forbidden"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
}


def _match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    allowed = False
    for route in ROUTES:
        found = route.pattern.match(path)
        if found:
            if route.method == method:
                return route, found.groupdict()
            allowed = True
    if allowed:
        raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}")
    raise ApiError(404, "not_found", f"no endpoint {path}")


def _authenticate(
    service: TokenService, route: Route, authorization: str | None
) -> Principal | None:
    if not route.roles:
        return None
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorised("missing credential")
    principal = service.authenticate(authorization.removeprefix("Bearer ").strip())
    if principal.role not in route.roles:
        raise ApiError(403, "forbidden", f"the {principal.role} role may not call this endpoint")
    return principal


def _parse_body(body: bytes) -> Json:
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, "bad_request", f"body is not JSON: {err}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "bad_request", "body must be a JSON object")
    return value
