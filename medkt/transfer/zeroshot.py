"""Former home of the zero-shot classifier; it now lives in :mod:`medkt.evaluation` (it is evaluation).

Kept so that old imports work: :func:`build_classifier` (→ a
:class:`~medkt.evaluation.classifier.ZeroShotClassifier`), :func:`predict` (scores
``[N, C]``), :func:`evaluate` (one set) and :func:`evaluate_transfer` (before/after).
New code: :func:`medkt.evaluation.zeroshot` (the ``medkt zeroshot`` report).
"""
from __future__ import annotations

from typing import Sequence

import torch

from medkt.evaluation.classifier import ZeroShotClassifier, build_classifier  # noqa: F401
from medkt.evaluation.imagesets import IMAGE_SUFFIXES, load_image_folder  # noqa: F401
from medkt.evaluation.prompts import prompt_name

ItmClassifier = ZeroShotClassifier  # one classifier type for both scorers now


def predict(model, images: torch.Tensor, classifier: ZeroShotClassifier, batch_size: int = 64) -> torch.Tensor:
    """Scores ``[N, C]`` (cosine similarity or ITM logits) of images ``[N, C, H, W]`` in [0, 1]."""
    return classifier.scores(model, images, batch_size)


def _as_data(data, image_size):
    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        return load_image_folder(data, image_size)
    images, labels, names = data
    return images, list(labels), list(names)


def _key(s: str) -> str:
    return prompt_name(s).lower()


def evaluate(model, data, classnames: Sequence[str] | None = None, *, label_set: Sequence[str] | None = None,
             templates=None, classifier=None, batch_size: int = 64) -> dict:
    """Zero-shot accuracy (fraction) of ``data`` (folder or ``(images, labels, names)``) over ``label_set``.

    Images whose class is not in ``label_set`` are OOD (not in the accuracy).
    """
    images, labels, names = _as_data(data, model.image_size)
    names = list(classnames or names)
    label_set = list(label_set or names)
    lookup = {_key(c): i for i, c in enumerate(label_set)}
    y = torch.tensor([lookup.get(_key(names[lab]), -1) for lab in labels])
    clf = classifier if classifier is not None else build_classifier(model, label_set, templates)
    pred = clf.predict(model, images, batch_size)
    known = y >= 0
    per_class = {c: float((pred[y == i] == i).float().mean()) for i, c in enumerate(label_set) if bool((y == i).any())}
    return {"accuracy": float((pred[known] == y[known]).float().mean()) if bool(known.any()) else None,
            "n": int(known.sum()), "n_ood": int((~known).sum()), "per_class": per_class,
            "predicted": {c: int((pred == i).sum()) for i, c in enumerate(label_set)},
            "predictions": pred.tolist()}


def evaluate_transfer(before, after, concepts, *, target, reference=None, ood=None, templates=None,
                      batch_size: int = 64) -> dict:
    """Before/after accuracies (fractions) on target / reference and the OOD share per concept."""
    from medkt.transfer.concepts import load_concepts
    cset = load_concepts(concepts)
    sets = {"target": _as_data(target, before.image_size)}
    for key, data in (("reference", reference), ("ood", ood)):
        if data is not None:
            sets[key] = _as_data(data, before.image_size)
    label_set = list(cset.names)
    for key in ("reference", "target"):
        for n in sets.get(key, (None, None, []))[2]:
            if _key(n) not in {_key(x) for x in label_set}:
                label_set.append(n)
    concept_idx = [i for i, c in enumerate(label_set) if c in cset.names]
    report: dict = {"label_set": label_set, "concepts": cset.names}
    for tag, model in (("before", before), ("after", after)):
        clf = build_classifier(model, label_set, templates)
        report["templates"] = clf.templates
        row = {}
        for key, data in sets.items():
            r = evaluate(model, data, label_set=label_set, classifier=clf, batch_size=batch_size)
            if key == "ood":
                pred = torch.tensor(r["predictions"])
                shares = {label_set[i]: float((pred == i).float().mean()) for i in concept_idx}
                row["ood_share_as_concept"] = shares
                row["specificity"] = {c: 1.0 - s for c, s in shares.items()}
                row["ood_share_any_concept"] = float(sum(shares.values()))
            else:
                row[f"{key}_accuracy"] = r["accuracy"]
                row[f"{key}_per_class"] = r["per_class"]
        report[tag] = row
    report["change"] = {k: report["after"][k] - report["before"][k]
                        for k in ("target_accuracy", "reference_accuracy", "ood_share_any_concept")
                        if isinstance(report["before"].get(k), float) and isinstance(report["after"].get(k), float)}
    return report
