"""``medkt invert``: synthesise images of concepts from their descriptions (inversion only)."""
from __future__ import annotations

NAME = "invert"
HELP = "invert a vision-language model: images of concepts from their text descriptions"
DESCRIPTION = ("Optimise images from noise so that the model's image embedding matches each concept's "
               "description (paper Eq. 3). All concepts share one optimisation batch by default. "
               "Writes images/<concept>/*.png, images.safetensors and run.json under --out. "
               "Python: medkt.transfer.invert(model, concepts, out_dir=..., ...).")
ORDER = 30


def add_arguments(p):
    from medkt.cli.transfer_args import add_common
    add_common(p, finetune=False)


def run(args) -> int:
    from pathlib import Path
    from medkt.cli.transfer_args import common_kwargs
    from medkt.transfer.protocol import invert
    from medkt.transfer.report import print_inversion
    res = invert(args.model, args.concepts, out_dir=args.out, **common_kwargs(args))
    print_inversion(res, "inversion", Path(args.out))
    print(f"wrote {len(res.concept_names)} images to {Path(args.out) / 'images'}\n"
          f"run record: {Path(args.out) / 'run.json'}")
    return 0
