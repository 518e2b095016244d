"""Markdown report: the paper's reference numbers next to the measured ones, clearly labelled.

For each group, one table laid out like the paper's (metrics as rows, baseline and the
learning rates as columns), with a **paper** line (the number printed in the paper's
table, transcribed into the experiment config) and a **measured** line (this run) per
metric.  Measured fractions are shown in percent, like the paper.  Other methods the paper
lists for comparison are shown separately; every metric, CI and convention follows.
"""
from __future__ import annotations

import math
from pathlib import Path

from medkt.bench.experiment import ExperimentConfig, PaperRow, run_id
from medkt.runs import atomic_write

DEFAULT_LABELS = {
    "target_acc": "Target Acc.", "reference_acc": "Reference-set 0-shot Acc.", "target_top5": "Target top-5",
    "reference_top5": "Reference-set top-5", "dsc": "DSC", "nsd": "NSD", "iou": "IoU", "hd95": "HD95",
    "i2t_R@1": "Text retrieval R@1", "i2t_R@5": "Text retrieval R@5", "i2t_R@10": "Text retrieval R@10",
    "t2i_R@1": "Image retrieval R@1", "t2i_R@5": "Image retrieval R@5", "t2i_R@10": "Image retrieval R@10",
    "BLEU-4": "BLEU@4", "METEOR": "METEOR", "ROUGE-L": "ROUGE-L", "CIDEr": "CIDEr", "SPICE": "SPICE",
}
NOT_PERCENT = {"hd95", "n_target", "n_reference", "n_cases", "n_images", "n_captions", "rsum"}


def fmt(v, percent: bool = True) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, (int, float)):
        return f"{100 * v:.2f}" if percent else f"{v:.2f}"
    return str(v)


def _order(run_ids: list[str]) -> list[str]:
    def key(r):
        return (-1.0, r) if r == "baseline" else (float(r[3:]) if r.startswith("lr_") else math.inf, r)
    return sorted(dict.fromkeys(run_ids), key=key)


def paper_rows(cfg: ExperimentConfig) -> list[PaperRow]:
    model = cfg.paper_model or cfg.model
    return [r for r in cfg.paper.rows if r.model in (None, model)]


def _label(cfg: ExperimentConfig, metric: str) -> str:
    if metric in cfg.paper.metric_labels:
        return cfg.paper.metric_labels[metric]
    if metric.startswith("acc/"):
        return f"Acc. {metric[4:]}"
    return DEFAULT_LABELS.get(metric, metric)


