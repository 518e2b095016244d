"""Experiment configs: one YAML per paper table in ``configs/experiments/``.

An experiment names a model, the datasets it reads (by alias), one or more *groups* (a
group is one Knowledge-Transfer problem: the concepts to learn, the target set and the
reference set used to check forgetting), the learning-rate sweep, per-task options, and
the paper's reference numbers.  A run evaluates the baseline model, then KT at each
learning rate of the sweep::

    cfg = load_experiment("configs/experiments/table1_rare_concepts.yaml",
                          overrides=["model=tiny-clip", "sweep.lrs=[1e-5]"])

Dataset roots are relative to ``--data-root`` (or absolute).  Paper rows carry the
paper's numbers in percent exactly as printed; ``run`` is ``baseline`` or a learning rate
of the sweep; ``model`` says which paper model the row belongs to (``paper_model``
selects the rows shown next to the measured numbers).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medkt.config import from_dict, to_dict
from medkt.errors import ConfigError
from medkt.metrics.segmentation import SegMetricConfig

TASKS = ("classification", "retrieval", "captioning", "segmentation")


@dataclass
class DataSpec:
    """A dataset: registered adapter name, root folder (relative to --data-root), limit, options."""

    adapter: str = ""
    root: str = ""
    limit: int | None = None
    options: dict = field(default_factory=dict)


@dataclass
class GroupSpec:
    """One KT problem: concepts to learn, the target / reference data, its own prompt and lr scale."""

    name: str = ""
    concepts: list[str] = field(default_factory=list)  # names in the concept set; empty = all
    target: str = "target"  # data alias evaluated as the target set
    reference: str | None = None  # data alias of the reference (forgetting) set
    target_classes: list[str] = field(default_factory=list)  # target accuracy over these (default: concepts)
    prompt: str | None = None  # segmentation: the M2IB text prompt
    lr_scale: float = 1.0  # effective lr = sweep lr x lr_scale (Table 2 base lrs)


@dataclass
class SweepSpec:
    lrs: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # display labels, e.g. "x1".."x5"
    batch_sizes: list[int] = field(default_factory=list)  # per-lr fine-tune batch size (Table 8)


@dataclass
class ClassificationSpec:
    templates: list[str] = field(default_factory=lambda: ["openai_imagenet"])  # set names or "...{}..."
    label_set: str = "dataset"  # dataset | dataset+reference (target classified among both label sets)
    top_k: list[int] = field(default_factory=lambda: [1, 5])
    scorer: str = "auto"  # auto | similarity | itm


@dataclass
class RetrievalSpec:
    scorer: str = "auto"  # auto | similarity (CLIP) | itm (ViLT, every image-caption pair)
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    itm_batch: int = 64


@dataclass
class CaptioningSpec:
    method: str = "greedy"
    max_len: int = 30
    metrics: list[str] = field(default_factory=lambda: ["bleu", "meteor", "rouge_l", "cider", "spice"])
    tokenizer: str = "auto"  # ptb (Java) | python | auto


@dataclass
class SegmentationSpec:
    sam: str = "sam-vit-h"
    sam_weights: str | None = None
    config: dict = field(default_factory=dict)  # medkt.segment overrides (saliency, postprocess, prompts)
    # Metric conventions: medkt.metrics' own config and defaults (nsd_tolerance, nsd_units, nsd_mode,
    # empty_policy, ...); Table 4 sets MedCLIP-SAMv2's (px, slab NSD) explicitly.
    metrics: SegMetricConfig = field(default_factory=SegMetricConfig)
    overlays: int = 10  # Figs. 6-7: the N cases KT improved most (DSC)
    save_predictions: bool = True


@dataclass
class PaperRow:
    run: Any = "baseline"  # baseline | a sweep lr | a label for rows that are not reproduced
    group: str | None = None
    model: str | None = None
    label: str = ""
    values: dict = field(default_factory=dict)  # metric -> number as printed (percent)


@dataclass
class PaperSpec:
    table: str = ""
    title: str = ""
    source: str = "paper.txt"
    units: str = "%"
    note: str = ""
    rows: list[PaperRow] = field(default_factory=list)
    context: list[PaperRow] = field(default_factory=list)  # other methods in the table (not rerun)
    metric_labels: dict = field(default_factory=dict)  # metric -> label used in the report


@dataclass
class ExperimentConfig:
    name: str = ""
    table: str = ""
    description: str = ""
    task: str = "classification"
    model: str = "tiny-clip"
    weights: str | None = None
    paper_model: str | None = None  # which paper rows to show (default: model)
    device: str = "cpu"
    seed: int = 0
    batch_size: int = 16  # evaluation block size: also the sharding unit
    data: dict = field(default_factory=dict)  # alias -> DataSpec
    groups: list[GroupSpec] = field(default_factory=list)
    concepts: str = ""  # concept set for KT (medkt.transfer.load_concepts source)
    transfer_preset: str | None = "paper"
    transfer: dict = field(default_factory=dict)  # TransferConfig keys over the preset
    sweep: SweepSpec = field(default_factory=SweepSpec)
    classification: ClassificationSpec = field(default_factory=ClassificationSpec)
    retrieval: RetrievalSpec = field(default_factory=RetrievalSpec)
    captioning: CaptioningSpec = field(default_factory=CaptioningSpec)
    segmentation: SegmentationSpec = field(default_factory=SegmentationSpec)
    paper: PaperSpec = field(default_factory=PaperSpec)

    def __post_init__(self):
        self.data = {k: (v if isinstance(v, DataSpec) else from_dict(DataSpec, v or {}, prefix=f"data.{k}."))
                     for k, v in (self.data or {}).items()}
        if self.task not in TASKS:
            raise ConfigError(f"unknown task '{self.task}'; use one of {', '.join(TASKS)}.")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names) or any(not n for n in names):
            raise ConfigError("every group needs a unique, non-empty name.")
        for g in self.groups:
            for alias in (g.target, g.reference):
                if alias is not None and alias not in self.data:
                    raise ConfigError(f"group '{g.name}' names data '{alias}', which is not under 'data:'.",
                                      hint=f"data aliases: {', '.join(self.data) or '(none)'}")
        if self.sweep.labels and len(self.sweep.labels) != len(self.sweep.lrs):
            raise ConfigError("sweep.labels must have one label per learning rate.")
        if self.sweep.batch_sizes and len(self.sweep.batch_sizes) != len(self.sweep.lrs):
            raise ConfigError("sweep.batch_sizes must have one batch size per learning rate.")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1.")

    # ------------------------------------------------------------------ runs
    def runs(self) -> list["RunSpec"]:
        """Baseline first, then one KT run per sweep learning rate."""
        out = [RunSpec("baseline", None, "baseline", None)]
        for i, lr in enumerate(self.sweep.lrs):
            label = self.sweep.labels[i] if self.sweep.labels else f"KT lr {lr:g}"
            bs = self.sweep.batch_sizes[i] if self.sweep.batch_sizes else None
            out.append(RunSpec(run_id(lr), float(lr), label, bs))
        return out

    def group(self, name: str) -> GroupSpec:
        for g in self.groups:
            if g.name == name:
                return g
        raise ConfigError(f"no group '{name}'; groups: {', '.join(g.name for g in self.groups)}")

    def fingerprint(self) -> str:
        """Hash of everything that changes per-case results (not paper numbers or overlays)."""
        d = to_dict(self)
        d.pop("paper", None)
        d.get("segmentation", {}).pop("overlays", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunSpec:
    run_id: str  # "baseline" | "lr_1e-05"
    lr: float | None
    label: str
    batch_size: int | None


def run_id(lr: Any) -> str:
    """``"baseline"`` stays; a learning rate becomes ``lr_<value:g>`` (``lr_1e-05``)."""
    if lr is None or (isinstance(lr, str) and lr.strip().lower() == "baseline"):
        return "baseline"
    try:
        return f"lr_{float(lr):g}"
    except (TypeError, ValueError):
        return str(lr)


def experiments_dir() -> Path:
    from medkt.paths import config_dir
    return config_dir("experiments")


def list_experiments() -> list[str]:
    from medkt.paths import list_configs
    return list_configs("experiments")


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """``key.sub=value`` overrides on the raw config dict (values parsed as YAML).

    Unlike :func:`medkt.config.apply_overrides`, keys may be created inside the free-form
    mappings (``data.<alias>.options``, ``transfer``, ``segmentation.config``) and list items
    are addressed by index (``groups.0.prompt=...``); dataclass keys are still validated
    (with did-you-mean) when the config is built.
    """
    import copy
    from medkt.config import _parse_scalar
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value.",
                              hint="write e.g. --set model=tiny-clip --set sweep.lrs=[1e-5]")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for i, p in enumerate(parts[:-1]):
            if isinstance(node, list):
                try:
                    node = node[int(p)]
                except (ValueError, IndexError):
                    raise ConfigError(f"override '{key}': '{p}' is not an index of a {len(node)}-item list.") from None
                continue
            if not isinstance(node.get(p), (dict, list)):
                node[p] = {}
            node = node[p]
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = _parse_scalar(value)
        else:
            node[last] = _parse_scalar(value)
    return raw


MOVED_TO_METRICS = ("nsd_tolerance", "nsd_units", "nsd_mode", "empty_policy")


def load_experiment(source: str | Path | dict, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment from a YAML path, a shipped name (``table1_rare_concepts``) or a dict."""
    from medkt.config import load_yaml
    name = None
    if isinstance(source, (str, Path)):
        from medkt.paths import config_file
        source = config_file("experiments", source)
        name = Path(source).stem
        raw = load_yaml(source)
    else:
        raw = dict(source)
    try:
        raw = apply_overrides(raw, overrides)
        moved = sorted(set(raw.get("segmentation") or {}) & set(MOVED_TO_METRICS))
        if moved:
            raise ConfigError(f"segmentation.{moved[0]} is now segmentation.metrics.{moved[0]} "
                              "(medkt.metrics.SegMetricConfig, one set of defaults).",
                              hint=f"move {', '.join(moved)} under 'segmentation: metrics:' "
                                   f"(or --set segmentation.metrics.{moved[0]}=...)")
        cfg = from_dict(ExperimentConfig, raw)
    except ConfigError as e:
        if name and e.path is None:
            e.path = str(source)
            e.args = (e.format(),)
        raise
    if not cfg.name:
        cfg.name = name or "experiment"
    return cfg
