"""Time-to-quality of inversion: KT accuracy after inversion budgets, per recipe, against FLOPs.

For every (variant, step budget, seed) cell this runs the documented KT path on one world
(``--world-kind``):

* ``natural`` (default): ``world-clip`` (32 px), the 5 novel concepts, the 100 known classes
  (folders of ``pipelines/worlds/export_natural_folders.py``), lrs 3e-4 and 5e-4;
* ``phantom``: ``phantom-clip`` (64 px), the held-out CT ``nodule`` as the one novel concept,
  the six seen findings as known classes, normal phantoms as ood (folders of
  ``pipelines/worlds/export_phantom_folders.py``), lrs 1e-4, 3e-4 and 1e-3 (the phantom KT
  experiment's, docs/worlds.md).

The cell:

1. ``medkt.transfer.run`` (= ``medkt transfer``): ONE inversion of the concepts with
   the variant's inversion options and ``steps = budget``, then the per-concept protocol,
   one fine-tune from the original weights per concept and lr (``--lrs``);
2. the ``medkt zeroshot`` scoring (the same functions: label set = the novel concepts + the
   known classes, the model's own templates) and ``--max-forgetting`` selection: per
   concept, the largest lr whose known-class (reference) drop stays within 2 points.

Recorded per cell: mean selected target accuracy, known-class accuracy and drop, other →
target, and the inversion's compute: encoder passes by input size (the engine's
``InversionResult.work``; early stopping and progressive encoders change it) times the
FLOPs of one pass (forward + input-gradient backward, weights frozen) measured with
``torch.utils.flop_counter.FlopCounterMode`` at each size.  Text embedding, augmentation,
TV and the two unaugmented scoring passes are not counted (< 1 % here); fine-tuning cost
is the same for every variant (same number of images) and is not counted either.

Quality reference: the paper recipe at its full schedule (5 000 steps).  A variant meets
the goal at a budget if its mean target accuracy is within 2 points of the reference's
mean, its mean drop is within the same 2-point budget, and it used ≥ 3× fewer FLOPs.

    python benchmarks/bench_inversion_quality.py --out bench-quality/            # the grid (resumable)
    python benchmarks/bench_inversion_quality.py --out q/ --variants paper fast --budgets 100 1667 --seeds 0
    python benchmarks/bench_inversion_quality.py --out bench-quality/ --report   # table + plot only
    python benchmarks/bench_inversion_quality.py --world-kind phantom --out q-phantom/ --cells paper:100 fast:300

Results: ``OUT/cells.jsonl`` (one line per finished cell; a rerun skips them),
``OUT/table.md``, ``OUT/quality_vs_flops.png``, ``OUT/run.json``.  Threads: 1 by default
(FLOPs, not seconds, are the x axis; seconds are recorded with the load average).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's medkt, not another install

PAPER_FULL = 5000
# name -> (what it is, inversion overrides); every variant uses the paper recipe otherwise
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "paper": ("paper recipe: Adam lr 0.1, cosine to 0, TV 0.005, affine p 0.5", []),
    "early-stop": ("paper + per-image early stop (EMA 0.9 of 1-cos, < 0.002 gain in 100 steps)",
                   ["inversion.early_stop.patience=100"]),
    "progressive": ("paper + author's progressive pixels 64/224 -> 128/224 -> 1 at 30 % / 60 %",
                    ["inversion.progressive=[0.2857142857,0.5714285714,1.0]"]),
    "progressive-encoder": ("progressive pixels 0.5 -> 0.75 -> 1 at 30/60 %, ViT run at each size",
                            ["inversion.progressive=[0.5,0.75,1.0]", "inversion.progressive_encoder=true"]),
    "fourier": ("paper + decorrelated Fourier image, opponent colours, sigmoid",
                ["inversion.parametrization=fourier"]),
    "warmup": ("paper + 5 % linear warm-up, lr 0.2", ["inversion.warmup=0.05", "inversion.lr=0.2"]),
    "fast": ("the 'fast' preset (configs/transfer/fast.yaml)", ["@fast"]),
}
# step budgets per variant (the paper's full schedule first: it is the quality reference)
PLAN: dict[str, tuple[int, ...]] = {"paper": (PAPER_FULL, 30, 100, 300, 1000), "early-stop": (300, 1000),
                                    "progressive": (100, 300), "progressive-encoder": (100, 300),
                                    "fourier": (100, 300), "warmup": (30, 100), "fast": (100, 300)}
# per world kind: default model, folders, lrs, exporter (pipelines/worlds/<module>.py), plot title
WORLDS = {"natural": {"model": "world-clip", "folder": "/tmp/medkt-natural-world", "lrs": [3e-4, 5e-4],
                      "exporter": "export_natural_folders",
                      "title": "natural world, world-clip: 5 novel concepts x 10 images"},
          "phantom": {"model": "phantom-clip", "folder": "/tmp/medkt-phantom-world", "lrs": [1e-4, 3e-4, 1e-3],
                      "exporter": "export_phantom_folders",
                      "title": "phantom world, phantom-clip: held-out CT nodule x 10 images"}}


def world_inputs(root: Path, kind: str = "natural") -> dict:
    """The world's folders under ``root``, exported first if ``root/concepts.yaml`` is missing."""
    if not (root / "concepts.yaml").exists():  # written last by both exporters
        import importlib
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines" / "worlds"))
        importlib.import_module(WORLDS[kind]["exporter"]).export(root)
    return {"concepts": root / "concepts.yaml", "target": root / "target", "reference": root / "reference",
            "ood": root / "ood"}


