"""Durable file writes shared by the management services.

A write goes to a temp file in the same folder, is flushed and fsynced, then
renamed over the target (or hard-linked, for "create if absent"); the folder is
fsynced after. Readers see the old file or the new one, never a torn one, and a
failed write leaves the old version. A write killed before its rename leaves a
hidden ``.<name>.<8 random>.tmp`` (``is_temp_name``), which ``Home.prepare``
removes at the next start.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

# mkstemp's random part: 8 of [a-z0-9_] (tempfile._RandomNameSequence).
_TEMP_NAME = re.compile(r"\A\..+\.[a-z0-9_]{8}\.tmp\Z", re.DOTALL)
_TEMP_STEM_BYTES = 200  # of the target's name kept: temp names stay within 214 bytes


def is_temp_name(name: str) -> bool:
    """A file name ``write_atomic`` uses for its temp files."""
    return _TEMP_NAME.match(name) is not None


def _temp_prefix(path: str) -> str:
    """``.<name>.``, the name cut so the temp name fits where the target's name does."""
    stem = os.fsencode(os.path.basename(path))[:_TEMP_STEM_BYTES]
    return f".{os.fsdecode(stem)}."


def fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str, data: bytes, *, exclusive: bool = False) -> None:
    """Write via a temp file in the same folder; ``exclusive`` fails if ``path`` exists.

    Readers see the old file or the new one, never a torn one, and a crash
    leaves at most a hidden ``.*.tmp`` file behind.
    """
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # atomic "create if absent"
            except FileExistsError:
                raise
            except OSError:  # no hard links on this filesystem
                if os.path.exists(path):
                    raise FileExistsError(path) from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
