"""Shared argparse plumbing of ``medkt invert`` / ``medkt transfer``.

Each flag maps to one keyword of :func:`medkt.transfer.run` / :func:`medkt.transfer.invert`
(the CLI mirrors the Python API).  Shortcut flags default to ``None``, so the chosen preset /
YAML stays the only source of defaults.
"""
from __future__ import annotations

import argparse


def lr_list(text: str) -> list[float]:
    """``"1e-4,3e-4"`` → ``[1e-4, 3e-4]`` (argparse type)."""
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a learning rate or a comma-separated list "
                                         "of them (e.g. 1e-4,3e-4,5e-4)") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"learning rates must be positive, got '{text}'")
    return vals


def add_common(p, *, finetune: bool) -> None:
    p.add_argument("--concepts", required=True,
                   help="[REQUIRED] concept set: a shipped name (rare, jsrt, chexpert, segmentation, mscoco) "
                        "or a YAML file")
    p.add_argument("--model", required=True, help="[REQUIRED] model name or spec (see `medkt models`)")
    p.add_argument("--weights", default=None, help="local weights file/folder for --model")
    p.add_argument("-o", "--out", required=True, help="[REQUIRED] output folder")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--config", default=None, help="TransferConfig YAML (merged over --preset)")
    p.add_argument("--preset", default=None,
                   help="named recipe from configs/transfer/ (default: name-prompts, or joint with --joint; "
                        "paper = the paper's caption alone; author, kazemi, relaxed, vilt, vilt-mlm, coca, "
                        "lora, ...)")
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
        p.add_argument("--lr", type=lr_list, default=None, metavar="LR[,LR...]",
                       help="fine-tuning learning rate, or a comma-separated sweep (1e-4,3e-4,5e-4): one "
                            "inversion, then one fine-tune per lr")
        p.add_argument("--joint", action="store_true",
                       help="learn the whole set into ONE model (default: one fine-tune per concept, each from "
                            "the original weights, as in the paper)")
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--batch-size", type=int, default=None,
                       help="fine-tuning batch size (with balanced sampling: images of each concept per batch)")
        p.add_argument("--sampling", default=None, choices=["random", "balanced"],
                       help="fine-tuning batches: random (one shuffle) or balanced (every batch mixes all concepts "
                            "equally; the --joint default)")
        p.add_argument("--caption", default=None,
                       help="fine-tuning caption style: definition (paper), name, description, plural, "
                            "or styles joined with + (e.g. definition+name)")
        p.add_argument("--loss", default=None, help="supcon (default), clip_bank, clip, coca, itm, mlm")
        p.add_argument("--lora", action="store_true", help="train LoRA adapters on the visual encoder")
        p.add_argument("--noise-control", action="store_true",
                       help="fine-tune on pure-noise images instead of inversions (control experiment)")
        p.add_argument("--weights-format", default=None, help="auto, delta, full or lora")
        g = p.add_argument_group("many concepts over several machines")
        g.add_argument("--executor", choices=["local", "ray"], default="local",
                       help="local (default) or ray: Ray actors (one per worker, model loaded once) each run whole "
                            "concepts (inversion + fine-tunes); per-concept protocol only")
        g.add_argument("--ray-address", help="Ray: cluster address ('auto' joins a running cluster; default: start a "
                                             "local instance); --out must be on a file system every node sees")
        g.add_argument("--workers", type=int, default=2, help="Ray: number of actors (default 2)")
        g.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per actor (default 0)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def common_kwargs(args) -> dict:
    """Keywords shared by :func:`medkt.transfer.run` and :func:`medkt.transfer.invert`."""
    return {"preset": args.preset, "config": args.config, "overrides": list(args.overrides or []),
            "only": args.only, "seed": args.seed, "steps": args.steps,
            "images_per_concept": args.images_per_concept, "batch_images": args.batch_images,
            "weights": args.weights, "device": args.device, "resume": args.resume, "overwrite": args.overwrite,
            "progress": not args.no_progress}


def transfer_kwargs(args) -> dict:
    """The keywords of :func:`medkt.transfer.run` for parsed ``medkt transfer`` arguments."""
    return {**common_kwargs(args), "out": args.out, "lr": args.lr, "joint": args.joint, "epochs": args.epochs,
            "batch_size": args.batch_size, "loss": args.loss, "sampling": args.sampling, "caption": args.caption,
            "lora": args.lora, "noise_control": args.noise_control, "weights_format": args.weights_format,
            "executor": args.executor, "ray_address": args.ray_address, "workers": args.workers,
            "gpus_per_worker": args.gpus_per_worker}
