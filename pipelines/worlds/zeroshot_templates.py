"""How much the zero-shot template set moves accuracy on the natural world, for the SAME weights.

    python pipelines/worlds/zeroshot_templates.py [--lr 3e-4] [--seeds 0] [--captions definition definition+name]

For each seed and fine-tuning caption style, every novel concept of the natural world is
learned on its own (the paper's protocol: one inversion, one fine-tune from the original
``world-clip`` weights per concept), then the original model and each fine-tuned model
are scored with every template set (all 105 world names in the label set, 40 images per
novel concept, 20 per known class).  Prints mean novel (target) accuracy and known
accuracy per template set; ``--json`` writes the rows.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

SETS = ("world", "simple", "photo", "openai-imagenet", "openai-imagenet-a", "name")


def score(model, exp, templates: str) -> dict:
    """Known accuracy and per-novel-concept accuracy (%) of ``model`` under one template set."""
    from medkt.evaluation.classifier import ZeroShotClassifier, image_features
    w, ev = exp.world, exp.ev
    names = [c.name for c in w.concepts]
    clf = ZeroShotClassifier.build(model, names, templates)
    pred = clf.scores_from_features(image_features(model, ev.images)).argmax(1).numpy()
    nk = len(w.known)
    known = ev.labels < nk
    novel = {c.name: 100.0 * float((pred[ev.labels == nk + j] == nk + j).mean()) for j, c in enumerate(w.novel)}
    return {"known": 100.0 * float((pred[known] == ev.labels[known]).mean()), "novel": novel}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--captions", nargs="+", default=["definition", "definition+name"])
    p.add_argument("--steps", type=int, default=300, help="inversion steps")
    p.add_argument("--json", default=None, help="write all rows to this file")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(2)
    from medkt.transfer import learn
    from medkt.worlds.experiments import KTSettings, NaturalExperiment, transfer_concept
    rows = []
    for seed in args.seeds:
        exp = NaturalExperiment.create(KTSettings(seed=seed, inversion_steps=args.steps))
        base = {t: score(exp.model, exp, t) for t in SETS}
        for t in SETS:
            rows.append({"seed": seed, "caption": "base", "templates": t, "known": base[t]["known"],
                         "novel_mean": float(np.mean(list(base[t]["novel"].values()))), **base[t]["novel"]})
        for caption in args.captions:
            per = {t: {"known": [], "novel": {}} for t in SETS}
            t0 = time.time()
            for c in exp.world.novel:
                exp.settings.caption = caption
                res = learn(exp.model, transfer_concept(exp.world, c.name), None, images=exp.inversion(c.name),
                            overrides=exp.settings.overrides() + [f"finetune.lr={args.lr}"], progress=False)
                for t in SETS:
                    s = score(res.model, exp, t)
                    per[t]["known"].append(s["known"])
                    per[t]["novel"][c.name] = s["novel"][c.name]
            for t in SETS:
                rows.append({"seed": seed, "caption": caption, "templates": t,
                             "known": float(np.mean(per[t]["known"])),
                             "novel_mean": float(np.mean(list(per[t]["novel"].values()))), **per[t]["novel"]})
            print(f"seed {seed} caption {caption}: {time.time() - t0:.0f} s", flush=True)
    print(f"\nmean novel accuracy % (known accuracy %), lr {args.lr:g}, seeds {args.seeds}")
    captions = ["base"] + list(args.captions)
    print(f"{'templates':20s}" + "".join(f"{c:>24s}" for c in captions))
    for t in SETS:
        cells = []
        for c in captions:
            rs = [r for r in rows if r["templates"] == t and r["caption"] == c]
            cells.append(f"{np.mean([r['novel_mean'] for r in rs]):8.1f} ({np.mean([r['known'] for r in rs]):5.1f})")
        print(f"{t:20s}" + "".join(f"{x:>24s}" for x in cells))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
