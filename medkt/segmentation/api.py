"""``medkt.segment(...)`` — the Python API behind ``medkt segment``.

Inputs: a path (DICOM folder, NIfTI file or folder, folder of 2-D images — discovered
with :func:`medkt.io.discover_cases`), an in-memory array (``(H, W)``, ``(H, W, 3)`` or a
``(I, J, K)`` volume), a ``nibabel`` NIfTI image, an :class:`medkt.io.ImageVolume`, or a
list of those.  3-D volumes are cut into axial display slices (:func:`medkt.io.iter_slices`),
segmented in batches and reassembled in the source voxel order (:func:`medkt.io.reassemble`),
so masks and saliency maps have the input's shape and affine.

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
from typing import Any, Sequence

import numpy as np

from medkt.errors import ConfigError, InputError
from medkt.segmentation.finetuned import model_object, resolve_finetuned
from medkt.segmentation.pipeline import SegmentConfig, Segmenter, SliceResult, load_segment_config

log = logging.getLogger("medkt.segmentation")

_MASK_EXT = {"nifti": "mask.nii.gz", "png": "mask.png", "dicom-seg": "mask.seg.dcm"}


@dataclass
class CaseOutput:
    """One case.  ``mask`` (uint8 0/1), ``saliency`` (float32 [0, 1]) and ``coarse`` (uint8)
    have the input's array shape (``(I, J, K)`` or ``(H, W)``); ``volume`` is the source
    :class:`~medkt.io.ImageVolume` (affine, spacing).  Arrays are ``None`` for cases written
    to disk unless ``keep_arrays``.  ``slices``: per-slice status rows."""

    case_id: str
    row: dict
    mask: np.ndarray | None = None
    saliency: np.ndarray | None = None
    coarse: np.ndarray | None = None
    volume: Any = None
    slices: list[dict] = field(default_factory=list)
    sensitivity: list[dict] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_nifti(self):
        """The mask as a ``nibabel.Nifti1Image`` on the source affine (3-D cases)."""
        import nibabel as nib
        if self.mask is None or self.volume is None:
            raise InputError(f"case {self.case_id}: no mask in memory (run with keep_arrays=True).")
        return nib.Nifti1Image(self.mask.astype(np.uint8), self.volume.affine)


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


# ---------------------------------------------------------------------- one case
def _slices(vol, img01, plane: str = "axial") -> tuple[list[tuple[int, np.ndarray]], Any]:
    from medkt import io as mio
    if vol.is_2d:
        return [(0, img01)], None
    return mio.iter_slices(vol, plane, array=img01)


def _assemble(vol, smap, per_slice: dict[int, np.ndarray]):
    from medkt import io as mio
    if smap is None:
        return per_slice[0]
    return mio.reassemble(per_slice, smap)


def _slice_row(k: int, r: SliceResult) -> dict:
    row = {"slice": k, "status": r.status, "prompts": r.prompts.count,
           "coarse_components": r.prompts.n_components, "sam_iou": [round(s, 4) for s in r.sam_scores]}
    tm = r.text_map
    if tm is not None:  # text-side M2IB: per-token scores
        row["text_map"] = {"tokens": tm.tokens or tm.token_ids, "scores": [round(s, 4) for s in tm.scores]}
    return row


def _mask_format(cfg: SegmentConfig, vol) -> str:
    fmt = cfg.output.mask_format
    if fmt != "auto":
        return fmt
    if vol.is_2d:
        return "png"
    if vol.kind == "dicom":
        try:
            import highdicom  # noqa: F401
            return "dicom-seg"
        except ImportError:
            return "nifti"
    return "nifti"


class _CaseRunner:
    """Processes one case: read → intensities → slices → Segmenter → reassemble → write."""

    def __init__(self, seg: Segmenter | None, cfg: SegmentConfig, prompt: str, out_dir: Path | None,
                 gt_index: dict | None, keep_arrays: bool):
        self.seg, self.cfg, self.prompt = seg, cfg, prompt
        self.out_dir, self.gt_index, self.keep_arrays = out_dir, gt_index, keep_arrays
        self.outputs: dict[str, CaseOutput] = {}

    def read(self, item):
        from medkt import io as mio
        return item if isinstance(item, mio.ImageVolume) else mio.read_case(item)

    def __call__(self, item) -> dict:
        from medkt import io as mio
        vol = self.read(item)
        cid = _case_id(item)
        img01, iparams = mio.prepare_intensity(vol, modality=self.cfg.modality, window=self.cfg.window)
        slices = _slices(vol, img01, self.cfg.plane)
        pairs, smap = slices
        chunk = max(self.cfg.m2ib.batch_size, 1) * 4
        results: dict[int, SliceResult] = {}
        for start in range(0, len(pairs), chunk):
            part = pairs[start:start + chunk]
            res = self.seg.segment_slices([s for _, s in part], self.prompt,
                                          names=[f"{cid}[{k}]" for k, _ in part])
            results.update({k: r for (k, _), r in zip(part, res)})
        mask = _assemble(vol, smap, {k: r.mask.astype(np.uint8) for k, r in results.items()})
        sal = _assemble(vol, smap, {k: r.saliency.astype(np.float32) for k, r in results.items()})
        coarse = _assemble(vol, smap, {k: r.coarse.astype(np.uint8) for k, r in results.items()})
        statuses = [r.status for r in results.values()]
        row = {"case_id": cid, "kind": vol.kind, "modality": iparams.get("modality") or vol.modality,
               "shape": "x".join(map(str, vol.spatial_shape)), "slices": len(results),
               "mask_voxels": int(np.count_nonzero(mask)),
               "slices_with_mask": int(sum(r.mask.any() for r in results.values())),
               "slices_empty_coarse": int(sum(s != "ok" for s in statuses)),
               "empty_policy": self.cfg.prompts.empty, "intensity": iparams,
               "warnings": list(dict.fromkeys(list(vol.meta.get("warnings", [])) + iparams.get("warnings", [])))}
        out = CaseOutput(cid, row, volume=vol,
                         slices=[_slice_row(k, r) for k, r in sorted(results.items())])
        if self.gt_index is not None:
            row.update(self._score(cid, vol, mask))
        if self.cfg.diagnostics.enabled:
            out.sensitivity = self._sensitivity(cid, pairs)
            from medkt.segmentation.diagnostics import summarize_sensitivity
            row.update({f"sens_{k}": round(v, 4) for k, v in summarize_sensitivity(out.sensitivity).items()})
        if self.out_dir is not None:
            out.files = self._write(cid, vol, pairs, mask, sal, coarse, results, row["warnings"])
        if self.out_dir is None or self.keep_arrays:
            out.mask, out.saliency, out.coarse = mask, sal, coarse
        self.outputs[cid] = out
        return {k: v for k, v in row.items() if k not in ("case_id",)}

    def _score(self, cid: str, vol, mask) -> dict:
        from medkt import io as mio
        from medkt.metrics import segmentation_scores
        gt_item = self.gt_index.get(cid) or (next(iter(self.gt_index.values())) if len(self.gt_index) == 1
                                             else None)
        if gt_item is None:
            log.warning("no ground truth for case %s", cid)
            return {"gt": "missing"}
        gt = self.read(gt_item) if not isinstance(gt_item, np.ndarray) else mio.volume_from_array(gt_item)
        g = np.asarray(gt.array)
        if g.ndim == 3 and g.shape[-1] in (3, 4) and mask.ndim == 2:
            g = g[..., 0]
        if g.shape != mask.shape:
            raise InputError(f"ground truth for case {cid} has shape {g.shape}, the image {mask.shape}.",
                             hint="pass masks on the image grid (same shape)")
        scores = segmentation_scores(mask, g > 0, spacing=vol.spacing)
        return {k: v for k, v in scores.items() if np.isscalar(v)}

    def _sensitivity(self, cid: str, pairs) -> list[dict]:
        from medkt.segmentation.diagnostics import prompt_sensitivity
        d = self.cfg.diagnostics
        n = len(pairs)
        idx = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(d.max_slices, n))})
        return prompt_sensitivity(self.seg.saliency, [pairs[i][1] for i in idx], self.prompt,
                                  neutral_prompt=d.neutral_prompt, n_random=d.random_prompts,
                                  random_length=d.random_length, seed=self.cfg.m2ib.seed,
                                  names=[f"{cid}[{pairs[i][0]}]" for i in idx])

    def _write(self, cid, vol, pairs, mask, sal, coarse, results, warnings: list) -> dict:
        from medkt import io as mio
        from medkt.errors import DicomSegError
        d = self.out_dir / cid
        d.mkdir(parents=True, exist_ok=True)
        fmt = _mask_format(self.cfg, vol)
        # prepare_output_dir already applied the --overwrite / --resume policy to the folder
        try:
            files = {"mask": str(mio.write_mask(mask, vol, d / _MASK_EXT[fmt], overwrite=True))}
        except DicomSegError as e:  # keep the computed mask: NIfTI on the same grid, with a recorded warning
            fmt = "nifti"
            warnings.append(f"DICOM-SEG not written ({e.message}); the mask was written as NIfTI instead")
            log.warning("case %s: %s", cid, warnings[-1])
            files = {"mask": str(mio.write_mask(mask, vol, d / _MASK_EXT[fmt], overwrite=True))}
        if self.cfg.output.coarse:
            files["coarse"] = str(mio.write_mask(coarse, vol, d / _MASK_EXT[fmt].replace("mask", "coarse"),
                                                 overwrite=True))
        if self.cfg.output.saliency:
            name = "saliency.npy" if vol.is_2d else "saliency.nii.gz"
            files["saliency"] = str(mio.write_saliency(sal, vol, d / name, overwrite=True))
        if self.cfg.output.overlay:
            k = max(results, key=lambda i: (int(results[i].mask.sum()), float(results[i].saliency.max()), -i))
            image = dict(pairs)[k]
            files["overlay"] = str(mio.write_overlay(image, d / "overlay.png", results[k].mask.astype(np.uint8),
                                                     saliency=results[k].saliency, overwrite=True))
        return files


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
            device: str = "cpu",
            dry_run: bool = False, resume: bool = False, overwrite: bool = False,
            keep_arrays: bool = False, segmenter: Segmenter | None = None, finetuned: str | Path | None = None,
            concept: str | None = None, lr: float | None = None, refiner=None) -> SegmentResult:
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
        sam / modality / window / mask_format / seed: shortcuts for the config fields
            ``sam.model``, ``modality``, ``window``, ``output.mask_format`` and ``seed``;
            ``diagnostics`` sets ``diagnostics.enabled``.
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
                          mask_format=mask_format, diagnostics=diagnostics, max_voxels=max_voxels)
    fw = None if finetuned is None and concept is None and lr is None else resolve_finetuned(finetuned, concept, lr)
    items, paths = _items(inputs, cfg.modality, cfg.max_voxels)
    if dry_run:
        rows = [{"case_id": _case_id(it), "kind": getattr(it, "kind", "array"),
                 "shape": "x".join(map(str, (it.info.get("shape") or []) if hasattr(it, "info")
                                       else it.spatial_shape)),
                 "problem": getattr(it, "problem", None)} for it in items]
        return SegmentResult([], rows, record={"dry_run": True, "config": to_dict(cfg)})
    if ref is None:
        check_prompt(cfg.prompt)
    else:
        from medkt.refinement.model import RefinedSegmenter
        segmenter = RefinedSegmenter(ref)
    _check_device(device)
    out_dir = prepare_output_dir(output, paths, overwrite=overwrite, resume=resume) if output else None
    try:
        return _run(items, cfg, out_dir, gt=gt, device=device, resume=resume, keep_arrays=keep_arrays,
                    segmenter=segmenter, model_obj=model_obj, fw=fw)
    finally:
        release_output_dir(out_dir)


def _run(items, cfg: SegmentConfig, out_dir: Path | None, *, gt, device: str, resume: bool, keep_arrays: bool,
         segmenter: Segmenter | None, model_obj=None, fw=None) -> SegmentResult:
    from medkt.config import to_dict
    from medkt.runs import BatchRunner, RunRecord, write_csv
    from medkt.segmentation.prompt_checks import check_prompt_length
    record = RunRecord("segment", config=to_dict(cfg), seed=cfg.m2ib.seed)
    refined = type(segmenter).__name__ == "RefinedSegmenter"
    if segmenter is not None and (fw is not None or model_obj is not None):
        raise ConfigError("model= / finetuned= cannot be applied to a ready segmenter.",
                          hint="pass them to Segmenter(...) when building it, or drop segmenter=")
    seg = segmenter or Segmenter(cfg, device=device, model=model_obj, finetuned=fw)
    if segmenter is not None and not refined:  # its models are reused; stage settings come from cfg
        seg.cfg, seg.saliency.cfg, seg.sam.cfg = cfg, cfg.m2ib, cfg.sam
    record.weights = seg.describe()
    if seg.finetuned is not None:
        record.extra["finetuned"] = seg.finetuned.as_record()
    record.extra.update({"prompt": cfg.prompt, "device": device})
    if refined:
        record.extra["refiner"] = {**seg.refiner.describe(), "saliency_files": "refiner foreground probability"}
    else:
        check_prompt_length(seg.model, cfg.prompt, record)
    runner = _CaseRunner(seg, cfg, cfg.prompt, out_dir, _gt_index(gt, cfg.max_voxels), keep_arrays)
    if out_dir is not None:
        batch = BatchRunner(out_dir, resume=resume, record=record, progress=len(items) > 1, table="cases.csv")
        results = batch.run(items, runner, case_id=_case_id)
        table = [r.row() for r in results]
    else:
        table = []
        for it in items:
            table.append({"case_id": _case_id(it), "status": "ok", **runner(it)})
        record.cases = table
    cases = [runner.outputs[r["case_id"]] for r in table if r["case_id"] in runner.outputs]
    summary = _summary(table) if gt is not None else {}
    record.timings.update(seg.timings)
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


def _resolve_config(config, overrides, *, sam, mask_format, diagnostics, **fields) -> SegmentConfig:
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
