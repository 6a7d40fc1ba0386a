"""Validation with openapi-spec-validator: whole documents and sidecars.

A sidecar (``<script>.openapi.json``) holds one OpenAPI operation object per
method (``{"get": {...}, "post": {...}}``). It is checked as the operations of
a path item in a minimal OpenAPI 3.1 document that carries the instance's
components, so a ``$ref`` to a generated schema resolves. The validator is
imported on first use (it pulls in a JSON Schema stack the kit needs nowhere
else).
"""

from __future__ import annotations

from typing import Any

from .build import METHODS, OPENAPI

SIDECAR_METHODS = METHODS
_PATH = "/sidecar"


def _where(parts: Any) -> str:
    return "/".join(str(p) for p in parts)


def document_errors(doc: Any, limit: int = 50) -> list[dict[str, str]]:
    """What openapi-spec-validator finds wrong with ``doc`` (at most ``limit``)."""
    from openapi_spec_validator import OpenAPIV31SpecValidator

    if not isinstance(doc, dict):
        return [{"path": "", "message": "an OpenAPI document must be a JSON object"}]
    errors = []
    try:
        for err in OpenAPIV31SpecValidator(doc).iter_errors():
            errors.append({"path": _where(err.absolute_path), "message": err.message})
            if len(errors) >= limit:
                break
    except Exception as exc:  # noqa: BLE001 - an unresolvable $ref and the like
        errors.append({"path": "", "message": f"{type(exc).__name__}: {exc}"})
    return errors


def sidecar_errors(sidecar: Any, components: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """What is wrong with a sidecar: its shape, then each operation's content."""
    if not isinstance(sidecar, dict):
        return [{"path": "", "message": "a sidecar must be a JSON object: method → operation"}]
    errors = []
    for key, value in sidecar.items():
        if key not in SIDECAR_METHODS:
            errors.append(
                {"path": key, "message": f"{key!r} is not an HTTP method (get, post, ...)"}
            )
        elif not isinstance(value, dict):
            errors.append({"path": key, "message": "an operation must be a JSON object"})
    if errors:
        return errors
    doc = {
        "openapi": OPENAPI,
        "info": {"title": "sidecar", "version": "0"},
        "paths": {_PATH: sidecar},
        "components": components or {},
    }
    found = document_errors(doc)
    prefix = f"paths/{_PATH}/"
    for err in found:
        if err["path"].startswith(prefix):
            err["path"] = err["path"][len(prefix) :]
    return found
