"""Per-concept vs joint Knowledge Transfer on the natural world (issue 12.2), measured.

One inversion of all 5 novel concepts per seed (images are independent of the batch), then

* ``per-concept``: one fine-tune from the original weights per concept and lr (paper protocol);
* ``joint-<sampling>-b<k>``: one fine-tune of all 5 concepts per lr, with the given batch
  sampling (``random``: one shuffle, k images per batch; ``balanced``: k images of every
  concept per batch); ``joint-text-*`` trains the text encoder instead (the ``joint`` preset);
* ``per-concept-text``: the per-concept protocol on the text encoder.

Each model is scored on the world's own prompts, label set = all 105 names:
``target`` (a concept's images called by its name), ``known`` (known-class accuracy),
``other_to_target`` (share of images of the *other* novel concepts and of unnamed
compositions that a concept's name takes).  Per-concept figures are means over the 5
per-concept models.  Then per protocol the largest lr whose known-class drop stays
within the budget (2 and 5 points) is selected.

    python pipelines/worlds/kt_protocols.py --seeds 0 1 2 --cache inv/ -o kt_protocols.json
    python pipelines/worlds/kt_protocols.py --seeds 0 1 2 --lrs 3e-4 1e-3 2e-3 \
        --variants joint-text-balanced-b4 per-concept-text --cache inv/ -o kt_text.json

docs/transfer.md "Joint fine-tuning that keeps up" holds the measured table.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from medkt.worlds.captions import class_prompts
from medkt.worlds.evaluate import image_features, text_classifier
from medkt.worlds.experiments import KTSettings, NaturalExperiment

LRS = (1e-4, 2e-4, 3e-4, 5e-4, 1e-3)
JOINT = {"joint-random-b4": ["finetune.sampling=random", "finetune.batch_size=4"],
         "joint-balanced-b4": ["finetune.sampling=balanced", "finetune.batch_size=4"],
         "joint-balanced-b1": ["finetune.sampling=balanced", "finetune.batch_size=1"],
         "joint-random-b20": ["finetune.sampling=random", "finetune.batch_size=20"],
         "joint-balanced-b4-e3": ["finetune.sampling=balanced", "finetune.batch_size=4", "finetune.epochs=3"],
         "joint-text-balanced-b4": ["finetune.sampling=balanced", "finetune.train=[text]"],
         "per-concept-text": ["finetune.train=[text]"]}


@torch.no_grad()
def score(exp: NaturalExperiment, model, concepts: list[str]) -> dict:
    """target / other_to_target per concept in ``concepts``, and known accuracy (%)."""
    model.eval()
    w = exp.world
    names = [c.name for c in w.concepts]
    clf = text_classifier(model, class_prompts(names))
    pred = (image_features(model, exp.ev.images) @ clf.t()).argmax(1).numpy()
    ood = (image_features(model, exp.ood) @ clf.t()).argmax(1).numpy()
    nk = len(w.known)
    labels = exp.ev.labels
    known = labels < nk
    out = {"known": 100.0 * float((pred[known] == labels[known]).mean()), "target": {}, "other_to_target": {}}
    novel = labels >= nk
    for c in concepts:
        j = names.index(c)
        out["target"][c] = 100.0 * float((pred[labels == j] == j).mean())
        others = np.concatenate([pred[novel & (labels != j)], ood])
        out["other_to_target"][c] = 100.0 * float((others == j).mean())
    return out


def run_seed(seed: int, lrs, joint_variants, caption: str, log=print, cache: str | None = None) -> list[dict]:
    from medkt.transfer import learn, load_concepts, load_transfer_config
    from medkt.transfer.inversion import invert
    from medkt.transfer.api import subset_inversion
    settings = KTSettings(seed=seed, caption=caption)
    exp = NaturalExperiment.create(settings)
    model = exp.model
    novel = [c.name for c in exp.world.novel]
    cset = load_concepts([{"name": c.name, "descriptions": [c.description]} for c in exp.world.novel])
    base_cfg = load_transfer_config(overrides=settings.overrides())
    t0 = time.time()
    inv = invert(model, cset, base_cfg.inversion, seed=seed, progress=False,
                 out_dir=f"{cache}/seed{seed}" if cache else None, resume=bool(cache))
    log(f"seed {seed}: inversion {time.time() - t0:.0f} s")
    base = score(exp, model, novel)
    rows = [{"seed": seed, "protocol": "base", "lr": 0.0, **_means(base, novel)}]
    for lr in lrs:
        per = []
        for c in novel:
            res = learn(model, cset.subset([c]), base_cfg, images=subset_inversion(inv, [c]),
                        lr=lr, progress=False)
            per.append(score(exp, res.model, [c]))
        merged = {"known": float(np.mean([p["known"] for p in per])),
                  "target": {c: p["target"][c] for c, p in zip(novel, per)},
                  "other_to_target": {c: p["other_to_target"][c] for c, p in zip(novel, per)}}
        rows.append({"seed": seed, "protocol": "per-concept", "lr": lr, **_means(merged, novel)})
        for name, extra in joint_variants.items():
            if name.startswith("per-concept"):
                per = [score(exp, learn(model, cset.subset([c]), base_cfg, images=subset_inversion(inv, [c]),
                                        overrides=extra, lr=lr, progress=False).model, [c]) for c in novel]
                merged = {"known": float(np.mean([p["known"] for p in per])),
                          "target": {c: p["target"][c] for c, p in zip(novel, per)},
                          "other_to_target": {c: p["other_to_target"][c] for c, p in zip(novel, per)}}
                rows.append({"seed": seed, "protocol": name, "lr": lr, **_means(merged, novel)})
                continue
            res = learn(model, cset, base_cfg, images=inv, overrides=extra, lr=lr, progress=False)
            rows.append({"seed": seed, "protocol": name, "lr": lr, "steps": res.finetune.steps,
                         **_means(score(exp, res.model, novel), novel)})
        for r in rows[-1 - len(joint_variants):]:
            log(f"  seed {seed} lr {lr:.0e} {r['protocol']:20s} target {r['target_mean']:5.1f}  "
                f"known {r['known']:5.1f}  other->target {r['other_to_target_mean']:5.1f}")
    for r in rows:
        r["forgetting"] = base["known"] - r["known"]
    return rows


def _means(s: dict, novel: list[str]) -> dict:
    return {"known": s["known"], "target": s["target"], "other_to_target": s["other_to_target"],
            "target_mean": float(np.mean([s["target"][c] for c in novel])),
            "other_to_target_mean": float(np.mean([s["other_to_target"][c] for c in novel]))}


def select(rows: list[dict], budget: float) -> dict:
    """Per protocol: largest lr whose mean (over seeds) forgetting ≤ budget → mean target etc."""
    out = {}
    for proto in dict.fromkeys(r["protocol"] for r in rows if r["protocol"] != "base"):
        per_lr = {}
        for lr in sorted({r["lr"] for r in rows if r["protocol"] == proto}):
            rs = [r for r in rows if r["protocol"] == proto and r["lr"] == lr]
            per_lr[lr] = {k: float(np.mean([r[k] for r in rs]))
                          for k in ("target_mean", "known", "forgetting", "other_to_target_mean")}
        ok = [lr for lr, v in per_lr.items() if v["forgetting"] <= budget]
        lr = max(ok) if ok else min(per_lr)
        out[proto] = {"lr": lr, **per_lr[lr], "within_budget": bool(ok)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--lrs", type=float, nargs="+", default=list(LRS))
    ap.add_argument("--variants", nargs="+", default=list(JOINT))
    ap.add_argument("--caption", default="definition+name")
    ap.add_argument("-o", "--out", default="kt_protocols.json")
    ap.add_argument("--cache", default=None, help="folder to keep (and reuse) the inversions in")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for s in args.seeds:
        rows += run_seed(s, args.lrs, {k: JOINT[k] for k in args.variants}, args.caption, cache=args.cache)
        sel = {b: select(rows, b) for b in (2.0, 5.0)}
        with open(args.out, "w") as f:
            json.dump({"seeds": args.seeds, "caption": args.caption, "rows": rows, "selected": sel}, f, indent=1)
    for b, sel in sel.items():
        print(f"budget {b:g} points (mean over seeds {args.seeds}):")
        for proto, v in sel.items():
            print(f"  {proto:20s} lr {v['lr']:.0e}  target {v['target_mean']:5.1f}  known {v['known']:5.1f} "
                  f"(-{v['forgetting']:.1f})  other->target {v['other_to_target_mean']:5.1f}"
                  + ("" if v["within_budget"] else "  (no lr within budget)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
