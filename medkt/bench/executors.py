"""Executors: where benchmark work runs.

Two kinds of work, two primitives:

* :meth:`Executor.run_jobs` — independent jobs (one KT inversion per concept): a plain loop
  locally, Ray *tasks* (``max_retries``, ``num_gpus``) on a cluster;
* :meth:`Executor.map_blocks` — evaluation blocks through a *worker* that loads its
  models once (:class:`WorkerSpec` → :func:`build_worker`): one in-process worker locally,
  a Ray *actor pool* (each actor loads the model once, then segments / classifies many
  blocks) on a cluster.

Results come back in block order, so the per-case tables do not depend on the executor.
Ray is optional (``pip install 'medkt[ray]'``); ``address=None`` starts a local Ray
instance (loopback only), ``address="auto"`` joins a running cluster.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from medkt.errors import ConfigError

log = logging.getLogger("medkt.bench")

PIPELINE_MODULES = {"classification": "medkt.bench.classification", "retrieval": "medkt.bench.retrieval",
                    "captioning": "medkt.bench.captioning", "segmentation": "medkt.bench.segmentation"}


@dataclass
class WorkerSpec:
    """Picklable recipe for a pipeline worker (everything but the cases).

    ``finetuned``: saved KT weights applied to the base model (``load_finetuned``);
    ``options``: the task's options (templates, label names, prompt, ...).
    """

    task: str
    model: str
    weights: str | None = None
    finetuned: str | None = None
    device: str = "cpu"
    seed: int = 0
    dataset: dict = field(default_factory=dict)  # Dataset.ref()
    options: dict = field(default_factory=dict)
    threads: int | None = None


def pipeline_module(task: str):
    if task not in PIPELINE_MODULES:
        raise ConfigError(f"unknown task '{task}'; use one of {', '.join(PIPELINE_MODULES)}.")
    return importlib.import_module(PIPELINE_MODULES[task])


def build_model(spec: WorkerSpec):
    """The spec's model: created by name, KT weights applied if any, in eval mode."""
    from medkt.models import create_model
    model = create_model(spec.model, weights=spec.weights, device=spec.device)
    if spec.finetuned:
        from medkt.transfer import load_finetuned
        load_finetuned(model, spec.finetuned)
    return model.eval()


def build_worker(spec: WorkerSpec, model=None):
    """A callable ``worker(cases) -> BlockResult`` for ``spec.task`` (``model``: reuse one in memory)."""
    if spec.threads:
        import torch
        torch.set_num_threads(int(spec.threads))
    return pipeline_module(spec.task).Worker(spec, model if model is not None else build_model(spec))


class Executor:
    name = "base"

    def run_jobs(self, fn: Callable, jobs: Sequence[Any]) -> list:
        raise NotImplementedError

    def map_blocks(self, spec: WorkerSpec, blocks: Sequence[list], *, model=None) -> Iterator[Any]:
        raise NotImplementedError

    @property
    def needs_saved_models(self) -> bool:
        """True when workers run in other processes (models travel as files)."""
        return False

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"executor": self.name}


class LocalExecutor(Executor):
    """Everything in this process, one block after the other."""

    name = "local"

    def run_jobs(self, fn, jobs):
        return [fn(job) for job in jobs]

    def map_blocks(self, spec, blocks, *, model=None):
        if not blocks:
            return
        worker = build_worker(spec, model)
        for cases in blocks:
            yield worker(cases)


# ---------------------------------------------------------------------- Ray
def _ray():
    from medkt.cluster import import_ray
    return import_ray("the Ray executor")


class _RayWorkerBase:
    """Actor body: builds the worker (loads the model) once, then serves blocks."""

    def __init__(self, spec: WorkerSpec):
        self.worker = build_worker(spec)

    def run(self, cases):
        return self.worker(cases)


def _run_job(fn, job):
    return fn(job)


class RayExecutor(Executor):
    """Ray tasks for jobs and an actor pool for blocks.

    ``address``: ``None`` starts a local instance (``num_cpus`` CPUs, loopback only);
    ``"auto"`` or ``"ray://host:port"`` joins a cluster.  ``num_actors``: workers in the
    pool (default: number of GPUs, else 2); ``num_gpus``: GPUs per actor / per job.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_actors: int | None = None, num_cpus: int | None = None,
                 num_gpus: float = 0.0, cpus_per_actor: float = 1.0, max_retries: int = 2,
                 threads_per_actor: int | None = 1):
        ray = _ray()
        from medkt.cluster import start_ray
        self._started = start_ray(ray, address, num_cpus)
        self.num_gpus = float(num_gpus)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.num_actors = int(num_actors or (gpus if gpus and num_gpus else 2))
        self.cpus_per_actor = cpus_per_actor
        self.max_retries = max_retries
        self.threads_per_actor = threads_per_actor
        self._actor_cls = ray.remote(_RayWorkerBase)
        self._job = ray.remote(_run_job)

    @property
    def needs_saved_models(self) -> bool:
        return True

    def run_jobs(self, fn, jobs):
        ray = _ray()
        remote = self._job.options(num_gpus=self.num_gpus, max_retries=self.max_retries)
        return ray.get([remote.remote(fn, job) for job in jobs])

    def map_blocks(self, spec, blocks, *, model=None):
        if not blocks:
            return
        from ray.util import ActorPool
        if self.threads_per_actor and not spec.threads:
            spec = WorkerSpec(**{**spec.__dict__, "threads": self.threads_per_actor})
        n = max(1, min(self.num_actors, len(blocks)))
        opts = {"num_cpus": self.cpus_per_actor, "num_gpus": self.num_gpus}
        actors = [self._actor_cls.options(**opts).remote(spec) for _ in range(n)]
        pool = ActorPool(actors)
        try:
            yield from pool.map(lambda a, cases: a.run.remote(cases), list(blocks))
        finally:
            ray = _ray()
            for a in actors:
                ray.kill(a)

    def close(self):
        if self._started:
            _ray().shutdown()
            self._started = False

    def describe(self):
        return {"executor": self.name, "num_actors": self.num_actors, "num_gpus": self.num_gpus}


def make_executor(name: str = "local", **options) -> Executor:
    """``local`` or ``ray`` (options go to :class:`RayExecutor`)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(**options)
    raise ConfigError(f"unknown executor '{name}'; use local or ray.")
