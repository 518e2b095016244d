"""Zero-shot classification with prompt ensembling, before or after Knowledge Transfer.

    python pipelines/zero_shot_classification.py --dataset rare_concepts --root /data/RareConcepts \
        --model clip-vit-b32 --templates openai_imagenet --target Moongate \
        [--concepts rare --learn Moongate --lr 2e-5]

Prints accuracy, top-k, per-class and target accuracy (the images of --target classes).
The paper's tables (baseline + sweep + reference set + report) are `medkt bench CONFIG`.
"""
from __future__ import annotations

import sys

from _common import model_and_data, parser, report


def main(argv=None) -> int:
    p = parser(__doc__, "classification")
    p.add_argument("--templates", nargs="+", default=["openai_imagenet"], help="template sets or '...{}...'")
    p.add_argument("--target", nargs="*", default=[], help="classes whose accuracy is the target accuracy")
    args = p.parse_args(argv)
    from medkt.bench import evaluate_dataset
    model, ds = model_and_data(args)
    res = evaluate_dataset("classification", model, ds, batch_size=args.batch_size, templates=args.templates,
                           target_classes=args.target)
    return report(res, args.json)


if __name__ == "__main__":
    sys.exit(main())
