"""``hoodyexec`` command line: ``serve``, and the operator's commands acting on
the kit running at a home (``hoodyexec/features/system/ops.py``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hoodyexec import __version__, config
from hoodyexec.errors import ConfigError
from hoodyexec.features.system import ops
from hoodyexec.home import Home
from hoodyexec.storage.backends import open_backend


def _duration(text: str) -> float:
    try:
        return ops.seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _where(parser: argparse.ArgumentParser) -> None:
    """How an ops command finds its kit: as ``serve`` does."""
    parser.add_argument(
        "--home", default=None, help="the kit's home (env HOODYEXEC_HOME; default ./var)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help=f"YAML settings file (env {config.CONFIG_ENV})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hoodyexec", description="Turn Python files into live HTTP endpoints."
    )
    parser.add_argument("--version", action="version", version=f"hoodyexec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the kit (master, request workers, control worker)")
    config.add_arguments(serve)

    p = sub.add_parser("status", help="pids, health, workers, schedules, restart state")
    _where(p)
    p = sub.add_parser("reload", help="replace every worker gracefully (the SIGHUP path)")
    _where(p)
    p.add_argument("--timeout", type=_duration, default=120.0, help="wait at most (default 120s)")
    p = sub.add_parser("restart", help="system/restart: drain in-flight requests, then replace")
    _where(p)
    p.add_argument("--drain-timeout", type=_duration, default=5.0, help="default 5s")
    p.add_argument("--reason", default="hoodyexec restart")
    p.add_argument("--force", action="store_true", help="kill workers at once, no drain")
    p.add_argument("--timeout", type=_duration, default=120.0, help="wait at most (default 120s)")
    p = sub.add_parser("drain", help="health answers 503; wait until nothing is in flight")
    _where(p)
    p.add_argument("--timeout", type=_duration, default=30.0, help="default 30s")
    p.add_argument("--reason", default="hoodyexec drain")
    p = sub.add_parser("undrain", help="back in rotation: health answers 200 again")
    _where(p)
    p = sub.add_parser("stop", help="drain, then stop the kit and wait for it to exit")
    _where(p)
    p.add_argument("--drain-timeout", type=_duration, default=30.0, help="default 30s")
    p.add_argument("--wait", type=_duration, default=60.0, help="for the exit (default 60s)")
    logs = sub.add_parser("logs", help="logs of the running kit")
    logs_sub = logs.add_subparsers(dest="logs_command", required=True)
    p = logs_sub.add_parser("tail", help="follow a script's log (default: the kit's log)")
    _where(p)
    p.add_argument("script", nargs="?", help="hello.py, sub/dir/x.py or a log name")
    p.add_argument("--execution-id", default=None, help="only this execution's lines")
    p.add_argument("--lines", type=int, default=20, help="lines of backlog (default 20)")
    p.add_argument("--no-follow", dest="follow", action="store_false", help="print and exit")
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = config.resolve(args)
        config.check_startup(settings)
        backend = open_backend(settings.state_url, settings.home)
        if backend.shared:  # a shared backend that is down: refuse to start
            backend.check()
    except ConfigError as exc:
        print(f"hoodyexec: error: {exc}", file=sys.stderr)
        return 2
    from .master import serve  # gunicorn is imported only to serve

    serve(settings, args)
    return 0


def _ops(args: argparse.Namespace) -> int:
    # Only where the kit is: the command's own flags are not settings.
    where = argparse.Namespace(home=args.home, config=args.config)
    settings = config.resolve(where)
    kit = ops.RunningKit(Home(settings.home))
    out = ops.printer(sys.stdout)
    as_json: bool = args.json
    command = args.command
    if command == "status":
        return ops.status(kit, as_json, out)
    if command == "reload":
        return ops.restart(
            kit,
            reason="hoodyexec reload",
            drain=None,
            force=False,
            timeout=args.timeout,
            as_json=as_json,
            out=out,
        )
    if command == "restart":
        return ops.restart(
            kit,
            reason=args.reason,
            drain=args.drain_timeout,
            force=args.force,
            timeout=args.timeout,
            as_json=as_json,
            out=out,
        )
    if command == "drain":
        return ops.drain(kit, timeout=args.timeout, reason=args.reason, as_json=as_json, out=out)
    if command == "undrain":
        return ops.undrain(kit, as_json=as_json, out=out)
    if command == "stop":
        return ops.stop(
            kit, drain_timeout=args.drain_timeout, wait=args.wait, as_json=as_json, out=out
        )
    return ops.tail(
        kit,
        script=args.script,
        execution_id=args.execution_id,
        lines=args.lines,
        follow=args.follow,
        as_json=as_json,
        out=out,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    try:
        return _ops(args)
    except ConfigError as exc:
        print(f"hoodyexec: error: {exc}", file=sys.stderr)
        return ops.NO_KIT
    except ops.OpsError as exc:
        print(f"hoodyexec {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
