"""``medkt weights``: download (connected machines only) and verify model weights.

``medkt weights download NAME...`` needs ``MEDKT_OFFLINE=0``; ``medkt weights verify
[NAME...]`` checks local files against published SHA-256 values where a source publishes
one (SAM file-name hash prefixes, Hugging Face LFS object ids) and never opens a
connection.  Python API: :func:`medkt.models.weights.download` / :func:`~medkt.models.weights.verify`.
"""
from __future__ import annotations

NAME = "weights"
HELP = "download (MEDKT_OFFLINE=0) or verify model weights"
ORDER = 3


def add_arguments(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = sub.add_parser("download", help="download weights for NAME (needs MEDKT_OFFLINE=0)")
    d.add_argument("names", nargs="+", metavar="NAME")
    v = sub.add_parser("verify", help="check local weights (SHA-256 where published); default: all present")
    v.add_argument("names", nargs="*", metavar="NAME")


def run(args) -> int:
    from medkt.models import weights as W
    from medkt.models.registry import get_spec, list_models
    if args.action == "download":
        specs = [get_spec(n) for n in args.names]
        for spec in specs:
            for path in W.download(spec) or ["(tiny model: nothing to download)"]:
                print(f"{spec.name}: {path}")
        return 0
    specs = [get_spec(n) for n in args.names] if args.names else \
        [s for s in list_models() if not s.tiny and W.weights_status(s) != "missing"]
    if not specs:
        print("no downloaded weights to verify (see `medkt models`)")
        return 0
    bad = False
    for spec in specs:
        for f, status in W.verify(spec):
            print(f"{spec.name:22s} {status:40s} {f}")
            bad |= status.startswith(("MISMATCH", "missing"))
    return 1 if bad else 0
