"""How `medkt segment` scales with the slice count: wall time, s/slice per stage and peak RSS.

Builds a synthetic 512x512xN int16 CT NIfTI per N (a body ellipse of soft tissue with noise,
two lungs, a nodule; every slice holds body, so no slice is skipped as air unless
``--air-slices`` adds some at both ends), then runs ``python -m medkt segment`` on it with the
``tiny`` config (tiny-clip + tiny-sam) in a fresh process per run, and reads that process's peak
RSS from ``os.wait4`` (``ru_maxrss``).  With ``--old-ref REF`` the same command also runs
against ``git archive REF`` of this repository (the flow before streaming, e.g. the commit the
branch started from), alternating the order per N, and the ratios old/new are printed.

    OMP_NUM_THREADS=1 python benchmarks/bench_segment_scaling.py --slices 40 80 160 --old-ref 48ebaef

Prints one line per (flow, N) and, per flow, the time ratio of each doubling of N (linear
scaling: 2.0) and the peak RSS against the goal ``volume bytes x 4 + 2 GiB``.  Each run uses
``--threads`` torch threads (default 1); judge ratios, not seconds, on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("read_s", "prepare_s", "m2ib_s", "postprocess_s", "sam_encode_s", "sam_decode_s", "write_s")


def make_ct(path: Path, n: int, air_slices: int = 0, seed: int = 0) -> int:
    """Write a 512x512xn int16 CT (HU) to ``path``; returns the array's byte size."""
    import nibabel as nib
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:512, :512]
    body = ((xx - 256) / 200.0) ** 2 + ((yy - 256) / 150.0) ** 2 <= 1
    lungs = (((xx - 180) / 60.0) ** 2 + ((yy - 240) / 90.0) ** 2 <= 1) | \
            (((xx - 332) / 60.0) ** 2 + ((yy - 240) / 90.0) ** 2 <= 1)
    base = np.full((512, 512), -1000, np.int16)
    base[body] = 40
    base[lungs] = -800
    vol = np.empty((512, 512, n), np.int16)
    for k in range(n):
        sl = base.copy()
        r = 10 + 8 * np.sin(np.pi * k / max(n - 1, 1))
        sl[((xx - 170) ** 2 + (yy - 230) ** 2) <= r * r] = 60
        sl += rng.normal(0, 15, sl.shape).astype(np.int16)
        if k < air_slices or k >= n - air_slices:
            sl[:] = -1000 + rng.normal(0, 5, sl.shape).astype(np.int16)
        vol[..., k] = sl.T  # array axes (i=x, j=y)
    nib.save(nib.Nifti1Image(vol, np.diag([0.7, 0.7, 1.5, 1.0])), path)
    return vol.nbytes


