"""Weakly supervised refinement on the phantom world (issue 17.3), measured.

Per modality (its target finding):

1. ``--n-train`` training phantoms (seed ``--train-seed``, disjoint from the test seed) are
   written as PNGs and segmented zero-shot with ``medkt.segment`` (phantom-clip M2IB → post-processing
   → box → phantom-sam, with ``PhantomSettings``' defaults = the ``phantom`` segment preset): these masks are the pseudo-labels.
2. ``medkt.refine`` trains the MONAI network on them (``--config``, default the ``phantom``
   preset; ``--variant`` adds named sets of options, e.g. ``saliency`` = confidence weighting,
   ``ensemble`` = checkpoint ensemble; several combine).
3. ``--n-test`` test phantoms (seed ``--test-seed``, default 777 = the phantom table of
   docs/worlds.md; never seen by the refiner) are segmented zero-shot and with
   ``medkt.segment(refiner=...)``; DSC (%) against ground truth, per image, averaged.

A separate validation split (``--n-val`` phantoms, seed ``--val-seed``; neither trained on nor
tested) is passed to ``medkt.refine`` as ``val_images`` / ``val_gt``: its refined DSC is
recorded per checkpoint, and ``train.select=val`` (variant ``select``) picks the epoch with it.
The test phantoms are never used for any choice.

Images reach both arms as uint8 PNGs read with ``--window 127.5,255`` (value/255, as the
phantom experiments feed them).  Everything is seeded; single-threaded by default.

    python pipelines/worlds/refine_phantoms.py -o runs/refine-phantoms
    python pipelines/worlds/refine_phantoms.py -o runs/refine-sal --variant saliency --modalities us cxr
    PYTHONPATH=. python pipelines/worlds/refine_phantoms.py -o runs/bce --pseudo-from runs/refine-phantoms --variant bce

(The script imports the installed medkt; from a checkout that is not the installed one, set
``PYTHONPATH`` to it.)

Writes ``OUT/results.json`` (per modality: pseudo-label DSC on the training phantoms, refined
DSC on the validation phantoms, zero-shot and refined DSC on the test phantoms, training time,
history) and ``OUT/results.md`` (the table).
The zero-shot numbers depend on the shipped phantom-clip / phantom-sam weights: rerun after
they change.  docs/refine.md holds the measured table.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

VARIANTS = {
    "plain": [],
    "saliency": ["labels.confidence=saliency", "labels.min_weight=0.1"],
    "ignore": ["labels.confidence=saliency", "labels.ignore_below=0.2"],
    "drop-empty": ["labels.empty_slices=drop"],
    "band": ["labels.boundary_ignore=1"],
    "ema": ["train.ema=0.95"],
    "ensemble": ["train.ensemble=4"],
    "tta": ["predict.tta=hvflip"],
    "select": ["train.select=val", "train.checkpoint_every=1"],
    "size128": ["network.image_size=128"],
    "bce": ["train.loss=bce"],
    "calibrate": ["predict.calibrate=val"],
}
WINDOW = "127.5,255"


def write_pngs(images: np.ndarray, folder: Path, prefix: str) -> list[str]:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for i, im in enumerate(images):
        cid = f"{prefix}{i:04d}"
        Image.fromarray(im).save(folder / f"{cid}.png")
        ids.append(cid)
    return ids


def dsc_by_case(seg_out: Path, gts: dict[str, np.ndarray]) -> dict[str, float]:
    """DSC (%) of the ``mask.png`` files a ``medkt segment`` run wrote, per case id."""
    from PIL import Image

    from medkt.metrics.segmentation import compute_dice
    return {cid: 100.0 * compute_dice(np.asarray(Image.open(seg_out / cid / "mask.png")) > 0, g > 0)
            for cid, g in gts.items()}


def paired_gain(zs: dict[str, float], ref: dict[str, float], n_boot: int = 2000) -> tuple[list[float], int]:
    """Percentile 95 % CI of the mean per-case DSC gain (paired bootstrap over test cases, seed 0)
    and the number of cases whose DSC rose."""
    d = np.array([ref[k] - zs[k] for k in sorted(zs)])
    rng = np.random.default_rng(0)
    means = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))], int((d > 0).sum())


def run_modality(mod: str, args, out: Path, log=print) -> dict:
    import medkt
    from medkt.worlds.phantom_experiments import PhantomSettings, segment_config
    from medkt.worlds.phantom_text import SEGMENT_PROMPTS
    from medkt.worlds.phantom_world import phantom_eval_set
    from medkt.worlds.phantoms import TARGET_FINDING
    finding = TARGET_FINDING[mod]
    prompt = SEGMENT_PROMPTS[mod]
    seg_cfg = segment_config(PhantomSettings(seed=args.seed))
    d = out / mod
    tr = phantom_eval_set(mod, finding, args.n_train, seed=args.train_seed)
    te = phantom_eval_set(mod, finding, args.n_test, seed=args.test_seed)
    tr_ids = [f"tr{i:04d}" for i in range(len(tr))]
    te_ids = [f"te{i:04d}" for i in range(len(te))]
    gt_tr = dict(zip(tr_ids, tr.masks))
    gt_te = dict(zip(te_ids, te.masks))
    if not (d / "val_gt").is_dir():  # the validation split: written once, reused by every variant
        va = phantom_eval_set(mod, finding, args.n_val, seed=args.val_seed)
        write_pngs(va.images, d / "val_images", "va")
        write_pngs(va.masks * 255, d / "val_gt", "va")
    src = Path(args.pseudo_from) / mod if args.pseudo_from else d  # zero-shot outputs of an earlier run
    t_pseudo = None
    if not args.pseudo_from:
        write_pngs(tr.images, d / "train_images", "tr")
        write_pngs(te.images, d / "test_images", "te")
        write_pngs(tr.masks * 255, d / "train_gt", "tr")
        common = dict(prompt=prompt, config=seg_cfg, window=WINDOW)
        t0 = time.perf_counter()
        medkt.segment(str(d / "train_images"), output=d / "pseudo", overwrite=True, **common)
        t_pseudo = round(time.perf_counter() - t0, 1)
        medkt.segment(str(d / "test_images"), output=d / "zeroshot", overwrite=True, **common)
    ov = [o for v in args.variant for o in VARIANTS[v]] + list(args.set)
    t0 = time.perf_counter()
    res = medkt.refine(src / "train_images", src / "pseudo", d / "model", config=args.config, overrides=ov,
                       epochs=args.epochs, seed=args.seed, window=WINDOW, val_gt=d / "val_gt",
                       val_images=d / "val_images", overwrite=True, progress=False)
    t_train = time.perf_counter() - t0
    medkt.segment(str(src / "test_images"), refiner=d / "model", output=d / "refined", overwrite=True)
    pl, z = dsc_by_case(src / "pseudo", gt_tr), dsc_by_case(src / "zeroshot", gt_te)
    r = dsc_by_case(d / "refined", gt_te)
    row = {"modality": mod, "finding": finding, "prompt": prompt, "n_train": args.n_train, "n_test": args.n_test,
           "pseudo_label_dsc_train": float(np.mean(list(pl.values()))),
           "refined_dsc_val": res.validation.get("mean", {}).get("refined_dsc"), "n_val": args.n_val,
           "kept_epochs": res.record.get("kept_epochs"), "overrides": ov,
           "threshold": res.record.get("calibrated_threshold", res.record["config"]["labels"]["threshold"]),
           "zeroshot_dsc_test": float(np.mean(list(z.values()))),
           "refined_dsc_test": float(np.mean(list(r.values()))),
           "pseudo_seconds": t_pseudo, "pseudo_from": str(src), "train_seconds": round(t_train, 1),
           "train_epoch_seconds": [h["seconds"] for h in res.history],
           "n_slices": res.n_slices, "history": res.history,
           "per_case_test": {"zeroshot": z, "refined": r}}
    row["gain"] = row["refined_dsc_test"] - row["zeroshot_dsc_test"]
    row["gain_ci95"], row["cases_improved"] = paired_gain(z, r)
    log(f"  {mod:4s} {finding:12s} pseudo-labels (train) {row['pseudo_label_dsc_train']:5.1f}  "
        f"zero-shot (test) {row['zeroshot_dsc_test']:5.1f}  refined (test) {row['refined_dsc_test']:5.1f}  "
        f"gain {row['gain']:+5.1f}  val {row['refined_dsc_val'] or float('nan'):5.1f}  "
        f"kept {row['kept_epochs']}  thr {row['threshold']}  train {t_train:.0f}s", flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| modality (finding) | pseudo-labels, train DSC | zero-shot, test DSC | refined, test DSC | gain "
             "(95 % CI) | cases improved | refine time |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["gain_ci95"]
        lines.append(f"| {r['modality'].upper()} ({r['finding']}) | {r['pseudo_label_dsc_train']:.1f} | "
                     f"{r['zeroshot_dsc_test']:.1f} | {r['refined_dsc_test']:.1f} | {r['gain']:+.1f} "
                     f"({lo:+.1f} to {hi:+.1f}) | {r['cases_improved']}/{r['n_test']} | {r['train_seconds']:.0f} s |")
    g = [r["gain"] for r in rows]
    lines.append(f"| **mean** | {np.mean([r['pseudo_label_dsc_train'] for r in rows]):.1f} | "
                 f"{np.mean([r['zeroshot_dsc_test'] for r in rows]):.1f} | "
                 f"{np.mean([r['refined_dsc_test'] for r in rows]):.1f} | {np.mean(g):+.1f} | "
                 f"{sum(r['cases_improved'] for r in rows)}/{sum(r['n_test'] for r in rows)} | "
                 f"{sum(r['train_seconds'] for r in rows):.0f} s |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from medkt.worlds.phantoms import MODALITIES
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, help="output folder (replaced)")
    p.add_argument("--modalities", nargs="*", default=list(MODALITIES))
    p.add_argument("--n-train", type=int, default=160)
    p.add_argument("--n-test", type=int, default=48)
    p.add_argument("--train-seed", type=int, default=2026)
    p.add_argument("--test-seed", type=int, default=777)
    p.add_argument("--n-val", type=int, default=32, help="validation phantoms (a split of their own)")
    p.add_argument("--val-seed", type=int, default=4242)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="phantom", help="refine config (preset name or YAML)")
    p.add_argument("--variant", nargs="+", default=["plain"], choices=sorted(VARIANTS),
                   help="named sets of refine overrides (combined in order)")
    p.add_argument("--set", action="append", default=[], help="extra refine overrides")
    p.add_argument("--epochs", type=int)
    p.add_argument("--pseudo-from", help="reuse the images, pseudo-labels and zero-shot masks of an earlier run's "
                                         "output folder (same --n-train/--n-test/seeds)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    args.set = list(args.set) + [f"train.threads={args.threads}"]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    t0, t_cpu = time.perf_counter(), time.process_time()
    print(f"refine on phantoms: variant {'+'.join(args.variant)}, config {args.config}, n_train {args.n_train}, "
          f"n_test {args.n_test}, threads {args.threads}, load {load[0]:.2f}")
    rows = [run_modality(m, args, out) for m in args.modalities]
    wall, cpu = time.perf_counter() - t0, time.process_time() - t_cpu
    md = table(rows)
    print(md, flush=True)
    from medkt.runs import atomic_write, atomic_write_json, environment_info
    atomic_write_json(out / "results.json", {"args": vars(args), "rows": rows, "wall_s": wall, "cpu_s": cpu,
                                             "loadavg_start": load, "loadavg_end": os.getloadavg(),
                                             "environment": environment_info()})
    atomic_write(out / "results.md", md + "\n")
    print(f"wall {wall:.0f} s, cpu {cpu:.0f} s, load {load[0]:.2f} → {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