def comparison_table(cfg: ExperimentConfig, summary: dict, group: str) -> list[str]:
    """Markdown lines: per metric a *paper* and a *measured* row over the runs."""
    rows = [r for r in paper_rows(cfg) if r.group in (None, group)]
    measured = summary["groups"].get(group, {})
    runs = _order([run_id(r.run) for r in rows] + list(measured))
    metrics = list(dict.fromkeys(m for r in rows for m in r.values))
    if not metrics:
        return [f"_No paper numbers for group '{group}' and model '{cfg.paper_model or cfg.model}'._", ""]
    labels = {r["run"]: r["label"] for r in summary["runs"]}
    head = ["metric", "source"] + [labels.get(r, r.replace("lr_", "KT lr ")) for r in runs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    paper_model = cfg.paper_model or cfg.model
    for m in metrics:
        paper = {run_id(r.run): r.values[m] for r in rows if m in r.values}
        p_cells = [("—" if paper.get(r) is None else f"{float(paper[r]):.2f}") for r in runs]
        m_cells = [(fmt(measured[r].get(m), m not in NOT_PERCENT) if r in measured else "not run") for r in runs]
        lines.append(f"| {_label(cfg, m)} | **paper** ({cfg.paper.table}, {paper_model}) | " + " | ".join(p_cells) + " |")
        lines.append(f"| {_label(cfg, m)} | **measured** ({cfg.model}) | " + " | ".join(m_cells) + " |")
    return lines + [""]


def _context(cfg: ExperimentConfig) -> list[str]:
    if not cfg.paper.context:
        return []
    metrics = list(dict.fromkeys(m for r in cfg.paper.context for m in r.values))
    lines = ["## Other methods reported in the paper (not rerun here)", "",
             "| model | " + " | ".join(_label(cfg, m) for m in metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
    for r in cfg.paper.context:
        cells = ["—" if r.values.get(m) is None else f"{float(r.values[m]):.2f}" for m in metrics]
        lines.append(f"| {r.label or r.model} | " + " | ".join(cells) + " |")
    return lines + [""]


def _details(cfg: ExperimentConfig, summary: dict) -> list[str]:
    lines = ["## All measured metrics", "", "Fractions are shown in percent; `[a, b]` is the 95 % bootstrap CI "
             "over cases (percentile, resampling cases).", ""]
    for group, runs in summary["groups"].items():
        lines += [f"### {group}", "", "| run | metric | value | 95 % CI |", "|---|---|---|---|"]
        for run in _order(list(runs)):
            for m, v in runs[run].items():
                if not isinstance(v, (int, float)) or m.endswith("_sd"):
                    continue
                ci = runs[run].get(f"{m}_ci")
                cis = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if isinstance(ci, list) and ci[0] is not None else ""
                pct = m not in NOT_PERCENT and not m.startswith("n_")
                val = str(v) if isinstance(v, int) else fmt(v, pct)
                lines.append(f"| {run} | {m} | {val} | {cis} |")
        lines.append("")
    return lines


def _notes(cfg: ExperimentConfig, summary: dict) -> list[str]:
    notes = []
    paper_model = cfg.paper_model or cfg.model
    if paper_model != cfg.model:
        notes.append(f"Measured with `{cfg.model}`; the paper's numbers are for `{paper_model}`. They are "
                     "shown for reference and are not expected to match.")
    for alias, d in summary["datasets"].items():
        if d.get("limit"):
            notes.append(f"Dataset `{alias}` was limited to {d['n_cases']} cases (`--limit`): a quick run, "
                         "not the paper's protocol.")
    for group, runs in summary["groups"].items():
        for run, m in runs.items():
            for name, why in (m.get("skipped") or {}).items():
                notes.append(f"{group}/{run}: {name} skipped — {why}")
    for n in summary.get("notes", []):
        notes.append(n)
    return (["## Notes", ""] + [f"- {n}" for n in dict.fromkeys(notes)] + [""]) if notes else []


def render_report(cfg: ExperimentConfig, summary: dict) -> str:
    paper_model = cfg.paper_model or cfg.model
    lines = [f"# {cfg.paper.table or cfg.name}: {cfg.paper.title or cfg.description}", "",
             f"Experiment `{cfg.name}` (task: {cfg.task}; config fingerprint `{summary['fingerprint']}`; "
             f"{summary['num_parts']} part(s)).", "",
             f"- **measured**: model `{cfg.model}`" + (f" (weights `{cfg.weights}`)" if cfg.weights else "")
             + ", this run.",
             f"- **paper**: reference numbers transcribed from {cfg.paper.source}, {cfg.paper.table}, for "
             f"`{paper_model}` (in {cfg.paper.units}, as printed).", ""]
    if cfg.paper.note:
        lines += [f"> {cfg.paper.note}", ""]
    lines += ["## Datasets", "", "| alias | adapter | root | cases |", "|---|---|---|---|"]
    for alias, d in summary["datasets"].items():
        lines.append(f"| {alias} | {d['adapter']} | `{d['root']}` | {d['n_cases']} |")
    lines += ["", "## Paper vs measured", ""]
    for group in summary["groups"]:
        g = cfg.group(group)
        what = f" (concepts: {', '.join(g.concepts)})" if g.concepts else ""
        lines += [f"### {group}{what}", ""] + comparison_table(cfg, summary, group)
    lines += _context(cfg)
    figs = summary.get("figures") or {}
    if figs:
        lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in figs.items()] + [""]
    lines += _details(cfg, summary) + _notes(cfg, summary)
    return "\n".join(lines)


def write_report(cfg: ExperimentConfig, summary: dict, path: str | Path) -> Path:
    return atomic_write(path, render_report(cfg, summary) + "\n")
