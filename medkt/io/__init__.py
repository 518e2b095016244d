"""Medical image I/O for medkt: read DICOM / NIfTI / 2-D images, prepare intensities, slice, write masks.

Typical use (what ``medkt segment`` does)::

    from medkt import io as mio
    for case in mio.discover_cases("/data/ct_folder"):          # one Case per series / file / image
        vol = mio.read_case(case)                                # ImageVolume; raises case.error if bad
        img01, params = mio.prepare_intensity(vol, window="abdomen")   # float32 in [0, 1] + run.json params
        slices, smap = mio.iter_slices(vol, "axial", array=img01)      # [(k, 2-D display slice)], SliceMap
        masks = {k: my_model(s) for k, s in slices}
        mask3d = mio.reassemble(masks, smap)                     # back in vol.array's voxel order
        mio.write_mask(mask3d, vol, "out/case/mask.nii.gz")      # same affine, qform and sform

Array conventions (see :mod:`medkt.io.types`): 3-D arrays are ``(I, J, K)`` in NIfTI voxel order with
a voxel -> RAS+ mm affine; 2-D images are ``(H, W)`` or ``(H, W, 3)``.  Display slices from
:func:`iter_slices` are in radiological orientation (rows top = anterior/superior, patient right on
the image left), whatever the storage orientation of the file.

Errors are :class:`medkt.errors.InputError` (and subclasses :class:`~medkt.errors.GeometryError`,
:class:`~medkt.errors.DecoderMissingError`), :class:`~medkt.errors.OutputError` and
:class:`~medkt.errors.OptionalDependencyError`; each names the file, the problem and the fix.
"""
from __future__ import annotations

from medkt.io.discover import CaseList, discover_cases
from medkt.io.intensity import CT_WINDOWS, IntensityMapping, intensity_mapping, prepare_intensity, resolve_window
from medkt.io.overlay import make_overlay, write_overlay
from medkt.io.readers import (ImageReader, get_reader, list_readers, read_case, read_image, register_reader,
                              volume_from_array, volume_from_nifti)
from medkt.io.slicing import SliceMap, iter_slices, make_slice_map, reassemble
from medkt.io.types import Case, ImageVolume
from medkt.io.writers import guard_output, write_mask, write_saliency

__all__ = [
    "Case", "CaseList", "ImageVolume", "ImageReader", "SliceMap", "CT_WINDOWS",
    "discover_cases", "read_case", "read_image", "volume_from_array", "volume_from_nifti",
    "register_reader", "get_reader", "list_readers",
    "prepare_intensity", "intensity_mapping", "IntensityMapping", "resolve_window",
    "iter_slices", "make_slice_map", "reassemble",
    "write_mask", "write_saliency", "write_overlay", "make_overlay", "guard_output",
]
