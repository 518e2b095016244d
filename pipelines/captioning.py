"""Captioning with CoCa, scored with pycocoevalcap (BLEU, METEOR, ROUGE-L, CIDEr, SPICE when possible).

    python pipelines/captioning.py --dataset mscoco_karpathy --root /data/MSCOCO --model coca-vit-l14 \
        --method beam_search [--concepts mscoco --lr 6e-5 --preset coca]
"""
from __future__ import annotations

import sys

from _common import model_and_data, parser, report


def main(argv=None) -> int:
    p = parser(__doc__, "captioning")
    p.add_argument("--method", default="greedy", help="greedy | beam_search")
    p.add_argument("--max-len", type=int, default=30)
    p.add_argument("--metrics", nargs="+", default=None, help="bleu meteor rouge_l cider spice")
    p.add_argument("--tokenizer", default="auto", help="auto | ptb | python")
    args = p.parse_args(argv)
    from medkt.bench import evaluate_dataset
    model, ds = model_and_data(args)
    res = evaluate_dataset("captioning", model, ds, batch_size=args.batch_size, method=args.method,
                           max_len=args.max_len, metrics=args.metrics, tokenizer=args.tokenizer)
    return report(res, args.json)


if __name__ == "__main__":
    sys.exit(main())
