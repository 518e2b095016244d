"""Recipe: pretrain ``world-clip`` (natural world) and write the shipped weights.

    python pipelines/worlds/pretrain_world_clip.py [--out medkt/assets/worlds] [--steps N]

Deterministic on CPU (seeded data, seeded init, deterministic kernels, 2 threads):
rerunning it on the same torch version reproduces ``world-clip.safetensors``.  On the
reference 2-core machine it takes about 15-25 minutes (shared CPU).  Writes:

* ``world-clip.safetensors`` — fp16 compact weights (see :func:`medkt.worlds.pretrain.export_compact`);
* ``world-clip.json`` — recipe config, world spec, training history and final zero-shot numbers.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "medkt/assets/worlds"))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--scenes", type=int, default=60_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--names-per-class", type=int, default=None)
    ap.add_argument("--arch", default=None, help="architecture config (default world-clip)")
    ap.add_argument("--partial-fraction", type=float, default=None)
    ap.add_argument("--p-definition", type=float, default=None)
    ap.add_argument("--strong-partial", action="store_true")
    ap.add_argument("--freeze-token-embedding", action="store_true",
                    help="ablation: keep the token embedding at its random init")
    args = ap.parse_args(argv)

    import torch
    from medkt.models import from_open_clip
    from medkt.runs import atomic_write_json, seed_everything
    from medkt.worlds.concepts import WorldSpec, build_world
    from medkt.worlds.evaluate import NaturalEval, natural_zero_shot
    from medkt.worlds.natural import caption_for, pretraining_set
    from medkt.worlds.pretrain import PretrainConfig, create_world_clip, export_compact, pretrain, world_tokenizer

    seed_everything(0)
    cfg = PretrainConfig(threads=args.threads)
    if args.steps:
        cfg.steps = args.steps
    cfg.freeze_token_embedding = args.freeze_token_embedding
    if args.arch:
        cfg.arch = args.arch
    spec = WorldSpec()
    import dataclasses
    spec = dataclasses.replace(spec, **{k: v for k, v in (("names_per_class", args.names_per_class),
                                                           ("partial_fraction", args.partial_fraction),
                                                           ("p_definition", args.p_definition),
                                                           ("strong_partial", args.strong_partial or None))
                                        if v is not None})
    world = build_world(spec)
    t0 = time.time()
    scenes = pretraining_set(world, args.scenes, seed=1)
    print(f"rendered {len(scenes)} scenes in {time.time() - t0:.0f}s", flush=True)
    ev = NaturalEval.build(world, n_per_class=10, seed=10_000)
    tokenizer = world_tokenizer(cfg.arch)
    model = create_world_clip(cfg.arch, cfg.embedding_seed, seed=cfg.seed)

    def eval_fn(raw):
        wrapped = from_open_clip(raw, tokenizer, name="world-clip")
        r = natural_zero_shot(wrapped, ev)
        return {k: (round(v, 1) if isinstance(v, float) else {a: round(b, 1) for a, b in v.items()})
                for k, v in r.items()}

    def caption(i, rng):
        return caption_for(scenes, i, rng, spec.p_named, spec.p_definition, spec.strong_partial)

    model, cache, history = pretrain(model, scenes.images, caption,
                                     cfg, tokenizer, eval_fn=eval_fn,
                                     log_fn=lambda s: print(s, flush=True))
    # keep every trained row, plus the (untrained) novel-name rows so they never depend on RNG
    keep = cache.seen_token_ids()
    for c in world.novel:
        keep.update(int(i) for i in tokenizer([c.name])[0].tolist())
    out = Path(args.out)
    path = export_compact(model, out / "world-clip.safetensors", keep, arch=cfg.arch,
                          embedding_seed=cfg.embedding_seed, meta={"world": "natural", "steps": cfg.steps})
    final = history[-1] if history and "known_acc" in history[-1] else eval_fn(model)
    atomic_write_json(out / "world-clip.json", {
        "recipe": "pipelines/worlds/pretrain_world_clip.py", "config": asdict(cfg),
        "world_spec": {"seed": spec.seed, "n_single": spec.n_single, "n_pair": spec.n_pair,
                       "names_per_class": spec.names_per_class, "partial_fraction": spec.partial_fraction,
                       "p_named": spec.p_named, "p_definition": spec.p_definition,
                       "strong_partial": spec.strong_partial,
                       "image_size": spec.image_size, "scenes": args.scenes},
        "torch": torch.__version__, "wall_s": round(time.time() - t0, 1), "final_eval": final,
        "history": history})
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
