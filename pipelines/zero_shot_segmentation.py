"""Zero-shot segmentation through medkt.segment (M2IB saliency -> post-processing -> SAM), scored
with DSC / NSD / IoU against the dataset's masks, before or after Knowledge Transfer.

    python pipelines/zero_shot_segmentation.py --dataset udiat --root /data/UDIAT --model biomedclip \
        --sam sam-vit-h --prompt "A medical breast mammogram showing ..." \
        [--concepts segmentation --learn "Breast Tumor" --lr 1e-5]
"""
from __future__ import annotations

import sys

from _common import model_and_data, parser, report


def main(argv=None) -> int:
    p = parser(__doc__, "segmentation")
    p.add_argument("--prompt", required=True, help="the M2IB text prompt")
    p.add_argument("--sam", default="sam-vit-b", help="SAM model name")
    p.add_argument("--nsd-tolerance", type=float, help="NSD tolerance (default: medkt.metrics.SegMetricConfig's)")
    p.add_argument("--nsd-units", choices=["px", "mm"], help="NSD/HD95 units (default: SegMetricConfig's, mm)")
    p.add_argument("--nsd-mode", help="NSD convention, e.g. surface | medclip-samv2 (default: SegMetricConfig's)")
    args = p.parse_args(argv)
    from medkt.bench import evaluate_dataset
    model, ds = model_and_data(args)
    metrics = {k: v for k, v in (("nsd_tolerance", args.nsd_tolerance), ("nsd_units", args.nsd_units),
                                 ("nsd_mode", args.nsd_mode)) if v is not None}
    res = evaluate_dataset("segmentation", model, ds, batch_size=args.batch_size, prompt=args.prompt,
                           sam=args.sam, metrics=metrics, model_name=args.model)
    return report(res, args.json)


if __name__ == "__main__":
    sys.exit(main())
