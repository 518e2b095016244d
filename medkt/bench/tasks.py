"""What travels to a pipeline worker and to its ``finalize``: typed, built once from the task spec.

Per task, two dataclasses:

* ``*Options`` — :attr:`WorkerSpec.options <medkt.bench.executors.WorkerSpec>`: what a worker needs to
  score a block (label names, templates, the prompt, the :class:`~medkt.metrics.SegMetricConfig`...).
  They cross the executor boundary as they are (they pickle for Ray like dicts do).
* ``*Context`` — what ``finalize`` needs for the set-level metrics; stored in ``manifest.json`` (as
  :func:`medkt.config.to_dict`) so that ``medkt bench merge`` rebuilds it with :func:`context_from_dict`.

Both are built by :func:`task_setup` from the experiment's task spec (:mod:`medkt.bench.experiment`:
``ClassificationSpec``, ``RetrievalSpec``, ``CaptioningSpec``, ``SegmentationSpec``), which holds the
only defaults; fields without a default here must come from the spec, so a misspelt key fails when
the config is loaded instead of silently taking a default.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from medkt.bench.common import resolve_templates
from medkt.bench.experiment import CaptioningSpec, ClassificationSpec, RetrievalSpec, SegmentationSpec
from medkt.config import from_dict
from medkt.errors import ConfigError
from medkt.metrics.segmentation import SegMetricConfig


@dataclass
class ClassificationOptions:
    labels: list[str]
    templates: list[str]  # resolved: every entry contains "{}"
    scorer: str
    itm_batch: int = 64


@dataclass
class ClassificationContext:
    set: str  # target | reference
    target_classes: list[str]
    top_k: list[int]
    seed: int


@dataclass
class RetrievalOptions:
    scorer: str
    itm_batch: int
    gallery: list[str] = field(default_factory=list)  # every caption of the evaluated images (ITM)


@dataclass
class RetrievalContext:
    ks: list[int]


@dataclass
class CaptioningOptions:
    method: str
    max_len: int


@dataclass
class CaptioningContext:
    metrics: list[str]
    tokenizer: str


@dataclass
class SegmentationOptions:
    prompt: str
    spec: SegmentationSpec  # sam, sam_weights, config (medkt.segment overrides), metrics, save_predictions


@dataclass
class SegmentationContext:
    metrics: SegMetricConfig
    seed: int


SPECS = {"classification": ClassificationSpec, "retrieval": RetrievalSpec, "captioning": CaptioningSpec,
         "segmentation": SegmentationSpec}
CONTEXTS = {"classification": ClassificationContext, "retrieval": RetrievalContext,
            "captioning": CaptioningContext, "segmentation": SegmentationContext}


def task_setup(task: str, spec, dataset, *, set_name: str = "target", labels: list[str] | None = None,
               target_classes: list[str] | None = None, prompt: str | None = None, seed: int = 0):
    """``(options, context)`` of one evaluation unit of ``task`` on ``dataset`` from its task ``spec``.

    ``labels`` (classification): the label set (default: the dataset's classes); ``set_name`` and
    ``target_classes``: which accuracy the unit reports; ``prompt`` (segmentation): the M2IB prompt.
    """
    if task == "classification":
        opts = ClassificationOptions(labels=list(labels or dataset.classes), templates=resolve_templates(spec.templates),
                                     scorer=spec.scorer)
        return opts, ClassificationContext(set_name, list(target_classes or []), list(spec.top_k), seed)
    if task == "retrieval":
        gallery = [t for case in dataset.cases for t in case.captions]
        return RetrievalOptions(spec.scorer, spec.itm_batch, gallery), RetrievalContext(list(spec.ks))
    if task == "captioning":
        return CaptioningOptions(spec.method, spec.max_len), CaptioningContext(list(spec.metrics), spec.tokenizer)
    if task == "segmentation":
        if not prompt:
            raise ConfigError("a segmentation group needs a text 'prompt'.")
        return SegmentationOptions(prompt, spec), SegmentationContext(spec.metrics, seed)
    raise ConfigError(f"unknown task '{task}'; use one of {', '.join(SPECS)}.")


def spec_from_options(task: str, options: dict):
    """The task spec from keyword options (:func:`medkt.bench.in_memory.evaluate_dataset`); unknown keys raise."""
    if task not in SPECS:
        raise ConfigError(f"unknown task '{task}'; use one of {', '.join(SPECS)}.")
    return from_dict(SPECS[task], options, prefix=f"{task}.")


def context_from_dict(task: str, data: dict):
    """Rebuild a unit context stored in ``manifest.json``."""
    return from_dict(CONTEXTS[task], data, prefix="context.")
