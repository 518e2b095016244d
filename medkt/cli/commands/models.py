"""``medkt models``: list the registered models (family, weight source, presence) or load one.

Python API: :func:`models_table` (the listing) and :func:`load_and_describe` (``--load``).
"""
from __future__ import annotations

import json

NAME = "models"
HELP = "list models with their family, weight source and whether the weights are present"
ORDER = 2


def add_arguments(p):
    p.add_argument("name", nargs="?", help="show one model (with --load: build it and describe it)")
    p.add_argument("--kind", choices=["vlm", "sam"], help="only vision-language models or SAM segmenters")
    p.add_argument("--load", action="store_true", help="build the model (checks that its weights load)")
    p.add_argument("--weights", metavar="PATH", help="local weight file/folder instead of the cache")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def models_table(kind: str | None = None) -> list[dict]:
    from medkt.models.registry import list_models
    from medkt.models.weights import weights_status
    return [{"name": s.name, "family": s.family, "kind": s.kind, "tiny": s.tiny, "source": s.source,
             "weights": weights_status(s), "description": s.description} for s in list_models(kind)]


def load_and_describe(name: str, weights: str | None = None) -> dict:
    from medkt.models.registry import create_model
    return create_model(name, weights=weights).describe()


def run(args) -> int:
    if args.name:
        from medkt.models.registry import get_spec
        get_spec(args.name)  # unknown names fail here with close-match suggestions
        if args.load or args.weights:
            info = load_and_describe(args.name, args.weights)
        else:
            info = next(r for r in models_table() if r["name"] == args.name)
        print(json.dumps(info, indent=2, default=str) if args.json else
              "\n".join(f"{k:12s} {v}" for k, v in info.items()))
        return 0
    rows = models_table(args.kind)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':22s} {'family':17s} {'kind':4s}  weights / source")
    for r in rows:
        print(f"{r['name']:22s} {r['family']:17s} {r['kind']:4s}  {r['weights']}\n{'':47s}{r['source']}")
    return 0
