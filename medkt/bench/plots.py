"""Figures: metrics against learning rate (paper Fig. 4) and segmentation overlays (Figs. 6–7).

* ``figures/lr_sweep.png`` — per group, the measured metrics (target and reference-set
  accuracy for classification; DSC / NSD / IoU; R@1; BLEU@4 / CIDEr) against the KT
  learning rate (log axis), the baseline as a dotted line, and the paper's numbers
  (dashed, hollow markers) when the config has them.
* ``figures/overlays_<group>.png`` — the cases KT improved most (DSC), one row each:
  image | ground truth | M2IB map and mask of the baseline | of the best KT run.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from medkt.bench.experiment import ExperimentConfig, run_id
from medkt.bench.report import paper_rows

log = logging.getLogger("medkt.bench")

SWEEP_METRICS = {"classification": ["target_acc", "reference_acc"], "segmentation": ["dsc", "nsd", "iou"],
                 "retrieval": ["i2t_R@1", "t2i_R@1"], "captioning": ["BLEU-4", "CIDEr"]}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_lr_sweep(cfg: ExperimentConfig, summary: dict, path: Path) -> Path | None:
    plt = _plt()
    metrics = SWEEP_METRICS[cfg.task]
    runs = [r for r in summary["runs"] if r["lr"] is not None]
    groups = list(summary["groups"])
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    paper = paper_rows(cfg)
    for ax, group in zip(axes[0], groups):
        res = summary["groups"][group]
        for k, m in enumerate(metrics):
            c = colors[k % len(colors)]
            xs = [r["lr"] for r in runs]
            ys = [100 * res[r["run"]].get(m, math.nan) for r in runs]
            if xs:
                ax.plot(xs, ys, "o-", color=c, label=f"{m} (measured)")
            base = res.get("baseline", {}).get(m)
            if base is not None:
                ax.axhline(100 * base, color=c, ls=":", lw=1, label=f"{m} baseline")
            pts = [(float(r.run), r.values[m]) for r in paper
                   if r.group in (None, group) and m in r.values and run_id(r.run) != "baseline"
                   and run_id(r.run).startswith("lr_")]
            if pts:
                px, py = zip(*sorted(pts))
                ax.plot(px, py, "o--", color=c, mfc="none", alpha=0.7, label=f"{m} (paper)")
        ax.set_xscale("log")
        ax.set_title(group)
        ax.set_xlabel("fine-tuning learning rate")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="best")
    fig.suptitle(f"{cfg.paper.table or cfg.name}: {cfg.model}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _dataset_cases(ref: dict) -> dict:
    from medkt.bench.datasets import load_dataset
    ds = load_dataset(ref["adapter"], ref["root"], options=ref.get("options"))
    return ds, {c.case_id: c for c in ds.cases}


def plot_overlays(cfg: ExperimentConfig, summary: dict, group: str, manifest: dict, maps: dict,
                  rows: dict, path: Path, n: int = 10) -> Path | None:
    """The ``n`` cases whose DSC improved most from the baseline to the best KT run."""
    plt = _plt()
    runs = summary["groups"][group]
    kt_runs = [r for r in runs if r != "baseline" and not math.isnan(runs[r].get("dsc", math.nan))]
    if "baseline" not in runs or not kt_runs:
        return None
    best = max(kt_runs, key=lambda r: runs[r]["dsc"])
    kb, kk = f"baseline/{group}/target", f"{best}/{group}/target"
    base = {r["case_id"]: r for r in rows[kb]}
    gain = sorted(((r["dsc"] - base[r["case_id"]]["dsc"], r["case_id"]) for r in rows[kk]
                   if r["case_id"] in base and r["case_id"] in maps[kb] and r["case_id"] in maps[kk]),
                  key=lambda t: (-t[0], t[1]))[:n]
    if not gain:
        return None
    ds, cases = _dataset_cases(manifest["units"][kk]["dataset"])
    titles = ["Image", "Ground truth", "M2IB map (baseline)", "Segmentation (baseline)",
              f"M2IB map (KT {best[3:]})", f"Segmentation (KT {best[3:]})"]
    fig, axes = plt.subplots(len(gain), 6, figsize=(12, 2.1 * len(gain)), squeeze=False)
    for i, (d, cid) in enumerate(gain):
        img = np.asarray(ds.image(cases[cid]), dtype=np.float32)
        img = img / 255.0 if img.max() > 1 else img
        gt = ds.mask(cases[cid])
        with np.load(maps[kb][cid]) as zb, np.load(maps[kk][cid]) as zk:
            panels = [None, gt, zb["saliency"], zb["mask"], zk["saliency"], zk["mask"]]
        for j, panel in enumerate(panels):
            ax = axes[i][j]
            ax.imshow(img, cmap="gray")
            if j in (2, 4):
                ax.imshow(panel, cmap="jet", alpha=0.5)
            elif panel is not None:
                ax.imshow(np.ma.masked_where(~panel.astype(bool), panel), cmap="autumn", alpha=0.5)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=7)
        axes[i][0].set_ylabel(f"{cid}\nΔDSC {100 * d:+.1f}", fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def make_plots(cfg: ExperimentConfig, summary: dict, out: Path, manifest: dict, maps: dict,
               rows: dict | None = None) -> dict[str, str]:
    """Draw every figure the task has; returns ``{name: path relative to out}``."""
    figs: dict[str, str] = {}
    p = plot_lr_sweep(cfg, summary, out / "figures" / "lr_sweep.png")
    if p:
        figs["lr_sweep"] = str(p.relative_to(out))
    if cfg.task == "segmentation" and rows is not None and cfg.segmentation.overlays > 0:
        for group in summary["groups"]:
            try:
                q = plot_overlays(cfg, summary, group, manifest, maps, rows, out / "figures" / f"overlays_{group}.png",
                                  n=cfg.segmentation.overlays)
            except Exception as e:  # noqa: BLE001 - e.g. the data is not reachable from the merge host
                log.warning("overlays for %s not drawn: %s", group, e)
                summary.setdefault("notes", []).append(f"overlays for {group} not drawn: {e}")
                continue
            if q:
                figs[f"overlays_{group}"] = str(q.relative_to(out))
    return figs
