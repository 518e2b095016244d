"""``medkt evaluate PRED GT -o REPORT``: DSC / IoU / NSD / HD95 per case, with a summary.

Python API: :func:`medkt.evaluate` (= :func:`medkt.metrics.evaluate.evaluate`).
"""
from __future__ import annotations

import math

from medkt.metrics.conventions import HD95_MODES, NSD_MODES

NAME = "evaluate"
HELP = "score predicted masks against ground truth (DSC, IoU, NSD, HD95), matched by case id"
ORDER = 40


def _parse_classes(text: str | None):
    if not text:
        return None
    from medkt.errors import ConfigError
    items = [t.strip() for t in text.split(",") if t.strip()]
    if all("=" in t for t in items):
        out = {}
        for t in items:
            name, label = t.split("=", 1)
            out[name.strip()] = label.strip()
        return out
    if any("=" in t for t in items):
        raise ConfigError(f"--classes mixes 'name=label' and bare labels: {text!r}.",
                          hint="use either 1,2,3 or liver=1,spleen=2")
    return items


def add_arguments(p):
    p.add_argument("pred", help="predicted mask file or folder")
    p.add_argument("gt", help="ground-truth mask file or folder (cases matched by case id: medkt.io's "
                              "ids, as medkt segment names its outputs; .npy: file name without extension)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT",
                   help="output folder for per_case.csv, summary.json and run.json")
    p.add_argument("--nsd-tolerance", type=float, default=None, metavar="TAU",
                   help="NSD tolerance (default 2.0), in --nsd-units")
    p.add_argument("--nsd-units", choices=["mm", "px"], default=None,
                   help="tolerance and HD95 in mm using the GT spacing (default), or in pixels")
    p.add_argument("--nsd-mode", choices=list(NSD_MODES), default=None,
                   help="'deepmind' (default) = area-weighted surface elements, as DeepMind's "
                        "surface-distance (the challenges, MedSAM); 'surface' = boundary-voxel count "
                        "(MONAI); 'medclip-samv2' = their slab 'NSD' (a tolerant area overlap, always "
                        "in px) for comparison with the paper")
    p.add_argument("--hd95-mode", choices=list(HD95_MODES), default=None,
                   help="'deepmind' (default) = area-weighted robust Hausdorff (surface-distance); "
                        "'monai' = max of the two directed P95; 'medpy' = P95 of both directions pooled")
    p.add_argument("--resample-pred", action="store_true",
                   help="if prediction and GT grids differ (spacing, orientation, origin), resample the "
                        "prediction onto the GT grid (nearest neighbour) instead of refusing the case")
    p.add_argument("--empty-policy", default=None, metavar="NAME",
                   help="'default' (both empty → 1, prediction on empty GT → 0; HD95 undefined → nan) "
                        "or 'monai' (empty GT → nan, excluded)")
    p.add_argument("--both-empty", default=None, metavar="VALUE",
                   help="override DSC/IoU/NSD when both masks are empty (a number or 'nan')")
    p.add_argument("--gt-empty", default=None, metavar="VALUE",
                   help="override DSC/IoU/NSD for a prediction on an empty GT (a number or 'nan')")
    p.add_argument("--threshold", type=float, default=None,
                   help="binary masks: foreground = value > THRESHOLD (default 0)")
    p.add_argument("--classes", default=None, metavar="LIST",
                   help="multi-class label maps: '1,2,3' or 'liver=1,spleen=2' (default: binary)")
    p.add_argument("--metrics", default=None, help="comma list of dsc,iou,nsd,hd95 (default: all)")
    p.add_argument("--spacing", default=None, metavar="S1,S2[,S3]",
                   help="mm per array axis, used when the GT carries no spacing (PNG, .npy)")
    p.add_argument("--missing-prediction", choices=["empty", "skip"], default="empty",
                   help="a GT case without prediction: score as empty (default) or list unscored")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")


def options_from_args(args) -> dict:
    opts = {}
    if args.nsd_tolerance is not None:
        opts["nsd_tolerance"] = args.nsd_tolerance
    if args.nsd_units is not None:
        opts["nsd_units"] = args.nsd_units
    if args.nsd_mode is not None:
        opts["nsd_mode"] = args.nsd_mode  # "medclip-samv2" implies px: SegMetricConfig.distance_units
    if args.hd95_mode is not None:
        opts["hd95_mode"] = args.hd95_mode
    policy = {}
    if args.empty_policy is not None:
        policy["base"] = args.empty_policy
    if args.both_empty is not None:
        policy["both_empty"] = args.both_empty
    if args.gt_empty is not None:
        policy["gt_empty"] = args.gt_empty
    if policy:
        opts["empty_policy"] = args.empty_policy if set(policy) == {"base"} else policy
    if args.threshold is not None:
        opts["threshold"] = args.threshold
    classes = _parse_classes(args.classes)
    if classes is not None:
        opts["classes"] = classes
    if args.metrics:
        opts["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    return opts


def run(args) -> int:
    from medkt.errors import ConfigError
    from medkt.metrics.evaluate import evaluate
    spacing = None
    if args.spacing:
        try:
            spacing = tuple(float(s) for s in args.spacing.split(","))
        except ValueError:
            raise ConfigError(f"--spacing must be comma-separated numbers, got {args.spacing!r}.") from None
    report = evaluate(args.pred, args.gt, args.output, spacing=spacing,
                      missing_prediction=args.missing_prediction, seed=args.seed, n_boot=args.n_boot,
                      overwrite=args.overwrite, resample_pred=args.resample_pred, **options_from_args(args))
    s = report.summary
    conv = s["conventions"]
    print(f"{s['n_cases']} cases: " + ", ".join(f"{k} {v}" for k, v in s["cases"].items()))
    print(f"NSD: mode {conv['nsd_mode']}, tolerance {conv['nsd_tolerance']} {conv['nsd_units']}; "
          f"HD95: mode {conv['hd95_mode']}; binarisation: {conv['binarisation']}; "
          f"empty policy: {conv['empty_policy_name']}")
    geo = s.get("geometry", {})
    if geo.get("resampled"):
        print(f"  prediction resampled onto the GT grid (nearest neighbour): {', '.join(geo['resampled'])}")
    print(f"case types: {s['case_types']}")
    for m, st in s["metrics"].items():
        def f(x):
            return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"
        print(f"  {m:5s} mean {f(st['mean'])}  sd {f(st['sd'])}  median {f(st['median'])}  "
              f"95% CI [{f(st['ci_low'])}, {f(st['ci_high'])}]  n {st['n']}  n_nan {st['n_nan']}")
    if "macro" in s:
        print("  macro over classes: " + ", ".join(f"{m} {v:.4f}" for m, v in s["macro"].items()))
    for cid, reason in s["failed"].items():
        print(f"  failed: {cid}: {reason}")
    for key, label in (("prediction", "no prediction"), ("ground_truth", "no ground truth")):
        if s["missing"][key]:
            print(f"  {label}: {', '.join(s['missing'][key])}")
    print(f"wrote {report.files['per_case']} and {report.files['summary']}")
    return 1 if s["failed"] else 0
