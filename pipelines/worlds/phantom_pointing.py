"""Recipe: where the saliency maximum lands when the pointing game misses (issue 16).

    python pipelines/worlds/phantom_pointing.py -o OUT [--n 72] [--eval-seed 4242] [--mods us,mri]
        [--set m2ib_beta=10] [--override postprocess.percentile=95] [--blur CELLS] [--shifts DY:DX,...]
        [--threads 1]

Runs the phantom pipeline (``medkt.worlds.phantom_experiments.run_pipeline``, defaults of the
``phantom`` preset) on the seen findings and, for every missed case, records where the map's
maximum lies: pixel (row, col), distance to the GT mask (px), the anatomy part under it (MRI
``oedema``, US ``glandular tissue``...), "below" / "above the finding" (GT in the same column
above / below it; below = the US posterior shadow side) and "border" (< 4 px from the edge), and the best in-GT value relative to
the global maximum (near 1: a near tie between neighbouring tokens).

``--shifts DY:DX,...`` sets the M2IB option ``m2ib.shifts`` (shift averaging, model-input px;
docs/segmentation.md): M2IB on shifted copies of the model input, each map shifted back,
averaged (a finer effective grid).  Without it the preset's shifts apply (quarter patch:
0:0,0:2,2:0,2:2); ``--shifts 0:0`` gives the plain map (the previous preset:
``--set m2ib_beta=3 --shifts 0:0``).  ``--override KEY=VALUE`` adds a dotted SegmentConfig
override (e.g. ``postprocess.percentile=95``).

Diagnostic map variant (not a pipeline option; applied to the saliency map inside this process
only, and the whole pipeline then runs on the changed map): ``--blur CELLS``, a Gaussian blur
of the upsampled map, sigma = CELLS patch cells.

The pointing game is the standard one without tolerance: a hit when the map's maximum pixel
lies inside the GT mask.  ``--eval-seed 4242`` = validation phantoms (choose there), 777 = test.
Writes ``tables.md``, ``cases.csv`` and ``run.json`` into OUT.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import asdict, replace

import numpy as np


def parse_shifts(text: str) -> tuple:
    """``"0:0,0:4"`` → ``((0, 0), (0, 4))`` (the ``m2ib.shifts`` pairs)."""
    return tuple(tuple(int(v) for v in a.split(":")) for a in text.split(",") if a)


@contextlib.contextmanager
def map_variant(blur: float = 0.0):
    """Temporarily blur the maps SaliencyEngine returns (see module docstring)."""
    from scipy import ndimage as ndi
    from medkt.segmentation.saliency import SaliencyEngine
    orig = SaliencyEngine.__call__

    def call(self, images, prompt, seeds=None):
        res = orig(self, images, prompt, seeds)
        for r in res:
            a = ndi.gaussian_filter(r.raw.astype(np.float64), blur * max(r.raw.shape) / r.grid.shape[-1],
                                    mode="nearest")
            lo, hi = a.min(), a.max()
            r.raw = a.astype(np.float32)
            r.map = ((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)).astype(np.float32)
        return res

    if blur > 0:
        SaliencyEngine.__call__ = call
    try:
        yield
    finally:
        SaliencyEngine.__call__ = orig


def miss_info(sal: np.ndarray, gt: np.ndarray, parts: dict) -> dict:
    """Where the maximum of ``sal`` (``H×W``) lies relative to ``gt`` (``H×W`` bool) and ``parts``."""
    from scipy import ndimage as ndi
    y, x = np.unravel_index(int(np.argmax(sal)), sal.shape)
    where = [name for name, p in parts.items() if p[y, x]]
    if gt[:y, x].any():
        where.append("below the finding")  # US: the posterior shadow side
    elif gt[y + 1:, x].any():
        where.append("above the finding")
    if min(y, x, sal.shape[0] - 1 - y, sal.shape[1] - 1 - x) < 4:
        where.append("border")
    return {"max_row": int(y), "max_col": int(x), "dist_px": round(float(ndi.distance_transform_edt(~gt)[y, x]), 1),
            "where": "+".join(where) or "-", "in_gt_max_pct": round(100 * float(sal[gt].max() / sal.max()), 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--n", type=int, default=72, help="phantoms per finding")
    ap.add_argument("--eval-seed", type=int, default=4242, help="4242 validation (default), 777 test")
    ap.add_argument("--mods", default="ct,cxr,us,mri")
    ap.add_argument("--set", action="append", default=[], help="PhantomSettings field=value, e.g. m2ib_beta=10")
    ap.add_argument("--override", action="append", default=[],
                    help="dotted SegmentConfig override after the preset, e.g. postprocess.percentile=95")
    ap.add_argument("--blur", type=float, default=0.0, help="Gaussian sigma in patch cells (diagnostic)")
    ap.add_argument("--shifts", default="", help="m2ib.shifts as DY:DX,..., e.g. 0:0,0:4,4:0,4:4 (model-input px)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)

    import torch
    from medkt.models import create_model
    from medkt.runs import RunRecord, prepare_output_dir, write_csv
    from medkt.worlds import report as R
    from medkt.worlds.phantom_experiments import PhantomSettings, run_pipeline
    from medkt.worlds.phantom_text import SEGMENT_PROMPTS
    from medkt.worlds.phantom_world import phantom_eval_seed
    from medkt.worlds.phantoms import TARGET_FINDING, phantom_set
    torch.set_num_threads(args.threads)
    out = prepare_output_dir(args.output, overwrite=args.overwrite)
    s = PhantomSettings(n_per_modality=args.n, eval_seed=args.eval_seed)
    for kv in args.set:
        k, v = kv.split("=", 1)
        s = replace(s, **{k: type(getattr(s, k) if getattr(s, k) is not None else 0)(v)})
    if args.override:
        s = replace(s, segment_overrides=list(s.segment_overrides) + list(args.override))
    shifts = parse_shifts(args.shifts)
    if shifts:
        s = replace(s, m2ib_shifts=shifts)
    rec = RunRecord("phantom-pointing", config={**vars(args), "settings": asdict(s)}, seed=s.seed)
    clip, sam = create_model("phantom-clip"), create_model("phantom-sam")
    summary, cases = [], []
    with map_variant(args.blur):
        for mod in args.mods.split(","):
            finding = TARGET_FINDING[mod]
            ims, masks, _, parts = phantom_set(mod, finding, args.n, phantom_eval_seed(mod, finding, args.eval_seed),
                                               with_parts=True)
            r = run_pipeline(clip, sam, ims, masks, SEGMENT_PROMPTS[mod], s, keep=args.n)
            hits = int(sum(row["pointing"] for row in r["rows"]))
            summary.append([mod, r["dsc"], r["nsd"], r["iou"], r["energy_in_mask"], r["pointing"], f"{hits}/{args.n}"])
            for i, (row, ex) in enumerate(zip(r["rows"], r["examples"])):
                c = {"modality": mod, "case": i, "hit": int(row["pointing"]), "dsc": round(100 * row["dsc"], 1),
                     "saliency_in_gt": round(100 * row["energy_in_mask"], 1)}
                if not row["pointing"]:
                    c.update(miss_info(ex["saliency"], ex["gt"] > 0, parts[i]))
                cases.append(c)
            print(f"{mod}: pointing {r['pointing']:.1f} ({hits}/{args.n})", flush=True)
    misses = [c for c in cases if not c["hit"]]
    md = [f"# Pointing diagnosis\n\n{args.n} phantoms per finding, eval seed {args.eval_seed}, blur {args.blur}, "
          f"shifts {shifts or 'none'}, settings {args.set or 'preset'}, overrides {args.override or 'none'}, "
          f"{args.threads} thread(s).\n",
          R.markdown_table(["modality"] + R.SEG_HEADER[1:] + ["hits"], summary),
          "## Misses\n\n" + R.markdown_table(
              ["modality", "case", "max (row, col)", "px to GT", "under the max", "best in-GT value, % of max", "DSC"],
              [[c["modality"], c["case"], f"({c['max_row']}, {c['max_col']})", c["dist_px"], c["where"],
                c["in_gt_max_pct"], c["dsc"]] for c in misses])]
    write_csv(out / "cases.csv", cases)
    rec.extra["summary"] = summary
    text = "\n\n".join(md) + "\n"
    (out / "tables.md").write_text(text)
    rec.write(out)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"done in {time.time() - t0:.0f}s", file=sys.stderr)
    sys.exit(rc)
