"""Validation endpoints, declared once."""

from __future__ import annotations

from typing import Any

from hoodyexec.http.spec import Endpoint, Fields

E = "/api/v1/exec/validate/"


class CodeBody(Fields):
    code: str


class ReturnTypeBody(Fields):
    typeDefinition: str  # noqa: N815 - the API's name
    value: Any


def _code(name: str, summary: str) -> Endpoint:
    return Endpoint(
        "POST", E + name, summary, "validate", body=CodeBody, responses={200: "OK", 400: "Bad body"}
    )


SCRIPT = _code("script", "Validate Script")
SYNTAX = _code("syntax", "Validate Syntax")
TYPESCRIPT = _code("typescript", "Validate Type Script")
DEPENDENCIES = _code("dependencies", "Validate Dependencies")
MAGIC = _code("magic-comments", "Validate Magic Comments")
RETURN_TYPE = Endpoint(
    "POST",
    E + "return-type",
    "Validate Return Type",
    "validate",
    body=ReturnTypeBody,
    responses={200: "OK", 400: "Bad body or type definition"},
)
