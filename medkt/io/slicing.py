"""3-D volume <-> 2-D slices for 2-D models, with an exact index map back to the source voxel grid.

``iter_slices(volume, "axial")`` reorients the volume (axis permutations and flips only, chosen by
``nibabel.orientations.io_orientation`` from the affine, so it also works for oblique and LPS data)
to canonical RAS, takes slices along the requested anatomical axis and presents each one in
**radiological display orientation**:

* axial: rows top -> bottom = anterior -> posterior, columns left -> right = patient right -> left;
* coronal: rows = superior -> inferior, columns = patient right -> left;
* sagittal: rows = superior -> inferior, columns = anterior -> posterior.

Slice ``k`` is the ``k``-th plane along the canonical axis (inferior -> superior for axial,
posterior -> anterior for coronal, left -> right for sagittal).  With an integer ``axis`` the
source array is sliced as stored (``array.take(k, axis)``) with no reorientation.
:func:`reassemble` inverts exactly whichever mapping was used, so masks come back in the source
``(I, J, K)`` order and are written with the source affine.  2-D images give one slice, index 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from medkt.errors import ConfigError, GeometryError
from medkt.io.checks import check_volume
from medkt.io.types import ImageVolume

PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}


@dataclass
class SliceMap:
    """How 2-D slices relate to the source array (see module docstring).

    Attributes:
        shape: spatial shape of the source array (``(I, J, K)``, or ``(H, W)`` for 2-D images).
        axis: slicing axis: a canonical RAS axis when ``display`` is true, else a source array axis.
        plane: ``"axial"``, ``"coronal"``, ``"sagittal"`` or ``None`` (integer axis / 2-D image).
        display: whether slices were reoriented to radiological display orientation.
        ornt: ``(3, 2)`` nibabel orientation of the source axes (``io_orientation(affine)``): source
            axis ``a`` becomes RAS axis ``ornt[a, 0]``, reversed when ``ornt[a, 1] == -1``.
        indices: slice indices, ``0 .. n - 1``.
        slice_shape: shape of each 2-D slice ``(rows, cols)``.
        pixel_spacing: mm per slice pixel ``(row, col)``; ``slice_spacing``: mm between slices.
    """

    shape: tuple[int, ...]
    axis: int | None
    plane: str | None
    display: bool
    ornt: np.ndarray
    indices: list[int]
    slice_shape: tuple[int, int]
    pixel_spacing: tuple[float, float]
    slice_spacing: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_2d(self) -> bool:
        return len(self.shape) == 2

    def __len__(self) -> int:
        return len(self.indices)

    # -------------------------------------------------------------- forward
    def _canonical(self, array: np.ndarray) -> np.ndarray:
        from nibabel.orientations import apply_orientation
        return apply_orientation(array, self.ornt) if self.display else array

    def _check(self, array) -> np.ndarray:
        array = np.asarray(array)
        if tuple(array.shape[: len(self.shape)]) != tuple(self.shape):
            raise GeometryError(f"array of shape {array.shape} does not match the sliced volume {self.shape}.")
        return array

    def _plane(self, canonical: np.ndarray, k: int) -> np.ndarray:
        # a basic-indexing view: np.take would first copy a non-contiguous ``canonical`` (the
        # reoriented volume) whole, for every slice -- quadratic in the slice count
        index: list = [slice(None)] * canonical.ndim
        index[self.axis] = k
        plane = canonical[tuple(index)]
        return np.swapaxes(plane, 0, 1)[::-1, ::-1] if self.display else plane

    def view(self, array: np.ndarray, k: int) -> np.ndarray:
        """Slice ``k`` of ``array`` as a view (no copy; writable when ``array`` is).

        Writing into the view writes into ``array`` at the source voxels of slice ``k``, so
        ``smap.view(mask3d, k)[...] = mask2d`` puts a display-oriented 2-D mask back in the
        source voxel order without building any other full-volume array.
        """
        array = self._check(array)
        if self.is_2d:
            if k != 0:
                raise GeometryError(f"a 2-D image has one slice (0), not {k}.")
            return array
        return self._plane(self._canonical(array), k)

    def iter_extract(self, array: np.ndarray, indices: Sequence[int] | None = None) -> Iterator[np.ndarray]:
        """Contiguous copies of the slices ``indices`` (default all) of ``array``, one at a time.

        Only one slice is copied per step, so the cost is linear in the number of slices and
        the memory one slice.
        """
        array = self._check(array)
        if self.is_2d:
            yield array
            return
        c = self._canonical(array)
        for k in (self.indices if indices is None else indices):
            yield np.ascontiguousarray(self._plane(c, k))

    def extract(self, array: np.ndarray) -> list[np.ndarray]:
        """Slices of ``array`` (same spatial shape as the source) in the map's orientation."""
        return list(self.iter_extract(array))

    def source_axis_index(self, k: int) -> tuple[int, int]:
        """``(source_axis, source_index)`` of slice ``k`` in the source array."""
        if self.is_2d:
            return (-1, 0)
        if not self.display:
            return self.axis, k
        a = int(np.flatnonzero(self.ornt[:, 0] == self.axis)[0])
        return a, (k if self.ornt[a, 1] > 0 else self.shape[a] - 1 - k)

    # -------------------------------------------------------------- inverse
    def reassemble(self, masks, dtype=None) -> np.ndarray:
        """Stack 2-D masks back into the source voxel order; see :func:`reassemble`."""
        if isinstance(masks, Mapping):
            items = dict(masks)
        elif isinstance(masks, np.ndarray) and masks.ndim == (2 if self.is_2d else 3) and not self.is_2d:
            items = {k: masks[n] for n, k in enumerate(self.indices)} if len(masks) == len(self.indices) else None
        elif isinstance(masks, np.ndarray) and self.is_2d and masks.ndim == 2:
            items = {0: masks}
        else:
            seq = list(masks)
            items = dict(zip(self.indices, seq)) if len(seq) == len(self.indices) else None
        if items is None:
            raise GeometryError(f"got {len(masks)} mask slices for a volume of {len(self.indices)} slices.",
                                hint="pass one mask per slice, or a dict {slice_index: mask}")
        unknown = set(items) - set(self.indices)
        if unknown:
            raise GeometryError(f"mask slice indices {sorted(unknown)[:5]} are outside 0..{len(self.indices) - 1}.")
        first = np.asarray(next(iter(items.values()))) if items else np.zeros(0, np.uint8)
        dt = np.dtype(dtype) if dtype is not None else (np.dtype(np.uint8) if first.dtype == bool else first.dtype)
        for k, m in items.items():
            if np.shape(m) != tuple(self.slice_shape):
                raise GeometryError(f"mask for slice {k} has shape {np.shape(m)}, expected {self.slice_shape} "
                                    "(the slice shape given by iter_slices).",
                                    hint="resize predictions back to the slice size before reassembling")
        if self.is_2d:
            return np.asarray(items.get(0, np.zeros(self.slice_shape)), dtype=dt)
        canon_shape = list(self._canonical(np.empty(self.shape, dtype=np.uint8)).shape)
        canon = np.zeros(canon_shape, dtype=dt)
        for k, m in items.items():
            m = np.asarray(m, dtype=dt)
            plane = m[::-1, ::-1].T if self.display else m
            idx = [slice(None)] * 3
            idx[self.axis] = k
            canon[tuple(idx)] = plane
        if not self.display:
            return canon
        from nibabel.orientations import apply_orientation, ornt_transform
        canonical = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
        inverse = ornt_transform(canonical, self.ornt)
        return np.ascontiguousarray(apply_orientation(canon, inverse))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description for run.json."""
        return {"shape": list(self.shape), "axis": self.axis, "plane": self.plane, "display": self.display,
                "n_slices": len(self.indices), "slice_shape": list(self.slice_shape),
                "pixel_spacing": [float(x) for x in self.pixel_spacing],
                "slice_spacing": None if self.slice_spacing is None else float(self.slice_spacing),
                "ornt": self.ornt.tolist()}


def make_slice_map(volume: ImageVolume, axis: str | int = "axial") -> SliceMap:
    """Build the :class:`SliceMap` for ``volume`` sliced along ``axis`` (plane name or array axis).

    Raises:
        GeometryError: a non-finite or singular affine, a zero-length axis or a bad spacing (readers
            refuse these already; this guards volumes built by hand).
    """
    check_volume(volume)
    shape = tuple(volume.spatial_shape)
    if volume.is_2d:
        return SliceMap(shape, None, None, False, np.array([[0, 1], [1, 1]], float), [0], shape[:2],
                        tuple(volume.spacing[:2]), None)
    sp = np.asarray(volume.spacing, dtype=float)
    if isinstance(axis, str):
        key = axis.strip().lower()
        if key not in PLANES:
            from medkt.errors import UnknownNameError
            raise UnknownNameError("slicing axis", axis, list(PLANES) + ["0", "1", "2"])
        from nibabel.orientations import io_orientation
        ornt = io_orientation(volume.affine)  # source axis a -> RAS axis ornt[a, 0], flipped if ornt[a, 1] < 0
        c_axis = PLANES[key]
        canon_shape = [0, 0, 0]
        canon_sp = [0.0, 0.0, 0.0]
        for a in range(3):
            canon_shape[int(ornt[a, 0])] = shape[a]
            canon_sp[int(ornt[a, 0])] = sp[a]
        p0, p1 = [d for d in range(3) if d != c_axis]
        return SliceMap(shape, c_axis, key, True, ornt, list(range(canon_shape[c_axis])),
                        (canon_shape[p1], canon_shape[p0]), (canon_sp[p1], canon_sp[p0]), canon_sp[c_axis])
    try:
        a = int(axis)
    except (TypeError, ValueError):
        raise ConfigError(f"slicing axis must be a plane name or 0, 1, 2; got {axis!r}.") from None
    if a not in (0, 1, 2):
        raise ConfigError(f"slicing axis must be 0, 1 or 2 for a 3-D volume; got {axis!r}.")
    rest = [d for d in range(3) if d != a]
    return SliceMap(shape, a, None, False, np.array([[0, 1], [1, 1], [2, 1]], float), list(range(shape[a])),
                    (shape[rest[0]], shape[rest[1]]), (sp[rest[0]], sp[rest[1]]), sp[a])


def iter_slices(volume: ImageVolume, axis: str | int = "axial", *,
                array: np.ndarray | None = None) -> tuple[list[tuple[int, np.ndarray]], SliceMap]:
    """Cut ``volume`` (or ``array``, an image on the same grid, e.g. its prepared intensities) into 2-D slices.

    Args:
        volume: gives the grid and affine.
        axis: ``"axial"`` (default), ``"coronal"``, ``"sagittal"`` (canonical, display-oriented) or an
            integer source array axis (no reorientation).
        array: data to slice instead of ``volume.array``; its leading axes must equal the volume's
            spatial shape.

    Returns:
        ``([(index, slice_2d), ...], slice_map)``; slices are ``(rows, cols)`` (plus any trailing
        channel axis of ``array``).
    """
    smap = make_slice_map(volume, axis)
    data = volume.array if array is None else array
    return list(zip(smap.indices, smap.extract(data))), smap


def reassemble(masks: Sequence[np.ndarray] | Mapping[int, np.ndarray] | np.ndarray, slice_map: SliceMap,
               dtype=None) -> np.ndarray:
    """Put 2-D masks back into the source voxel grid (``slice_map.shape``, source ``(I, J, K)`` order).

    Args:
        masks: one 2-D mask per slice (list or ``(n, rows, cols)`` array, in ``slice_map.indices``
            order) or a dict ``{slice_index: mask}``; missing slices are zero.
        slice_map: from :func:`iter_slices`.
        dtype: output dtype (default: the masks' dtype; bool becomes uint8).

    Raises:
        GeometryError: wrong number of slices or a slice of the wrong shape.
    """
    return slice_map.reassemble(masks, dtype=dtype)
