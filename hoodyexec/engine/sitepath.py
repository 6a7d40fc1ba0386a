"""The kit-local packages directory on the import path.

Packages installed through the management API live in ``<home>/packages/site``
(a link to the live set, swapped atomically by an install), never in the kit's
own environment. Every worker appends that directory to ``sys.path`` at boot —
after the kit's own site-packages, so a script can never shadow what the kit
runs on — and forgets the import system's directory caches when an install
announces a new set, so the next ``import`` finds what is there now.
"""

from __future__ import annotations

import importlib
import sys


def activate(site: str) -> None:
    """Put ``site`` last on ``sys.path`` (once)."""
    if site not in sys.path:
        sys.path.append(site)
    importlib.invalidate_caches()


def refresh() -> None:
    """A new set was swapped in: directory listings cached by the path finders
    (and the "no such directory" of a first install) are stale."""
    importlib.invalidate_caches()
