"""Zero-shot classification pipeline: prompt templates with ensembling, target and reference accuracy.

The classifier is :class:`medkt.evaluation.classifier.ZeroShotClassifier`, the one shared
with ``medkt zeroshot`` and the worlds.  Dual encoders (CLIP, MedCLIP, BiomedCLIP): each
class's text embedding is the mean of its normalised template embeddings, renormalised
(CLIP's prompt ensembling); an image goes to the class of highest cosine similarity.  ITM
models (ViLT): every image is scored against every (class, template) prompt with the match
head and the scores are averaged over templates — the paper's "evaluating every possible
image-caption pair" (Table 1, footnote *).

Per case: ``label``, ``pred``, ``correct``, ``rank`` (1-based rank of the true class) and
the true/predicted class scores.  Per set: accuracy, top-k, per-class accuracy, balanced
accuracy, with a bootstrap CI; on the *target* set, the paper's target accuracy (images of
the learned concepts only); on the *reference* set, the forgetting check.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from medkt.bench.common import BlockResult, UnitResult, failed_row, read_cases
from medkt.bench.datasets import open_dataset
from medkt.errors import InputError


class Worker:
    """Scores blocks of cases against a fixed label set (text side computed once)."""

    def __init__(self, spec, model):
        from medkt.evaluation.classifier import ZeroShotClassifier
        self.model = model.eval()
        self.spec = spec
        opts = spec.options
        self.labels: list[str] = list(opts.labels)
        self.templates: list[str] = list(opts.templates)
        self.index = {c: i for i, c in enumerate(self.labels)}
        self.classifier = ZeroShotClassifier.build(model, self.labels, self.templates,
                                                   scorer=opts.scorer)
        self.classifier.itm_batch = int(opts.itm_batch)
        self.scorer = self.classifier.scorer

    def scores(self, images) -> torch.Tensor:
        """``[B, n_classes]`` scores (cosine similarity, or ITM logits averaged over templates)."""
        return self.classifier.scores(self.model, images)

    def __call__(self, cases) -> BlockResult:
        ds = open_dataset(self.spec.dataset, cases)
        for c in cases:
            if c.label not in self.index:
                raise InputError(f"case '{c.case_id}' has label '{c.label}', which is not in the label set.")
        readable, failed = read_cases(ds, cases)
        scores = {}
        if readable:
            s = self.scores([im for _, im, _ in readable]).numpy().astype(np.float64)
            scores = {c.case_id: row for (c, _, _), row in zip(readable, s)}
        rows = []
        for c in cases:
            if c.case_id in failed:
                rows.append(failed_row(c, failed[c.case_id], label=c.label))
                continue
            row = scores[c.case_id]
            true = self.index[c.label]
            pred = int(np.argmax(row))
            rank = int(1 + np.sum(row > row[true]))
            rows.append({"case_id": c.case_id, "status": "ok", "label": c.label, "pred": self.labels[pred],
                         "correct": int(pred == true), "rank": rank,
                         "true_score": float(row[true]), "pred_score": float(row[pred])})
        return BlockResult(rows=rows)


def finalize(rows: list[dict], arrays: dict, context) -> UnitResult:
    """Set-level metrics; ``context`` (:class:`~medkt.bench.tasks.ClassificationContext`): ``set``
    (target | reference), ``target_classes``, ``top_k``, ``seed``."""
    from medkt.metrics import summarize
    prefix = context.set
    all_rows, rows = rows, [r for r in rows if r.get("status", "ok") == "ok"]
    out: dict = {f"n_{prefix}": len(rows)}
    if len(rows) < len(all_rows):
        out[f"n_{prefix}_failed"] = len(all_rows) - len(rows)
    if not rows:
        return UnitResult(all_rows, out)
    correct = np.array([r["correct"] for r in rows], dtype=float)
    ranks = np.array([r["rank"] for r in rows])
    out[f"{prefix}_all_acc"] = float(correct.mean())
    for k in context.top_k:
        if k > 1:
            out[f"{prefix}_top{k}"] = float((ranks <= k).mean())
    per_class = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        sel = [r["correct"] for r in rows if r["label"] == label]
        per_class[label] = float(np.mean(sel))
        if prefix == "target":
            out[f"acc/{label}"] = per_class[label]
    out[f"{prefix}_balanced_acc"] = float(np.mean(list(per_class.values())))
    targets = context.target_classes
    chosen = [r for r in rows if r["label"] in targets] if (prefix == "target" and targets) else rows
    stats = summarize([{"correct": float(r["correct"])} for r in chosen], ["correct"],
                      seed=context.seed)["correct"] if chosen else None
    out[f"{prefix}_acc"] = stats["mean"] if stats else math.nan
    out[f"{prefix}_acc_ci"] = [stats["ci_low"], stats["ci_high"]] if stats else None
    if prefix == "target":
        out["n_target_cases"] = len(chosen)
    return UnitResult(all_rows, out)