def export_ref(ref: str, dest: Path) -> str:
    """``git archive REF medkt configs`` into ``dest``; returns the full commit id."""
    commit = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    arch = subprocess.run(["git", "archive", commit, "medkt", "configs"], cwd=ROOT, check=True,
                          capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    return commit


def run_segment(code_root: Path, vol: Path, out: Path, threads: int) -> dict:
    """One ``medkt segment`` in a fresh process; wall seconds, peak RSS (MiB) and the case row."""
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "medkt", "segment", str(vol), "-o", str(out), "--config", "tiny",
           "--prompt", "a lung nodule", "--modality", "ct", "--window", "lung"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=code_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"medkt segment failed ({code_root}):\n{stdout[-2000:]}\n{stderr[-3000:]}")
    run = json.loads((out / "run.json").read_text())
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024,
            "row": run["cases"][0], "stdout": stdout}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, nargs="+", default=[40, 80, 160])
    ap.add_argument("--old-ref", help="also run this git ref's flow (e.g. the commit before streaming)")
    ap.add_argument("--air-slices", type=int, default=0, help="all-air slices at each end of the volume")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", help="keep volumes and outputs in this folder")
    args = ap.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="medkt-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    flows = {"new": ROOT}
    if args.old_ref:
        commit = export_ref(args.old_ref, work / "old")
        flows["old"] = work / "old"
        print(f"old flow: {args.old_ref} = {commit[:12]}")
    print(f"load average before: {os.getloadavg()}; torch threads per run: {args.threads}")
    res: dict[str, dict[int, dict]] = {f: {} for f in flows}
    try:
        for i, n in enumerate(args.slices):
            (work / "in").mkdir(exist_ok=True)
            vol = work / "in" / f"ct_{n}.nii.gz"
            nbytes = make_ct(vol, n, args.air_slices)
            order = list(flows) if i % 2 == 0 else list(flows)[::-1]
            for flow in order:
                out = work / "out" / f"{flow}_{n}"
                shutil.rmtree(out, ignore_errors=True)
                r = run_segment(flows[flow], vol, out, args.threads)
                r["nbytes"] = nbytes
                res[flow][n] = r
                row = r["row"]
                seg = row.get("slices_segmented", row.get("slices"))
                stages = " ".join(f"{s[:-2]} {row[s] / max(seg, 1):.4f}" for s in STAGES if s in row)
                bound = nbytes * 4 / 2**20 + 2048
                ccpu = f", case CPU {row['case_cpu_s'] / n:.3f} s/slice" if "case_cpu_s" in row else ""
                print(f"{flow:3s} N={n:4d}: wall {r['wall_s']:7.1f} s = {r['wall_s'] / n:.3f} s/slice "
                      f"(case {row.get('seconds', 0):.1f} s = {row.get('seconds', 0) / n:.3f} s/slice{ccpu}; "
                      f"process CPU {r['cpu_s']:.1f} s); peak RSS {r['rss_mib']:7.0f} MiB "
                      f"(volume {nbytes / 2**20:.0f} MiB, goal <= {bound:.0f} MiB: "
                      f"{'ok' if r['rss_mib'] <= bound else 'OVER'})"
                      + (f"; s/slice by stage: {stages}" if stages else "")
                      + (f"; air {row['slices_air']}" if row.get("slices_air") else ""), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for flow, by_n in res.items():
        ns = sorted(by_n)
        steps = [f"{b}/{a}: x{by_n[b]['wall_s'] / by_n[a]['wall_s']:.2f} (slices x{b / a:.1f})"
                 for a, b in zip(ns, ns[1:])]
        case = [f"{b}/{a}: x{by_n[b]['row']['seconds'] / by_n[a]['row']['seconds']:.2f}" for a, b in zip(ns, ns[1:])]
        cpu = [f"{b}/{a}: x{by_n[b]['cpu_s'] / by_n[a]['cpu_s']:.2f}" for a, b in zip(ns, ns[1:])]
        ccpu = ""
        if all("case_cpu_s" in by_n[n]["row"] for n in ns):
            ccpu = "; of the case CPU time " + "; ".join(
                f"{b}/{a}: x{by_n[b]['row']['case_cpu_s'] / by_n[a]['row']['case_cpu_s']:.2f}"
                for a, b in zip(ns, ns[1:]))
        print(f"{flow}: scaling of wall time {'; '.join(steps)}; of the case time {'; '.join(case)}; "
              f"of the process CPU time {'; '.join(cpu)}{ccpu}")
    if "old" in res:
        for n in sorted(res["new"]):
            o, w = res["old"][n], res["new"][n]
            print(f"N={n}: old/new wall x{o['wall_s'] / w['wall_s']:.2f}, CPU x{o['cpu_s'] / w['cpu_s']:.2f}, case time "
                  f"x{o['row']['seconds'] / w['row']['seconds']:.2f}, peak RSS x{o['rss_mib'] / w['rss_mib']:.2f} "
                  f"({o['rss_mib']:.0f} -> {w['rss_mib']:.0f} MiB)")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
