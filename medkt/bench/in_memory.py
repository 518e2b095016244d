"""One pipeline on one dataset with one model, in memory: the building block behind ``pipelines/*.py``.

::

    from medkt.bench import evaluate_dataset
    from medkt.bench.datasets import load_dataset
    from medkt.models import create_model
    ds = load_dataset("rare_concepts", "/data/RareConcepts")
    res = evaluate_dataset("classification", create_model("clip-vit-b32"), ds,
                           templates=["openai_imagenet"], target_classes=["Moongate"])
    res.metrics["target_acc"], res.rows[0]

Keyword options are the fields of the task's spec in :mod:`medkt.bench.experiment` (same
defaults as an experiment config; an unknown key raises), plus per-unit ones:

* ``classification`` — :class:`~medkt.bench.experiment.ClassificationSpec` (``templates``: set
  names or ``"...{}..."`` strings, ``scorer``, ``top_k``), ``labels`` [the dataset's classes],
  ``set`` [target], ``target_classes``;
* ``retrieval`` — :class:`~medkt.bench.experiment.RetrievalSpec` (``scorer``, ``ks``, ``itm_batch``);
* ``captioning`` — :class:`~medkt.bench.experiment.CaptioningSpec` (``method``, ``max_len``,
  ``metrics``, ``tokenizer``);
* ``segmentation`` — :class:`~medkt.bench.experiment.SegmentationSpec` (``sam``, ``config``:
  medkt.segment overrides, ``metrics``: a :class:`~medkt.metrics.SegMetricConfig` or its dict),
  ``prompt`` (required);
* every task: ``seed`` [0]; an option given as ``None`` takes the spec's default.
"""
from __future__ import annotations

from medkt.bench.common import UnitResult
from medkt.bench.datasets import Dataset
from medkt.bench.executors import Executor, LocalExecutor, WorkerSpec, pipeline_module
from medkt.bench.shard import all_blocks
from medkt.bench.tasks import spec_from_options, task_setup


def task_options(task: str, dataset: Dataset, *, labels=None, set: str = "target", target_classes=None,
                 prompt: str | None = None, seed: int = 0, **spec_options):
    """(worker options, finalize context) for ``task`` on ``dataset`` (see the module docstring);
    a ``None`` option means the spec's default."""
    spec = spec_from_options(task, {k: v for k, v in spec_options.items() if v is not None})
    return task_setup(task, spec, dataset, set_name=set, labels=labels, target_classes=target_classes,
                      prompt=prompt, seed=seed)


def evaluate_dataset(task: str, model, dataset: Dataset, *, batch_size: int = 16,
                     executor: Executor | None = None, model_name: str | None = None, seed: int = 0,
                     **options) -> UnitResult:
    """Run ``task`` on every case of ``dataset`` with ``model`` and return rows + set-level metrics.

    With a Ray executor the workers rebuild the model from ``model_name`` (registry name).
    """
    opts, ctx = task_options(task, dataset, seed=seed, **options)
    spec = WorkerSpec(task=task, model=model_name or getattr(model, "name", ""), dataset=dataset.ref(),
                      options=opts, seed=seed)
    blocks = all_blocks(len(dataset), batch_size)
    executor = executor or LocalExecutor()
    rows, arrays = [], {}
    results = executor.map_blocks(spec, [dataset.cases[b.start:b.stop] for b in blocks], model=model)
    for b, res in zip(blocks, results):
        rows += [{"index": b.start + k, **r} for k, r in enumerate(res.rows)]
        for k, v in res.arrays.items():
            arrays.setdefault(k, []).append(v)
    import numpy as np
    merged = {k: np.concatenate(v) for k, v in arrays.items()}
    return pipeline_module(task).finalize(rows, merged, ctx)


def learn_concepts(model, concepts: str, names=(), *, lr: float | None = None, preset: str | None = "paper",
                   overrides=(), progress: bool = False):
    """KT of ``names`` (default all) from concept set ``concepts`` → a fine-tuned copy of ``model``."""
    from medkt.transfer import learn, load_concepts, load_transfer_config
    cset = load_concepts(concepts)
    chosen = load_concepts([cset.get(n) for n in names]) if names else cset
    cfg = load_transfer_config(None, preset=preset, overrides=list(overrides))
    return learn(model, chosen, cfg, lr=lr, progress=progress).model