def pass_flops(model, size: int, n: int = 8) -> float:
    """FLOPs of one encoder pass (forward + input-gradient backward, frozen weights) at ``size`` px."""
    from torch.utils.flop_counter import FlopCounterMode
    from medkt.transfer.resolution import encoder_at
    from medkt.transfer.state import frozen
    x = torch.rand(n, model.in_channels, size, size, requires_grad=True)
    counter = FlopCounterMode(display=False)
    with frozen(model), encoder_at(model, size):
        with counter:
            model.encode_image(model.normalize(x), normalize=False).float().sum().backward()
    return counter.get_total_flops() / n


def variant_config(name: str) -> tuple[str | None, list[str]]:
    overrides = VARIANTS[name][1]
    presets = [o[1:] for o in overrides if o.startswith("@")]
    return (presets[0] if presets else None), [o for o in overrides if not o.startswith("@")]


def run_cell(model, sets, clf, base_rep, inputs, variant, budget, seed, lrs, caption, max_forgetting, flops_at):
    """One (variant, budget, seed) cell → result row."""
    from medkt.evaluation.report import concept_metrics, predict_sets, reference_accuracy, select_lr, mean_of
    from medkt.transfer import run
    preset, overrides = variant_config(variant)
    t0 = time.time()
    kt = run(str(inputs["concepts"]), model, lr=list(lrs), preset=preset, overrides=overrides, steps=budget,
             seed=seed, caption=caption, progress=False)
    t_kt = time.time() - t0
    results = []
    for ft in kt.finetunes:
        m = kt.model(ft.concepts[0], ft.lr)
        p = predict_sets(m, clf, sets)
        ref = reference_accuracy(p, sets)
        c = ft.concepts[0]
        results.append({"concept": c, "lr": ft.lr, **concept_metrics(p, sets, c), "reference_acc": ref,
                        "reference_drop": base_rep["reference_acc"] - ref})
    sel = select_lr(results, base_rep, max_forgetting)
    inv = kt.inversion
    flops = sum(passes * flops_at(size) for size, passes in inv.work.items())
    return {"variant": variant, "budget": budget, "seed": seed,
            "target": mean_of(sel, "target_acc"), "known": mean_of(sel, "reference_acc"),
            "drop": mean_of(sel, "reference_drop"), "other_to_target": mean_of(sel, "other_to_target"),
            "selected": [{k: r[k] for k in ("concept", "lr", "target_acc", "reference_drop")} for r in sel],
            "per_lr": [{k: r[k] for k in ("concept", "lr", "target_acc", "reference_drop", "other_to_target")}
                       for r in results],
            "inversion_flops": flops, "work": {str(k): v for k, v in inv.work.items()},
            "mean_steps_run": float(inv.steps_run.float().mean()), "score": float(inv.score.mean()),
            "inversion_s": round(inv.seconds, 2), "cell_s": round(time.time() - t0, 2), "kt_s": round(t_kt, 2),
            "load": os.getloadavg()[0]}


