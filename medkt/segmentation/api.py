"""``medkt.segment(...)`` — the Python API behind ``medkt segment``.

Inputs: a path (DICOM folder, NIfTI file or folder, folder of 2-D images — discovered
with :func:`medkt.io.discover_cases`), an in-memory array (``(H, W)``, ``(H, W, 3)`` or a
``(I, J, K)`` volume), a ``nibabel`` NIfTI image, an :class:`medkt.io.ImageVolume`, or a
list of those.  3-D volumes are cut into axial display slices (:class:`medkt.io.SliceMap`) and
streamed batch by batch into output volumes in the source voxel order
(:mod:`medkt.segmentation.cases`), so masks and saliency maps have the input's shape and affine;
all-air slices are skipped and ``slices="A:B"`` limits the range.  ``num_parts`` / ``part_id``
run one part of a cohort and ``executor="ray"`` spreads cases over Ray actors
(:mod:`medkt.segmentation.cohort`).

With ``output`` the run writes, per case, ``OUT/<case_id>/mask.<ext>`` (NIfTI, DICOM-SEG or
PNG), ``saliency.nii.gz`` / ``saliency.npy`` (float32 in [0, 1]) and ``overlay.png``, plus
``OUT/cases.csv``, ``OUT/run.json`` (resolved config, models, seeds, timings, failures)
and, with ``gt``, ``OUT/summary.json``.  Without ``output`` nothing is written and the
arrays come back in :class:`SegmentResult`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from medkt.errors import ConfigError, InputError
from medkt.segmentation.cases import CaseOutput, CaseRunner
from medkt.segmentation.finetuned import model_object, resolve_finetuned
from medkt.segmentation.pipeline import SegmentConfig, Segmenter, load_segment_config

log = logging.getLogger("medkt.segmentation")

__all__ = ["segment", "SegmentResult", "CaseOutput"]


@dataclass
class SegmentResult:
    """What :func:`segment` returns: cases, the per-case ``table`` (also ``cases.csv``),
    the metric ``summary`` (with ``gt``), the ``record`` (``run.json``) and ``out_dir``."""

    cases: list[CaseOutput]
    table: list[dict]
    summary: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)
    out_dir: Path | None = None

    def __len__(self):
        return len(self.cases)

    def __iter__(self):
        return iter(self.cases)

    def __getitem__(self, i):
        return self.cases[i]

    @property
    def mask(self) -> np.ndarray | None:
        """Mask of the only case (convenience for single inputs)."""
        if len(self.cases) != 1:
            raise InputError(f"{len(self.cases)} cases: use result.cases[i].mask.")
        return self.cases[0].mask

    @property
    def saliency(self) -> np.ndarray | None:
        if len(self.cases) != 1:
            raise InputError(f"{len(self.cases)} cases: use result.cases[i].saliency.")
        return self.cases[0].saliency


# ---------------------------------------------------------------------- inputs
def _items(inputs, modality: str | None, max_voxels: int | None = None) -> tuple[list, list[Path]]:
    """Inputs → list of ``Case`` / ``ImageVolume`` items and the input paths (for output safety)."""
    from medkt import io as mio
    if isinstance(inputs, (list, tuple)) and not (len(inputs) and np.isscalar(inputs[0])):
        items, paths = [], []
        for i, x in enumerate(inputs):
            it, ps = _items(x, modality, max_voxels)
            for v in it:
                if isinstance(v, mio.ImageVolume) and v.case_id in ("array", "nifti"):
                    v.case_id = f"{v.case_id}{i}"
            items += it
            paths += ps
        return items, paths
    if isinstance(inputs, (str, Path)):
        cases = mio.discover_cases(inputs, max_voxels=max_voxels)
        if not cases:
            raise InputError("no images found.", path=str(inputs),
                             hint="pass a DICOM folder, a NIfTI file/folder or a folder of PNG/JPEG images")
        return list(cases), [Path(inputs)]
    if isinstance(inputs, mio.ImageVolume):
        return [inputs], []
    if type(inputs).__module__.startswith("nibabel"):
        return [mio.volume_from_nifti(inputs, modality=modality or "unknown")], []
    if hasattr(inputs, "detach"):
        inputs = inputs.detach().cpu().numpy()
    if isinstance(inputs, np.ndarray):
        return [mio.volume_from_array(inputs, modality=modality or "unknown")], []
    raise InputError(f"cannot segment an input of type {type(inputs).__name__}.",
                     hint="pass a path, a NumPy array, a nibabel image or a medkt.io.ImageVolume")


def _case_id(item) -> str:
    return str(item.case_id)


def _gt_index(gt, max_voxels: int | None = None) -> dict | None:
    if gt is None:
        return None
    from medkt import io as mio
    if isinstance(gt, np.ndarray):
        return {"array": gt}
    cases = mio.discover_cases(gt, max_voxels=max_voxels)
    return {c.case_id: c for c in cases}


# ---------------------------------------------------------------------- public API
def segment(inputs, prompt: str | None = None, *, output: str | Path | None = None,
            config: str | Path | dict | SegmentConfig | None = None, overrides: Sequence[str] | None = None,
            model=None, sam: str | None = None, modality: str | None = None,
            window: str | None = None, gt=None, mask_format: str | None = None,
            diagnostics: bool | None = None, seed: int | None = None, max_voxels: int | None = None,
            slices: str | None = None, skip_air: bool | None = None,
            device: str = "cpu",
            dry_run: bool = False, resume: bool = False, overwrite: bool = False,
            keep_arrays: bool = False, segmenter: Segmenter | None = None, finetuned: str | Path | None = None,
            concept: str | None = None, lr: float | None = None,
            num_parts: int = 1, part_id: int = 0, executor: str = "local", ray_address: str | None = None,
            workers: int = 2, gpus_per_worker: float = 0.0,
            on_case: Callable[[dict], None] | None = None, refiner=None) -> SegmentResult:
    """Zero-shot segmentation of ``inputs`` for a text ``prompt`` (see module docstring).

    Args:
        inputs: path, array, nibabel image, ``ImageVolume`` or a list of them.
        prompt: the text (or ``config.prompt``).
        output: folder to write to (``None``: return arrays only).
        config: YAML path, preset name (``configs/segment/NAME.yaml``), dict or
            :class:`SegmentConfig`; ``overrides``: ``["m2ib.beta=1", ...]``.
        model: the CLIP-family saliency model: a registered name or model spec (config field ``model``)
            or a model object (a :class:`~medkt.models.base.VisionLanguageModel`, e.g. from
            :func:`medkt.models.create_model` or a transfer result's ``.model``; used as is).
        sam / modality / window / mask_format / seed / slices: shortcuts for the config fields
            ``sam.model``, ``modality``, ``window``, ``output.mask_format``, ``seed`` and ``slices``
            (``"A:B"``: only display slices ``A .. B-1`` of 3-D volumes); ``diagnostics`` sets
            ``diagnostics.enabled`` and ``skip_air`` sets ``air.enabled`` (skip all-air slices).
        max_voxels: size limit per input image, checked from headers before reading (default
            2**28 elements); a larger image is a failed case naming the limit.
        gt: ground-truth path (file or folder matched by case id) or array → DSC/NSD/IoU.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dry_run: only discover and list the cases (no model is loaded).
        resume / overwrite: see :func:`medkt.runs.prepare_output_dir`.
        keep_arrays: also return arrays when writing to ``output``.
        segmenter: a ready :class:`Segmenter` (reuses loaded models across calls).
        finetuned: Knowledge-Transfer weights for the saliency model: a ``medkt transfer`` run
            folder or a ``.safetensors`` file (delta, LoRA or full); ``concept`` / ``lr`` choose
            the file when the run holds several (see
            :func:`~medkt.segmentation.finetuned.resolve_finetuned`).  A model object passed
            as ``model`` is copied first, never changed.  ``run.json`` records the file, its
            concept, lr and sha256 under ``finetuned``.
        num_parts / part_id: run only part ``part_id`` (0-based) of ``num_parts`` of the cases
            (ordered by case id, every ``num_parts``-th); join the parts' folders with
            :func:`medkt.segmentation.cohort.merge_parts` (``medkt segment-merge``).
        executor: ``local`` or ``ray`` (``ray_address``: ``None`` starts a local Ray, ``"auto"``
            joins a cluster; ``workers`` actors, each loading the models once, with
            ``gpus_per_worker`` GPUs each).
        on_case: called with each finished case's row (``case_id``, counts, stage seconds), e.g.
            ``lambda row: print(format_case_line(row))``.
        refiner: a ``medkt refine`` model folder (or a :class:`~medkt.refinement.Refiner`): the masks
            come from that network alone (no saliency model, SAM or prompt); ``saliency`` then
            holds its foreground probability.  Intensities are prepared with the refiner's
            ``modality`` / ``window`` unless given here.

    Returns:
        :class:`SegmentResult`.  Raises :class:`~medkt.errors.MedktError` subclasses for bad
        options; with ``output``, a failing case is recorded and the run goes on.
    """
    from medkt.config import to_dict
    from medkt.runs import prepare_output_dir, release_output_dir
    from medkt.segmentation.cohort import select_part
    from medkt.segmentation.prompt_checks import check_prompt
    ref = None
    if refiner is not None:
        from medkt.refinement.model import as_refiner
        if segmenter is not None or finetuned is not None or diagnostics:
            raise ConfigError("refiner= replaces the zero-shot stages; it cannot be combined with segmenter=, "
                              "finetuned= or diagnostics.", hint="drop one of them")
        ref = as_refiner(refiner)
        modality = modality or ref.config.modality
        window = window or ref.config.window
    model_obj = model_object(model)
    cfg = _resolve_config(config, overrides, model=model_obj.name if model_obj is not None else model,
                          prompt=prompt, modality=modality, window=window, seed=seed, sam=sam,
                          mask_format=mask_format, diagnostics=diagnostics, max_voxels=max_voxels, slices=slices,
                          skip_air=skip_air)
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor '{executor}'; use local or ray.")
    if executor == "ray" and (model_obj is not None or segmenter is not None):
        raise ConfigError("a model object or a ready segmenter cannot be sent to Ray workers.",
                          hint="pass the model by name (model='biomedclip') with executor='ray'")
    fw = None if finetuned is None and concept is None and lr is None else resolve_finetuned(finetuned, concept, lr)
    items, paths = _items(inputs, cfg.modality, cfg.max_voxels)
    items, part = select_part(items, num_parts, part_id, case_id=_case_id)
    if dry_run:
        rows = [{"case_id": _case_id(it), "kind": getattr(it, "kind", "array"),
                 "shape": "x".join(map(str, (it.info.get("shape") or []) if hasattr(it, "info")
                                       else it.spatial_shape)),
                 "problem": getattr(it, "problem", None)} for it in items]
        return SegmentResult([], rows, record={"dry_run": True, "config": to_dict(cfg), "part": part})
    if ref is None:
        check_prompt(cfg.prompt)
    else:
        if executor != "local":
            raise ConfigError("refiner= runs on the local executor only.", hint="drop --executor ray with --refiner")
        from medkt.refinement.model import RefinedSegmenter
        segmenter = RefinedSegmenter(ref)
    _check_device(device)
    out_dir = prepare_output_dir(output, paths, overwrite=overwrite, resume=resume) if output else None
    try:
        return _run(items, cfg, out_dir, gt=gt, device=device, resume=resume, keep_arrays=keep_arrays,
                    segmenter=segmenter, model_obj=model_obj, fw=fw, part=part, on_case=on_case,
                    ray=dict(address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker)
                    if executor == "ray" else None)
    finally:
        release_output_dir(out_dir)


class _Remote:
    """``fn(case)`` for :class:`~medkt.batch.BatchRunner` that collects a case from the Ray pool."""

    def __init__(self, pool, runner: CaseRunner):
        self.pool, self.runner = pool, runner

    def __call__(self, item) -> dict:
        out = self.pool.result(item)
        self.runner.outputs[out.case_id] = out
        if self.runner.on_case is not None:
            self.runner.on_case(out.row)
        return {k: v for k, v in out.row.items() if k != "case_id"}


def _run(items, cfg: SegmentConfig, out_dir: Path | None, *, gt, device: str, resume: bool, keep_arrays: bool,
         segmenter: Segmenter | None, model_obj=None, fw=None, part: dict | None = None, on_case=None,
         ray: dict | None = None) -> SegmentResult:
    from medkt.config import to_dict
    from medkt.runs import BatchRunner, RunRecord, write_csv
    from medkt.segmentation.cases import EXTRA_STAGES, STAGES
    from medkt.segmentation.cohort import config_hash
    from medkt.segmentation.prompt_checks import check_prompt_length
    record = RunRecord("segment", config=to_dict(cfg), seed=cfg.m2ib.seed)
    if part is not None:
        record.extra["part"] = {**part, "config_hash": config_hash(record.config)}
    if segmenter is not None and (fw is not None or model_obj is not None):
        raise ConfigError("model= / finetuned= cannot be applied to a ready segmenter.",
                          hint="pass them to Segmenter(...) when building it, or drop segmenter=")
    refined = type(segmenter).__name__ == "RefinedSegmenter"
    gt_index = _gt_index(gt, cfg.max_voxels)
    pool = seg = None
    if ray is not None:
        from medkt.segmentation.cohort import RayCasePool
        pool = RayCasePool(cfg, device=device, finetuned=fw, out_dir=out_dir, gt_index=gt_index,
                           keep_arrays=keep_arrays, **ray)
    try:
        if pool is None:
            seg = segmenter or Segmenter(cfg, device=device, model=model_obj, finetuned=fw)
            if segmenter is not None and not refined:  # its models are reused; stage settings come from cfg
                seg.cfg, seg.saliency.cfg, seg.sam.cfg = cfg, cfg.m2ib, cfg.sam
            record.weights, counted, model = seg.describe(), None, seg.model
            if segmenter is None and model_obj is None:  # models loaded here: nobody else uses them
                freed = seg.release_text_encoder([cfg.prompt])
                if freed:
                    record.extra["memory"] = {"text_encoder_released_mb": round(freed / 2**20, 1)}
        else:
            record.weights, counted, name = pool.model_info()
            model = type("_Named", (), {"name": name})()
            record.extra["executor"] = pool.describe()
        if fw is not None:
            record.extra["finetuned"] = fw.as_record()
        record.extra.update({"prompt": cfg.prompt, "device": device})
        if refined:
            record.extra["refiner"] = {**seg.refiner.describe(), "saliency_files": "refiner foreground probability"}
        else:
            check_prompt_length(model, cfg.prompt, record, counted=counted)
        runner = CaseRunner(seg, cfg, cfg.prompt, out_dir, gt_index, keep_arrays, on_case=on_case)
        fn = runner if pool is None else _Remote(pool, runner)
        if out_dir is not None:
            batch = BatchRunner(out_dir, resume=resume, record=record, progress=len(items) > 1, table="cases.csv")
            if pool is not None:
                pool.submit(batch.pending(items, case_id=_case_id))
            results = batch.run(items, fn, case_id=_case_id)
            table = [r.row() for r in results]
        else:
            if pool is not None:
                pool.submit(items)
            table = []
            for it in items:
                table.append({"case_id": _case_id(it), "status": "ok", **fn(it)})
            record.cases = table
    finally:
        if pool is not None:
            pool.close()
    cases = [runner.outputs[r["case_id"]] for r in table if r["case_id"] in runner.outputs]
    summary = _summary(table) if gt is not None else {}
    done = [r for r in table if r.get("status") == "ok" and STAGES[0] in r]
    record.timings.update({s: round(sum(r[s] for r in done), 4) for s in STAGES + EXTRA_STAGES
                           if done and all(s in r for r in done)})
    record.extra.update({"summary": summary,
                         "sensitivity": {c.case_id: c.sensitivity for c in cases if c.sensitivity},
                         "slices": {c.case_id: c.slices for c in cases}})
    if gt is not None:  # the NSD/HD95 conventions _score used (SegMetricConfig defaults), stated in run.json
        from medkt.metrics import SegMetricConfig
        record.extra["metric_conventions"] = SegMetricConfig().describe()
    if out_dir is not None:
        # every case of every invocation into out_dir (a resume merges the earlier ones)
        write_csv(out_dir / "cases.csv", record.case_rows())
        if summary:
            from medkt.runs import atomic_write_json
            atomic_write_json(out_dir / "summary.json", summary)
        record.write(out_dir)
    return SegmentResult(cases, table, summary, record.as_dict(), out_dir)


def _resolve_config(config, overrides, *, sam, mask_format, diagnostics, skip_air=None, **fields) -> SegmentConfig:
    if isinstance(config, SegmentConfig):
        from medkt.config import apply_overrides
        cfg = apply_overrides(config, list(overrides or []))
        for k, v in fields.items():
            if v is not None:
                setattr(cfg, k, v)
    else:
        cfg = load_segment_config(config, list(overrides or []), **fields)
    if sam is not None:
        cfg.sam.model = sam
    if mask_format is not None:
        cfg.output.mask_format = mask_format
    if diagnostics is not None:
        cfg.diagnostics.enabled = bool(diagnostics)
    if skip_air is not None:
        cfg.air.enabled = bool(skip_air)
    return cfg.validate()


def _check_device(device: str) -> None:
    import torch
    if device == "cpu":
        return
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{device}' requested but CUDA is not available.",
                              hint="use --device cpu, or check the CUDA install (medkt info)")
        return
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device 'mps' requested but it is not available.", hint="use --device cpu")
        return
    raise ConfigError(f"unknown device '{device}'.", hint="use cpu, cuda, cuda:N or mps")


def _summary(table: list[dict]) -> dict:
    from medkt.metrics import summarize
    rows = [r for r in table if r.get("status") == "ok"]
    metrics = [m for m in ("dsc", "iou", "nsd", "hd95") if any(m in r for r in rows)]
    return summarize(rows, metrics=metrics) if rows and metrics else {}
