"""Script request bodies: parse_body (http/body.py) and the typed decoding of a
handler's body parameter refuse JSON nested too deeply."""

from __future__ import annotations

from typing import Any

import pytest

from hoodyexec.engine.inject import decode_raw as _decode_raw
from hoodyexec.errors import HoodyError
from hoodyexec.http.body import parse_body


def test_script_body_parsers_refuse_deep_json():
    import msgspec

    class Body(msgspec.Struct):
        a: Any = None

    for call in (
        lambda: parse_body(b"[" * 100_000, "application/json"),
        lambda: _decode_raw(b'{"a":' * 100_000, Body),
        lambda: _decode_raw(b"[" * 100_000, list),
    ):
        with pytest.raises(HoodyError) as info:
            call()
        assert info.value.status == 400 and info.value.message == "Invalid JSON"
