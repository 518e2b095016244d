"""Cohorts over several machines: parts of a run, merging them, and a Ray executor.

* **Parts** (``--num-parts N --part-id I``, 0-based like nnU-Net's ``-num_parts/-part_id``): the
  discovered cases are ordered by case id and part ``I`` takes every ``N``-th one starting at
  ``I`` (:func:`select_part`).  The order does not depend on how a file system lists folders, so
  every machine computes the same split.  Each part writes a normal output folder whose
  ``run.json`` holds ``part`` (``num_parts``, ``part_id``, the number and hash of all case ids,
  and a hash of the resolved config).
* **Merge** (:func:`merge_parts`, ``medkt segment-merge PART_DIR... -o OUT``) checks that the
  folders are the parts ``0..N-1`` of one run (same config hash, same case list, each part once,
  every case finished), copies (hard-links where possible) every case folder into ``OUT`` and
  writes ``OUT/cases.csv`` in global case order and ``OUT/run.json`` (the parts' records under
  ``parts``, every case row, summed stage timings).  Per-case files are the parts' files, so a
  merged run is file-for-file the one-part run.
* **Ray** (:class:`RayCasePool`, ``--executor ray``): one actor per worker builds the models once
  (:class:`~medkt.segmentation.pipeline.Segmenter`) and segments whole cases, writing the case's
  files itself; the driver keeps the run's bookkeeping (journal, ``--resume``, ``run.json``).  On
  a multi-machine cluster the output folder must be on a file system every node sees.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from medkt.errors import ConfigError, InputError, MedktError

log = logging.getLogger("medkt.segmentation")


# ---------------------------------------------------------------------- parts
def check_part(num_parts: int, part_id: int) -> None:
    """Validate ``--num-parts`` / ``--part-id`` (0-based; joined by ``medkt segment-merge``)."""
    from medkt.cluster import check_part as _check
    _check(num_parts, part_id, "medkt segment-merge")


def ids_hash(case_ids: Sequence[str]) -> str:
    h = hashlib.sha256()
    for cid in case_ids:
        h.update(str(cid).encode() + b"\0")
    return h.hexdigest()[:16]


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def select_part(items: list, num_parts: int = 1, part_id: int = 0, case_id=lambda it: str(it.case_id)
                ) -> tuple[list, dict | None]:
    """Part ``part_id`` of ``num_parts`` of ``items`` (ordered by case id, strided) and its record.

    Returns ``(items, record)``; ``record`` is ``None`` for a one-part run.
    """
    check_part(num_parts, part_id)
    if num_parts == 1:
        return items, None
    ordered = sorted(items, key=case_id)
    ids = [case_id(it) for it in ordered]
    mine = ordered[part_id::num_parts]
    return mine, {"num_parts": num_parts, "part_id": part_id, "n_cases_total": len(ids), "cases_hash": ids_hash(ids),
                  "case_ids": [case_id(it) for it in mine]}


# ---------------------------------------------------------------------- merge
def _read_part(d: Path) -> dict:
    f = d / "run.json"
    try:
        rec = json.loads(f.read_text())
    except FileNotFoundError:
        raise InputError("not a medkt segment output folder (no run.json).", path=str(d),
                         hint="pass the -o folders of the parts") from None
    except ValueError as e:
        raise InputError(f"run.json is not valid JSON ({e}).", path=str(f)) from None
    if rec.get("command") != "segment" or "part" not in rec:
        raise InputError("this run.json is not from one part of a `medkt segment --num-parts N` run.", path=str(f),
                         hint="run every part with --num-parts N --part-id I")
    if rec.get("status") != "finished":
        raise InputError("this part has not finished (run.json status: "
                         f"{rec.get('status', 'unknown')}).", path=str(f), hint="finish it with --resume, then merge")
    return rec


def _link_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` into a new ``dst``, hard-linking files where the file system allows."""
    def copy(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
    tmp = dst.with_name(f".{dst.name}.merging")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=copy)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def merge_parts(part_dirs: Sequence[str | Path], out: str | Path, *, overwrite: bool = False) -> dict:
    """Join the output folders of parts ``0..N-1`` of one run into ``out`` (see module docstring).

    Returns the merged ``run.json`` as a dict.  Raises :class:`InputError` naming the folder and
    the problem when the parts do not make up one finished run.
    """
    from medkt.runs import atomic_write_json, prepare_output_dir, release_output_dir, write_csv
    dirs = [Path(p) for p in part_dirs]
    if not dirs:
        raise ConfigError("segment-merge needs the part folders: medkt segment-merge PART_DIR... -o OUT")
    seen: dict[Path, Path] = {}
    for d in dirs:
        if d.resolve() in seen:
            raise InputError(f"the folder was given twice ({seen[d.resolve()]} and {d}).", path=str(d))
        seen[d.resolve()] = d
    recs = {d: _read_part(d) for d in dirs}
    first_dir, first = next(iter(recs.items()))
    p0 = first["part"]
    by_id: dict[int, Path] = {}
    for d, r in recs.items():
        p = r["part"]
        for key, what in (("config_hash", "configuration"), ("cases_hash", "case list"),
                          ("num_parts", "number of parts")):
            if p.get(key) != p0.get(key):
                raise InputError(f"its {what} differs from {first_dir}'s ({p.get(key)} vs {p0.get(key)}); only "
                                 "the parts of one run can be merged.", path=str(d),
                                 hint="run every part on the same input with the same options")
        if p["part_id"] in by_id:
            raise InputError(f"part {p['part_id']} was given twice: {by_id[p['part_id']]} and {d}.", path=str(d))
        by_id[p["part_id"]] = d
    missing = sorted(set(range(p0["num_parts"])) - set(by_id))
    if missing:
        raise InputError(f"parts {', '.join(map(str, missing))} of {p0['num_parts']} are missing (0-based).",
                         hint="run them with --part-id, then merge again")
    out = Path(out)
    out_dir = prepare_output_dir(out, dirs, overwrite=overwrite)
    try:
        rows: dict[str, dict] = {}
        for pid in sorted(by_id):
            d, rec = by_id[pid], recs[by_id[pid]]
            for row in rec.get("cases", []):
                if row.get("case_id") not in rec["part"]["case_ids"]:
                    continue
                rows[row["case_id"]] = row
                src = d / row["case_id"]
                if src.is_dir():
                    _link_tree(src, out_dir / row["case_id"])
        order = sorted(rows)
        if ids_hash(sorted(cid for r in recs.values() for cid in r["part"]["case_ids"])) != p0["cases_hash"]:
            raise InputError("the parts' case lists do not add up to the run's cases.", path=str(first_dir))
        table = [rows[c] for c in order]
        timings: dict[str, float] = {}
        for r in recs.values():
            for k, v in r.get("timings", {}).items():
                if isinstance(v, (int, float)):
                    timings[k] = timings.get(k, 0.0) + v
        merged = {k: v for k, v in first.items() if k not in ("part", "cases", "failures", "timings", "invocations",
                                                               "slices", "sensitivity", "summary", "started")}
        merged.update({
            "status": "finished", "merged_from": [str(by_id[i]) for i in sorted(by_id)],
            "parts": [{"part_id": i, "folder": str(by_id[i]), "started": recs[by_id[i]].get("started"),
                       "environment": recs[by_id[i]].get("environment"), "timings": recs[by_id[i]].get("timings"),
                       "invocations": recs[by_id[i]].get("invocations")} for i in sorted(by_id)],
            "timings": timings, "cases": table,
            "failures": [{"case_id": r["case_id"], "reason": r.get("reason", "")}
                         for r in table if r.get("status") == "failed"],
            "slices": {k: v for r in recs.values() for k, v in r.get("slices", {}).items()},
            "sensitivity": {k: v for r in recs.values() for k, v in r.get("sensitivity", {}).items()}})
        if any("dsc" in r for r in table):
            from medkt.segmentation.api import _summary
            merged["summary"] = _summary(table)
            atomic_write_json(out_dir / "summary.json", merged["summary"])
        write_csv(out_dir / "cases.csv", table)
        atomic_write_json(out_dir / "run.json", merged)
    finally:
        release_output_dir(out_dir)
    return merged


