"""``medkt bench CONFIG``: the baseline, then Knowledge Transfer over the learning-rate sweep.

One call runs one part (``num_parts``/``part_id``) of an experiment::

    from medkt.bench import load_experiment, run_benchmark
    cfg = load_experiment("table4_segmentation", overrides=["model=tiny-clip"])
    res = run_benchmark(cfg, "runs/table4", data_root="/data", num_parts=1, part_id=0)
    res.summary["groups"]["breast"]["lr_1e-05"]["dsc"]

For every group and run the work is split into *units* (``<run>/<group>/<set>``, set =
target | reference); each unit's cases are cut into blocks (``batch_size``) and this
part processes its share of blocks (:mod:`medkt.bench.shard`).  Finished blocks are
skipped with ``resume=True``; KT inversions and fine-tuned weights are cached under
``kt_dir`` and reused.  An unsharded run merges itself at the end; sharded runs are
merged with :func:`medkt.bench.merge.merge_runs` (``medkt bench merge``).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medkt.bench import store
from medkt.bench.datasets import Dataset, load_dataset
from medkt.bench.executors import Executor, LocalExecutor, WorkerSpec
from medkt.bench.experiment import ExperimentConfig, GroupSpec, RunSpec
from medkt.bench.shard import all_blocks, check_part, manifest_hash, part_blocks
from medkt.bench.tasks import task_setup
from medkt.config import to_dict
from medkt.errors import ConfigError, OutputError
from medkt.outdir import lock_output_dir
from medkt.runs import RunRecord, atomic_write, atomic_write_json, check_not_inside_inputs, seed_everything

log = logging.getLogger("medkt.bench")


@dataclass
class Unit:
    """One evaluation unit: a (run, group, set) and the options its worker needs."""

    key: str
    run: RunSpec
    group: GroupSpec
    set: str
    alias: str
    dataset: Dataset
    options: Any  # a *Options dataclass of medkt.bench.tasks
    context: Any  # a *Context dataclass of medkt.bench.tasks

    @property
    def signature(self) -> str:
        """Identical signatures give identical results (baseline units shared by groups)."""
        if self.run.lr is not None:
            return self.key
        return json.dumps([self.alias, to_dict(self.options)], sort_keys=True, default=str)


@dataclass
class BenchResult:
    out_dir: Path
    part_dir: Path
    summary: dict | None = None
    record: dict = field(default_factory=dict)


def resolve_root(root: str, data_root: str | Path | None) -> Path:
    p = Path(os.path.expandvars(root)).expanduser()
    if p.is_absolute():
        return p
    base = data_root or os.environ.get("MEDKT_DATA") or "."
    return Path(base).expanduser() / p


def load_data(cfg: ExperimentConfig, aliases, data_root=None) -> dict[str, Dataset]:
    out = {}
    for alias in aliases:
        spec = cfg.data[alias]
        out[alias] = load_dataset(spec.adapter, resolve_root(spec.root, data_root), limit=spec.limit,
                                  options=spec.options)
    return out


def set_names(cfg: ExperimentConfig, group: GroupSpec) -> list[tuple[str, str]]:
    sets = [("target", group.target)]
    if cfg.task == "classification" and group.reference:
        sets.append(("reference", group.reference))
    return sets


def unit_options(cfg: ExperimentConfig, group: GroupSpec, set_name: str, alias: str,
                 data: dict[str, Dataset]):
    """(worker options, finalize context) of one unit: dataclasses of :mod:`medkt.bench.tasks`."""
    ds = data[alias]
    labels = None
    if cfg.task == "classification":
        labels = list(ds.classes)
        if set_name == "target" and cfg.classification.label_set == "dataset+reference" and group.reference:
            labels += [x for x in data[group.reference].classes if x not in labels]
    return task_setup(cfg.task, getattr(cfg, cfg.task), ds, set_name=set_name, labels=labels,
                      target_classes=list(group.target_classes or group.concepts), prompt=group.prompt,
                      seed=cfg.seed)


def plan_units(cfg: ExperimentConfig, data: dict[str, Dataset], groups: list[GroupSpec],
               runs: list[RunSpec]) -> list[Unit]:
    units = []
    for g in groups:
        for r in runs:
            for set_name, alias in set_names(cfg, g):
                opts, ctx = unit_options(cfg, g, set_name, alias, data)
                units.append(Unit(f"{r.run_id}/{g.name}/{set_name}", r, g, set_name, alias, data[alias], opts, ctx))
    return units


def select(cfg: ExperimentConfig, groups=None, runs=None) -> tuple[list[GroupSpec], list[RunSpec]]:
    gs = [cfg.group(n) for n in groups] if groups else list(cfg.groups)
    all_runs = cfg.runs()
    if runs:
        known = {r.run_id: r for r in all_runs}
        bad = [x for x in runs if x not in known]
        if bad:
            raise ConfigError(f"unknown run(s) {', '.join(bad)}; runs: {', '.join(known)}.")
        all_runs = [r for r in all_runs if r.run_id in runs]
    if not gs:
        raise ConfigError("the experiment has no groups.")
    return gs, all_runs


def _prepare(cfg: ExperimentConfig, out: Path, part_dir: Path, roots: list[Path], *, resume: bool,
             overwrite: bool) -> None:
    check_not_inside_inputs(out, roots)
    resolved = out / "config.resolved.yaml"
    if resolved.exists() and not overwrite:
        old = yaml.safe_load(resolved.read_text()) or {}
        if old.get("_fingerprint") != cfg.fingerprint():
            raise OutputError(f"{out} holds results of a different configuration.",
                              hint="choose a new output folder, or pass --overwrite to replace them")
    if part_dir.exists() and any(part_dir.iterdir()):
        if overwrite:
            shutil.rmtree(part_dir)
        elif not resume:
            raise OutputError(f"{part_dir} already holds results.",
                              hint="pass --resume to finish it, --overwrite to replace it, or a new folder")
    part_dir.mkdir(parents=True, exist_ok=True)
    lock_output_dir(part_dir)  # one run per part folder: a second run into it is refused, naming the holder
    text = yaml.safe_dump({**to_dict(cfg), "_fingerprint": cfg.fingerprint()}, sort_keys=False)
    atomic_write(resolved, text)
    atomic_write(part_dir / "config.resolved.yaml", text)


def run_benchmark(cfg: ExperimentConfig, out: str | Path, *, data_root: str | Path | None = None,
                  num_parts: int = 1, part_id: int = 0, resume: bool = False, overwrite: bool = False,
                  executor: Executor | None = None, groups: list[str] | None = None,
                  runs: list[str] | None = None, kt_dir: str | Path | None = None, merge: bool = True,
                  progress: bool = False) -> BenchResult:
    """Run part ``part_id`` of ``num_parts`` of experiment ``cfg`` into ``out`` (see module docstring)."""
    check_part(num_parts, part_id)
    executor = executor or LocalExecutor()
    out = Path(out)
    part_dir = out / "parts" / store.part_name(part_id, num_parts)
    gs, rs = select(cfg, groups, runs)
    aliases = list(dict.fromkeys(a for g in gs for _, a in set_names(cfg, g)))
    data = load_data(cfg, aliases, data_root)
    _prepare(cfg, out, part_dir, [d.root for d in data.values()], resume=resume, overwrite=overwrite)
    seed_everything(cfg.seed)
    record = RunRecord("bench", config=to_dict(cfg), seed=cfg.seed)
    record.extra.update({"part_id": part_id, "num_parts": num_parts, **executor.describe()})
    units = plan_units(cfg, data, gs, rs)
    manifest = {"experiment": cfg.name, "fingerprint": cfg.fingerprint(), "num_parts": num_parts,
                "part_id": part_id, "block_size": cfg.batch_size, "task": cfg.task,
                "groups": [g.name for g in gs], "runs": [r.run_id for r in rs], "units": {}}
    for u in units:
        ids = [c.case_id for c in u.dataset.cases]
        manifest["units"][u.key] = {"run": u.run.run_id, "group": u.group.name, "set": u.set, "alias": u.alias,
                                    "n_cases": len(ids), "n_blocks": len(all_blocks(len(ids), cfg.batch_size)),
                                    "cases": manifest_hash(ids), "dataset": u.dataset.ref(), "context": to_dict(u.context)}
    atomic_write_json(part_dir / "manifest.json", manifest)
    kt = KnowledgeTransfer(cfg, out if kt_dir is None else Path(kt_dir), executor, progress) \
        if any(r.lr is not None for r in rs) else None
    pending = {u.key: [b for b in part_blocks(len(u.dataset), cfg.batch_size, num_parts, part_id)
                       if not store.block_done(store.unit_dir(part_dir, u.key), b)] for u in units}
    if kt is not None:
        with record.timer("inversion_s"):
            kt.invert_all([u.group for u in units if u.run.lr is not None and pending[u.key]])
    memo: dict[str, Path] = {}
    with record.timer("evaluation_s"):
        for g in gs:
            for r in rs:
                _run_group(cfg, [u for u in units if u.group is g and u.run is r], pending, part_dir,
                           executor, kt, memo, record)
    record.write(part_dir)
    atomic_write_json(part_dir / "done.json", {"part_id": part_id, "num_parts": num_parts,
                                               "fingerprint": cfg.fingerprint()})
    result = BenchResult(out, part_dir, record=record.as_dict())
    if merge and num_parts == 1:
        from medkt.bench.merge import merge_runs
        result.summary = merge_runs([out], out=out)
    return result


def _run_group(cfg, units, pending, part_dir, executor, kt, memo, record) -> None:
    try:
        _run_units(cfg, units, pending, part_dir, executor, kt, memo)
    finally:
        if kt is not None:
            kt.release()


def _run_units(cfg, units, pending, part_dir, executor, kt, memo) -> None:
    model = finetuned = None
    for u in units:
        udir = store.unit_dir(part_dir, u.key)
        src = memo.get(u.signature)
        todo = pending[u.key]
        if src is not None and src != udir:
            for b in todo:
                store.copy_block(src, udir, b)
            continue
        memo[u.signature] = udir
        if not todo:
            continue
        if model is None:
            model, finetuned = kt.model_for(u.group, u.run) if u.run.lr is not None else (kt_base(cfg, kt), None)
        spec = WorkerSpec(task=cfg.task, model=cfg.model, weights=cfg.weights, finetuned=finetuned,
                          device=cfg.device, seed=cfg.seed, dataset=u.dataset.ref(), options=u.options)
        log.info("%s: %d block(s)", u.key, len(todo))
        cases = [u.dataset.cases[b.start:b.stop] for b in todo]
        for b, res in zip(todo, executor.map_blocks(spec, cases, model=model)):
            store.write_block(udir, b, res, [c.case_id for c in u.dataset.cases[b.start:b.stop]])


@functools.lru_cache(maxsize=2)
def _cached_base(name: str, weights: str | None, device: str):
    from medkt.models import create_model
    return create_model(name, weights=weights, device=device).eval()


def kt_base(cfg: ExperimentConfig, kt: "KnowledgeTransfer | None"):
    return kt.base if kt is not None else _cached_base(cfg.model, cfg.weights, cfg.device)


# ---------------------------------------------------------------------- Knowledge Transfer
def _invert_job(job: dict, model=None) -> str:
    """One concept's inversion (a Ray task or a local call); images land in ``job["out_dir"]``."""
    from medkt.transfer import load_concepts
    from medkt.transfer.inversion import invert  # the engine: images only, no run.json per job
    if model is None:
        from medkt.models import create_model
        model = create_model(job["model"], weights=job["weights"], device=job["device"])
    cset = load_concepts(job["concepts"])
    concept = cset.get(job["name"])
    invert(model, [concept], job["inversion"], seed=job["seed"], out_dir=job["out_dir"], resume=True,
           progress=False)
    return job["name"]


