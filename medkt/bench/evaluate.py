"""One pipeline on one dataset with one model, in memory: the building block behind ``pipelines/*.py``.

::

    from medkt.bench.evaluate import evaluate_dataset
    from medkt.bench.datasets import load_dataset
    from medkt.models import create_model
    ds = load_dataset("rare_concepts", "/data/RareConcepts")
    res = evaluate_dataset("classification", create_model("clip-vit-b32"), ds,
                           templates=["openai_imagenet"], target_classes=["Moongate"])
    res.metrics["target_acc"], res.rows[0]

Tasks and their keyword options (defaults in brackets):

* ``classification`` — ``labels`` [the dataset's classes], ``templates`` [``["photo"]``: set
  names or ``"...{}..."`` strings], ``scorer`` [auto], ``set`` [target], ``target_classes``;
* ``retrieval`` — ``scorer`` [auto], ``ks`` [(1, 5, 10)], ``itm_batch`` [64];
* ``captioning`` — ``method`` [greedy], ``max_len`` [30], ``metrics``, ``tokenizer`` [auto];
* ``segmentation`` — ``prompt`` (required), ``sam`` [sam-vit-b], ``config`` (medkt.segment
  overrides), ``nsd_tolerance`` [2], ``nsd_units`` [px], ``nsd_mode`` [surface].
"""
from __future__ import annotations

from medkt.bench.common import UnitResult, resolve_templates
from medkt.bench.datasets import Dataset
from medkt.bench.executors import Executor, LocalExecutor, WorkerSpec, pipeline_module
from medkt.bench.shard import all_blocks


def task_options(task: str, dataset: Dataset, **kw) -> tuple[dict, dict]:
    """(worker options, finalize context) for ``task`` on ``dataset`` from keyword options."""
    if task == "classification":
        labels = list(kw.get("labels") or dataset.classes)
        opts = {"labels": labels, "templates": resolve_templates(kw.get("templates") or ["photo"]),
                "scorer": kw.get("scorer", "auto"), "itm_batch": kw.get("itm_batch", 64)}
        ctx = {"set": kw.get("set", "target"), "target_classes": list(kw.get("target_classes") or []),
               "top_k": list(kw.get("top_k", [1, 5])), "seed": kw.get("seed", 0)}
    elif task == "retrieval":
        opts = {"scorer": kw.get("scorer", "auto"), "itm_batch": kw.get("itm_batch", 64),
                "gallery": [t for c in dataset.cases for t in c.captions]}
        ctx = {"ks": list(kw.get("ks", (1, 5, 10)))}
    elif task == "captioning":
        opts = {"method": kw.get("method", "greedy"), "max_len": kw.get("max_len", 30)}
        ctx = {"metrics": kw.get("metrics"), "tokenizer": kw.get("tokenizer", "auto")}
    else:
        keys = ("nsd_tolerance", "nsd_units", "nsd_mode", "empty_policy")
        opts = {"prompt": kw.get("prompt"), "config": kw.get("config") or {}, "sam": kw.get("sam", "sam-vit-b"),
                "sam_weights": kw.get("sam_weights"), "save_predictions": kw.get("save_predictions", False),
                **{k: kw[k] for k in keys if k in kw}}
        ctx = {k: kw[k] for k in keys if k in kw} | {"seed": kw.get("seed", 0)}
    return opts, ctx


def evaluate_dataset(task: str, model, dataset: Dataset, *, batch_size: int = 16,
                     executor: Executor | None = None, model_name: str | None = None, **options) -> UnitResult:
    """Run ``task`` on every case of ``dataset`` with ``model`` and return rows + set-level metrics.

    With a Ray executor the workers rebuild the model from ``model_name`` (registry name).
    """
    opts, ctx = task_options(task, dataset, **options)
    spec = WorkerSpec(task=task, model=model_name or getattr(model, "name", ""), dataset=dataset.ref(),
                      options=opts, seed=options.get("seed", 0))
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
