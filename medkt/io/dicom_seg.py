"""DICOM-SEG writer via highdicom (optional extra ``medkt[dicom]``).

The SEG is built from the exact source instances of the reference series (same Study, Frame of
Reference, ReferencedSeriesSequence and per-frame SourceImageSequence), so Slicer and OHIF place it
on the images it was computed from.  Mask voxel ``(i, j, k)`` becomes pixel ``(row j, column i)`` of
the frame derived from source slice ``k``.  Empty frames are kept (``omit_empty_frames=False``),
which viewers handle more reliably.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medkt.errors import DicomSegError, OptionalDependencyError, OutputError
from medkt.io.types import ImageVolume
from medkt.runs import atomic_path


def _highdicom():
    try:
        import highdicom as hd
    except ImportError:
        raise OptionalDependencyError("highdicom", "writing DICOM-SEG", extra="dicom") from None
    return hd


def write_dicom_seg(mask: np.ndarray, reference: ImageVolume, path: str | Path, *,
                    labels: dict[int, str] | None = None, series_description: str = "medkt segmentation",
                    series_number: int = 999) -> Path:
    """Write ``mask`` (integer labels on the reference grid) as a DICOM-SEG referencing the source series.

    Args:
        mask: ``(I, J, K)`` labels for a DICOM volume, or ``(H, W)`` for a 2-D DICOM image.
        reference: an :class:`ImageVolume` read from DICOM (``reference.kind == "dicom"``).
        path: output ``.dcm`` file (written atomically; the caller checks safety / overwrite).
        labels: ``{label: name}``; every label ``1 .. mask.max()`` gets a segment (default names
            ``"mask"`` for a binary mask, ``"label N"`` otherwise).

    Raises:
        OptionalDependencyError: highdicom is not installed (``pip install 'medkt[dicom]'``).
        OutputError: the reference is not DICOM.
        DicomSegError: highdicom rejects the source headers (e.g. a multi-valued PatientName); a
            caller holding the mask can write NIfTI instead (``medkt segment`` does, with a warning).
    """
    hd = _highdicom()
    import pydicom
    from pydicom.sr.codedict import codes
    from medkt import __version__

    path = Path(path)
    if reference.kind != "dicom" or not reference.meta.get("source_paths"):
        raise OutputError("DICOM-SEG output needs a reference read from DICOM (it must reference the source "
                          "instances).", path=path, hint="write NIfTI (.nii.gz) for NIfTI or in-memory input")
    src_paths = reference.meta["source_paths"]
    frames = reference.meta.get("frames") or [None] * len(src_paths)
    unique = list(dict.fromkeys(src_paths))
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in unique]
    m = np.asarray(mask)
    if reference.is_2d:
        pixels = m[None]
    else:
        planes = [m[:, :, k].T for k in range(m.shape[2])]  # (rows=J, cols=I) per source slice k
        if len(unique) == 1 and frames[0] is not None:      # one multi-frame source: order by frame number
            order = np.argsort(frames)
            planes = [planes[k] for k in order]
        pixels = np.stack(planes, axis=0)
    top = int(pixels.max()) if pixels.size else 0
    labels = dict(labels or {})
    n_seg = max([top, 1] + list(labels))
    algo = hd.AlgorithmIdentificationSequence(name="medkt", family=codes.cid7162.ArtificialIntelligence,
                                              version=str(__version__))
    descs = [hd.seg.SegmentDescription(
        segment_number=v, segment_label=labels.get(v, "mask" if n_seg == 1 else f"label {v}")[:64],
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo)
        for v in range(1, n_seg + 1)]
    try:
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixels.astype(np.uint8 if n_seg < 256 else np.uint16),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descs,
            series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="medkt", manufacturer_model_name="medkt",
            software_versions=str(__version__), device_serial_number="0", omit_empty_frames=False,
            series_description=series_description)
    except (ValueError, AttributeError, KeyError, TypeError, IndexError) as e:
        # highdicom validates the copied source attributes: e.g. a multi-valued PatientName raises TypeError
        raise DicomSegError(f"highdicom could not build the DICOM-SEG from the source headers "
                            f"({type(e).__name__}: {e}).", path=path,
                            hint="write NIfTI instead (.nii.gz, --mask-format nifti); the source headers hold values "
                                 "a SEG cannot copy (e.g. several PatientName values) or lack its geometry") from None
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path
