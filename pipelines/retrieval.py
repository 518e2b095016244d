"""Image-text retrieval (R@1/5/10 both ways): CLIP similarity or ViLT ITM over every caption.

    python pipelines/retrieval.py --dataset flickr30k --root /data/Flickr30k --model vilt-b32-mlm \
        --scorer itm [--concepts mscoco --lr 9e-7 --preset vilt]
"""
from __future__ import annotations

import sys

from _common import model_and_data, parser, report


def main(argv=None) -> int:
    p = parser(__doc__, "retrieval")
    p.add_argument("--scorer", default="auto", choices=["auto", "similarity", "itm"])
    args = p.parse_args(argv)
    from medkt.bench import evaluate_dataset
    model, ds = model_and_data(args)
    res = evaluate_dataset("retrieval", model, ds, batch_size=args.batch_size, scorer=args.scorer)
    return report(res, args.json)


if __name__ == "__main__":
    sys.exit(main())
