"""Container health probe for hoodyexec: standard library only, no token needed.

    python healthcheck.py ready   # exit 0 only when health answers 200 "ok"
    python healthcheck.py live    # exit 0 while the kit answers health at all:
                                  # 200 "ok", or 503 "starting" / "draining"

``ready`` is "send me traffic"; ``live`` is "do not kill me". A draining node
answers 503 on purpose (that is what drain is for), so a liveness check must
accept it; only a kit that does not answer, or answers something that is not
its health document, is dead.

The port comes from ``HOODYEXEC_BIND`` (``HOST:PORT``; default 8080); the
probe always asks 127.0.0.1, from inside the container.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import urllib.error
import urllib.request

HEALTH_PATH = "/api/v1/exec/health"
ALIVE = {"ok", "starting", "draining"}


def port_of(bind: str) -> int:
    """The TCP port of a ``HOST:PORT`` bind; 8080 for anything else."""
    _, sep, port = bind.rpartition(":")
    if sep and port.isdigit():
        return int(port)
    return 8080


def fetch(url: str, timeout: float) -> tuple[int, str]:
    """Status code and the ``status`` field of the health document ("" if none)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            code, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        code, raw = exc.code, exc.read()
    try:
        doc = json.loads(raw)
    except ValueError:
        return code, ""
    status = doc.get("status") if isinstance(doc, dict) else None
    return code, status if isinstance(status, str) else ""


def verdict(mode: str, code: int, status: str) -> bool:
    if mode == "ready":
        return code == 200 and status == "ok"
    return code in (200, 503) and status in ALIVE


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else "live"
    if mode not in ("ready", "live"):
        print(f"usage: healthcheck.py [ready|live], not {mode!r}", file=sys.stderr)
        return 2
    port = port_of(os.environ.get("HOODYEXEC_BIND", ""))
    url = f"http://127.0.0.1:{port}{HEALTH_PATH}"
    try:
        code, status = fetch(url, timeout=float(os.environ.get("HEALTHCHECK_TIMEOUT", "3")))
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"{mode}: no answer from {url}: {exc}", file=sys.stderr)
        return 1
    ok = verdict(mode, code, status)
    print(f"{mode}: {code} {status or '(not a health document)'}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
