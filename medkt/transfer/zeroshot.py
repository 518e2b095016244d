"""Zero-shot classification before/after Knowledge Transfer.

* :func:`build_classifier` — class weights ``[D, C]``: mean of the normalised embeddings
  of ``templates`` per class name, renormalised (CLIP's prompt ensembling).  For ITM-only
  models (ViLT) it returns an :class:`ItmClassifier` and :func:`predict` scores every
  (image, class prompt) pair with the match head.
* :func:`load_image_folder` — a folder-per-class image set (``root/<class>/*.png|jpg``;
  folder names with ``_`` read as spaces) → ``[N, C, S, S]`` in [0, 1], labels, names.
* :func:`evaluate` — accuracy over a label set.
* :func:`evaluate_transfer` — before/after report: **target** accuracy (images of the
  learned concepts), **reference** accuracy (forgetting), and per concept the share of
  **OOD** images (classes outside the label set) now labelled as that concept, with
  ``specificity = 1 - share``.  A recipe that turns the new prompt into a catch-all
  shows up as a high share / low specificity.

The label set is the learned concept names + the reference classes + any other target
class; all images are classified among it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from medkt.errors import InputError
from medkt.models.base import CONTRASTIVE, ITM, image_to_unit_tensor, resize_to_square, to_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class ItmClassifier:
    """Zero-shot "weights" of an ITM model: the prompts of each class."""

    prompts: list[list[str]]


def _norm_name(s: str) -> str:
    return " ".join(s.replace("_", " ").split()).lower()


@torch.no_grad()
def build_classifier(model, classnames: Sequence[str], templates: Sequence[str] = ("a photo of a {}.",)):
    """``[D, C]`` normalised class embeddings (or an :class:`ItmClassifier` for ViLT)."""
    prompts = [[t.format(c) for t in templates] for c in classnames]
    if not model.supports(CONTRASTIVE) and model.supports(ITM):
        return ItmClassifier(prompts)
    model.require(CONTRASTIVE)
    flat = [p for ps in prompts for p in ps]
    emb = model.encode_texts(flat, normalize=True).view(len(classnames), len(templates), -1)
    return F.normalize(emb.mean(1), dim=-1).t().contiguous()


def _resize(model, x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] != model.image_size or x.shape[-2] != model.image_size:
        x = resize_to_square(x, model.image_size, "center_crop")
    return model.normalize(x)


@torch.no_grad()
def predict(model, images: torch.Tensor, classifier, batch_size: int = 64) -> torch.Tensor:
    """Logits ``[N, C]`` of images ``[N, C, H, W]`` in [0, 1] against ``classifier``."""
    was = model.training
    model.eval()
    out = []
    try:
        for i in range(0, images.shape[0], batch_size):
            x = _resize(model, images[i:i + batch_size].to(model.device))
            if isinstance(classifier, ItmClassifier):
                out.append(_itm_logits(model, x, classifier))
            else:
                f = model.encode_image(x, normalize=True)
                out.append((model.logit_scale * f @ classifier.to(f.device)).float().cpu())
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.empty(0, 0)


def _itm_logits(model, x: torch.Tensor, clf: ItmClassifier) -> torch.Tensor:
    n = x.shape[0]
    cols = []
    for prompts in clf.prompts:
        scores = []
        for p in prompts:
            toks = to_device(model.tokenize([p] * n), x.device)
            scores.append(model.match_score(x, toks).float())
        cols.append(torch.stack(scores).mean(0))
    return torch.stack(cols, dim=1).cpu()


def load_image_folder(root, image_size: int | None = None) -> tuple[torch.Tensor, list[int], list[str]]:
    """``root/<class>/<image>`` → (images ``[N, C, S, S]`` in [0, 1], labels, class names).

    Images are centre-cropped and resized to ``image_size`` (default: the first image's
    size).  Grayscale images become 3-channel.  Class names: folder names, ``_`` → space.
    """
    from PIL import Image
    root = Path(root)
    if not root.is_dir():
        raise InputError("image folder not found.", path=str(root), hint="pass a folder with one subfolder per class")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise InputError("no class subfolders found.", path=str(root), hint="layout: ROOT/<class>/<image>.png")
    images, labels = [], []
    for ci, d in enumerate(classes):
        for f in sorted(d.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    x = image_to_unit_tensor(im.convert("RGB"))
            except OSError as e:
                raise InputError(f"cannot read image: {e}", path=str(f)) from None
            size = image_size or x.shape[-1]
            images.append(resize_to_square(x[None], size, "center_crop")[0])
            labels.append(ci)
    if not images:
        raise InputError("no images found.", path=str(root), hint=f"supported: {', '.join(IMAGE_SUFFIXES)}")
    return torch.stack(images), labels, [d.name.replace("_", " ") for d in classes]


def _as_data(data, image_size):
    if isinstance(data, (str, Path)):
        return load_image_folder(data, image_size)
    images, labels, names = data
    return images, list(labels), list(names)


def evaluate(model, data, classnames: Sequence[str] | None = None, *, label_set: Sequence[str] | None = None,
             templates: Sequence[str] = ("a photo of a {}.",), classifier=None, batch_size: int = 64) -> dict:
    """Zero-shot accuracy of ``data`` (folder or ``(images, labels, names)``) over ``label_set``.

    Images whose class is not in ``label_set`` are counted as OOD (not in the accuracy);
    ``predicted`` counts how often each label was chosen (all images).
    """
    images, labels, names = _as_data(data, model.image_size)
    names = list(classnames or names)
    label_set = list(label_set or names)
    lookup = {_norm_name(c): i for i, c in enumerate(label_set)}
    y = torch.tensor([lookup.get(_norm_name(names[lab]), -1) for lab in labels])
    clf = classifier if classifier is not None else build_classifier(model, label_set, templates)
    pred = predict(model, images, clf, batch_size).argmax(1)
    known = y >= 0
    per_class = {}
    for i, c in enumerate(label_set):
        m = y == i
        if bool(m.any()):
            per_class[c] = float((pred[m] == i).float().mean())
    return {"accuracy": float((pred[known] == y[known]).float().mean()) if bool(known.any()) else None,
            "n": int(known.sum()), "n_ood": int((~known).sum()), "per_class": per_class,
            "predicted": {c: int((pred == i).sum()) for i, c in enumerate(label_set)},
            "predictions": pred.tolist()}


def evaluate_transfer(before, after, concepts, *, target, reference=None, ood=None,
                      templates: Sequence[str] = ("a photo of a {}.",), batch_size: int = 64) -> dict:
    """Before/after report on target, reference and OOD image sets (see module docstring)."""
    from medkt.transfer.concepts import load_concepts
    cset = load_concepts(concepts)
    sets = {"target": _as_data(target, before.image_size)}
    if reference is not None:
        sets["reference"] = _as_data(reference, before.image_size)
    if ood is not None:
        sets["ood"] = _as_data(ood, before.image_size)
    label_set = list(cset.names)
    for key in ("reference", "target"):
        if key in sets:
            for n in sets[key][2]:
                if _norm_name(n) not in {_norm_name(x) for x in label_set}:
                    label_set.append(n)
    concept_idx = [i for i, c in enumerate(label_set) if c in cset.names]
    report: dict = {"label_set": label_set, "concepts": cset.names, "templates": list(templates)}
    for tag, model in (("before", before), ("after", after)):
        clf = build_classifier(model, label_set, templates)
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
    report["change"] = {k: (report["after"][k] - report["before"][k])
                        for k in ("target_accuracy", "reference_accuracy", "ood_share_any_concept")
                        if isinstance(report["before"].get(k), float) and isinstance(report["after"].get(k), float)}
    return report
