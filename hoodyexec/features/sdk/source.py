"""Fetching an OpenAPI document: over http(s), or from a file under the kit's home.

Limits (docs/api.md, "SDK import"): at most ``MAX_SPEC_BYTES`` read, the whole
fetch within ``FETCH_TIMEOUT`` seconds, at most ``MAX_REDIRECTS`` redirects and
only to http(s) URLs. Every failure is a ``HoodyError`` with the reason: 400
(bad URL, redirect elsewhere), 403 (a file outside the home), 404 (no such
file), 413 (too large), 502 (unreachable, timed out, or an error status).
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import unquote, urljoin, urlsplit

import httpx2

from hoodyexec.engine import magic
from hoodyexec.errors import BadRequest, Forbidden, HoodyError, NotFound

MAX_SPEC_BYTES = 5 * 1024 * 1024
FETCH_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
MAX_REDIRECTS = 5


class TooLarge(HoodyError):
    status = 413


class Unreachable(HoodyError):
    """The document's server could not be reached or did not give it: a gateway error."""

    status = 502


async def fetch(url: str, home_root: str, auth: tuple[str, str] | None) -> tuple[bytes, str]:
    """The document's bytes and the URL they came from (after redirects)."""
    _no_control_characters(url)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return await _fetch_http(url, auth), url
    if scheme == "file" or (not scheme and url):
        return _read_file(url, home_root), url
    raise BadRequest(
        f"source_url must be an http(s) URL or a file under the kit's home, not {scheme}:",
        field="source_url",
    )


def _no_control_characters(text: str) -> None:
    """No URL or file name the kit reads carries one (and the OS refuses a NUL
    in a path): the check the feature's other fields get."""
    bad = magic.unsafe_char(text)
    if bad is not None:
        raise BadRequest(f"source_url holds the control character {bad!r}", field="source_url")


def _read_file(url: str, home_root: str) -> bytes:
    parts = urlsplit(url)
    if parts.scheme:
        if parts.netloc not in ("", "localhost"):
            raise BadRequest("a file: URL must name a local file", field="source_url")
        raw = unquote(parts.path)
        _no_control_characters(raw)  # %00 and the like
    else:
        raw = url
    home = os.path.realpath(home_root)
    path = os.path.realpath(os.path.join(home, raw))
    if path != home and not path.startswith(home + os.sep):
        raise Forbidden(
            "source_url: a file source must be under the kit's home", field="source_url"
        )
    shown = os.path.relpath(path, home)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"source_url: no such file in the kit's home: {shown}") from None
    except IsADirectoryError:
        raise BadRequest(f"source_url: {shown} is a folder", field="source_url") from None
    except OSError as exc:
        raise BadRequest(f"source_url: {shown}: {exc.strerror}", field="source_url") from None
    if len(data) > MAX_SPEC_BYTES:
        raise TooLarge(f"the document is over {MAX_SPEC_BYTES} bytes", limit=MAX_SPEC_BYTES)
    return data


async def _fetch_http(url: str, auth: tuple[str, str] | None) -> bytes:
    headers = {"Accept": "application/json, application/yaml;q=0.9, */*;q=0.5"}
    try:
        async with asyncio.timeout(FETCH_TIMEOUT):
            async with httpx2.AsyncClient(
                timeout=httpx2.Timeout(FETCH_TIMEOUT, connect=CONNECT_TIMEOUT),
                follow_redirects=False,
            ) as client:
                return await _follow(client, url, headers, auth)
    except TimeoutError:
        raise Unreachable(
            f"source_url: no complete answer within {FETCH_TIMEOUT:g} s", url=url
        ) from None
    except httpx2.HTTPError as exc:
        raise Unreachable(
            f"source_url could not be fetched: {type(exc).__name__}: {exc}", url=url
        ) from None


async def _follow(
    client: httpx2.AsyncClient,
    url: str,
    headers: dict[str, str],
    auth: tuple[str, str] | None,
) -> bytes:
    origin = _origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        sent = dict(headers)
        if auth is not None and _origin(url) == origin:  # never to another host
            sent[auth[0]] = auth[1]
        async with client.stream("GET", url, headers=sent) as response:
            if response.is_redirect:
                url = _redirect_target(url, response.headers.get("location", ""))
                continue
            if response.status_code >= 400:
                raise Unreachable(
                    f"source_url answered {response.status_code}",
                    url=url,
                    upstreamStatus=response.status_code,
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_SPEC_BYTES:
                raise TooLarge(f"the document is over {MAX_SPEC_BYTES} bytes", limit=MAX_SPEC_BYTES)
            return await _read_capped(response)
    raise Unreachable(f"source_url: more than {MAX_REDIRECTS} redirects", url=url)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _redirect_target(url: str, location: str) -> str:
    if not location:
        raise Unreachable("source_url: a redirect without a Location", url=url)
    target = urljoin(url, location)
    if urlsplit(target).scheme.lower() not in ("http", "https"):
        raise BadRequest(
            "source_url redirects to a URL that is not http(s); refused",
            field="source_url",
            location=target,
        )
    return target


async def _read_capped(response: httpx2.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_SPEC_BYTES:
            raise TooLarge(f"the document is over {MAX_SPEC_BYTES} bytes", limit=MAX_SPEC_BYTES)
        chunks.append(chunk)
    return b"".join(chunks)