# ---------------------------------------------------------------------- Ray
class RemoteCaseError(MedktError):
    """A case failed inside a Ray worker; the message is the worker's one-line reason."""


def _ray():
    from medkt.cluster import import_ray
    return import_ray("--executor ray")


class _SegmentActor:
    """Ray actor body: loads the models once, then segments whole cases."""

    def __init__(self, cfg, device: str, finetuned, out_dir, gt_index, keep_arrays: bool, threads: int | None):
        if threads:
            import torch
            torch.set_num_threads(int(threads))
        from medkt.segmentation.cases import CaseRunner
        from medkt.segmentation.pipeline import Segmenter
        seg = Segmenter(cfg, device=device, finetuned=finetuned)
        self.info = seg.describe()  # before the text encoder is released (its parameter count)
        seg.release_text_encoder([cfg.prompt])
        self.runner = CaseRunner(seg, cfg, cfg.prompt, None if out_dir is None else Path(out_dir), gt_index,
                                 keep_arrays)

    def describe(self) -> tuple[dict, Any, str]:
        """``(models' description, prompt token count, model name)`` for the driver's run.json."""
        from medkt.segmentation.prompt_checks import prompt_token_count
        seg = self.runner.seg
        return self.info, prompt_token_count(seg.model, self.runner.prompt), getattr(seg.model, "name", "?")

    def run(self, item) -> tuple[str, str, Any]:
        from medkt.batch import _one_line
        cid = str(item.case_id)
        try:
            out = self.runner.run_case(item)
        except MedktError as e:
            return cid, "failed", e.format()
        except Exception as e:  # noqa: BLE001 - the driver records the case as failed and goes on
            return cid, "failed", _one_line(e)
        if self.runner.out_dir is not None and not self.runner.keep_arrays:
            out.volume = None  # do not ship the input volume back to the driver
        return cid, "ok", out


