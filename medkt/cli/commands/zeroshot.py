"""``medkt zeroshot``: zero-shot accuracy of a model and of every fine-tune of a transfer run."""
from __future__ import annotations

import json
from pathlib import Path

NAME = "zeroshot"
HELP = "zero-shot accuracy per concept and lr: target, reference (forgetting), other->target; lr selection"
DESCRIPTION = (
    "Classify folder-per-class image sets zero-shot among the learned concepts + the reference classes, "
    "with the original model and with every fine-tune (per concept, per lr) of a `medkt transfer` run. "
    "Per concept and lr: target accuracy (its own images), reference accuracy and drop in points "
    "(forgetting), and other->target: the share of the OTHER classes' images (other concepts in --target, "
    "--ood) called this concept. Prints the tables (concept rows x lr columns), writes the JSON report "
    "(-o; schema in docs/transfer.md) and the plot. --max-forgetting PTS selects per concept the largest "
    "lr whose reference drop stays within PTS points (reference set only).")
ORDER = 32


def add_arguments(p):
    p.add_argument("--finetuned", default=None, metavar="RUN",
                   help="a `medkt transfer` output folder (or one .safetensors file); omit to evaluate the model only")
    p.add_argument("--model", default=None,
                   help="model spec or registered name (default: the model recorded in RUN/run.json)")
    p.add_argument("--weights", default=None, help="local base weights for --model")
    p.add_argument("--target", required=True, metavar="DIR",
                   help="[REQUIRED] one folder per learned concept (its name or slug) with its images")
    p.add_argument("--reference", default=None, metavar="DIR",
                   help="one folder per known class (folder names = class names): forgetting")
    p.add_argument("--ood", default=None, metavar="DIR",
                   help="images of other classes outside the label set (subfolders or flat): specificity")
    p.add_argument("--max-forgetting", type=float, default=None, metavar="PTS",
                   help="select per concept the largest lr whose reference accuracy drops by at most PTS points")
    p.add_argument("--templates", "--template", dest="templates", action="append", default=None, metavar="T",
                   help="template set (simple, world, openai-imagenet, openai-imagenet-a, photo, ...) or a "
                        "template with {a} (name with a/an) or {} (repeatable; default: the model's own)")
    p.add_argument("--concepts", default=None,
                   help="learned concepts: comma list or concept set (default: the run's, else the target folders)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("-o", "--out", default=None, metavar="REPORT.json", help="write the report as JSON")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="write the Fig. 4-style plot (default with -o and fine-tunes: REPORT.png)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the tables")


def run(args) -> int:
    from medkt.evaluation.display import format_report
    from medkt.evaluation.report import zeroshot
    plot = args.plot
    if plot is None and args.out and args.finetuned:
        plot = str(Path(args.out).with_suffix(".png"))
    report = zeroshot(args.model, finetuned=args.finetuned, target=args.target, reference=args.reference,
                      ood=args.ood, max_forgetting=args.max_forgetting, templates=args.templates,
                      concepts=args.concepts, weights=args.weights, device=args.device,
                      batch_size=args.batch_size, out=args.out, plot=plot)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(format_report(report))
    if args.out:
        print(f"report: {args.out}")
    if report.get("plot"):
        print(f"plot: {report['plot']}")
    return 0
