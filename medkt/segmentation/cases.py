"""One case of ``medkt segment``, streamed: read → prepare → slices in batches → write.

:class:`CaseRunner` is what :func:`medkt.segment` runs per case (locally, or inside a Ray actor).
Memory stays bounded by the case's own size: the full-volume arrays alive at once are the input
volume and the outputs being filled (uint8 mask, plus the float32 saliency map when it is written
or returned, plus the uint8 coarse mask when asked for).  Intensities are prepared slice by slice
(:class:`medkt.io.intensity.IntensityMapping`, bit-identical to ``prepare_intensity``): slices are
cut from the input one batch at a time (:meth:`medkt.io.SliceMap.iter_extract`, a copy of one
slice each), then windowed, and every slice's results go straight into the output volumes through
:meth:`medkt.io.SliceMap.view` (no per-slice result is kept), so time and memory grow linearly
with the slice count.  The case's files are written as soon as its slices are done.

Before any model runs, slices that cannot hold the target are dropped cheaply:

* outside ``slices: "A:B"`` (``--slices``; display-slice indices along ``plane``, 0-based, ``B``
  excluded, Python slice rules, so ``-10:`` is the last ten); 2-D images ignore it;
* all air (:class:`AirConfig`; 3-D volumes only): their mask and saliency stay 0 and they are counted in
  ``slices_air``.

Per-case stage timings (seconds) go into the case's row (``read_s``, ``prepare_s``, ``m2ib_s``,
``postprocess_s``, ``sam_encode_s``, ``sam_decode_s``, ``write_s``, ``case_s``, ``case_cpu_s`` = process
CPU seconds, ``s_per_slice``), hence into
``cases.csv`` and ``run.json``; :func:`format_case_line` prints them on one line.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medkt.errors import ConfigError, InputError

log = logging.getLogger("medkt.segmentation")

_MASK_EXT = {"nifti": "mask.nii.gz", "png": "mask.png", "dicom-seg": "mask.seg.dcm"}
STAGES = ("read_s", "prepare_s", "m2ib_s", "postprocess_s", "sam_encode_s", "sam_decode_s", "write_s")
#: stages of other segmenters (``refiner_s``: ``medkt segment --refiner``), timed and printed when present
EXTRA_STAGES = ("refiner_s",)


@dataclass
class AirConfig:
    """Which slices are "all air" (outside the body) and skipped without running any model.

    A slice is air when fewer than ``min_fraction`` of its pixels are tissue.  Tissue is:

    * CT (a CT window was applied, so the source values are HU): a source value above ``ct_hu``
      (default -500 HU: air is about -1000 HU, fat -100, soft tissue 0 to 100; the lungs, -900 to
      -500, never fill a slice alone because the chest wall is around them);
    * any other modality: a prepared intensity (in [0, 1]) above ``threshold``.

    ``enabled: false`` segments every slice.
    """

    enabled: bool = True
    ct_hu: float = -500.0
    threshold: float = 0.05
    min_fraction: float = 0.02

    def validate(self) -> "AirConfig":
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ConfigError(f"air.min_fraction must be in [0, 1], got {self.min_fraction}.")
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"air.threshold is a prepared intensity in [0, 1), got {self.threshold}.")
        return self

    def is_air(self, plane: np.ndarray, hu: bool) -> bool:
        """``plane``: a source slice in HU (``hu``) or a prepared slice in [0, 1]."""
        cut = self.ct_hu if hu else self.threshold
        p = plane if plane.ndim == 2 else plane.max(axis=-1)
        return np.count_nonzero(p > cut) < self.min_fraction * p.size


def _prepared(smap, imap, k: int) -> np.ndarray:
    """Prepared intensities (float32 [0, 1]) of display slice ``k``: one slice, windowed on demand."""
    return imap.apply(np.ascontiguousarray(smap.view(imap.source, k)))


_RANGE = re.compile(r"^\s*(-?\d+)?\s*(:\s*(-?\d+)?\s*)?$")


def check_slice_range(spec: str | None) -> None:
    """Raise :class:`ConfigError` unless ``spec`` is ``None``, ``"A:B"``, ``"A:"``, ``":B"`` or ``"K"``."""
    if spec is not None and (not isinstance(spec, str) or not _RANGE.match(spec) or not spec.strip()):
        raise ConfigError(f"slices must look like A:B (0-based display slices, B excluded), got {spec!r}.",
                          hint="e.g. --slices 40:120, --slices 40: or --slices :-10")


def slice_range(spec: str | None, n: int) -> list[int]:
    """Indices ``0 .. n-1`` selected by ``spec`` (see :func:`check_slice_range`; Python slice rules)."""
    if spec is None:
        return list(range(n))
    check_slice_range(spec)
    m = _RANGE.match(spec)
    a, colon, b = m.group(1), m.group(2), m.group(3)
    if colon is None:  # one slice
        k = int(a)
        k = k + n if k < 0 else k
        return [k] if 0 <= k < n else []
    return list(range(n))[slice(None if a is None else int(a), None if b is None else int(b))]


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
        if self.mask is None:
            raise InputError(f"case {self.case_id}: no mask in memory (run with keep_arrays=True).")
        return nib.Nifti1Image(self.mask.astype(np.uint8), self.volume.affine)


def _slice_row(k: int, r) -> dict:
    row = {"slice": k, "status": r.status, "prompts": r.prompts.count,
           "coarse_components": r.prompts.n_components, "sam_iou": [round(s, 4) for s in r.sam_scores]}
    tm = r.text_map
    if tm is not None:  # text-side M2IB: per-token scores
        row["text_map"] = {"tokens": tm.tokens or tm.token_ids, "scores": [round(s, 4) for s in tm.scores]}
    return row


def mask_format(cfg, vol) -> str:
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


def format_case_line(row: dict) -> str:
    """One printed line per case: slice counts and the seconds of every stage."""
    n = row.get("slices_segmented", row.get("slices", 0))
    skipped = [f"{row[k]} {w}" for k, w in (("slices_air", "air"), ("slices_outside_range", "outside --slices"))
               if row.get(k)]
    parts = [f"{s[:-2].replace('_', ' ')} {row[s]:.2f}s" for s in STAGES + EXTRA_STAGES if s in row]
    per = f" = {row['s_per_slice']:.3f} s/slice" if row.get("s_per_slice") is not None else ""
    return (f"{row.get('case_id', '?')}: {n} slice(s) segmented" + (f" ({', '.join(skipped)} skipped)" if skipped
                                                                     else "")
            + " | " + " | ".join(parts) + f" | total {row.get('case_s', 0.0):.2f}s{per}")


class _Best:
    """The overlay's slice: largest mask, then brightest saliency, then lowest index."""

    def __init__(self):
        self.key, self.k, self.image, self.mask, self.saliency = None, None, None, None, None

    def offer(self, k: int, image, r) -> None:
        key = (int(r.mask.sum()), float(r.saliency.max()), -k)
        if self.key is None or key > self.key:
            self.key, self.k, self.image, self.mask, self.saliency = key, k, image, r.mask, r.saliency