class RayCasePool:
    """Segments cases on Ray actors (one per worker, each loads the models once).

    ``address``: ``None`` starts a local Ray instance (loopback only, ``num_cpus`` CPUs);
    ``"auto"`` or ``"ray://host:port"`` joins a cluster.  ``workers``: number of actors;
    ``cpus_per_worker`` / ``gpus_per_worker``: Ray resources per actor; ``threads``: torch threads
    per actor.  :meth:`submit` queues cases; :meth:`result` returns one case's
    :class:`~medkt.segmentation.cases.CaseOutput` (or raises :class:`RemoteCaseError`).
    """

    def __init__(self, cfg, *, device: str = "cpu", finetuned=None, out_dir=None, gt_index=None,
                 keep_arrays: bool = False, address: str | None = None, workers: int = 2, num_cpus: int | None = None,
                 cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, threads: int | None = 1):
        ray = _ray()
        from medkt.cluster import start_ray
        self._started = start_ray(ray, address, num_cpus)
        from ray.util import ActorPool
        actor = ray.remote(_SegmentActor).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)
        self.workers = max(1, int(workers))
        self._actors = [actor.remote(cfg, device, finetuned, None if out_dir is None else str(out_dir), gt_index,
                                     keep_arrays, threads) for _ in range(self.workers)]
        self._pool = ActorPool(self._actors)
        self._done: dict[str, tuple] = {}
        self._queued = 0

    def submit(self, items: Sequence) -> None:
        for it in items:
            self._pool.submit(lambda a, v: a.run.remote(v), it)
            self._queued += 1

    def result(self, item):
        cid = str(item.case_id)
        while cid not in self._done:
            if not self._pool.has_next():
                raise RuntimeError(f"case {cid} was never submitted to the Ray pool")
            got = self._pool.get_next_unordered()
            self._done[got[0]] = got
        _, status, payload = self._done.pop(cid)
        if status != "ok":
            raise RemoteCaseError(payload)
        return payload

    def describe(self) -> dict:
        return {"executor": "ray", "workers": self.workers}

    def model_info(self) -> tuple[dict, Any, str]:
        """What the first worker loaded: see :meth:`_SegmentActor.describe`."""
        return _ray().get(self._actors[0].describe.remote())

    def close(self) -> None:
        ray = _ray()
        for a in self._actors:
            ray.kill(a)
        self._actors = []
        if self._started:
            ray.shutdown()
            self._started = False
