"""Shared argparse plumbing of ``medkt invert`` / ``medkt transfer`` (flags → config overrides).

Shortcut flags default to ``None`` and become ``--set`` overrides only when given, so
the dataclass defaults (and the chosen preset / YAML) stay the only defaults.
"""
from __future__ import annotations

SHORTCUTS = {  # flag dest -> config key
    "seed": "seed", "steps": "inversion.steps", "images_per_concept": "inversion.images_per_concept",
    "batch_images": "inversion.batch_images", "lr": "finetune.lr", "epochs": "finetune.epochs",
    "loss": "finetune.loss", "weights_format": "weights_format",
}


def add_common(p, *, finetune: bool) -> None:
    p.add_argument("--concepts", required=True,
                   help="[REQUIRED] concept set: a shipped name (rare, jsrt, chexpert, segmentation, mscoco) "
                        "or a YAML file")
    p.add_argument("--model", required=True, help="[REQUIRED] registered model name (see `medkt models`)")
    p.add_argument("--weights", default=None, help="local weights file/folder for --model")
    p.add_argument("-o", "--out", required=True, help="[REQUIRED] output folder")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--config", default=None, help="TransferConfig YAML (merged over --preset)")
    p.add_argument("--preset", default=None,
                   help="named recipe from configs/transfer/ (paper, name-prompts, author, kazemi, relaxed, "
                        "vilt, vilt-mlm, coca, lora, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set inversion.tv_weight=0.001 (repeatable)")
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help="learn only these concepts of the set (repeatable)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="inversion steps (paper: 5000)")
    p.add_argument("--images-per-concept", type=int, default=None, help="inverted images per concept (paper: 10)")
    p.add_argument("--batch-images", type=int, default=None,
                   help="max images per inversion batch (0 = all concepts in one batch, the default)")
    if finetune:
        p.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate")
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--loss", default=None, help="supcon (default), clip_bank, clip, coca, itm, mlm")
        p.add_argument("--lora", action="store_true", help="train LoRA adapters on the visual encoder")
        p.add_argument("--noise-control", action="store_true",
                       help="fine-tune on pure-noise images instead of inversions (control experiment)")
        p.add_argument("--weights-format", default=None, help="auto, delta, full or lora")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve(args):
    """(model, concept set, TransferConfig) from parsed arguments."""
    from medkt.models import create_model
    from medkt.transfer.concepts import load_concepts
    from medkt.transfer.config import load_transfer_config
    overrides = list(args.overrides or [])
    for dest, key in SHORTCUTS.items():
        v = getattr(args, dest, None)
        if v is not None:
            overrides.append(f"{key}={v}")
    if getattr(args, "lora", False):
        overrides.append("finetune.lora.enabled=true")
    if getattr(args, "noise_control", False):
        overrides.append("noise_control=true")
    cfg = load_transfer_config(args.config, preset=args.preset, overrides=overrides)
    cset = load_concepts(args.concepts)
    if args.only:
        cset = cset.subset(args.only)
    model = create_model(args.model, weights=args.weights, device=args.device)
    return model, cset, cfg