def grid(args) -> None:
    from medkt.evaluation.classifier import ZeroShotClassifier
    from medkt.evaluation.report import concept_metrics, load_sets, predict_sets, reference_accuracy
    from medkt.models import create_model
    from medkt.runs import atomic_write
    from medkt.transfer import load_concepts
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    inputs = world_inputs(Path(args.world), args.world_kind)
    model = create_model(args.model)
    names = load_concepts(str(inputs["concepts"])).names
    sets = load_sets(inputs["target"], inputs["reference"], inputs["ood"], model.image_size, names)
    clf = ZeroShotClassifier.build(model, sets.label_set)
    p = predict_sets(model, clf, sets)
    base_rep = {"reference_acc": reference_accuracy(p, sets),
                "concepts": {c: concept_metrics(p, sets, c) for c in names}}
    cache: dict[int, float] = {}

    def flops_at(size: int) -> float:
        if size not in cache:
            cache[size] = pass_flops(model, int(size))
        return cache[size]

    cells_path = out / "cells.jsonl"
    done = {(r["variant"], r["budget"], r["seed"]) for r in read_cells(cells_path)}
    todo = []
    for seed in args.seeds:  # seed-major: a partial grid still holds every variant
        if args.cells:  # explicit order, e.g. paper:5000 fast:300
            pairs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cells]
        else:
            pairs = [(v, b) for v in args.variants for b in (args.budgets or PLAN[v])]
        todo += [(v, b, seed) for v, b in pairs if (v, b, seed) not in done]
    base_target = {c: round(m["target_acc"], 2) for c, m in base_rep["concepts"].items()}
    atomic_write(out / "baseline.json", json.dumps({"world_kind": args.world_kind, "model": model.name,
                                                    "known": base_rep["reference_acc"], "target": base_target,
                                                    "other_to_target": {c: m["other_to_target"] for c, m in
                                                                        base_rep["concepts"].items()}}, indent=1))
    print(f"{len(todo)} cells to run ({len(done)} done); model {model.name}, threads {torch.get_num_threads()}, "
          f"base known {base_rep['reference_acc']:.1f} %, base target {base_target}", flush=True)
    for v, b, seed in todo:
        row = run_cell(model, sets, clf, base_rep, inputs, v, b, seed, args.lrs, args.caption,
                       args.max_forgetting, flops_at)
        row["world"] = args.world_kind
        with open(cells_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{v:20s} {b:5d} seed {seed}: target {row['target']:5.1f} known {row['known']:5.1f} "
              f"(drop {row['drop']:.2f}) o->t {row['other_to_target']:4.1f} | {row['inversion_flops'] / 1e12:7.3f} TF "
              f"steps {row['mean_steps_run']:6.0f} | {row['cell_s']:5.1f} s load {row['load']:.1f}", flush=True)
    atomic_write(out / "flops_per_pass.json", json.dumps({str(k): v for k, v in sorted(cache.items())}, indent=1))


