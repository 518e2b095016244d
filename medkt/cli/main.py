"""``medkt`` entry point.

Each module in :mod:`medkt.cli.commands` defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; they are discovered automatically, so
adding a verb never touches this file.  Every verb calls the Python API with the same
arguments.  :class:`~medkt.errors.MedktError` is printed as one message without a
traceback (``--debug`` shows it).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from medkt.errors import MedktError


def _commands():
    from medkt.cli import commands
    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"medkt.cli.commands.{info.name}"))
    return sorted(mods, key=lambda m: getattr(m, "ORDER", 50))


def build_parser() -> argparse.ArgumentParser:
    from medkt import __version__
    parser = argparse.ArgumentParser(prog="medkt", description="Knowledge Transfer and zero-shot medical "
                                     "segmentation for vision-language models.")
    parser.add_argument("--version", action="version", version=f"medkt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from medkt.paths import enforce_offline_env
    enforce_offline_env()
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except MedktError as e:
        if args.debug:
            raise
        print(f"medkt {args.command}: error: {e.format()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished cases are kept (rerun with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
