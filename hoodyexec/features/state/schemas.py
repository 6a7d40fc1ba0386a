"""Shared-state endpoints, declared once."""

from __future__ import annotations

from typing import Any

from hoodyexec.http.spec import Endpoint, Fields

E = "/api/v1/exec/shared-state/"


class StateGet(Fields):
    hostname: str
    path: str | None = None


class StateSet(Fields):
    hostname: str
    value: Any
    path: str | None = None
    merge: bool = False


class StateClear(Fields):
    hostname: str | None = None
    path: str | None = None
    clearAll: bool = False  # noqa: N815 - the reference's name


GET = Endpoint(
    "POST",
    E + "get",
    "Get Shared State",
    "state",
    body=StateGet,
    responses={200: "OK", 400: "Bad body"},
)
SET = Endpoint(
    "POST",
    E + "set",
    "Set Shared State",
    "state",
    body=StateSet,
    responses={200: "OK", 400: "Bad body or path", 404: "No instance for that hostname"},
)
CLEAR = Endpoint(
    "POST",
    E + "clear",
    "Clear Shared State",
    "state",
    body=StateClear,
    responses={200: "OK", 400: "hostname is required unless clearAll is true"},
)
