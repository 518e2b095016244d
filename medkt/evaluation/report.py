"""``medkt zeroshot`` as a function: zero-shot accuracy of a model and of every fine-tune of a transfer run.

:func:`zeroshot` takes the CLI's options by keyword and returns the report dict
(schema: docs/transfer.md, "zeroshot report schema").  All accuracies and shares are
percentages in [0, 100]; ``reference_drop`` is in points (base minus fine-tuned, positive =
forgetting).

Image sets (folder per class, :mod:`medkt.evaluation.imagesets`):

* ``target`` — one folder per learned concept (its name or slug, any case);
* ``reference`` — one folder per known class; folder names are the class names;
* ``ood`` — optional images of classes outside the label set (subfolders or flat).

The label set is the learned concepts followed by the reference classes; every image is
classified among it with one :class:`~medkt.evaluation.classifier.ZeroShotClassifier`
per model (templates: the model's own by default).  Per concept and fine-tune:

* ``target_acc`` — the concept's own target images called the concept;
* ``reference_acc`` / ``reference_drop`` — the reference set (forgetting);
* ``other_to_target`` — the share of images of the OTHER classes given (the other
  concepts' target folders and ``ood``) called this concept.  A concept's own images
  never enter it.  ``reference_to_target`` is the same share for reference images.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from medkt.errors import ConfigError, InputError
from medkt.evaluation.classifier import ZeroShotClassifier, image_features
from medkt.evaluation.imagesets import folder_class_name, load_class_folders
from medkt.evaluation.prompts import prompt_name

SCHEMA = "medkt.zeroshot/1"
KNOWN = "known"  # confusion column: any reference class


def _slug(name: str) -> str:
    from medkt.transfer.concepts import slugify
    return slugify(name)


# ---------------------------------------------------------------------- inputs
@dataclass
class EvalSets:
    """Images of one evaluation, at the model's input size."""

    concepts: list[str]
    target: dict[str, torch.Tensor]  # concept -> [n, 3, S, S]
    reference_classes: list[str]
    reference: torch.Tensor | None  # [n, 3, S, S]
    reference_labels: torch.Tensor | None  # index into label_set
    ood: torch.Tensor | None

    @property
    def label_set(self) -> list[str]:
        return self.concepts + self.reference_classes

    def all_images(self) -> tuple[torch.Tensor, dict[str, slice]]:
        """Every image in one tensor, with the slice of each group (concept names, reference, ood)."""
        parts, where, k = [], {}, 0
        for name, x in list(self.target.items()) + [("reference", self.reference), ("ood", self.ood)]:
            if x is None:
                continue
            parts.append(x)
            where[name] = slice(k, k + len(x))
            k += len(x)
        return torch.cat(parts), where


def load_sets(target, reference, ood, image_size: int, concepts: list[str] | None) -> EvalSets:
    """Read the folders and match target folders to ``concepts`` (by slug; all of them if ``None``)."""
    tgt = load_class_folders(target, image_size, what="--target")
    if concepts is None:
        concepts = [folder_class_name(n) for n in tgt]
    by_slug = {_slug(n): n for n in tgt}
    missing = [c for c in concepts if _slug(c) not in by_slug]
    if missing:
        raise InputError(f"--target has no folder for concept(s) {', '.join(missing)}.", path=str(target),
                         hint=f"add one folder per concept named by its name or slug "
                              f"(found: {', '.join(tgt) or 'none'})")
    wanted = {_slug(c) for c in concepts}
    extra = [n for n in tgt if _slug(n) not in wanted]
    if extra:
        raise InputError(f"--target folder(s) {', '.join(extra)} match no learned concept "
                         f"({', '.join(concepts)}).", path=str(target),
                         hint="move images of other classes to --ood (or known classes to --reference)")
    target_sets = {c: tgt[by_slug[_slug(c)]] for c in concepts}
    ref_classes, ref, ref_labels = [], None, None
    if reference is not None:
        groups = load_class_folders(reference, image_size, what="--reference")
        ref_classes = [folder_class_name(n) for n in groups]
        clash = [r for r in ref_classes if prompt_name(r).lower() in {prompt_name(c).lower() for c in concepts}]
        if clash:
            raise InputError(f"--reference class(es) {', '.join(clash)} are also learned concepts.",
                             path=str(reference), hint="a learned concept's images belong in --target only")
        ref = torch.cat(list(groups.values()))
        ref_labels = torch.cat([torch.full((len(x),), len(concepts) + i, dtype=torch.long)
                                for i, x in enumerate(groups.values())])
    ood_x = None
    if ood is not None:
        ood_x = torch.cat(list(load_class_folders(ood, image_size, what="--ood", allow_flat=True).values()))
    return EvalSets(list(concepts), target_sets, ref_classes, ref, ref_labels, ood_x)


def _pct(hits: torch.Tensor) -> float | None:
    return None if hits.numel() == 0 else 100.0 * int(hits.sum()) / hits.numel()


