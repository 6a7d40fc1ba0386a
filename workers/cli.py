"""``hoodyexec`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hoodyexec import __version__, config
from hoodyexec.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hoodyexec", description="Turn Python files into live HTTP endpoints."
    )
    parser.add_argument("--version", action="version", version=f"hoodyexec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the kit (master, request workers, control worker)")
    config.add_arguments(serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        try:
            settings = config.resolve(args)
            config.check_startup(settings)
        except ConfigError as exc:
            print(f"hoodyexec: error: {exc}", file=sys.stderr)
            return 2
        from .master import serve  # gunicorn is imported only to serve

        serve(settings, args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
