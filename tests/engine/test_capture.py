"""Script logs (engine/capture.py)."""

from __future__ import annotations


def test_script_logs_keep_a_bounded_number_of_files_open(tmp_path, monkeypatch):
    from hoodyexec.engine import capture as logs

    monkeypatch.setattr(logs, "MAX_OPEN_LOGS", 5)
    book = logs.LogBook(str(tmp_path))
    scripts = [book.for_script("default", "1", f"s{i}.py") for i in range(20)]
    for round_ in range(2):
        for i, log in enumerate(scripts):
            log.write(20, f"e{round_}", f"line {i}")
    assert sum(1 for log in scripts if log._fd is not None) <= 5
    for i in range(20):
        text = (tmp_path / "default" / "1" / f"s{i}.log").read_text()
        assert (
            f"[e0] line {i}" in text and f"[e1] line {i}" in text
        )  # reopened on demand, nothing lost
