"""The OpenAPI 3.1 description of the token server's API, built from the route table.

Served at ``/v1/openapi.json`` and printed by ``emvtap server openapi``, so the
document can never drift from the routes the server really has.
"""

from __future__ import annotations

import re
from typing import Any

from hce.server.api import ROUTES, Route

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error", "message"],
}


def _schema(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"description": str(text)} for name, text in fields.items()},
    }


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": re.sub(r"\W+", "_", f"{route.method} {route.path}").strip("_").lower(),
        "responses": {
            "200": {
                "description": "success",
                "content": {"application/json": {"schema": _schema(route.response)}},
            },
            "default": {
                "description": "an error, with a stable code",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }
    if route.roles:
        operation["security"] = [{"bearer": []}]
        operation["x-roles"] = sorted(route.roles)
    params = re.findall(r"\{(\w+)\}", route.path)
    if params:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in params
        ]
    if route.request:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(route.request)}},
        }
    return operation


def openapi_document(version: str) -> dict[str, Any]:
    """The whole document: every route, its roles, request and response fields."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    paths["/v1/openapi.json"] = {
        "get": {
            "summary": "This document.",
            "operationId": "get_openapi",
            "responses": {"200": {"description": "the OpenAPI document"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "emvtap token server",
            "version": version,
            "description": "Cloud-based payments token server: enrolment, device key batches, "
            "online authorisation and reconciliation (emvtap CBP profile, docs/cbp.md). "
            "Bytes travel as uppercase hex.",
        },
        "servers": [{"url": "https://127.0.0.1:8443"}, {"url": "http://127.0.0.1:8080"}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