class KnowledgeTransfer:
    """Inversions (one job per concept, shared by all groups and runs) and per-run fine-tunes."""

    def __init__(self, cfg: ExperimentConfig, kt_root: Path, executor: Executor, progress: bool = False):
        from medkt.transfer import load_concepts, load_transfer_config
        self.cfg, self.executor, self.progress = cfg, executor, progress
        self.root = Path(kt_root) / "kt"
        data = dict(cfg.transfer)
        data.setdefault("seed", cfg.seed)
        self.tcfg = load_transfer_config(data, preset=cfg.transfer_preset)
        if not cfg.concepts:
            raise ConfigError("KT runs need 'concepts:' (a concept set name or YAML path).")
        self.concepts = load_concepts(cfg.concepts)
        self._base = None
        self._snapshot = None

    @property
    def base(self):
        if self._base is None:
            self._base = _cached_base(self.cfg.model, self.cfg.weights, self.cfg.device)
        return self._base

    def concepts_for(self, group: GroupSpec):
        from medkt.transfer import load_concepts
        names = group.concepts or self.concepts.names
        return load_concepts([self.concepts.get(n) for n in names])

    def invert_all(self, groups: list[GroupSpec]) -> None:
        names = list(dict.fromkeys(c.name for g in groups for c in self.concepts_for(g)))
        if not names:
            return
        jobs = [{"model": self.cfg.model, "weights": self.cfg.weights, "device": self.cfg.device,
                 "concepts": [c for c in self.concepts if c.name == n], "name": n,
                 "inversion": to_dict(self.tcfg.inversion), "seed": self.tcfg.seed,
                 "out_dir": str(self.root / "inversions")} for n in names]
        fn = _invert_job if self.executor.needs_saved_models else functools.partial(_invert_job, model=self.base)
        self.executor.run_jobs(fn, jobs)

    def model_for(self, group: GroupSpec, run: RunSpec):
        """The base model with ``group``'s KT weights at ``run``'s lr applied, and the weights' path.

        Fine-tuning trains the base model in place (no copy of a large model); the evaluated
        weights are then always rebuilt as original + saved weights, so a resumed run, a Ray
        worker and this process evaluate bitwise the same model.  :meth:`release` restores
        the original weights.
        """
        from medkt.transfer import learn, load_finetuned, restore, state_of
        from medkt.transfer.inversion import invert  # the engine: the shared folder holds images only
        if self._snapshot is None:
            self._snapshot = state_of(self.base)
        cset = self.concepts_for(group)
        inv = invert(self.base, cset, self.tcfg.inversion, seed=self.tcfg.seed,
                     out_dir=self.root / "inversions", resume=True, progress=self.progress)
        overrides = []
        if run.batch_size:
            overrides.append(f"finetune.batch_size={run.batch_size}")
        try:
            inplace = not self.tcfg.finetune.lora.enabled  # LoRA adds modules: train a copy instead
            res = learn(self.base, cset, self.tcfg, out_dir=self.root / group.name / run.run_id, images=inv,
                        overrides=overrides, lr=run.lr * group.lr_scale, resume=True, inplace=inplace, progress=self.progress)
            del res.model
            restore(self.base, self._snapshot)
            load_finetuned(self.base, res.weights_path)
        except BaseException:
            self.release()
            raise
        return self.base.eval(), str(res.weights_path)

    def release(self) -> None:
        """Put the original weights back into the base model."""
        if self._snapshot is not None:
            from medkt.transfer import restore
            restore(self.base, self._snapshot)
