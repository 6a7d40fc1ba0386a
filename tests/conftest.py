from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .kit import Kit


@pytest.fixture
def make_kit(tmp_path: Path) -> Iterator:
    kits: list[Kit] = []

    def make(**kw) -> Kit:
        kit = Kit(tmp_path / f"home{len(kits)}", **kw)
        kits.append(kit)
        return kit

    yield make
    for kit in kits:
        kit.stop()


@pytest.fixture
def kit(make_kit) -> Kit:
    return make_kit().start()
