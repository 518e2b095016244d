"""Benchmark and comparison of medkt's NSD / HD95 conventions (``docs/metrics.md``).

Two parts, both on seeded synthetic anisotropic 3-D cases (spacing 0.8 x 0.8 x 3 mm, array order):

* ``--speed``: one 256 x 256 x 64 case (an organ-sized smooth blob against a perturbed copy);
  times medkt's implementation of each convention against the reference packages
  (``surface_distance`` for ``deepmind``, ``medpy.metric.binary.hd95`` for ``medpy``, MONAI for
  ``surface``/``monai``) when they are installed.  Protocol: one warm-up call, then R rounds
  alternating A, B, B, A; the median of each arm is reported.
* ``--compare``: 12 cases (smooth blobs against predictions shifted by 1-3 voxels, eroded or
  dilated in-plane by 2-3 voxels (1.6-2.4 mm), with a noisy boundary, with four false-positive
  specks 10-30 mm away, or with the top 1-2 slices missed); per case NSD at 2 mm
  in the NSD modes and HD95 in the three HD95 modes, the worst absolute differences between modes, and the worst difference from the reference
  packages when installed.

    python benchmarks/bench_surface_metrics.py --speed --rounds 3
    python benchmarks/bench_surface_metrics.py --compare
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy import ndimage as ndi

SPACING = (0.8, 0.8, 3.0)
TOL = 2.0


def blob(shape, centre, radii, rng, roughness=0.25):
    """A smooth, irregular ellipsoid-like mask (voxel radii per axis)."""
    grid = np.indices(shape, dtype=np.float32)
    r = sum(((g - c) / rad) ** 2 for g, c, rad in zip(grid, centre, radii))
    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=(6, 6, 2))
    noise /= np.abs(noise).max() + 1e-9
    return r + roughness * noise < 1.0


def perturb(gt, kind, rng):
    in_plane = ndi.generate_binary_structure(3, 1)
    in_plane[:, :, (0, 2)] = False  # 4-connected in the (0.8 mm) plane, not along the 3 mm axis
    if kind == "shift":
        return np.roll(gt, (int(rng.integers(1, 4)), int(rng.integers(-3, 0)), int(rng.integers(0, 2))),
                       axis=(0, 1, 2))
    if kind == "erode":
        return ndi.binary_erosion(gt, in_plane, iterations=int(rng.integers(2, 4)))
    if kind == "dilate":
        return ndi.binary_dilation(gt, in_plane, iterations=int(rng.integers(2, 4)))
    if kind == "islands":  # false-positive specks 10-30 mm from the object, as zero-shot masks have
        out = gt.copy()
        dist = ndi.distance_transform_edt(~gt, sampling=SPACING)
        far = np.argwhere((dist > 10) & (dist < 30))
        for i in rng.choice(len(far), size=4, replace=False):
            x, y, z = far[i]
            out[x - 2:x + 2, y - 2:y + 2, z:z + 1] = True
        return out
    if kind == "cut":  # the top 1-2 slices missed (3 mm each)
        zs = np.nonzero(gt.any(axis=(0, 1)))[0]
        out = gt.copy()
        out[:, :, zs[-1] - int(rng.integers(0, 2)):] = False
        return out
    noisy = ndi.gaussian_filter((gt.astype(np.float32) + 0.6 * rng.standard_normal(gt.shape)), 1.0)
    return noisy > 0.5


def cases(n=12, shape=(160, 160, 40), seed=0):
    rng = np.random.default_rng(seed)
    kinds = ("shift", "erode", "dilate", "noise", "islands", "cut")
    out = []
    for i in range(n):
        radii = (rng.uniform(15, 40), rng.uniform(15, 40), rng.uniform(4, 10))
        centre = tuple(s / 2 + rng.uniform(-10, 10) for s in shape[:2]) + (shape[2] / 2,)
        gt = blob(shape, centre, radii, rng)
        out.append((f"case{i:02d}-{kinds[i % 6]}", perturb(gt, kinds[i % 6], rng), gt))
    return out


def _timeit(fn, rounds):
    fn()  # warm-up
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def speed(rounds: int) -> None:
    from medkt.metrics.surface import hd_from_distances, nsd_from_distances, surface_distances
    from medkt.metrics.surfels import surfel_distances, surfel_hd, surfel_nsd
    rng = np.random.default_rng(1)
    shape = (256, 256, 64)
    gt = blob(shape, (128, 128, 32), (70, 55, 22), rng)
    pred = perturb(gt, "noise", rng)
    print(f"case {shape}, spacing {SPACING}, gt {int(gt.sum())} voxels, pred {int(pred.sum())} voxels")

    def medkt_deepmind():
        d = surfel_distances(pred, gt, SPACING)
        return surfel_nsd(d, TOL), surfel_hd(d, 95)

    def medkt_voxel(mode):
        def run():
            d = surface_distances(pred, gt, SPACING)
            return nsd_from_distances(*d, TOL), hd_from_distances(*d, 95, mode=mode)
        return run

    arms = {"medkt deepmind (NSD + HD95)": medkt_deepmind,
            "medkt surface NSD + monai HD95": medkt_voxel("monai"),
            "medkt surface NSD + medpy HD95": medkt_voxel("medpy")}
    try:
        import surface_distance as sd

        def package_deepmind():
            d = sd.compute_surface_distances(gt, pred, SPACING)
            return sd.compute_surface_dice_at_tolerance(d, TOL), sd.compute_robust_hausdorff(d, 95)
        arms["surface_distance package (NSD + HD95)"] = package_deepmind
    except ImportError:
        print("surface_distance not installed: package arm skipped")
    try:
        from medpy.metric.binary import hd95
        arms["medpy.metric.binary.hd95 (HD95 only)"] = lambda: hd95(pred, gt, voxelspacing=SPACING)
    except ImportError:
        print("medpy not installed: package arm skipped")
    results = {name: [] for name in arms}
    names = list(arms)
    for _ in range(rounds):  # alternate arms so drift hits every arm alike
        for name in names + names[::-1]:
            results[name] += _timeit(arms[name], 1)
    for name in names:
        print(f"  {name:42s} median {statistics.median(results[name]):7.3f} s  "
              f"(min {min(results[name]):.3f}, n {len(results[name])})")


def compare() -> None:
    from medkt.metrics.conventions import HD95_MODES, NSD_MODES
    from medkt.metrics.surface import compute_hd95, compute_nsd
    try:
        import surface_distance as sd
    except ImportError:
        sd = None
    try:
        from medpy.metric.binary import hd95 as medpy_hd95
    except ImportError:
        medpy_hd95 = None
    nsd_modes = [m for m in NSD_MODES if m != "medclip-samv2"]
    rows = []
    print(f"{'case':18s} " + " ".join(f"nsd:{m:9s}" for m in nsd_modes)
          + " " + " ".join(f"hd95:{m:8s}" for m in HD95_MODES))
    ref_nsd = ref_dm_hd = ref_medpy = 0.0
    for name, pred, gt in cases():
        r = {f"nsd:{m}": compute_nsd(pred, gt, TOL, SPACING, mode=m) for m in nsd_modes}
        r |= {f"hd95:{m}": compute_hd95(pred, gt, SPACING, mode=m) for m in HD95_MODES}
        rows.append(r)
        print(f"{name:18s} " + " ".join(f"{r[f'nsd:{m}']:13.4f}" for m in nsd_modes)
              + " " + " ".join(f"{r[f'hd95:{m}']:13.3f}" for m in HD95_MODES))
        if sd is not None:
            d = sd.compute_surface_distances(gt, pred, SPACING)
            ref_nsd = max(ref_nsd, abs(r["nsd:deepmind"] - sd.compute_surface_dice_at_tolerance(d, TOL)))
            ref_dm_hd = max(ref_dm_hd, abs(r["hd95:deepmind"] - sd.compute_robust_hausdorff(d, 95)))
        if medpy_hd95 is not None:
            ref_medpy = max(ref_medpy, abs(r["hd95:medpy"] - medpy_hd95(pred, gt, voxelspacing=SPACING)))

    def worst(a, b):
        diffs = [abs(r[a] - r[b]) for r in rows]
        i = int(np.argmax(diffs))
        return (f"{a} vs {b}: worst |diff| {diffs[i]:.4f} (case {i}: {rows[i][a]:.4f} vs "
                f"{rows[i][b]:.4f}), mean |diff| {np.mean(diffs):.4f}")
    print(worst("nsd:deepmind", "nsd:surface") + "  [NSD x100 = points]")
    for a, b in (("hd95:deepmind", "hd95:monai"), ("hd95:deepmind", "hd95:medpy"), ("hd95:monai", "hd95:medpy")):
        print(worst(a, b) + "  [mm]")
    if sd is not None:
        print(f"vs surface_distance package: NSD worst {ref_nsd:.2e}, robust HD95 worst {ref_dm_hd:.2e}")
    if medpy_hd95 is not None:
        print(f"vs medpy hd95: worst {ref_medpy:.2e} mm")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if not (args.speed or args.compare):
        args.speed = args.compare = True
    if args.compare:
        compare()
    if args.speed:
        speed(args.rounds)


if __name__ == "__main__":
    main()
