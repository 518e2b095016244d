"""Benchmarks: the paper's tables as experiment configs, run per dataset, sharded and merged.

Python API (the CLI ``medkt bench`` calls the same functions)::

    from medkt.bench import load_experiment, run_benchmark, merge_runs, load_dataset, list_datasets
    cfg = load_experiment("table1_rare_concepts", overrides=["model=tiny-clip"])
    res = run_benchmark(cfg, "runs/t1", data_root="/data")          # baseline + KT sweep
    res.summary["groups"]["moongate"]["lr_2e-05"]["target_acc"]
    # sharded: run_benchmark(..., num_parts=3, part_id=i) for i in 0..2, then
    merge_runs(["runs/t1"])                                          # set-level metrics here
    # Ray: run_benchmark(..., executor=make_executor("ray"))

Modules: :mod:`~medkt.bench.datasets` (adapter registry; adapters in
``adapters_classification``, ``adapters_segmentation``, ``adapters_text``),
:mod:`~medkt.bench.experiment` (config dataclasses), :mod:`~medkt.bench.runner`,
:mod:`~medkt.bench.shard`, :mod:`~medkt.bench.store`, :mod:`~medkt.bench.merge`,
:mod:`~medkt.bench.tasks` (typed worker options and finalize contexts),
:mod:`~medkt.bench.in_memory` (``evaluate_dataset``: one task on one dataset, in memory),
:mod:`~medkt.bench.report`, :mod:`~medkt.bench.plots`, :mod:`~medkt.bench.executors`,
and one module per task pipeline (``classification``, ``retrieval``, ``captioning``,
``segmentation``) with a ``Worker`` and a ``finalize``.
"""
from __future__ import annotations

from medkt._lazy import lazy_exports

_LAZY = {
    "load_dataset": "datasets", "list_datasets": "datasets", "get_adapter": "datasets",
    "register_dataset": "datasets", "Dataset": "datasets", "BenchItem": "datasets", "DatasetAdapter": "datasets",
    "ExperimentConfig": "experiment", "load_experiment": "experiment", "list_experiments": "experiment",
    "run_benchmark": "runner", "BenchResult": "runner",
    "merge_runs": "merge",
    "evaluate_dataset": "in_memory", "learn_concepts": "in_memory",
    "make_executor": "executors", "LocalExecutor": "executors", "RayExecutor": "executors",
    "render_report": "report",
    "part_blocks": "shard",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
