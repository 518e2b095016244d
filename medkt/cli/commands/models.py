"""``medkt models``: list the registered models, or describe what one model spec loads.

``medkt models`` lists names with family, weight source and presence; ``medkt models SPEC``
(a registered name, ``local-dir:PATH``, ``hf-hub:ORG/NAME``, an open_clip ``ARCH/TAG`` or a
checkpoint file) says what it loads: family, architecture, image size, normalisation,
source and whether the weights are present; ``--load`` builds it (parameters, fingerprint).
Python API: :func:`models_table` (the listing) and :func:`medkt.models.describe_spec`.
"""
from __future__ import annotations

import json

NAME = "models"
HELP = "list models, or describe what a model spec loads (family, size, normalisation, weights)"
ORDER = 2


def add_arguments(p):
    p.add_argument("name", nargs="?", metavar="SPEC",
                   help="describe one model: a registered name, local-dir:PATH, hf-hub:ORG/NAME[@REV], "
                        "an open_clip ARCH/TAG or a checkpoint file")
    p.add_argument("--kind", choices=["vlm", "sam"], help="only vision-language models or SAM segmenters")
    p.add_argument("--load", action="store_true", help="build the model (checks that its weights load; "
                   "adds parameter count and weights fingerprint)")
    p.add_argument("--weights", metavar="PATH", help="local weight file/folder instead of the cache")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def models_table(kind: str | None = None) -> list[dict]:
    from medkt.models.registry import list_models
    from medkt.models.resolve import weights_status
    return [{"name": s.name, "family": s.family, "kind": s.kind, "tiny": s.tiny, "source": s.source,
             "weights": weights_status(s), "description": s.description} for s in list_models(kind)]


def load_and_describe(name: str, weights: str | None = None) -> dict:
    """Build ``name`` and describe it (kept for callers of the old API)."""
    from medkt.models.describe import describe_spec
    return describe_spec(name, weights, load=True)


def _fmt(v) -> str:
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v) + ")"
    return "-" if v is None else str(v)


def run(args) -> int:
    if args.name:
        from medkt.models.describe import describe_spec
        info = describe_spec(args.name, args.weights, load=args.load)
        print(json.dumps(info, indent=2, default=str) if args.json else
              "\n".join(f"{k:15s} {_fmt(v)}" for k, v in info.items()))
        return 0
    rows = models_table(args.kind)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':22s} {'family':17s} {'kind':4s}  weights / source")
    for r in rows:
        print(f"{r['name']:22s} {r['family']:17s} {r['kind']:4s}  {r['weights']}\n{'':47s}{r['source']}")
    return 0
