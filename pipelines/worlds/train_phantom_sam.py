"""Recipe: train ``phantom-sam`` (class-agnostic, box + point prompts) on phantom findings and anatomy.

    python pipelines/worlds/train_phantom_sam.py [--out medkt/assets/worlds] [--steps N]

Deterministic on CPU (seeded phantoms and prompts, 1 thread).  Writes
``phantom-sam.safetensors`` (fp16) and ``phantom-sam.json`` (recipe, history, tight-box
Dice per finding on held-out phantoms).
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
    ap.add_argument("--per-kind", type=int, default=300)
    ap.add_argument("--box-jitter", type=float, default=None,
                    help="max box enlargement / shift as a fraction of the box size (default: SamTrainConfig)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from medkt.runs import atomic_write_json, seed_everything
    from medkt.worlds.phantoms import FINDINGS, phantom_set
    from medkt.worlds.phantom_world import phantom_eval_set, world_findings
    from medkt.worlds.sam_train import SamTrainConfig, box_dice, export_sam, train_phantom_sam

    seed_everything(0)
    cfg = SamTrainConfig()
    if args.steps:
        cfg.steps = args.steps
    if args.box_jitter is not None:
        cfg.box_jitter = args.box_jitter
    t0 = time.time()
    ims, masks, parts = [], [], []
    for k, mod in enumerate(FINDINGS):  # the optional CT spots are not part of this recipe
        for j, f in enumerate((None,) + world_findings(mod)):
            i, m, _, p = phantom_set(mod, f, args.per_kind, seed=50_000 + 10 * k + j, with_parts=True)
            ims.append(i)
            masks.append(m)
            parts += [[x for x in pp.values() if x.sum() >= 4] for pp in p]
    ims, masks = np.concatenate(ims), np.concatenate(masks)
    print(f"rendered {len(ims)} phantoms in {time.time() - t0:.0f}s", flush=True)
    model, history = train_phantom_sam(ims, masks, cfg, log_fn=lambda s: print(s, flush=True), parts=parts)
    scores = {}
    for mod in FINDINGS:
        for f in world_findings(mod):
            s = phantom_eval_set(mod, f, 24)
            keep = s.masks.reshape(len(s.masks), -1).sum(1) > 0
            scores[f"{mod}/{f}"] = round(100 * box_dice(model, s.images[keep], s.masks[keep]), 1)
    print("tight-box Dice:", scores, flush=True)
    out = Path(args.out)
    path = export_sam(model, out / "phantom-sam.safetensors", meta={"steps": cfg.steps})
    atomic_write_json(out / "phantom-sam.json", {
        "recipe": "pipelines/worlds/train_phantom_sam.py", "argv": list(argv or sys.argv[1:]), "config": asdict(cfg), "n_images": len(ims),
        "torch": torch.__version__, "wall_s": round(time.time() - t0, 1), "tight_box_dice": scores,
        "history": history})
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
