"""``medkt transfer``: Knowledge Transfer = inversion + fine-tuning (or the noise control)."""
from __future__ import annotations

NAME = "transfer"
HELP = "teach a model new concepts from text descriptions (inversion + fine-tuning)"
DESCRIPTION = ("Knowledge Transfer (paper §3.1): invert each concept's description into images, then "
               "fine-tune the visual encoder on (image, 'A <name> is <description>') pairs. "
               "--noise-control fine-tunes on pure-noise images instead. Writes images, "
               "weights/finetuned-*.safetensors and run.json under --out; --resume continues.")
ORDER = 31


def add_arguments(p):
    from medkt.transfer.cliargs import add_common
    add_common(p, finetune=True)


def run(args) -> int:
    from medkt.transfer.api import learn
    from medkt.transfer.cliargs import resolve
    model, cset, cfg = resolve(args)
    res = learn(model, cset, cfg, args.out, resume=args.resume, overwrite=args.overwrite, inplace=True,
                progress=not args.no_progress)
    for name, s in res.inversion.summary().items():
        if s["score"] is not None:
            print(f"{name:24s} similarity {s['initial_score']:+.3f} -> {s['score']:+.3f}")
    ft = res.finetune.summary()
    print(f"fine-tune: {ft['steps']} steps, loss {ft['loss_first']} -> {ft['loss_last']}")
    print(f"weights: {res.weights_path}\nrun record: {res.out_dir / 'run.json'}")
    return 0
