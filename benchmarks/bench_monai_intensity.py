"""medkt's hand-written intensity / orientation steps against MONAI's transforms (issue 17.1).

Arms, interleaved in one process (A,B,B,A rounds, median of per-round ratios):

* CT window on a ``512 × 512 × S`` HU volume: medkt ``prepare_intensity`` (NumPy) vs
  ``medkt.monai.MedktPrepared`` (medkt's range + MONAI ``ScaleIntensityRange``, float64) vs a bare
  MONAI ``ScaleIntensityRange`` on a float32 tensor; outputs must be identical (first two) /
  within 1e-6 (the float32 one).
* Display slices: medkt ``iter_slices`` (reorients per slice, keeps the source grid) vs MONAI
  ``Orientation("RAS")`` on the whole volume followed by slicing.
* Import cost, each in a fresh interpreter: ``import medkt.io`` vs ``import monai.transforms``.

    OMP_NUM_THREADS=1 python benchmarks/bench_monai_intensity.py --slices 64 --rounds 7
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def _timed(fn, *a):
    t = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - t, out


def import_seconds(module: str, repeats: int = 3) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    vals = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout.strip().splitlines()[-1])
            for _ in range(repeats)]
    return statistics.median(vals)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slices", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation, ScaleIntensityRange

    from medkt.io import iter_slices, prepare_intensity, volume_from_array
    from medkt.monai import MedktPrepared
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rng = np.random.default_rng(0)
    hu = rng.normal(0, 400, (512, 512, args.slices)).astype(np.int16)
    aff = np.array([[-0.7, 0, 0, 0], [0, -0.7, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1.0]])  # LPS-stored
    vol = volume_from_array(hu, aff, modality="CT")
    mt = MetaTensor(torch.as_tensor(hu[None].astype(np.float64)), affine=torch.as_tensor(aff))
    mt32 = torch.as_tensor(hu[None].astype(np.float32))
    prep = MedktPrepared("image", modality="CT", window="abdomen")
    sir = ScaleIntensityRange(-150.0, 250.0, 0.0, 1.0, clip=True)
    arms = {
        "numpy prepare_intensity": lambda: prepare_intensity(vol, window="abdomen")[0],
        "MedktPrepared (MONAI SIR, f64)": lambda: np.asarray(prep({"image": mt})["image"][0]),
        "MONAI ScaleIntensityRange f32": lambda: np.asarray(sir(mt32)[0]),
        "medkt iter_slices": lambda: iter_slices(vol, "axial")[0],
        "MONAI Orientation + slicing": lambda: [np.asarray(o[0, :, :, k]) for o in
                                                [Orientation(axcodes="RAS", labels=None)(MetaTensor(
                                                    torch.as_tensor(hu[None]), affine=torch.as_tensor(aff)))]
                                                for k in range(args.slices)],
    }
    ref = arms["numpy prepare_intensity"]()
    assert np.array_equal(arms["MedktPrepared (MONAI SIR, f64)"](), ref), "MedktPrepared differs"
    assert np.abs(arms["MONAI ScaleIntensityRange f32"]() - ref).max() < 1e-6
    for fn in arms.values():  # warm-up
        fn()
    times = {k: [] for k in arms}
    names = list(arms)
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            times[k].append(_timed(arms[k])[0])
    load = os.getloadavg()[0]
    print(f"volume 512x512x{args.slices}, rounds {args.rounds}, threads {torch.get_num_threads()}, load {load:.2f}")
    base = times["numpy prepare_intensity"]
    for k in names:
        ratios = [b / t for b, t in zip(base, times[k])]
        print(f"  {k:32s} median {statistics.median(times[k]) * 1e3:8.1f} ms   "
              f"speed vs numpy prepare_intensity {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
    sl = times["medkt iter_slices"]
    print(f"  slicing: Orientation+slicing / iter_slices = "
          f"{statistics.median([o / s for o, s in zip(times['MONAI Orientation + slicing'], sl)]):.2f}x time")
    print(f"import (fresh interpreter, median of 3): medkt.io {import_seconds('medkt.io'):.2f} s, "
          f"monai.transforms {import_seconds('monai.transforms'):.2f} s, medkt.monai.transforms "
          f"{import_seconds('medkt.monai.transforms'):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
