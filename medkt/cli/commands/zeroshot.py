"""``medkt zeroshot``: zero-shot classification before/after Knowledge Transfer."""
from __future__ import annotations

import json

NAME = "zeroshot"
HELP = "zero-shot accuracy before/after transfer: target, reference (forgetting), specificity"
DESCRIPTION = ("Classify folder-per-class image sets zero-shot with the original model and with the "
               "fine-tuned weights of a `medkt transfer` run. Reports target accuracy (the learned "
               "concepts), reference accuracy (forgetting) and, per concept, the share of OOD images "
               "(classes outside the label set) labelled as that concept (specificity = 1 - share).")
ORDER = 32


def add_arguments(p):
    p.add_argument("--model", required=True, help="[REQUIRED] registered model name")
    p.add_argument("--weights", default=None, help="local base weights for --model")
    p.add_argument("--finetuned", default=None,
                   help="fine-tuned weights: a `medkt transfer` output folder or its .safetensors file "
                        "(omit to report the base model only)")
    p.add_argument("--concepts", required=True, help="[REQUIRED] concept set (name or YAML)")
    p.add_argument("--target", required=True, help="[REQUIRED] folder-per-class images of the concepts")
    p.add_argument("--reference", default=None, help="folder-per-class reference set (forgetting check)")
    p.add_argument("--ood", default=None, help="folder-per-class images of other, unseen classes (specificity)")
    p.add_argument("--template", action="append", default=None, metavar="TEXT",
                   help="prompt template with {} (repeatable; default 'a photo of a {}.')")
    p.add_argument("--device", default="cpu")
    p.add_argument("-o", "--out", default=None, help="write the report as JSON to this file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    import copy
    from medkt.models import create_model
    from medkt.runs import atomic_write_json
    from medkt.transfer.state import load_finetuned
    from medkt.transfer.zeroshot import evaluate_transfer
    before = create_model(args.model, weights=args.weights, device=args.device)
    after = copy.deepcopy(before)
    meta = load_finetuned(after, args.finetuned) if args.finetuned else {}
    report = evaluate_transfer(before, after, args.concepts, target=args.target, reference=args.reference,
                               ood=args.ood, templates=tuple(args.template or ("a photo of a {}.",)))
    report["finetuned"] = meta.get("path")
    if args.out:
        atomic_write_json(args.out, report)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"label set ({len(report['label_set'])}): {', '.join(report['label_set'])}")
    print(f"{'':28s}{'before':>10s}{'after':>10s}")
    for key in ("target_accuracy", "reference_accuracy", "ood_share_any_concept"):
        b, a = report["before"].get(key), report["after"].get(key)
        if b is not None:
            print(f"{key:28s}{b:10.3f}{a:10.3f}")
    for c, s in report["after"].get("specificity", {}).items():
        print(f"specificity[{c}]{'':{max(0, 15 - len(c))}s}{report['before']['specificity'][c]:10.3f}{s:10.3f}")
    return 0
