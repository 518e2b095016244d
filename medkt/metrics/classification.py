"""Zero-shot classification scores: accuracy, per-class, top-k, target / reference accuracy.

Inputs:

* ``scores_or_preds``: either a score matrix ``(N, C)`` (logits, similarities or
  probabilities; the prediction is the arg-max, ties → lowest class index) or a 1-D
  vector of ``N`` predicted labels.
* ``labels``: ``N`` true labels.  Labels and predictions are class indices into
  ``class_names`` when scores are given, or any hashable values (ints, strings) when
  predictions are given; with ``class_names`` set, arg-max indices are mapped to names so
  string labels work with score matrices too.

The paper's KT protocol: *target accuracy* = accuracy on the images of the novel
concept(s) (:func:`target_accuracy`); *reference accuracy* = accuracy on a reference set
of previously known classes before/after transfer (the forgetting check,
:func:`reference_accuracy`); :func:`specificity` checks that a new concept does not
swallow images of other or unseen classes.
"""
from __future__ import annotations

import math
from typing import Hashable, Sequence

import numpy as np

from medkt.errors import InputError

__all__ = ["predictions", "accuracy", "top_k_accuracy", "per_class_accuracy", "balanced_accuracy",
           "target_accuracy", "reference_accuracy", "specificity", "classification_report"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def predictions(scores_or_preds, class_names: Sequence[Hashable] | None = None) -> np.ndarray:
    """Predicted labels: arg-max of a ``(N, C)`` score matrix (mapped to ``class_names``), or the input."""
    arr = _np(scores_or_preds)
    if arr.ndim == 2:
        idx = arr.argmax(axis=1)
        if class_names is not None:
            if len(class_names) != arr.shape[1]:
                raise InputError(f"scores have {arr.shape[1]} columns but {len(class_names)} class names "
                                 "were given.", hint="pass one class name per score column")
            return np.asarray(list(class_names), dtype=object)[idx]
        return idx
    if arr.ndim == 1:
        return arr
    raise InputError(f"expected scores (N, C) or predictions (N,), got shape {arr.shape}.")


def _check(preds: np.ndarray, labels: np.ndarray) -> None:
    if preds.shape[0] != labels.shape[0]:
        raise InputError(f"{preds.shape[0]} predictions but {labels.shape[0]} labels.",
                         hint="give one label per image, in the same order as the scores")


def _eq(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([p == t for p, t in zip(preds.tolist(), labels.tolist())], dtype=bool)


def accuracy(scores_or_preds, labels, class_names=None) -> float:
    """Share of images whose prediction equals the label (nan for zero images)."""
    preds, labels = predictions(scores_or_preds, class_names), _np(labels)
    _check(preds, labels)
    return float(_eq(preds, labels).mean()) if labels.size else math.nan


def top_k_accuracy(scores, labels, k: int = 5, class_names=None) -> float:
    """Share of images whose true class is among the ``k`` highest scores.

    Ties are broken as by ``argmax``: a class tied with the true class ranks above it
    when its index is lower, so ``top_k_accuracy(s, y, 1) == accuracy(s, y)``.
    """
    s, labels = _np(scores), _np(labels)
    if s.ndim != 2:
        raise InputError(f"top-k accuracy needs a score matrix (N, C), got shape {s.shape}.")
    idx = _label_indices(labels, s.shape[1], class_names)
    _check(s, idx)
    true = s[np.arange(s.shape[0]), idx]
    cols = np.arange(s.shape[1])[None, :]
    rank = (s > true[:, None]).sum(axis=1) + ((s == true[:, None]) & (cols < idx[:, None])).sum(axis=1)
    return float((rank < k).mean()) if idx.size else math.nan


def _label_indices(labels: np.ndarray, n_classes: int, class_names) -> np.ndarray:
    if class_names is not None:
        lookup = {c: i for i, c in enumerate(class_names)}
        try:
            return np.array([lookup[t] for t in labels.tolist()], dtype=int)
        except KeyError as e:
            raise InputError(f"label {e.args[0]!r} is not one of the class names.") from None
    idx = labels.astype(int)
    if idx.size and (idx.min() < 0 or idx.max() >= n_classes):
        raise InputError(f"labels must be class indices in [0, {n_classes}); got {idx.min()}..{idx.max()}.")
    return idx


def per_class_accuracy(scores_or_preds, labels, class_names=None) -> dict:
    """``{class: accuracy on the images of that class}`` (= per-class recall).

    Classes are ``class_names`` when given, else the labels present.  A class without
    images gets nan.
    """
    preds, labels = predictions(scores_or_preds, class_names), _np(labels)
    _check(preds, labels)
    classes = list(class_names) if class_names is not None else sorted(set(labels.tolist()), key=str)
    correct = _eq(preds, labels)
    out = {}
    lab = labels.tolist()
    for c in classes:
        sel = np.array([t == c for t in lab], dtype=bool)
        out[c] = float(correct[sel].mean()) if sel.any() else math.nan
    return out


def balanced_accuracy(scores_or_preds, labels, class_names=None) -> float:
    """Mean of the per-class accuracies over classes with at least one image."""
    vals = [v for v in per_class_accuracy(scores_or_preds, labels, class_names).values() if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def target_accuracy(scores_or_preds, labels, targets, class_names=None) -> dict:
    """The paper's target accuracy: accuracy on the images of the novel concept(s).

    ``targets`` is one label or a list of labels.  Returns ``{target: accuracy}`` for each
    target plus ``"all"`` = accuracy over the images of all targets, and ``"n"`` per target.
    """
    if isinstance(targets, (str, int, np.integer)) or not isinstance(targets, Sequence):
        targets = [targets]
    preds, labels = predictions(scores_or_preds, class_names), _np(labels)
    _check(preds, labels)
    correct = _eq(preds, labels)
    lab = labels.tolist()
    out: dict = {}
    any_sel = np.zeros(len(lab), dtype=bool)
    for t in targets:
        sel = np.array([x == t for x in lab], dtype=bool)
        any_sel |= sel
        out[t] = float(correct[sel].mean()) if sel.any() else math.nan
    out["all"] = float(correct[any_sel].mean()) if any_sel.any() else math.nan
    out["n"] = {t: int(sum(x == t for x in lab)) for t in targets}
    return out


def reference_accuracy(scores_or_preds, labels, class_names=None, before: float | None = None) -> dict:
    """Accuracy on a reference set (forgetting check); with ``before``, also the change.

    Returns ``{"accuracy", "balanced_accuracy", "n"}`` and, if ``before`` is given,
    ``"before"`` and ``"delta"`` (after − before; negative = forgetting).
    """
    acc = accuracy(scores_or_preds, labels, class_names)
    out = {"accuracy": acc, "balanced_accuracy": balanced_accuracy(scores_or_preds, labels, class_names),
           "n": int(_np(labels).shape[0])}
    if before is not None:
        out["before"] = float(before)
        out["delta"] = acc - float(before)
    return out


def specificity(scores_or_preds, labels, concept, class_names=None) -> dict:
    """How often a (new) ``concept`` is wrongly given to images of *other* classes.

    Over the images whose true label is not ``concept`` (other known classes or unseen
    ones), returns ``{"false_positive_rate": share labelled as concept,
    "specificity": 1 − that share, "n": number of such images}``; nan values when there are
    none.  A transfer that makes every image look like the new concept has a high target
    accuracy but a low specificity.
    """
    preds, labels = predictions(scores_or_preds, class_names), _np(labels)
    _check(preds, labels)
    others = np.array([t != concept for t in labels.tolist()], dtype=bool)
    n = int(others.sum())
    if n == 0:
        return {"false_positive_rate": math.nan, "specificity": math.nan, "n": 0}
    fp = float(np.mean([p == concept for p in preds[others].tolist()]))
    return {"false_positive_rate": fp, "specificity": 1.0 - fp, "n": n}


def classification_report(scores, labels, class_names=None, ks: Sequence[int] = (1, 5),
                          targets=None) -> dict:
    """Accuracy, balanced accuracy, top-k, per-class and (with ``targets``) target accuracy."""
    s = _np(scores)
    out: dict = {"n": int(_np(labels).shape[0]), "accuracy": accuracy(s, labels, class_names),
                 "balanced_accuracy": balanced_accuracy(s, labels, class_names),
                 "per_class": per_class_accuracy(s, labels, class_names)}
    if s.ndim == 2:
        for k in ks:
            if k <= s.shape[1]:
                out[f"top{k}"] = top_k_accuracy(s, labels, k, class_names)
    if targets is not None:
        out["target"] = target_accuracy(s, labels, targets, class_names)
    return out
