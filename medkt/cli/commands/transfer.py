"""``medkt transfer``: Knowledge Transfer = inversion + fine-tuning (or the noise control)."""
from __future__ import annotations

NAME = "transfer"
HELP = "teach a model new concepts from text descriptions (inversion + fine-tuning)"
DESCRIPTION = ("Knowledge Transfer (paper §3.1): invert each concept's description into images (one inversion "
               "for the whole set), then fine-tune the visual encoder on (image, 'A <name> is <description>') "
               "pairs: by default once per concept from the original weights (the paper's protocol, one "
               "weight delta per concept), with --joint once for the whole set. --lr 1e-4,3e-4 sweeps "
               "learning rates on the same inversion. --noise-control fine-tunes on pure-noise images "
               "instead. Writes inversion/, concepts/<concept>/lr_<lr>/ (or joint/lr_<lr>/) and run.json "
               "under --out; --resume continues. Then: medkt zeroshot --finetuned OUT ... "
               "Python: medkt.transfer.run(concepts, model, ...).")
ORDER = 31


def add_arguments(p):
    from medkt.cli.transfer_args import add_common
    add_common(p, finetune=True)


def run(args) -> int:
    from medkt.cli.transfer_args import transfer_kwargs
    from medkt.transfer.protocol import run as transfer
    from medkt.transfer.report import print_run
    res = transfer(args.concepts, args.model, **transfer_kwargs(args))
    print_run(res)
    return 0
