"""The HTTP API: routing, roles, errors as JSON, the OpenAPI document, the access log."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from hce.server.api import ROUTES, dispatch
from hce.server.http import ApiServer
from hce.server.openapi import openapi_document

if TYPE_CHECKING:
    from conftest import Card, Server


@pytest.fixture
def api(server: Server) -> Iterator[str]:
    http = ApiServer(server.service, "127.0.0.1", 0, version="9.9")
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield http.url
    http.shutdown()
    http.server_close()


def _call(
    url: str, method: str, body: Any = None, credential: str | None = None
) -> tuple[int, Any]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(url, data=data, method=method)
    if credential:
        request.add_header("Authorization", f"Bearer {credential}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_health_and_openapi_need_no_credential(api: str) -> None:
    assert _call(f"{api}/v1/health", "GET") == (200, {"status": "ok"})
    status, document = _call(f"{api}/v1/openapi.json", "GET")
    assert status == 200 and document["info"]["version"] == "9.9"


def test_openapi_describes_every_route() -> None:
    document = openapi_document("1")
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["summary"] == route.summary
        assert ("security" in operation) == bool(route.roles)
        if route.request:
            assert set(
                operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
            ) == set(route.request)


@pytest.mark.parametrize(
    ("request_line", "body", "status", "code"),
    [
        (("POST", "/v1/tokens"), {}, 401, "unauthorised"),
        (("GET", "/v1/tokens"), None, 405, "method_not_allowed"),
        (("GET", "/v1/nowhere"), None, 404, "not_found"),
    ],
)
def test_errors_are_json_with_a_code(
    api: str, request_line: tuple[str, str], body: Any, status: int, code: str
) -> None:
    method, path = request_line
    got_status, answer = _call(f"{api}{path}", method, body)
    assert got_status == status and answer["error"] == code and answer["message"]


def test_roles_are_enforced(api: str, server: Server) -> None:
    acquirer = server.service.create_credential("acquirer", "pos-2", actor=server.admin)
    status, answer = _call(
        f"{api}/v1/tokens", "POST", {"funding_pan": "4000123412341234", "expiry": "2912"}, acquirer
    )
    assert (status, answer["error"]) == (403, "forbidden")
    status, _ = _call(f"{api}/v1/tokens", "POST", {}, "not-a-credential")
    assert status == 401


def test_bad_bodies_name_the_field(api: str, server: Server) -> None:
    credential = server.service.create_credential("admin", "ops", actor=server.admin)
    cases = [
        (b"{not json", "body is not JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (json.dumps({"funding_pan": "12ab", "expiry": "2912"}).encode(), "'funding_pan'"),
        (json.dumps({"funding_pan": "4000123412341234", "expiry": "2913"}).encode(), "'expiry'"),
    ]
    for body, message in cases:
        status, answer = _call(f"{api}/v1/tokens", "POST", body, credential)
        assert status == 400 and message in answer["message"], answer


def test_dispatch_maps_service_refusals(server: Server, make_card: Any) -> None:
    card: Card = make_card()
    admin = server.service.create_credential("admin", "ops2", actor=server.admin)
    status, answer = dispatch(
        server.service, "POST", "/v1/tokens/0000000000000000/suspend", f"Bearer {admin}", b""
    )
    assert status == 404 and answer["error"] == "not_found"
    device = server.service.create_credential("admin", "ops3", actor=server.admin)
    status, answer = dispatch(
        server.service,
        "POST",
        f"/v1/devices/{card.device_id}/batches",
        f"Bearer {device}",
        json.dumps({"kind": "LUK", "count": 0}).encode(),
    )
    assert status == 400 and "'count'" in answer["message"]


def test_access_log_has_no_body_or_credential(
    api: str, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    credential = server.service.create_credential("admin", "ops4", actor=server.admin)
    with caplog.at_level(logging.INFO, logger="emvtap.server.access"):
        _call(
            f"{api}/v1/tokens",
            "POST",
            {"funding_pan": "4000123412341234", "expiry": "2912"},
            credential,
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "emvtap.server.access"]
    assert any(line.startswith("POST /v1/tokens 200") for line in lines)
    assert not any("4000123412341234" in line or credential in line for line in lines)
