"""conf/: the gunicorn module and the systemd unit stay true to the code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gunicorn.app.base import Application
from hoodyexec.workers.master import GUNICORN_DEFAULTS, HoodyApplication

from hoodyexec import config

ROOT = Path(__file__).resolve().parent.parent


def test_gunicorn_conf_mirrors_embedded_defaults():
    cfg = Application.get_config_from_filename(None, str(ROOT / "conf" / "gunicorn.conf.py"))
    values = {k: v for k, v in cfg.items() if not k.startswith("__")}
    assert values == GUNICORN_DEFAULTS


def test_application_maps_settings_onto_gunicorn(tmp_path):
    settings = config.parse_cli(
        [
            "--home",
            str(tmp_path),
            "--workers",
            "3",
            "--graceful-timeout",
            "7",
            "--gunicorn-config",
            str(ROOT / "conf" / "gunicorn.conf.py"),
        ],
        {},
    )
    app = HoodyApplication(settings)
    cfg = app.cfg
    assert cfg.worker_class_str == "hoodyexec.workers.asgi.HoodyASGIWorker"
    assert cfg.workers == 3 and cfg.graceful_timeout == 7
    assert cfg.bind == ["127.0.0.1:8080"]
    assert cfg.pidfile == str(tmp_path / "run" / "hoodyexec.pid")
    assert cfg.control_socket == str(tmp_path / "run" / "gunicorn.ctl")
    assert cfg.keepalive == 5


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path):
    text = (ROOT / "conf" / "hoodyexec.service").read_text()
    assert "Type=notify" in text
    assert "ExecReload=/opt/hoodyexec/.venv/bin/hoodyexec reload" in text
    assert "ExecStop=/opt/hoodyexec/.venv/bin/hoodyexec stop" in text
    assert "KillMode=mixed" in text
    # point the unit at this checkout so systemd can check the executable exists
    venv = Path(sys.executable).parent.parent
    unit = tmp_path / "hoodyexec.service"
    unit.write_text(
        text.replace("/opt/hoodyexec/.venv", str(venv)).replace("/opt/hoodyexec", str(ROOT))
    )
    r = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (r.stdout + r.stderr).splitlines()
        if "hoodyexec.service" in line or "Unknown" in line or "Failed" in line
    ]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    assert readme.lstrip().startswith("# hoodyexec")
    assert "make run" in readme.split("##")[0] and "make test" in readme.split("##")[0]
    for f in config.fields():
        assert f"`{f.key}`" in readme and f"`{f.env}`" in readme and f"`{f.flag}`" in readme, f.key
