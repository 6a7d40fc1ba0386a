"""Settings: one typed definition from which every source derives.

Each field of ``Settings`` is a setting. Its YAML key is the kebab-case name
(``graceful-timeout``), its CLI flag ``--graceful-timeout`` and its environment
variable ``HOODYEXEC_GRACEFUL_TIMEOUT``. Precedence: flag > env > file > default.
Each source is validated on its own so an error names the key *and* where it came
from; unknown keys are refused everywhere.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import msgspec

from hoodyexec.errors import ConfigError
from hoodyexec.storage.backends import kind_of

ENV_PREFIX = "HOODYEXEC_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"


def _cpu_count() -> int:
    return os.cpu_count() or 1


class Settings(msgspec.Struct, rename="kebab", forbid_unknown_fields=True, kw_only=True):
    """Every setting of the kit, with its default."""

    home: Annotated[
        str, msgspec.Meta(description="Directory for scripts, state, logs and sockets.")
    ] = "./var"
    bind: Annotated[
        str, msgspec.Meta(description="Address to serve on: HOST:PORT or unix:PATH.")
    ] = "127.0.0.1:8080"
    state_url: Annotated[
        str | None,
        msgspec.Meta(
            description="Where shared state, schedule claims and the node list live: "
            "sqlite:///<file> (default: <home>/hoodyexec.db; one node), postgresql://... or "
            "redis://... (several nodes sharing it)."
        ),
    ] = None
    workers: Annotated[
        int,
        msgspec.Meta(ge=1, le=256, description="Number of request workers (default: CPU count)."),
    ] = msgspec.field(default_factory=_cpu_count)
    token: Annotated[
        str | None,
        msgspec.Meta(
            description="Management token: every /api/v1/exec/* call but health needs 'Authorization: Bearer <token>'."
        ),
    ] = None
    allow_unauthenticated_public: Annotated[
        bool,
        msgspec.Meta(
            description="Allow binding beyond loopback without a token (refused otherwise)."
        ),
    ] = False
    graceful_timeout: Annotated[
        int,
        msgspec.Meta(
            ge=1, description="Seconds in-flight requests get to finish on reload or stop."
        ),
    ] = 10
    timeout: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="Seconds a silent worker may go before the master restarts it (0 = never).",
        ),
    ] = 30
    header_timeout: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="Seconds a client gets to send a complete request head, from connect or "
            "from the end of the previous response (0 = no limit).",
        ),
    ] = 10
    worker_connections: Annotated[
        int, msgspec.Meta(ge=1, description="Maximum simultaneous connections per request worker.")
    ] = 1000
    log_level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"],
        msgspec.Meta(description="Kit log level."),
    ] = "info"
    access_log: Annotated[
        bool, msgspec.Meta(description="Write an access log line per request to stderr.")
    ] = False
    max_body_size: Annotated[
        int,
        msgspec.Meta(
            ge=0, description="Largest request body a script accepts, in bytes (413 above)."
        ),
    ] = 10 * 1024 * 1024
    max_concurrency: Annotated[
        int,
        msgspec.Meta(
            ge=1, description="Script executions in flight per request worker before 503."
        ),
    ] = 512
    script_timeout: Annotated[
        int, msgspec.Meta(ge=1, description="Default script time limit in ms (@timeout overrides).")
    ] = 30000
    threads: Annotated[
        int,
        msgspec.Meta(
            ge=1, le=1024, description="Thread pool size per request worker for sync scripts."
        ),
    ] = 32
    inline_threshold_ms: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            description="@mode auto: sync code holding the loop longer than this moves to the pool.",
        ),
    ] = 20.0
    inotify: Annotated[
        bool,
        msgspec.Meta(
            description="Watch the scripts tree with inotify. Turn off where it cannot see changes "
            "(network filesystems): management API writes still reach every worker at once; other "
            "edits are seen by a stat() per request and a rescan of each instance's folder at most "
            "once a second."
        ),
    ] = True
    host_pattern: Annotated[
        str,
        msgspec.Meta(
            description="Regex on the Host header with groups subdomain and execId (unmatched: default/1)."
        ),
    ] = r"^(?:(?P<subdomain>[A-Za-z0-9_-]+)\.)?exec-(?P<execId>[A-Za-z0-9_-]+)(?:[.:]|$)"
    monitoring: Annotated[
        bool,
        msgspec.Meta(
            description="Record per-script figures, in-flight executions and Prometheus metrics "
            "(monitor/*). Off only to measure what they cost."
        ),
    ] = True
    log_max_bytes: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="Size in bytes at which a log file under <home>/logs is rotated "
            "(file.log → file.log.1 ...; 0 = never).",
        ),
    ] = 10 * 1024 * 1024
    log_backups: Annotated[
        int, msgspec.Meta(ge=1, le=100, description="Rotated files kept per log (file.log.1..N).")
    ] = 5
    slow_request_ms: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="A script execution running longer than this gets its stack written to "
            "logs/slow.log once (0 = off).",
        ),
    ] = 5000
    websocket_idle_timeout: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="Seconds a WebSocket may go without a message either way before the kit "
            "closes it with 1001 (0 = never).",
        ),
    ] = 300
    websocket_max_message_size: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="Largest WebSocket message a client may send, in bytes (over: close "
            "1009; 0 = no limit).",
        ),
    ] = 1024 * 1024
    schedule_catch_up: Annotated[
        bool,
        msgspec.Meta(
            description="On start, also fire the last @schedule tick missed while the whole kit "
            "was down (default: only ticks missed while the kit ran)."
        ),
    ] = False
    ai_base_url: Annotated[
        str | None,
        msgspec.Meta(
            description="OpenAI-compatible API for scripts' ai helper (default: OPENAI_BASE_URL, "
            "else OpenAI's)."
        ),
    ] = None
    ai_api_key: Annotated[
        str | None,
        msgspec.Meta(
            description="Key for ai-base-url (default: OPENAI_API_KEY, else a tag derived from the "
            "home, for servers that need none)."
        ),
    ] = None
    ai_model: Annotated[
        str | None, msgspec.Meta(description="Model the ai helper asks for (@ai-model overrides).")
    ] = None
    ai_timeout_ms: Annotated[
        int, msgspec.Meta(ge=100, description="Time limit of one ai call in ms.")
    ] = 60000
    ai_max_retries: Annotated[
        int, msgspec.Meta(ge=0, le=10, description="Retries of a failed ai call (connection, 5xx).")
    ] = 1
    packages_installer: Annotated[
        Literal["auto", "uv", "pip"],
        msgspec.Meta(
            description="Installer for kit-local packages: uv (shipped with the kit), pip, or auto "
            "(uv when present)."
        ),
    ] = "auto"
    packages_timeout: Annotated[
        int,
        msgspec.Meta(
            ge=1, description="Seconds one package install may take before it is stopped."
        ),
    ] = 600
    packages_allow_urls: Annotated[
        bool,
        msgspec.Meta(
            description="Accept package specs that install from a URL (name @ https://...)."
        ),
    ] = False
    gunicorn_config: Annotated[
        str | None,
        msgspec.Meta(
            description="Optional gunicorn settings module (e.g. conf/gunicorn.conf.py) for fine tuning."
        ),
    ] = None

    def __post_init__(self) -> None:
        parse_bind(self.bind)
        if self.state_url:
            kind_of(self.state_url)
        try:
            groups = re.compile(self.host_pattern).groupindex
        except re.error as exc:
            raise ValueError(f"host-pattern: invalid regex: {exc}") from None
        if "execId" not in groups:
            raise ValueError("host-pattern: needs a named group (?P<execId>...)")

    # -- derived ----------------------------------------------------------
    @property
    def is_loopback(self) -> bool:
        host, _ = parse_bind(self.bind)
        if host is None:  # unix socket
            return True
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def parse_bind(bind: str) -> tuple[str | None, int | str]:
    """``HOST:PORT`` → (host, port); ``unix:PATH`` → (None, path)."""
    if bind.startswith("unix:"):
        path = bind[5:]
        if not path:
            raise ValueError("bind: 'unix:' needs a path")
        return None, path
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bind: must be HOST:PORT or unix:PATH, got {bind!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


# -- field table ----------------------------------------------------------
class Field(msgspec.Struct, frozen=True):
    attr: str
    key: str  # kebab-case, the YAML key
    env: str
    flag: str
    type: Any
    default: Any
    description: str


def fields() -> list[Field]:
    out = []
    for f in msgspec.structs.fields(Settings):
        typ = f.type
        desc = ""
        meta = getattr(typ, "__metadata__", ())
        for m in meta:
            if isinstance(m, msgspec.Meta) and m.description:
                desc = m.description
        if meta:
            typ = typ.__origin__
        default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
        env = ENV_PREFIX + f.name.upper()
        out.append(Field(f.name, f.encode_name, env, "--" + f.encode_name, typ, default, desc))
    return out


def _error_key(exc: msgspec.ValidationError) -> str:
    """The setting named by a msgspec error path such as ``... - at `$.workers```."""
    text = str(exc)
    if "$." not in text:
        return ""
    return text.rpartition("$.")[2].strip("`").split("[")[0].split(".")[0]


def _validate(data: Mapping[str, Any], source: str, *, strict: bool) -> None:
    try:
        msgspec.convert(dict(data), Settings, strict=strict)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None


# -- sources --------------------------------------------------------------
def from_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping of settings, got {type(data).__name__}"
        )
    _validate(data, f"config file {path}", strict=True)
    # Relative paths in a file are relative to the file, not to the cwd.
    base = os.path.dirname(os.path.abspath(path))
    for key in ("home", "gunicorn-config"):
        value = data.get(key)
        if isinstance(value, str) and not os.path.isabs(value):
            data[key] = os.path.normpath(os.path.join(base, value))
    return data


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    known = {f.env: f.key for f in fields()}
    data: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        if name not in known:
            raise ConfigError(f"environment: unknown setting {name}")
        data[known[name]] = value
    # Env values are strings: lax conversion turns "4" into 4 and "true" into True.
    try:
        msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        key = _error_key(exc)
        env = next((f.env for f in fields() if f.key == key), "")
        raise ConfigError(f"environment {env}: {exc}" if env else f"environment: {exc}") from None
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; unset flags stay ``None`` so lower sources show through."""
    parser.add_argument(
        "--config", metavar="FILE", default=None, help=f"YAML settings file (env {CONFIG_ENV})."
    )
    for f in fields():
        helptext = f"{f.description} (env {f.env}; default {f.default!r})"
        if f.type is bool:
            parser.add_argument(
                f.flag,
                dest=f.attr,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=helptext,
            )
        else:
            parser.add_argument(
                f.flag,
                dest=f.attr,
                default=None,
                metavar=f.key.upper().replace("-", "_"),
                help=helptext,
            )


