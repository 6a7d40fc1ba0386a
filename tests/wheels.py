"""Tiny wheels built in a temp folder, for hermetic package installs.

A wheel is a zip with a ``.dist-info`` (METADATA, WHEEL, RECORD); writing one by
hand needs no build backend and no registry.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    files: Mapping[str, str],
    requires: Iterable[str] = (),
) -> Path:
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    entries = dict(files)
    entries[f"{info}/METADATA"] = meta
    entries[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: hoodyexec-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for path, content in entries.items():
        digest = hashlib.sha256(content.encode()).digest()
        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={b64},{len(content.encode())}")
    record.append(f"{info}/RECORD,,")
    entries[f"{info}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, content in entries.items():
            zf.writestr(member, content)
    return path


def hermetic_env(wheels: Path, cache: Path) -> dict[str, str]:
    """Installer settings that reach only ``wheels``: pip's own configuration
    (which the kit hands to uv too), the user's pip and uv files ignored."""
    return {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "UV_NO_CONFIG": "1",
        "UV_CACHE_DIR": str(cache),
        "UV_OFFLINE": "1",
    }
