"""Knowledge Transfer on a Ray cluster: ``medkt transfer --executor ray``.

The per-concept protocol is independent per concept: each concept's images come from its own
seeds (run seed, concept name, index) and each fine-tune starts from the original weights.  So
the driver hands out one job per concept (:func:`medkt.transfer.protocol.concept_job`: that
concept's inversion, then its fine-tune at every lr) to Ray actors, one per worker, each of which
loads the model once.  Workers write into the same output layout as a local run (``--out`` must
be on a file system every node sees); the driver gathers the results and writes ``run.json``.

Equality with a local run: every concept is inverted in its own batch, as a local run does with
``--batch-images`` equal to the images per concept, and then the images and weight deltas are
bit-identical (tested).  A local run's default batch (all concepts at once) gives the same images up to float
rounding.  ``--joint`` trains one model for the whole set, so there is nothing to spread.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from medkt.errors import ConfigError, MedktError, ResumeMismatchError


class RemoteConceptError(MedktError):
    """Concepts failed on Ray workers; the message lists each with the worker's reason."""


class _TransferActor:
    """Ray actor body: loads the model once (from its name/spec, or a copy of the driver's object)."""

    def __init__(self, model, weights, device, threads: int | None):
        if threads:
            torch.set_num_threads(int(threads))
        from medkt.transfer.inversion import weights_digest
        from medkt.transfer.protocol import resolve_model
        self.model = resolve_model(model, weights=weights, device=device)
        self.digest = weights_digest(self.model)

    def run(self, one, job: dict) -> tuple[str, str, Any]:
        """``one``: a :class:`ConceptSet` of one concept → ``(name, "ok" | "failed", result | reason)``."""
        from medkt.batch import _one_line
        from medkt.transfer.protocol import concept_job
        concept = one[0]
        try:
            if self.digest != job["digest"]:
                raise ResumeMismatchError(f"this worker loaded other weights than the driver (sha256 {self.digest[:12]}"
                                          f"… here, {job['digest'][:12]}… there).",
                                          hint="give every node the same weights file or cache")
            job = dict(job, out=None if job["out"] is None else Path(job["out"]))
            inv, kind, fts, timings = concept_job(self.model, one, **job)
        except MedktError as e:
            return concept.name, "failed", e.format()
        except Exception as e:  # noqa: BLE001 - the driver reports every failed concept at the end
            return concept.name, "failed", _one_line(e)
        inv.images = inv.images.cpu()
        return concept.name, "ok", (inv, kind, fts, timings)


def merge_inversions(parts: Sequence, concepts: Sequence):
    """One :class:`InversionResult` in ``concepts`` order from per-concept results."""
    from medkt.transfer.inversion import InversionResult
    by = {p.concepts[0].name: p for p in parts}
    ordered = [by[c.name] for c in concepts]

    def cat(attr):
        vals = [getattr(p, attr) for p in ordered]
        return None if any(v is None for v in vals) else torch.cat(vals)
    work: dict[int, int] = {}
    for p in ordered:
        for size, n in p.work.items():
            work[size] = work.get(size, 0) + n
    return InversionResult(
        images=torch.cat([p.images for p in ordered]),
        concept_names=[n for p in ordered for n in p.concept_names],
        captions=[t for p in ordered for t in p.captions], concepts=list(concepts), layer=ordered[0].layer,
        score=cat("score"), initial_score=cat("initial_score"),
        history={k: v for p in ordered for k, v in p.history.items()},
        seconds=sum(p.seconds for p in ordered), resumed=[n for p in ordered for n in p.resumed],
        reused_from={k: v for p in ordered for k, v in p.reused_from.items()}, work=work,
        steps_run=cat("steps_run"))


def run_on_ray(model, cset, job: dict, *, weights=None, device=None, address: str | None = None,
               workers: int = 2, gpus_per_worker: float = 0.0, threads: int | None = 1):
    """Run :func:`~medkt.transfer.protocol.concept_job` per concept on Ray actors.

    ``model``: a name/spec (each worker loads it) or a model object (shipped to the workers).
    ``address``: ``None`` starts a local Ray instance; ``"auto"`` / ``"ray://host:port"`` joins a
    cluster.  Returns ``(inversion, kind, fine-tunes, timings)`` as ``concept_job`` does, with the
    concepts in set order and the workers' stage seconds summed.  Raises
    :class:`RemoteConceptError` after all jobs ran if any concept failed (finished concepts stay
    saved: ``--resume`` redoes only the failed ones).
    """
    if job["protocol"] != "per-concept":
        raise ConfigError("--executor ray spreads the per-concept protocol (one job per concept); --joint trains "
                          "one model for the whole set.", hint="drop --executor ray, or drop --joint")
    from medkt.cluster import import_ray, start_ray
    ray = import_ray("--executor ray")
    started = start_ray(ray, address)
    from ray.util import ActorPool
    job = dict(job, out=None if job["out"] is None else str(job["out"]), progress=False)
    actor = ray.remote(_TransferActor).options(num_cpus=1, num_gpus=gpus_per_worker)
    n = max(1, min(int(workers), len(cset)))
    actors = [actor.remote(model, weights, device or "cpu", threads) for _ in range(n)]
    try:
        pool = ActorPool(actors)
        results = list(pool.map_unordered(lambda a, c: a.run.remote(cset.subset([c.name]), job), list(cset)))
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
    failed = [(name, payload) for name, status, payload in results if status != "ok"]
    if failed:
        raise RemoteConceptError("; ".join(f"{name}: {why}" for name, why in failed),
                                 hint="fix the cause, then rerun with --resume (finished concepts are kept)")
    done = {name: payload for name, _, payload in results}
    ordered = [done[c.name] for c in cset]
    kinds = {k for _, k, _, _ in ordered}
    timings = {"inversion_s": 0.0, "finetune_s": 0.0}
    for _, _, _, t in ordered:
        for k, v in t.items():
            timings[k] += v
    fts = [ft for _, _, f, _ in ordered for ft in f]
    return merge_inversions([p[0] for p in ordered], list(cset)), kinds.pop(), fts, timings

