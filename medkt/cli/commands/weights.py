"""``medkt weights``: download (connected machines only) and verify model weights.

``medkt weights download NAME...`` needs ``MEDKT_OFFLINE=0``.  A download must be pinned
(a full SHA-256 for URL files, a commit ``revision`` for Hugging Face repos): the file is
checked before it is moved into place.  Entries without a pin are refused unless
``--allow-unpinned``; the SHA-256 of what arrived is then recorded in ``SHA256SUMS``.
``NAME`` may also be ``hf-hub:ORG/NAME[@REV]``.  ``medkt weights verify [NAME...]`` checks
local files against the pins, the recorded sums and Hugging Face LFS object ids, and never
opens a connection.  Python API: :func:`medkt.models.weights.download` (``allow_unpinned=``)
/ :func:`~medkt.models.weights.verify`.
"""
from __future__ import annotations

NAME = "weights"
HELP = "download (MEDKT_OFFLINE=0; pinned, verified) or verify model weights"
ORDER = 3


def add_arguments(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = sub.add_parser("download", help="download weights for NAME (needs MEDKT_OFFLINE=0)")
    d.add_argument("names", nargs="+", metavar="NAME")
    d.add_argument("--allow-unpinned", action="store_true",
                   help="also download files that have no published SHA-256 / revision pin "
                        "(their SHA-256 is recorded on arrival)")
    v = sub.add_parser("verify", help="check local weights (SHA-256 where known); default: all present")
    v.add_argument("names", nargs="*", metavar="NAME")


def _spec_for(name: str):
    """A registry spec, or an ad-hoc one for ``hf-hub:ORG/NAME[@REV]``."""
    from medkt.models.registry import ModelSpec, get_spec
    if name.startswith("hf-hub:"):
        from medkt.models.specs import parse_spec
        p = parse_spec(name)
        return ModelSpec(name=p.repo.replace("/", "--"), family="hf", builder=None, source=name,
                         files=[{"repo": p.repo, "revision": p.revision, "hf_cache": True}])
    return get_spec(name)


def run(args) -> int:
    from medkt.models import weights as W
    from medkt.models.registry import list_models
    if args.action == "download":
        specs = [_spec_for(n) for n in args.names]
        for spec in specs:
            for path in W.download(spec, allow_unpinned=args.allow_unpinned) or \
                    ["(tiny model: nothing to download)"]:
                print(f"{spec.name}: {path}")
        return 0
    specs = [_spec_for(n) for n in args.names] if args.names else \
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
