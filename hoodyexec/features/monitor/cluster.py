"""``monitor/*?cluster=true``: the same call made to every live node of the
cluster (the node registry in the shared state backend), over HTTP with this
node's management token and a short timeout. A node that does not answer in
time, or answers an error, is listed as unreachable with the reason; the
others' answers are given as they are."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2

from hoodyexec.storage.cluster import Node

TIMEOUT = 2.0  # seconds for one node's answer
CONNECT_TIMEOUT = 0.5
_WILDCARDS = {"0.0.0.0", "::", "[::]", ""}


def address(node: Node) -> str:
    """Where a node's API answers: its bind, or its host name when it binds
    every interface (``0.0.0.0:8080`` → ``<host>:8080``)."""
    host, _, port = node.bind.rpartition(":")
    if host in _WILDCARDS:
        host = node.host
    return f"{host}:{port}"


async def gather(
    nodes: list[Node],
    me: str | None,
    method: str,
    path: str,
    params: dict[str, str],
    body: Any,
    token: str | None,
) -> list[dict[str, Any]]:
    """Each node's answer to ``method path`` (in the order of ``nodes``)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(
        timeout=httpx2.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT), follow_redirects=False
    ) as client:
        return list(
            await asyncio.gather(
                *(
                    _one(client, node, node.id == me, method, path, params, body, headers)
                    for node in nodes
                )
            )
        )


async def _one(
    client: httpx2.AsyncClient,
    node: Node,
    mine: bool,
    method: str,
    path: str,
    params: dict[str, str],
    body: Any,
    headers: dict[str, str],
) -> dict[str, Any]:
    where = address(node)
    entry: dict[str, Any] = {"id": node.id, "bind": node.bind, "self": mine}
    try:
        r = await client.request(
            method,
            f"http://{where}{path}",
            params=params,
            json=body if method == "POST" else None,
            headers=headers,
        )
    except httpx2.HTTPError as exc:
        return {**entry, "reachable": False, "error": f"{type(exc).__name__}: {exc}".strip()}
    try:
        data = r.json()
    except ValueError:
        data = None
    if r.status_code != 200 or not isinstance(data, dict):
        reason = data.get("error") if isinstance(data, dict) else r.text[:200]
        return {**entry, "reachable": False, "status": r.status_code, "error": reason}
    return {**entry, "reachable": True, "status": r.status_code, "data": data}