# ---------------------------------------------------------------------- scoring one model
@dataclass
class Predictions:
    """Predicted label-set index of every image group of one model."""

    target: dict[str, torch.Tensor]
    reference: torch.Tensor | None
    ood: torch.Tensor | None


def predict_sets(model, clf: ZeroShotClassifier, sets: EvalSets, batch_size: int = 256) -> Predictions:
    x, where = sets.all_images()
    if clf.scorer == "similarity":
        pred = clf.scores_from_features(image_features(model, x, batch_size)).argmax(1)
    else:
        pred = clf.predict(model, x, batch_size)
    return Predictions({c: pred[where[c]] for c in sets.concepts},
                       pred[where["reference"]] if "reference" in where else None,
                       pred[where["ood"]] if "ood" in where else None)


def reference_accuracy(p: Predictions, sets: EvalSets) -> float | None:
    return None if p.reference is None else _pct(p.reference == sets.reference_labels)


def concept_metrics(p: Predictions, sets: EvalSets, concept: str) -> dict:
    """``target_acc``, ``other_to_target``, ``reference_to_target`` (%) of ``concept`` under ``p``."""
    j = sets.concepts.index(concept)
    others = [p.target[c] for c in sets.concepts if c != concept] + ([p.ood] if p.ood is not None else [])
    other = torch.cat(others) if others else torch.empty(0, dtype=torch.long)
    return {"target_acc": _pct(p.target[concept] == j),
            "other_to_target": _pct(other == j),
            "reference_to_target": None if p.reference is None else _pct(p.reference == j),
            "n_target": int(p.target[concept].numel()), "n_other": int(other.numel())}


def confusion(p: Predictions, sets: EvalSets) -> dict:
    """Counts: rows = image groups (each concept's target images, ``ood``, ``reference``),
    columns = predicted concept or ``known`` (any reference class)."""
    cols = sets.concepts + [KNOWN]
    nc = len(sets.concepts)

    def row(pred):
        return [int((pred == j).sum()) for j in range(nc)] + [int((pred >= nc).sum())]

    groups = [(c, p.target[c]) for c in sets.concepts]
    groups += [(g, x) for g, x in (("ood", p.ood), ("reference", p.reference)) if x is not None]
    return {"rows": [g for g, _ in groups], "cols": cols, "counts": [row(x) for _, x in groups]}


# ---------------------------------------------------------------------- fine-tuned runs
def finetuned_rows(finetuned) -> tuple[list, dict]:
    """``(rows, info)``: the run's ``(concept, lr, path)`` rows and ``{"protocol", "run"}``."""
    from medkt.transfer.outputs import Finetuned, list_finetuned, read_run, run_protocol
    path = Path(finetuned)
    if path.is_file():
        import json

        from medkt.transfer.state import read_meta
        meta = read_meta(path)
        cfg = json.loads(meta.get("config", "{}") or "{}")
        lr = meta.get("lr", cfg.get("lr"))
        concepts = json.loads(meta.get("concepts", "[]") or "[]")
        if not concepts:
            raise InputError("this weights file does not name its concepts.", path=str(path),
                             hint="pass the transfer run folder instead of the file")
        rows = [Finetuned(c, float(lr) if lr is not None else None, path) for c in concepts]
        return rows, {"protocol": "joint" if len(concepts) > 1 else "per-concept", "run": {}}
    rows = list_finetuned(path)
    return rows, {"protocol": run_protocol(path), "run": read_run(path)}


def model_from_run(run: dict) -> str | None:
    """The model spec a transfer run recorded in run.json (``None`` if absent)."""
    m = run.get("model")
    if isinstance(m, dict):
        return m.get("spec") or m.get("name")
    return m if isinstance(m, str) else None


def _text_unchanged(work, base) -> bool:
    """True if ``work``'s text-side parameters equal ``base``'s (the class embeddings can be reused)."""
    try:
        a, b = work.parameters_of("text", "logit_scale"), base.parameters_of("text", "logit_scale")
    except (NotImplementedError, ConfigError):
        return False
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------------- selection
def select_lr(results: list[dict], base: dict, max_forgetting: float) -> list[dict]:
    """Per concept, the largest lr whose ``reference_drop`` is at most ``max_forgetting`` points.

    Uses only the reference set.  A concept with no such lr keeps the original model
    (``lr: null``, base numbers, ``reference_drop`` 0).
    """
    out = []
    for concept in base["concepts"]:
        ok = [r for r in results if r["concept"] == concept and r.get("reference_drop") is not None
              and r["reference_drop"] <= max_forgetting + 1e-9 and r["lr"] is not None]
        keys = ("target_acc", "reference_acc", "reference_drop", "other_to_target")
        if ok:
            best = max(ok, key=lambda r: r["lr"])
            out.append({"concept": concept, "lr": best["lr"], **{k: best[k] for k in keys}})
        else:
            b = base["concepts"][concept]
            out.append({"concept": concept, "lr": None, "target_acc": b["target_acc"],
                        "reference_acc": base["reference_acc"], "reference_drop": 0.0,
                        "other_to_target": b["other_to_target"],
                        "note": f"no lr keeps the reference drop within {max_forgetting:g} points; "
                                "the original model is kept"})
    return out


