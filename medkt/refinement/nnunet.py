"""Export images + pseudo-labels as an nnU-Net v2 raw dataset (``medkt refine --export-nnunet DIR``).

The layout is nnU-Net v2's documented raw-dataset format (``documentation/dataset_format.md``)::

    DIR = nnUNet_raw/DatasetXXX_Name/
    ├── dataset.json     {"channel_names": {"0": "CT"}, "labels": {"background": 0, "<name>": 1},
    │                     "numTraining": N, "file_ending": ".nii.gz"}
    ├── imagesTr/CASE_0000.nii.gz   one file per channel (4-digit channel index)
    └── labelsTr/CASE.nii.gz        labels 0/1 on the image grid

* 3-D inputs (DICOM series, NIfTI) → ``.nii.gz`` with the source affine; intensities as read
  (HU for CT: nnU-Net normalises by the channel name, ``"CT"`` → its CT scheme, else z-score).
* 2-D images → ``.png`` (nnU-Net's ``NaturalImage2DIO``): grey images one channel; RGB images
  one ``_0000.png`` holding R, G, B with ``channel_names`` ``R``/``G``/``B`` (as nnU-Net's
  RGB example datasets); labels are 0/1 PNGs.
* One dataset needs one file ending: mixing 2-D and 3-D cases is refused.

``run.json`` beside ``dataset.json`` records the sources; nnU-Net ignores it.  After export:
``nnUNetv2_plan_and_preprocess -d XXX --verify_dataset_integrity`` then ``nnUNetv2_train XXX 2d all``.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from medkt.errors import ConfigError, InputError, MedktError

log = logging.getLogger("medkt.refine")

DATASET_RE = re.compile(r"^Dataset\d{3}_[A-Za-z0-9_\-]+$")


def _channel_names(vol, rgb: bool) -> dict[str, str]:
    if rgb:
        return {"0": "R", "1": "G", "2": "B"}
    mod = str(vol.modality or "unknown").upper()
    return {"0": "CT" if mod == "CT" else (mod if mod not in ("UNKNOWN", "") else "image")}


def _write_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    from medkt.runs import atomic_path
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _write_nifti(arr: np.ndarray, affine: np.ndarray, path: Path, label: bool) -> None:
    import nibabel as nib

    from medkt.runs import atomic_path
    data = arr.astype(np.uint8) if label else arr
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    if label:
        img.header.set_intent("label")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def _png_image(vol) -> np.ndarray:
    a = np.asarray(vol.array)
    if a.dtype == np.uint8:
        return a
    lo, hi = float(a.min()), float(a.max())
    return np.zeros(a.shape, np.uint8) if hi <= lo else np.round(255 * (a - lo) / (hi - lo)).astype(np.uint8)


def export_nnunet(images, pseudo_masks, out_dir: str | Path, *, cfg=None, label_name: str = "target",
                  dataset_name: str | None = None, overwrite: bool = False, max_voxels: int | None = None) -> dict:
    """Write the nnU-Net v2 raw dataset (see module docstring) and return a summary dict
    (``dataset``, ``cases``, ``failures``, ``file_ending``, ``channel_names``, ``numTraining``).

    Args:
        images, pseudo_masks: as :func:`medkt.refine` takes them.
        out_dir: the dataset folder, named ``DatasetXXX_Name`` (XXX three digits), usually inside
            ``$nnUNet_raw``.
        label_name: the foreground label's name in ``dataset.json``.
        dataset_name: ``DatasetXXX_Name`` of a folder to create inside ``out_dir`` instead.

    Raises:
        ConfigError: the folder name is not ``DatasetXXX_Name``.
        InputError: no case could be paired, or 2-D and 3-D cases are mixed.
        OutputError: the folder holds results (pass ``overwrite``) or lies inside an input.
    """
    from medkt import io as mio
    from medkt.refinement.data import _read_array, paired_cases
    from medkt.runs import RunRecord, atomic_write_json, prepare_output_dir, release_output_dir
    out = Path(out_dir).expanduser()
    if dataset_name:
        out = out / dataset_name
    if not DATASET_RE.match(out.name):
        raise ConfigError(f"nnU-Net dataset folders are named DatasetXXX_Name; got '{out.name}'.", path=out,
                          hint="e.g. --export-nnunet $nnUNet_raw/Dataset501_Nodule (XXX: three digits, "
                               "an id no other dataset of yours uses)")
    pairs, failures, _orphans = paired_cases(images, pseudo_masks, max_voxels)
    out = prepare_output_dir(out, [images, pseudo_masks], overwrite=overwrite)
    try:
        record = RunRecord("refine --export-nnunet", config={"label_name": label_name})
        done, ending, channels = [], None, None
        for case, lf in pairs:
            try:
                vol = mio.read_case(case)
                lab = np.asarray(_read_array(lf.mask))
                if lab.ndim == 3 and vol.is_2d and lab.shape[-1] in (3, 4):
                    lab = lab[..., 0]
                if lab.shape != tuple(vol.spatial_shape):
                    raise InputError(f"pseudo-label shape {lab.shape} differs from the image "
                                     f"{tuple(vol.spatial_shape)}.", path=lf.mask)
                rgb = vol.is_2d and np.asarray(vol.array).ndim == 3
                end = ".png" if vol.is_2d else ".nii.gz"
                ch = _channel_names(vol, rgb)
                if ending is None:
                    ending, channels = end, ch
                elif end != ending:
                    raise InputError(f"case {case.case_id} is {'2-D' if vol.is_2d else '3-D'} but earlier "
                                     f"cases were not; one nnU-Net dataset has one file ending.",
                                     hint="export 2-D and 3-D images into two datasets")
                elif ch != channels and not rgb:
                    log.warning("case %s: channel %s differs from the dataset's %s", case.case_id, ch, channels)
                img_path = out / "imagesTr" / f"{case.case_id}_0000{end}"
                lab_path = out / "labelsTr" / f"{case.case_id}{end}"
                if vol.is_2d:
                    _write_png(_png_image(vol), img_path)
                    _write_png((lab > 0).astype(np.uint8), lab_path)
                else:
                    _write_nifti(np.asarray(vol.array), vol.affine, img_path, label=False)
                    _write_nifti((lab > 0).astype(np.uint8), vol.affine, lab_path, label=True)
                done.append(case.case_id)
            except MedktError as e:
                if "one file ending" in e.message:
                    raise
                failures.append({"case_id": case.case_id, "reason": " ".join(e.format().split())})
        if not done:
            raise InputError("nothing exported: no image could be paired with a pseudo-label.", path=str(images),
                             hint="pass the images `medkt segment` read and its output folder")
        ds = {"channel_names": channels, "labels": {"background": 0, label_name: 1}, "numTraining": len(done),
              "file_ending": ending, "name": out.name,
              "description": "medkt zero-shot pseudo-labels (M2IB -> SAM), exported by medkt refine"}
        atomic_write_json(out / "dataset.json", ds)
        record.cases = [{"case_id": c, "status": "ok"} for c in done]
        record.failures = failures
        record.extra.update({"images": str(images), "pseudo_masks": str(pseudo_masks), "dataset_json": ds})
        record.write(out)
        return {"dataset": str(out), "cases": done, "failures": failures, "file_ending": ending,
                "channel_names": channels, "numTraining": len(done)}
    finally:
        release_output_dir(out)
