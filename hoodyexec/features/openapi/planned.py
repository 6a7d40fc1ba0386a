"""Declarations of the reference endpoints this version does not serve yet.

They answer 501, but the OpenAPI document still describes their parameters and
bodies, as the reference documents them. When a capability lands, its feature
folder declares these endpoints itself and the entry here goes.
"""

from __future__ import annotations

from hoodyexec.http.spec import Endpoint, Fields

E = "/api/v1/exec/"


class AnyObject(Fields):
    """A free-form JSON object (the reference documents no fields)."""


def _ep(
    method: str,
    path: str,
    summary: str,
    tag: str,
    body: type[Fields] | None = None,
    query: type[Fields] | None = None,
    required: bool = False,
) -> Endpoint:
    return Endpoint(method, E + path, summary, tag, body=body, query=query, body_required=required)


PLANNED: tuple[Endpoint, ...] = ()