class CaseRunner:
    """Processes one case (see module docstring); ``outputs`` keeps each case's :class:`CaseOutput`.

    ``on_case(row)`` is called after each case with its row (``case_id`` included).
    """

    def __init__(self, seg, cfg, prompt: str, out_dir: Path | None, gt_index: dict | None, keep_arrays: bool,
                 on_case=None):
        self.seg, self.cfg, self.prompt = seg, cfg, prompt
        self.out_dir, self.gt_index, self.keep_arrays = out_dir, gt_index, keep_arrays
        self.on_case = on_case
        self.outputs: dict[str, CaseOutput] = {}

    def read(self, item):
        from medkt import io as mio
        return item if isinstance(item, mio.ImageVolume) else mio.read_case(item)

    def __call__(self, item) -> dict:
        out = self.run_case(item)
        self.outputs[out.case_id] = out
        row = {k: v for k, v in out.row.items() if k != "case_id"}
        if self.on_case is not None:
            self.on_case(out.row)
        return row

    def run_case(self, item) -> CaseOutput:
        from medkt import io as mio
        from medkt.models.memory import trim_heap
        t0, c0 = time.perf_counter(), time.process_time()
        T: dict[str, float] = {}
        cid = str(item.case_id)
        vol = self.read(item)
        T["read_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        imap = mio.intensity_mapping(vol, modality=self.cfg.modality, window=self.cfg.window)
        iparams = imap.params
        trim_heap()  # decoding (gzip) leaves freed blocks mapped: measured 0.15 GiB on a 300-slice CT
        smap = mio.make_slice_map(vol, self.cfg.plane)
        n = len(smap)
        keep = list(range(n)) if vol.is_2d else slice_range(self.cfg.slices, n)
        hu = iparams.get("method") == "ct_window"
        air = [] if vol.is_2d or not self.cfg.air.enabled else [
            k for k in keep if self.cfg.air.is_air(smap.view(vol.array, k) if hu else _prepared(smap, imap, k), hu)]
        skipped = set(air)
        todo = [k for k in keep if k not in skipped]
        shape = tuple(smap.shape)
        want = self.out_dir is None or self.keep_arrays
        mask = np.zeros(shape, np.uint8)
        sal = np.zeros(shape, np.float32) if want or self.cfg.output.saliency else None
        coarse = np.zeros(shape, np.uint8) if want or self.cfg.output.coarse else None
        T["prepare_s"] = time.perf_counter() - t
        rows, best, n_empty, n_masked = {k: {"slice": k, "status": "air"} for k in air}, _Best(), 0, 0
        before = dict(self.seg.timings)
        chunk = max(self.cfg.m2ib.batch_size, 1) * 4
        for start in range(0, len(todo), chunk):
            ks = todo[start:start + chunk]
            images = [imap.apply(s) for s in smap.iter_extract(imap.source, ks)]
            res = self.seg.segment_slices(images, self.prompt, names=[f"{cid}[{k}]" for k in ks])
            for k, im, r in zip(ks, images, res):
                smap.view(mask, k)[...] = r.mask
                if sal is not None:
                    smap.view(sal, k)[...] = r.saliency
                if coarse is not None:
                    smap.view(coarse, k)[...] = r.coarse
                rows[k] = _slice_row(k, r)
                n_empty += r.status != "ok"
                n_masked += bool(r.mask.any())
                best.offer(k, im, r)
        for s in ("m2ib_s", "postprocess_s", "sam_encode_s", "sam_decode_s", *EXTRA_STAGES):
            if s in STAGES or s in self.seg.timings:  # extra stages: only those the segmenter has
                T[s] = self.seg.timings.get(s, 0.0) - before.get(s, 0.0)
        row = {"case_id": cid, "kind": vol.kind, "modality": iparams.get("modality") or vol.modality,
               "shape": "x".join(map(str, vol.spatial_shape)), "slices": n, "slices_segmented": len(todo),
               "slices_air": len(air), "slices_outside_range": n - len(keep),
               "mask_voxels": int(np.count_nonzero(mask)), "slices_with_mask": n_masked,
               "slices_empty_coarse": n_empty, "empty_policy": self.cfg.prompts.empty, "intensity": iparams,
               "warnings": list(dict.fromkeys(list(vol.meta.get("warnings", [])) + iparams.get("warnings", [])))}
        out = CaseOutput(cid, row, volume=vol, slices=[rows[k] for k in sorted(rows)])
        if self.gt_index is not None:
            row.update(self._score(cid, vol, mask))
        if self.cfg.diagnostics.enabled and todo:
            out.sensitivity = self._sensitivity(cid, smap, imap, todo)
            from medkt.segmentation.diagnostics import summarize_sensitivity
            row.update({f"sens_{k}": round(v, 4) for k, v in summarize_sensitivity(out.sensitivity).items()})
        t = time.perf_counter()
        if self.out_dir is not None:
            if best.k is None:  # nothing segmented: overlay of the middle slice, empty
                k = keep[len(keep) // 2] if keep else 0
                best.k, best.image = k, _prepared(smap, imap, k)
                best.mask, best.saliency = np.zeros(best.image.shape[:2], bool), None
            out.files = self._write(cid, vol, mask, sal, coarse, best, row["warnings"])
        T["write_s"] = time.perf_counter() - t
        if want:
            out.mask, out.saliency, out.coarse = mask, sal, coarse
        row.update({k: round(v, 4) for k, v in T.items()})
        row["case_s"] = round(time.perf_counter() - t0, 4)
        row["case_cpu_s"] = round(time.process_time() - c0, 4)  # all threads; robust to a busy machine
        row["s_per_slice"] = round(row["case_s"] / len(todo), 4) if todo else None
        return out

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

    def _sensitivity(self, cid: str, smap, imap, todo: list[int]) -> list[dict]:
        from medkt.segmentation.diagnostics import prompt_sensitivity
        d = self.cfg.diagnostics
        n = len(todo)
        idx = [todo[i] for i in sorted({int(round(i)) for i in np.linspace(0, n - 1, min(d.max_slices, n))})]
        return prompt_sensitivity(self.seg.saliency, [imap.apply(s) for s in smap.iter_extract(imap.source, idx)],
                                  self.prompt,
                                  neutral_prompt=d.neutral_prompt, n_random=d.random_prompts,
                                  random_length=d.random_length, seed=self.cfg.m2ib.seed,
                                  names=[f"{cid}[{k}]" for k in idx])

    def _write(self, cid, vol, mask, sal, coarse, best: _Best, warnings: list) -> dict:
        from medkt import io as mio
        from medkt.errors import DicomSegError
        d = self.out_dir / cid
        d.mkdir(parents=True, exist_ok=True)
        fmt = mask_format(self.cfg, vol)
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
            files["overlay"] = str(mio.write_overlay(best.image, d / "overlay.png", best.mask.astype(np.uint8),
                                                     saliency=best.saliency, overwrite=True))
        return files
