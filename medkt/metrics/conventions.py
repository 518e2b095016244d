"""Names of the NSD / HD95 conventions, their defaults and what each computes (no NumPy import).

One place for what the CLI offers, what :class:`~medkt.metrics.SegMetricConfig` accepts and what
every report states.  The defaults are DeepMind's ``surface-distance`` conventions, which the
segmentation challenges and MedSAM's evaluation use; ``docs/metrics.md`` gives the measured
differences between conventions.
"""
from __future__ import annotations

__all__ = ["NSD_MODES", "HD95_MODES", "DEFAULT_NSD_MODE", "DEFAULT_HD95_MODE", "NSD_CONVENTIONS",
           "HD95_CONVENTIONS", "check_mode", "distance_units"]

#: What each NSD mode computes (the first is the default), as written into every report.
NSD_CONVENTIONS = {
    "deepmind": "area-weighted surface elements (DeepMind surface-distance "
                "compute_surface_dice_at_tolerance; the convention of the challenges and MedSAM)",
    "surface": "boundary-voxel count (MONAI compute_surface_dice, use_subvoxels=False)",
    "medclip-samv2": "MedCLIP-SAMv2 slab 'NSD': tolerant area overlap in pixels, spacing ignored",
}
#: What each HD95 mode computes (the first is the default).
HD95_CONVENTIONS = {
    "deepmind": "area-weighted percentile of surface-element distances, no interpolation, larger "
                "direction (DeepMind surface-distance compute_robust_hausdorff)",
    "monai": "max of the two directed percentiles of boundary-voxel distances, linear interpolation "
             "(MONAI compute_hausdorff_distance)",
    "medpy": "percentile of both directions' boundary-voxel distances pooled, linear interpolation "
             "(medpy.metric.binary.hd95)",
}
NSD_MODES = tuple(NSD_CONVENTIONS)
HD95_MODES = tuple(HD95_CONVENTIONS)
DEFAULT_NSD_MODE = NSD_MODES[0]
DEFAULT_HD95_MODE = HD95_MODES[0]


def check_mode(kind: str, mode: str) -> str:
    """Return ``mode`` if it is a known ``"NSD"`` / ``"HD95"`` convention, else raise UnknownNameError."""
    names = NSD_MODES if kind == "NSD" else HD95_MODES
    if mode not in names:
        from medkt.errors import UnknownNameError
        raise UnknownNameError(f"{kind} mode", str(mode), names)
    return mode


def distance_units(nsd_mode: str, nsd_units: str) -> str:
    """Units of the NSD tolerance and of HD95: ``"px"`` for ``medclip-samv2`` (MedCLIP-SAMv2 works
    in pixels, spacing ignored), else ``nsd_units``.  The one place this rule lives."""
    return "px" if nsd_mode == "medclip-samv2" else nsd_units