def read_cells(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarise(rows: list[dict], max_forgetting: float,
              base_target: float | None = None) -> tuple[list[dict], dict | None]:
    """Mean over seeds per (variant, budget), with the ratio to the reference and the goal check.

    ``base_target``: mean target accuracy before KT; if the reference does not beat it by more
    than 2 points there is nothing to reach, and ``meets_goal`` is ``None`` (shown as n/a).
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["budget"]), []).append(r)
    ref_rows = groups.get(("paper", PAPER_FULL))
    ref = None
    if ref_rows:
        ref = {k: statistics.mean(r[k] for r in ref_rows) for k in ("target", "known", "drop", "inversion_flops")}
    table = []
    for (v, b), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])  # per-seed values in seed order
        t = [r["target"] for r in rs]
        row = {"variant": v, "budget": b, "seeds": sorted(r["seed"] for r in rs), "target": statistics.mean(t),
               "target_seeds": t, "known": statistics.mean(r["known"] for r in rs),
               "drop": statistics.mean(r["drop"] for r in rs),
               "other_to_target": statistics.mean(r["other_to_target"] for r in rs),
               "flops": statistics.mean(r["inversion_flops"] for r in rs),
               "steps_run": statistics.mean(r["mean_steps_run"] for r in rs)}
        if ref:
            row["flop_ratio"] = ref["inversion_flops"] / row["flops"]
            row["vs_ref"] = row["target"] - ref["target"]
            row["meets_goal"] = bool(row["vs_ref"] >= -2.0 and row["drop"] <= max_forgetting
                                     and row["flop_ratio"] >= 3.0 and len(rs) >= 3)
            if base_target is not None and ref["target"] <= base_target + 2.0:
                row["meets_goal"] = None
        table.append(row)
    order = list(VARIANTS)
    table.sort(key=lambda r: (order.index(r["variant"]) if r["variant"] in order else 99, r["budget"]))
    return table, ref


def report(args) -> None:
    from medkt.runs import atomic_write
    out = Path(args.out)
    own = read_cells(out / "cells.jsonl")
    rows = list(own)
    for extra in args.merge:
        rows += read_cells(Path(extra) / "cells.jsonl")
    seen, unique = set(), []
    for r in rows:  # a cell run in two folders counts once (the first)
        if (r["variant"], r["budget"], r["seed"]) not in seen:
            seen.add((r["variant"], r["budget"], r["seed"]))
            unique.append(r)
    rows = unique
    if len(rows) > len(own):  # merged cells join OUT/cells.jsonl, so OUT alone reproduces the table
        atomic_write(out / "cells.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    if not rows:
        print("no cells yet", file=sys.stderr)
        return
    base = next((json.loads(p.read_text()) for p in [out / "baseline.json"] + [Path(m) / "baseline.json"
                                                                             for m in args.merge] if p.exists()), None)
    if base and not (out / "baseline.json").exists():
        atomic_write(out / "baseline.json", json.dumps(base, indent=1))
    base_target = statistics.mean(base["target"].values()) if base else None
    table, ref = summarise(rows, args.max_forgetting, base_target)
    lines = ["| variant | steps | inversion TFLOPs | FLOP ratio vs paper@5000 | target % (mean; per seed) "
             "| vs ref (pts) | known % | drop (pts) | other→target % | mean steps run | goal |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        seeds = " / ".join(f"{t:.1f}" for t in r["target_seeds"])
        ratio = f"{r['flop_ratio']:.1f}x" if "flop_ratio" in r else "—"  # no paper@5000 cell: no reference
        vs_ref = f"{r['vs_ref']:+.1f}" if "vs_ref" in r else "—"
        lines.append(f"| {r['variant']} | {r['budget']} | {r['flops'] / 1e12:.3f} | {ratio} "
                     f"| **{r['target']:.1f}** ({seeds}) | {vs_ref} | {r['known']:.1f} "
                     f"| {r['drop']:.2f} | {r['other_to_target']:.1f} | {r['steps_run']:.0f} "
                     f"| {goal_mark(r)} |")
    notes = [f"- `{k}`: {v[0]}" for k, v in VARIANTS.items() if any(r["variant"] == k for r in table)]
    if base:
        notes.append(f"- before KT ({base['model']}, no fine-tuning): target {base_target:.1f} %, known "
                     f"{base['known']:.1f} %; goal n/a = the reference is not > 2 points above it (nothing to reach)")
    text = "\n".join(lines + [""] + notes + per_lr_lines(rows, table)) + "\n"
    atomic_write(out / "table.md", text)
    atomic_write(out / "summary.json", json.dumps({"reference": ref, "table": table}, indent=1))
    print(text)
    plot(table, ref, out / "quality_vs_flops.png", WORLDS[args.world_kind]["title"])


def goal_mark(row: dict) -> str:
    """``yes``, blank (missed, or no reference) or ``n/a`` (the reference learnt nothing)."""
    if "meets_goal" in row and row["meets_goal"] is None:
        return "n/a"
    return "yes" if row.get("meets_goal") else ""


def per_lr_lines(rows: list[dict], table: list[dict]) -> list[str]:
    """Every fine-tuning lr before selection (mean over seeds and concepts), for cells that recorded it."""
    lines = []
    for t in table:
        rs = [r for r in rows if (r["variant"], r["budget"]) == (t["variant"], t["budget"])]
        if not all(r.get("per_lr") for r in rs):
            continue
        for lr in sorted({x["lr"] for r in rs for x in r["per_lr"]}):
            xs = [x for r in rs for x in r["per_lr"] if x["lr"] == lr]
            m = {k: statistics.mean(x[k] for x in xs) for k in ("target_acc", "reference_drop", "other_to_target")}
            tmax = max(x["target_acc"] for x in xs)
            lines.append(f"| {t['variant']} | {t['budget']} | {lr:g} | {m['target_acc']:.1f} (max {tmax:.1f}) "
                         f"| {m['reference_drop']:.2f} | {m['other_to_target']:.1f} |")
    if not lines:
        return []
    return ["", "Before selection, per fine-tuning lr (mean over seeds and concepts):", "",
            "| variant | steps | lr | target % | drop (pts) | other→target % |", "|---|---|---|---|---|---|"] + lines


def plot(table: list[dict], ref: dict | None, path: Path, title: str = WORLDS["natural"]["title"]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for v in dict.fromkeys(r["variant"] for r in table):
        rs = sorted((r for r in table if r["variant"] == v), key=lambda r: r["flops"])  # early stop: 1000 < 300
        x = [r["flops"] / 1e12 for r in rs]
        y = [r["target"] for r in rs]
        lo = [r["target"] - min(r["target_seeds"]) for r in rs]
        hi = [max(r["target_seeds"]) - r["target"] for r in rs]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=v)
    if ref:
        ax.axhspan(ref["target"] - 2, ref["target"] + 2, color="grey", alpha=0.2,
                   label="paper@5000 ± 2 pts")
        ax.axvline(ref["inversion_flops"] / 3e12, color="grey", ls="--", lw=1, label="3x fewer FLOPs")
    ax.set_xscale("log")
    ax.set_xlabel("inversion TFLOPs (encoder fwd + input-grad bwd)")
    ax.set_ylabel("KT target accuracy % (max-forgetting 2)")
    ax.set_title(f"{title}\nKT quality vs inversion compute (mean, min-max over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-inversion-quality")
    ap.add_argument("--world-kind", default="natural", choices=list(WORLDS),
                    help="natural: world-clip, 5 novel concepts; phantom: phantom-clip, the held-out CT nodule")
    ap.add_argument("--world", default=None, help="the world's exported folders (default: per kind, under /tmp)")
    ap.add_argument("--model", default=None, help="default: world-clip (natural) or phantom-clip (phantom)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--budgets", type=int, nargs="+", default=None,
                    help=f"inversion steps for every variant (default: PLAN; paper {PAPER_FULL} is the reference)")
    ap.add_argument("--cells", nargs="+", default=None,
                    help="explicit VARIANT:STEPS cells, run in this order per seed (instead of --variants/PLAN)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lrs", type=float, nargs="+", default=None, help="default: per world kind (see above)")
    ap.add_argument("--merge", nargs="*", default=[],
                    help="with --report: more OUT folders whose cells are added (once each) to OUT/cells.jsonl")
    ap.add_argument("--caption", default="definition+name")
    ap.add_argument("--max-forgetting", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", action="store_true", help="only write the table and plot from OUT/cells.jsonl")
    a = ap.parse_args(argv)
    kind = WORLDS[a.world_kind]
    a.world = a.world or kind["folder"]
    a.model = a.model or kind["model"]
    a.lrs = a.lrs or kind["lrs"]
    torch.set_num_threads(a.threads)
    from medkt.runs import RunRecord, atomic_write_json
    rec = RunRecord("bench_inversion_quality", config=vars(a), seed=a.seeds[0],
                    weights={"model": a.model, "source": "registry"})
    Path(a.out).mkdir(parents=True, exist_ok=True)
    if not a.report:
        grid(a)
        rec.write(Path(a.out))  # lists every grid invocation into OUT
        report(a)
        return 0
    report(a)
    prev = Path(a.out) / "run.json"
    grid_record = prev.exists() and not json.loads(prev.read_text()).get("config", {}).get("report")
    if (Path(a.out) / "table.md").exists() and not grid_record:  # report only: this command, no journal
        atomic_write_json(prev, rec.as_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
