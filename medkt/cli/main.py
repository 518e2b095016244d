"""``medkt`` entry point.

Each module in :mod:`medkt.cli.commands` defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; they are discovered automatically, so
adding a verb never touches this file.  Every verb calls the Python API with the same
arguments.  Errors never print a traceback unless ``--debug``:

* :class:`~medkt.errors.MedktError`: its message (what, where, fix); exit status 2 (or its own);
* ``OSError`` (a disk full, a folder that vanished...): one line naming the path; exit 2;
* any other exception: one line with its type and message, and a pointer to ``--debug``; exit 1.

In a batch, a case that fails unexpectedly is recorded with a one-line reason (``--debug`` logs
its traceback) and the run goes on.  SIGTERM ends a run like Ctrl-C: the run lock is released
and temp files are removed.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import signal
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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _os_error_line(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror or _one_line(e)}"


def _on_sigterm(signum, frame):  # pragma: no cover - exercised through a subprocess
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from medkt.paths import enforce_offline_env
    from medkt.runs import set_debug
    enforce_offline_env()
    set_debug(args.debug)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    with _sigterm_as_interrupt():
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
        except OSError as e:
            if args.debug:
                raise
            print(f"medkt {args.command}: error: {_os_error_line(e)}", file=sys.stderr)
            return 2
        except MemoryError:
            if args.debug:
                raise
            print(f"medkt {args.command}: error: out of memory; process fewer or smaller inputs, "
                  "or use a machine with more memory (--debug shows where)", file=sys.stderr)
            return 2
        except Exception as e:  # noqa: BLE001 - never a traceback without --debug
            if args.debug:
                raise
            print(f"medkt {args.command}: unexpected error: {type(e).__name__}: {_one_line(e)} "
                  "(rerun with --debug for the traceback; please report it)", file=sys.stderr)
            return 1


class _sigterm_as_interrupt:
    """While the command runs, SIGTERM raises ``KeyboardInterrupt`` (main thread only)."""

    def __enter__(self):
        self.old = None
        try:
            self.old = signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):  # not the main thread
            pass
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