def mean_of(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


# ---------------------------------------------------------------------- the API
def zeroshot(model=None, *, target, reference=None, ood=None, finetuned=None, max_forgetting: float | None = None,
             templates=None, concepts=None, weights: str | None = None, device: str = "cpu",
             batch_size: int = 256, out=None, plot=None) -> dict:
    """Zero-shot report of ``model`` and of every fine-tune in ``finetuned`` (see module doc).

    ``model``: a model spec/name (built with ``weights``/``device``), a model object (not
    modified), or ``None`` to use the one recorded in the run's run.json.  ``finetuned``:
    a transfer run folder (or one weights file).  ``templates``: set names and/or templates
    (default: the model's own).  ``concepts``: learned concept names (default: the run's,
    else the target folders).  ``max_forgetting``: points; fills ``selected``.  ``out``:
    write the JSON report there; ``plot``: write the Fig. 4-style PNG there.
    """
    from medkt.models import create_model
    from medkt.transfer.state import load_finetuned, restore, state_of
    t0 = time.time()
    rows, info = finetuned_rows(finetuned) if finetuned is not None else ([], {"protocol": None, "run": {}})
    if model is None:
        model = model_from_run(info["run"])
        if model is None:
            raise ConfigError("no model given and the run does not record one.",
                              hint="pass --model NAME (the model the run was trained from)")
    base = create_model(model, weights=weights, device=device) if isinstance(model, str) else model
    if max_forgetting is not None and reference is None:
        raise ConfigError("--max-forgetting needs --reference (the drop is measured on the reference set).")
    if concepts is None and rows:
        concepts = list(dict.fromkeys(r.concept for r in rows))
    elif isinstance(concepts, str):
        concepts = _concept_names(concepts)
    sets = load_sets(target, reference, ood, base.image_size, concepts)
    base.eval()
    clf = ZeroShotClassifier.build(base, sets.label_set, templates)

    def metrics_of(p: Predictions) -> dict:
        return {"reference_acc": reference_accuracy(p, sets),
                "concepts": {c: concept_metrics(p, sets, c) for c in sets.concepts},
                "confusion": confusion(p, sets)}

    base_rep = metrics_of(predict_sets(base, clf, sets, batch_size))
    results: list[dict] = []
    if rows:
        work = copy.deepcopy(base)
        snapshot = state_of(work)
        for path in dict.fromkeys(r.path for r in rows):
            restore(work, snapshot)
            load_finetuned(work, path)
            work.eval()
            wclf = clf if _text_unchanged(work, base) else ZeroShotClassifier.build(work, sets.label_set, templates)
            m = metrics_of(predict_sets(work, wclf, sets, batch_size))
            for r in (r for r in rows if r.path == path):
                c = next((x for x in sets.concepts if _slug(x) == _slug(r.concept)), None)
                if c is None:
                    continue
                drop = (None if m["reference_acc"] is None
                        else base_rep["reference_acc"] - m["reference_acc"])
                results.append({"concept": c, "lr": r.lr, **{k: v for k, v in m["concepts"][c].items()},
                                "reference_acc": m["reference_acc"], "reference_drop": drop,
                                "confusion": m["confusion"], "weights": str(path)})
    report = {
        "schema": SCHEMA,
        "model": {k: v for k, v in base.describe().items() if k in ("name", "family", "weights", "image_size")},
        "templates": {"label": clf.templates_label, "templates": clf.templates,
                      "source": "given" if templates else "model default"},
        "finetuned": None if finetuned is None else str(finetuned),
        "protocol": info["protocol"],
        "concepts": sets.concepts, "reference_classes": sets.reference_classes, "label_set": sets.label_set,
        "n_images": {"target": {c: len(x) for c, x in sets.target.items()},
                     "reference": 0 if sets.reference is None else len(sets.reference),
                     "ood": 0 if sets.ood is None else len(sets.ood)},
        "lrs": sorted({r["lr"] for r in results if r["lr"] is not None}),
        "base": base_rep, "results": results, "max_forgetting": max_forgetting, "selected": None,
    }
    if max_forgetting is not None and results:
        sel = select_lr(results, base_rep, float(max_forgetting))
        report["selected"] = sel
        report["selected_mean"] = {k: mean_of(sel, k) for k in
                                   ("target_acc", "reference_acc", "reference_drop", "other_to_target")}
    if plot is not None and results:
        from medkt.evaluation.display import plot_report
        plot_report(report, plot)
        report["plot"] = str(plot)
    report["seconds"] = round(time.time() - t0, 2)
    if out is not None:
        from medkt.runs import atomic_write_json
        atomic_write_json(out, report)
    return report


def _concept_names(spec: str) -> list[str]:
    """``--concepts``: a comma list of names, or a concept set (name or YAML)."""
    if "," in spec:
        return [s.strip() for s in spec.split(",") if s.strip()]
    from medkt.transfer.concepts import load_concepts
    try:
        return load_concepts(spec).names
    except ConfigError:
        return [spec]
