"""Recipe: pretrain ``phantom-clip`` on the medical phantoms (finding ``nodule`` held out).

    python pipelines/worlds/pretrain_phantom_clip.py [--out medkt/assets/worlds] [--steps N] [--extra calcification,granuloma]

Counterfactual pairs (default): every training phantom with a finding shares its batch with
its normal twin (same anatomy, deformation and noise), and their captions differ only in
the finding phrase, so the contrastive loss can only separate them by looking at the
finding itself.  ``--unpaired`` reproduces the original recipe (independent phantoms).

Deterministic on CPU (seeded phantoms, seeded init, 1 thread).  Writes
``phantom-clip.safetensors`` (fp16 compact) and ``phantom-clip.json`` (recipe, history,
zero-shot normal-vs-finding accuracies per modality).
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
    ap.add_argument("--arch", default="world-phantom-clip-v2")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--per-kind", type=int, default=300, help="pairs per seen finding (unpaired: images per kind)")
    ap.add_argument("--unpaired", action="store_true", help="original recipe: no counterfactual pairs")
    ap.add_argument("--extra", default="", help="optional seen findings, comma-separated (phantom_world."
                                                "OPTIONAL_FINDINGS: calcification, marker, atelectasis, ggo, granuloma)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=400)
    ap.add_argument("--config-dir", default=None, help="extra open_clip model-config folder (arch experiments)")
    args = ap.parse_args(argv)

    import torch
    from medkt.models import from_open_clip
    from medkt.runs import atomic_write_json, seed_everything
    from medkt.worlds.phantom_text import pair_captions, phantom_caption
    from medkt.worlds.phantom_world import HELD_OUT, phantom_pair_set, phantom_pretraining_set, phantom_zero_shot
    from medkt.worlds.pretrain import (PretrainConfig, create_world_clip, export_compact, pretrain,
                                       world_tokenizer)
    if args.config_dir:
        import open_clip
        open_clip.add_model_config(args.config_dir)

    seed_everything(0)
    cfg = PretrainConfig(arch=args.arch, steps=args.steps, batch_size=args.batch_size, lr=1e-3, warmup=100,
                         threads=args.threads, eval_every=args.eval_every)
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    extra = tuple(x.strip() for x in args.extra.split(",") if x.strip())
    data = (phantom_pretraining_set(args.per_kind, seed=3, extra=extra) if args.unpaired
            else phantom_pair_set(args.per_kind, seed=3, extra=extra))
    if any(c.finding == HELD_OUT for c in data.cases):
        raise RuntimeError("held-out finding leaked into pretraining images")
    t_render = time.time() - t0
    print(f"rendered {len(data)} phantoms in {t_render:.0f}s", flush=True)
    tokenizer = world_tokenizer(cfg.arch)
    model = create_world_clip(cfg.arch, cfg.embedding_seed, seed=cfg.seed)

    def eval_fn(raw):
        return phantom_zero_shot(from_open_clip(raw, tokenizer, name="phantom-clip"), n=16, extra=extra)

    if args.unpaired:
        def caption(i, rng):
            return phantom_caption(data.cases[i], rng)
    else:
        def caption(p, rng):
            return list(pair_captions(data.cases[2 * p], rng))

    model, cache, history = pretrain(model, data.images, caption, cfg, tokenizer, eval_fn=eval_fn,
                                     log_fn=lambda s: print(s, flush=True), group_size=1 if args.unpaired else 2)
    captions = list(cache.cache)
    if any(HELD_OUT in c for c in captions):
        raise RuntimeError("held-out finding leaked into pretraining text")
    keep = cache.seen_token_ids() | {int(i) for i in tokenizer([HELD_OUT])[0].tolist()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = export_compact(model, out / "phantom-clip.safetensors", keep, arch=cfg.arch,
                          embedding_seed=cfg.embedding_seed, meta={"world": "phantoms", "held_out": HELD_OUT})
    atomic_write_json(out / "phantom-clip.json", {
        "recipe": "pipelines/worlds/pretrain_phantom_clip.py", "argv": list(argv or sys.argv[1:]),
        "config": asdict(cfg), "pairs": not args.unpaired, "extra_findings": list(extra),
        "held_out": HELD_OUT, "n_images": len(data), "distinct_captions": len(captions),
        "torch": torch.__version__, "render_s": round(t_render, 1), "wall_s": round(time.time() - t0, 1),
        "final_eval": history[-1], "history": history})
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
