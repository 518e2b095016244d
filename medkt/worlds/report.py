"""Plots, tables and the Markdown report of ``medkt demo``.

* :func:`plot_lr_sweep` — target and known accuracy against learning rate (paper Fig. 4);
* :func:`plot_overlays` — image / ground truth / saliency / SAM mask rows (paper Figs. 6-7);
* :func:`markdown_table` and :func:`write_report` — the tables printed and written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medkt.runs import atomic_path, atomic_write


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "nan" if np.isnan(v) else f"{v:.1f}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def plot_lr_sweep(rows: list[dict], base: dict, path: str | Path, variants=None) -> Path:
    """Mean target accuracy (solid) and known accuracy (dashed) vs lr, one colour per variant."""
    plt = _plt()
    variants = variants or list(dict.fromkeys(r["variant"] for r in rows))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, v in enumerate(variants):
        rs = [r for r in rows if r["variant"] == v]
        lrs = sorted(dict.fromkeys(r["lr"] for r in rs))
        t = [np.mean([r["target_acc"] for r in rs if r["lr"] == lr]) for lr in lrs]
        kn = [np.mean([r["known_acc"] for r in rs if r["lr"] == lr]) for lr in lrs]
        c = colours[k % len(colours)]
        ax.plot(lrs, t, "o-", color=c, label=f"{v}: target")
        ax.plot(lrs, kn, "s--", color=c, alpha=0.7, label=f"{v}: known classes")
    names = list(dict.fromkeys(r["concept"] for r in rows))
    tb = np.mean([base["novel_name_acc"][n] for n in names])
    ax.axhline(tb, color="grey", lw=1, ls=":", label="baseline target")
    ax.axhline(base["known_acc"], color="grey", lw=1, ls="-.", label="baseline known")
    ax.set_xscale("log")
    ax.set_xlabel("fine-tuning learning rate")
    ax.set_ylabel("zero-shot accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"Knowledge Transfer on world-clip ({', '.join(names)})", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_overlays(examples: dict[str, list[dict]], path: str | Path, title: str = "") -> Path:
    """Rows ``label → examples`` of image / GT / saliency / mask (mask contour over the image)."""
    plt = _plt()
    items = [(label, e) for label, exs in examples.items() for e in exs]
    if not items:
        raise ValueError("no examples to plot")
    fig, axes = plt.subplots(len(items), 4, figsize=(7.2, 1.9 * len(items)), squeeze=False)
    for i, (label, e) in enumerate(items):
        ax = axes[i]
        ax[0].imshow(e["image"], cmap="gray", vmin=0, vmax=255)
        ax[0].set_ylabel(label, fontsize=7)
        ax[1].imshow(e["image"], cmap="gray", vmin=0, vmax=255)
        ax[1].imshow(np.ma.masked_where(e["gt"] == 0, e["gt"]), cmap="autumn", alpha=0.55)
        ax[2].imshow(e["image"], cmap="gray", vmin=0, vmax=255)
        ax[2].imshow(e["saliency"], cmap="jet", alpha=0.5, vmin=0, vmax=1)
        ax[3].imshow(e["image"], cmap="gray", vmin=0, vmax=255)
        m = np.asarray(e["mask"], bool)
        ax[3].imshow(np.ma.masked_where(~m, m.astype(float)), cmap="cool", alpha=0.55)
        ax[3].set_title(f"DSC {100 * e['dsc']:.0f}%", fontsize=7)
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
        if i == 0:
            for a, t in zip(ax[:3], ("image", "ground truth", "M2IB saliency")):
                a.set_title(t, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def baseline_rows(base: dict) -> list[list]:
    rows = [["known classes (100)", base["known_acc"], "-"]]
    for n, a in base["novel_name_acc"].items():
        rows.append([f"novel: {n}", a, base["novel_desc_acc"][n]])
    rows.append(["novel mean", base["novel_name_mean"], base["novel_desc_mean"]])
    return rows


def sweep_rows(rows: list[dict]) -> list[list]:
    return [[r["concept"], r["variant"], f"{r['lr']:g}", r["target_acc"], r["known_acc"], r["specificity"]]
            for r in rows]


def summary_rows(summary: dict) -> list[list]:
    out = []
    for v, s in summary.items():
        b = s["best"]
        out.append([v, f"{s['best_lr']:g}", b["target_base"], b["target"], b["gain"], b["known"],
                    -b["forgetting"], b["specificity"]])
    return out


def seg_rows(results: dict, detection: bool = False) -> list[list]:
    """Rows of :data:`SEG_HEADER`; ``detection``: KT rows, adding normal-vs-nodule accuracy and the
    largest DSC drop on the seen findings (:data:`KT_EXTRA_HEADER`)."""
    return [[k, r["dsc"], r["nsd"], r["iou"], r["energy_in_mask"], r["pointing"]] +
            ([r.get("detection", float("nan")), r.get("seen_max_drop", float("nan"))] if detection else [])
            for k, r in results.items()]


SEG_HEADER = ["", "DSC", "NSD", "IoU", "saliency in GT", "pointing game"]
KT_EXTRA_HEADER = ["normal-vs-nodule accuracy", "max DSC drop on seen findings"]
SWEEP_HEADER = ["concept", "variant", "lr", "target acc", "known acc", "specificity"]
SUMMARY_HEADER = ["variant", "best lr", "target before", "target after", "gain", "known after",
                  "known change", "specificity"]
BASE_HEADER = ["classes", "accuracy by name", "accuracy by description"]


def write_report(path: str | Path, sections: list[tuple[str, str]], intro: str = "") -> Path:
    """Markdown file from ``(heading, body)`` sections."""
    text = "# medkt demo report\n\n" + (intro + "\n\n" if intro else "")
    for head, body in sections:
        text += f"## {head}\n\n{body}\n\n"
    return atomic_write(path, text)
