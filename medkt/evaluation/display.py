"""Console table and Fig. 4-style plot of a zero-shot report (:func:`medkt.evaluation.zeroshot`)."""
from __future__ import annotations

from pathlib import Path


def _f(v, width: int = 8, fmt: str = "{:.1f}") -> str:
    return f"{'-' if v is None else fmt.format(v):>{width}s}"


def lr_label(lr) -> str:
    """``3e-04``, ``2.5e-05`` (``file`` for a weights file without a recorded lr)."""
    return "file" if lr is None else f"{lr:.1e}".replace(".0e", "e")


def _grid(report: dict, key: str, base_value) -> list[str]:
    """Rows = concepts, columns = base then each lr (no lr columns without fine-tunes)."""
    concepts, lrs = report["concepts"], report["lrs"]
    first = "model" if not report["results"] else "base"
    w = max([len(c) for c in concepts] + [8]) + 2
    lines = [f"  {'':{w}s}{first:>8s}" + "".join(f"{lr_label(lr):>9s}" for lr in lrs)]
    by = {(r["concept"], r["lr"]): r for r in report["results"]}
    col_means: list[list[float]] = [[] for _ in range(len(lrs) + 1)]
    for c in concepts:
        b = base_value(c)
        cells = [_f(b)]
        if b is not None:
            col_means[0].append(b)
        for i, lr in enumerate(lrs):
            v = by.get((c, lr), {}).get(key)
            cells.append(" " + _f(v))
            if v is not None:
                col_means[i + 1].append(v)
        lines.append(f"  {c:{w}s}" + "".join(cells))
    if len(concepts) > 1:
        means = [sum(m) / len(m) if m else None for m in col_means]
        lines.append(f"  {'mean':{w}s}" + _f(means[0]) + "".join(" " + _f(v) for v in means[1:]))
    return lines


def format_report(report: dict) -> str:
    """The printed form of a report: setup, per-concept tables (rows) by lr (columns), selection."""
    out = []
    m = report["model"]
    t = report["templates"]
    out.append(f"model: {m['name']} ({m['family']})")
    src = "the model's default" if t["source"] == "model default" else "given"
    first = t["templates"][0] if t["templates"] else ""
    out.append(f"templates: {t['label']}, {src}; first: '{first}'")
    n = report["n_images"]
    out.append(f"label set: {len(report['label_set'])} classes ({len(report['concepts'])} learned concepts + "
               f"{len(report['reference_classes'])} reference classes); images: target "
               f"{sum(n['target'].values())}, reference {n['reference']}, ood {n['ood']}")
    if report["finetuned"]:
        out.append(f"fine-tuned: {report['finetuned']} ({report['protocol']}, {len(report['lrs'])} lr(s))")
    base = report["base"]
    out.append("")
    out.append("target accuracy (%): the concept's own images called the concept")
    out += _grid(report, "target_acc", lambda c: base["concepts"][c]["target_acc"])
    if base["reference_acc"] is not None:
        out.append("")
        out.append("reference accuracy (%): known classes (forgetting)")
        out += _grid(report, "reference_acc", lambda c: base["reference_acc"])
    if report["n_images"]["ood"] or len(report["concepts"]) > 1:
        out.append("")
        out.append("other -> target (%): images of the other classes given (other concepts, --ood) called the concept")
        out += _grid(report, "other_to_target", lambda c: base["concepts"][c]["other_to_target"])
    if report.get("selected"):
        out.append("")
        out.append(f"selected (--max-forgetting {report['max_forgetting']:g}): per concept the largest lr whose "
                   "reference drop stays within the budget (reference set only)")
        w = max([len(c) for c in report["concepts"]] + [8]) + 2
        out.append(f"  {'concept':{w}s}{'lr':>9s}{'target':>8s}{'refer.':>8s}{'drop':>8s}{'other->t':>9s}")
        for r in report["selected"]:
            out.append(f"  {r['concept']:{w}s}{lr_label(r['lr']) if r['lr'] else 'none':>9s}{_f(r['target_acc'])}"
                       f"{_f(r['reference_acc'])}{_f(r['reference_drop'])} {_f(r['other_to_target'])}")
        sm = report["selected_mean"]
        out.append(f"  {'mean':{w}s}{'':>9s}{_f(sm['target_acc'])}{_f(sm['reference_acc'])}"
                   f"{_f(sm['reference_drop'])} {_f(sm['other_to_target'])}")
        for r in report["selected"]:
            if r.get("note"):
                out.append(f"  note: {r['concept']}: {r['note']}")
        out += _selected_confusion(report)
    return "\n".join(out)


def _selected_confusion(report: dict) -> list[str]:
    """Rows = image groups, column c = how many of them concept c's selected model calls c."""
    by = {(r["concept"], r["lr"]): r for r in report["results"]}
    cols = report["concepts"]
    tables = {}
    for s in report["selected"]:
        src = by.get((s["concept"], s["lr"])) if s["lr"] is not None else None
        tables[s["concept"]] = (src or report["base"])["confusion"]
    rows = next(iter(tables.values()))["rows"]
    w = max([len(c) for c in rows] + [9]) + 2
    cw = max([len(c) for c in cols] + [6]) + 1
    out = ["", "confusion at the selected lr: images of each group (rows) called concept c by c's selected model"]
    out.append(f"  {'images':{w}s}{'n':>5s}" + "".join(f"{c:>{cw}s}" for c in cols))
    for i, g in enumerate(rows):
        n = sum(next(iter(tables.values()))["counts"][i])
        cells = [tables[c]["counts"][i][tables[c]["cols"].index(c)] for c in cols]
        out.append(f"  {g:{w}s}{n:5d}" + "".join(f"{v:>{cw}d}" for v in cells))
    return out


def plot_report(report: dict, path) -> Path:
    """Fig. 4-style PNG: target accuracy, reference accuracy and other→target against lr."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medkt.runs import atomic_path
    lrs = report["lrs"]
    panels = [("target_acc", "target accuracy (%)"), ("reference_acc", "reference accuracy (%)"),
              ("other_to_target", "other → target (%)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    by = {(r["concept"], r["lr"]): r for r in report["results"]}
    sel = {r["concept"]: r["lr"] for r in report.get("selected") or []}
    for ax, (key, title) in zip(axes, panels):
        for i, c in enumerate(report["concepts"]):
            xs = [lr for lr in lrs if (c, lr) in by and by[(c, lr)].get(key) is not None]
            line, = ax.plot(xs, [by[(c, lr)][key] for lr in xs], marker="o", label=c)
            b = report["base"]["reference_acc"] if key == "reference_acc" else report["base"]["concepts"][c][key]
            if b is not None:
                ax.axhline(b, color=line.get_color(), ls=":", lw=1)
            if sel.get(c) in xs:
                ax.plot([sel[c]], [by[(c, sel[c])][key]], marker="*", ms=14, color=line.get_color())
        ax.set_xscale("log")
        ax.set_xlabel("fine-tuning lr")
        ax.set_title(title)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{report['model']['name']} — dotted: before fine-tuning"
                 + (f"; ★ selected (max forgetting {report['max_forgetting']:g} pts)" if sel else ""), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
