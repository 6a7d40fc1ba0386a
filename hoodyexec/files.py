"""Durable file writes shared by the management services.

A write goes to a temp file in the same folder, is flushed and fsynced, then
renamed over the target (or hard-linked, for "create if absent"); the folder is
fsynced after. Readers see the old file or the new one, never a torn one, and a
failed write leaves the old version.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


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
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
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