def from_args(ns: argparse.Namespace) -> dict[str, Any]:
    data = {f.key: getattr(ns, f.attr) for f in fields() if getattr(ns, f.attr, None) is not None}
    try:
        msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        key = _error_key(exc)
        raise ConfigError(f"flag --{key}: {exc}" if key else f"flags: {exc}") from None
    return data


def resolve(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> Settings:
    """Merge the sources, flag > env > file > default, into one ``Settings``."""
    environ = os.environ if environ is None else environ
    if config_path is None:
        config_path = (getattr(args, "config", None) if args is not None else None) or environ.get(
            CONFIG_ENV
        )
    merged: dict[str, Any] = {}
    if config_path:
        merged.update(from_file(config_path))
    merged.update(from_env(environ))
    if args is not None:
        merged.update(from_args(args))
    try:
        settings = msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as exc:  # pragma: no cover - each layer was checked
        raise ConfigError(str(exc)) from None
    settings.home = os.path.abspath(settings.home)
    if settings.gunicorn_config:
        settings.gunicorn_config = os.path.abspath(settings.gunicorn_config)
    return settings


def parse_cli(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="hoodyexec serve")
    add_arguments(parser)
    return resolve(parser.parse_args(list(argv)), environ)


def check_startup(settings: Settings) -> None:
    """Refuse unsafe combinations before anything starts."""
    if (
        not settings.is_loopback
        and not settings.token
        and not settings.allow_unauthenticated_public
    ):
        raise ConfigError(
            f"refusing to bind {settings.bind} beyond loopback without a management token: "
            "set --token (HOODYEXEC_TOKEN) or pass --allow-unauthenticated-public if this is intended"
        )
