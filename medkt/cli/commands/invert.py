"""``medkt invert``: synthesise images of concepts from their descriptions (inversion only)."""
from __future__ import annotations

NAME = "invert"
HELP = "invert a vision-language model: images of concepts from their text descriptions"
DESCRIPTION = ("Optimise images from noise so that the model's image embedding matches each concept's "
               "description (paper Eq. 3). All concepts share one optimisation batch by default. "
               "Writes images/<concept>/*.png, images.safetensors and run.json under --out.")
ORDER = 30


def add_arguments(p):
    from medkt.transfer.cliargs import add_common
    add_common(p, finetune=False)


def run(args) -> int:
    from medkt.config import to_dict
    from medkt.runs import RunRecord, prepare_output_dir
    from medkt.transfer.cliargs import resolve
    from medkt.transfer.inversion import invert
    model, cset, cfg = resolve(args)
    out = prepare_output_dir(args.out, overwrite=args.overwrite, resume=args.resume)
    record = RunRecord("invert", config=to_dict(cfg), seed=cfg.seed,
                       weights={"model": model.name, "source": model.weights})
    with record.timer("inversion_s"):
        res = invert(model, cset, cfg.inversion, seed=cfg.seed, out_dir=out, resume=args.resume,
                     progress=not args.no_progress)
    record.extra.update({"concept_set": cset.name, "concepts": cset.names, "model": model.describe(),
                         "inversion": {"resumed": res.resumed, "per_concept": res.summary(),
                                       "history": res.history}})
    record.write(out)
    for name, s in res.summary().items():
        print(f"{name:24s} similarity {s['initial_score']:+.3f} -> {s['score']:+.3f}")
    print(f"wrote {len(res.concept_names)} images to {out / 'images'}")
    return 0
