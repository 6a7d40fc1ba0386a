"""Settings: one typed definition, four sources, clear errors."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import msgspec
import pytest
import yaml

from hoodyexec import config
from hoodyexec.config import Settings
from hoodyexec.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def parse(argv=(), env=None):
    return config.parse_cli(list(argv), env or {})


def test_defaults():
    s = parse()
    assert s.bind == "127.0.0.1:8080"
    assert s.home == os.path.abspath("./var")
    assert s.workers == (os.cpu_count() or 1)
    assert s.token is None and s.allow_unauthenticated_public is False
    assert s.graceful_timeout == 10 and s.log_level == "info"


def test_names_derive_from_one_definition():
    by_attr = {f.attr: f for f in config.fields()}
    f = by_attr["graceful_timeout"]
    assert (f.key, f.env, f.flag) == (
        "graceful-timeout",
        "HOODYEXEC_GRACEFUL_TIMEOUT",
        "--graceful-timeout",
    )
    assert f.description
    # every struct field has exactly one row, and every row a CLI flag
    assert set(by_attr) == set(Settings.__struct_fields__)
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    flags = {a for action in parser._actions for a in action.option_strings}
    assert {f.flag for f in config.fields()} <= flags


def test_precedence_flag_over_env_over_file_over_default(tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text("workers: 3\nbind: 127.0.0.1:7001\nlog-level: debug\ntimeout: 11\n")
    env = {
        "HOODYEXEC_CONFIG": str(cfg),
        "HOODYEXEC_WORKERS": "5",
        "HOODYEXEC_BIND": "127.0.0.1:7002",
    }
    s = parse(["--bind", "127.0.0.1:7003"], env)
    assert s.bind == "127.0.0.1:7003"  # flag
    assert s.workers == 5  # env over file
    assert s.log_level == "debug" and s.timeout == 11  # file over default
    assert s.graceful_timeout == 10  # default
    s = parse(["--config", str(cfg)], {})
    assert s.workers == 3


def test_file_relative_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "conf").mkdir()
    cfg = tmp_path / "conf" / "k.yaml"
    cfg.write_text("home: ../data\n")
    assert parse(["--config", str(cfg)]).home == str(tmp_path / "data")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("wrokers: 2\n", "wrokers"),
        ("workers: two\n", "$.workers"),
        ("workers: 0\n", "$.workers"),
        ("log-level: loud\n", "$.log-level"),
        ("bind: nowhere\n", "bind"),
        ("- a\n- b\n", "mapping"),
        ("workers: [\n", "invalid YAML"),
    ],
)
def test_bad_file_names_the_key(tmp_path, text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        parse(["--config", str(cfg)])
    assert needle in str(err.value) and str(cfg) in str(err.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        parse(["--config", "/nonexistent/hoodyexec.yaml"])


def test_env_errors_name_the_variable():
    with pytest.raises(ConfigError, match="HOODYEXEC_WORKERS"):
        parse(env={"HOODYEXEC_WORKERS": "many"})
    with pytest.raises(ConfigError, match="unknown setting HOODYEXEC_WROKERS"):
        parse(env={"HOODYEXEC_WROKERS": "2"})
    assert parse(env={"HOODYEXEC_ACCESS_LOG": "true"}).access_log is True


def test_flag_errors_name_the_flag():
    with pytest.raises(ConfigError, match="--workers"):
        parse(["--workers", "x"])
    with pytest.raises(ConfigError, match="bind"):
        parse(["--bind", "1.2.3.4"])
    assert parse(["--access-log"]).access_log is True
    assert parse(["--no-access-log"], {"HOODYEXEC_ACCESS_LOG": "1"}).access_log is False


@pytest.mark.parametrize(
    "bind, loopback",
    [
        ("127.0.0.1:1", True),
        ("localhost:1", True),
        ("[::1]:1", True),
        ("unix:/tmp/x.sock", True),
        ("0.0.0.0:1", False),
        ("10.1.2.3:1", False),
        (":8080", False),
        ("example.org:80", False),
    ],
)
def test_loopback_detection(bind, loopback):
    assert parse(["--bind", bind]).is_loopback is loopback


def test_public_bind_needs_token_or_explicit_intent():
    with pytest.raises(ConfigError, match="beyond loopback"):
        config.check_startup(parse(["--bind", "0.0.0.0:8080"]))
    config.check_startup(parse(["--bind", "0.0.0.0:8080", "--token", "t"]))
    config.check_startup(parse(["--bind", "0.0.0.0:8080", "--allow-unauthenticated-public"]))
    config.check_startup(parse(["--bind", "127.0.0.1:8080"]))


def test_shipped_yaml_decodes_into_settings():
    data = yaml.safe_load((ROOT / "conf" / "hoodyexec.yaml").read_text())
    msgspec.convert(data, Settings, strict=True)
    s = parse(["--config", str(ROOT / "conf" / "hoodyexec.yaml")])
    assert s.home == str(ROOT / "var")
    assert s.gunicorn_config == str(ROOT / "conf" / "gunicorn.conf.py")
    # the shipped file documents every setting (workers is commented: CPU count)
    text = (ROOT / "conf" / "hoodyexec.yaml").read_text()
    for f in config.fields():
        assert f"{f.key}:" in text, f.key
