"""Recipe: the phantom segmentation tables (goals, diagnosis, Table 4 and Table 7 in miniature).

    python pipelines/worlds/phantom_tables.py -o OUT [--n 24] [--only goals,diagnosis,kt,ablation]
                                              [--val] [--threads 1] [--seed 0] [--kt-set K=V] [--seg-set K=V]

* ``goals``: the pipeline on the four seen findings (DSC / NSD / IoU / saliency in GT / pointing);
* ``diagnosis``: counterfactual-occlusion pointing and twin margin (medkt.worlds.phantom_diagnosis);
* ``kt``: Knowledge Transfer of the held-out nodule per variant and lr (every lr reported);
* ``ablation``: one setting changed at a time (``--val``: on validation phantoms, seed 4242,
  the set the defaults are chosen on; otherwise on the test phantoms, seed 777).

Writes ``tables.md``, ``<table>.csv`` and ``run.json`` into OUT.  Deterministic for a thread count.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--n", type=int, default=24, help="phantoms per finding")
    ap.add_argument("--only", default="goals,diagnosis,kt,ablation")
    ap.add_argument("--val", action="store_true", help="ablation on validation phantoms (seed 4242)")
    ap.add_argument("--lrs", default="1e-4,3e-4,1e-3,3e-3")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-seed", type=int, default=777, help="777: test phantoms; 4242: validation phantoms")
    ap.add_argument("--clip-weights", default=None, help="phantom-clip weights file (default: the shipped ones)")
    ap.add_argument("--nodule-prompt", default="description", choices=("description", "name"),
                    help="segmentation prompt of the held-out nodule (phantom_text.HELD_OUT_PROMPTS)")
    ap.add_argument("--nodule-distractor", default=None, help="a second CT finding in the nodule's phantoms (marker, "
                                                               "calcification): the name prompt must choose")
    ap.add_argument("--variants", default="paper,name-prompts")
    ap.add_argument("--seed", type=int, default=0, help="KT inversion / fine-tuning and M2IB sampling seed")
    ap.add_argument("--kt-set", action="append", default=[], metavar="KEY=VALUE",
                    help="transfer-config override for every KT run (repeatable), e.g. inversion.lr=0.01")
    ap.add_argument("--seg-set", action="append", default=[], metavar="KEY=VALUE",
                    help="segment-config override for every table (repeatable), e.g. postprocess.percentile=98")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)

    import torch
    from medkt.models import create_model
    from medkt.runs import RunRecord, prepare_output_dir, write_csv
    from medkt.worlds import report as R
    from medkt.worlds.phantom_experiments import (PhantomSettings, phantom_ablation, phantom_baseline, phantom_kt,
                                                  strip_examples)
    torch.set_num_threads(args.threads)
    out = prepare_output_dir(args.output, overwrite=args.overwrite)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    s = PhantomSettings(n_per_modality=args.n, seed=args.seed, kt_lrs=tuple(float(x) for x in args.lrs.split(",")),
                        eval_seed=args.eval_seed, nodule_prompt=args.nodule_prompt,
                        kt_variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
                        extra_overrides=list(args.kt_set), segment_overrides=list(args.seg_set),
                        nodule_distractor=args.nodule_distractor)
    rec = RunRecord("phantom-tables", config={**vars(args), "settings": asdict(s)}, seed=s.seed)
    clip, sam = create_model("phantom-clip", weights=args.clip_weights), create_model("phantom-sam")
    md = [f"# Phantom tables\n\n{args.n} phantoms per finding, seed {s.seed}, {args.threads} thread(s).\n"]
    if "goals" in only:
        with rec.timer("goals_s"):
            res = phantom_baseline(s, clip, sam, keep=0)
        rows = [[m, r["dsc"], r["nsd"], r["iou"], r["energy_in_mask"], r["pointing"]] for m, r in res.items()]
        md.append("## Seen findings\n\n" + R.markdown_table(["modality"] + R.SEG_HEADER[1:], rows))
        write_csv(out / "goals.csv", [{"modality": m, **{k: r[k] for k in ("dsc", "nsd", "iou", "energy_in_mask",
                                                                          "pointing")}} for m, r in res.items()])
        rec.extra["goals"] = strip_examples(res)
    if "diagnosis" in only:
        from medkt.worlds.phantom_diagnosis import diagnose
        from medkt.worlds.phantom_text import HELD_OUT_PROMPTS, SEGMENT_PROMPTS
        from medkt.worlds.phantoms import TARGET_FINDING
        items = [(m, TARGET_FINDING[m], SEGMENT_PROMPTS[m]) for m in TARGET_FINDING] + \
                [("ct", "nodule", HELD_OUT_PROMPTS[args.nodule_prompt])]
        with rec.timer("diagnosis_s"):
            diag = [{"modality": m, "finding": f, **diagnose(clip, m, f, p, n=min(args.n, 12), seed=args.eval_seed)}
                    for m, f, p in items]
        md.append("## Diagnosis (counterfactual occlusion)\n\n" + R.markdown_table(
            ["modality", "finding", "occlusion pointing", "occlusion in GT", "twin margin"],
            [[d["modality"], d["finding"], d["occlusion_pointing"], d["occlusion_in_mask"],
              f"{d['twin_margin']:+.3f}"] for d in diag]))
        write_csv(out / "diagnosis.csv", diag)
        rec.extra["diagnosis"] = diag
    if "kt" in only:
        with rec.timer("kt_s"):
            kt = phantom_kt(s, clip, sam, keep=0)
        md.append("## Table 4: KT of the held-out nodule\n\n" + R.markdown_table(
            ["CT nodule"] + R.SEG_HEADER[1:] + R.KT_EXTRA_HEADER, R.seg_rows(kt["results"], detection=True)))
        write_csv(out / "kt.csv", [{"run": k, **{x: r[x] for x in ("dsc", "nsd", "iou", "energy_in_mask", "pointing",
                                                                   "detection", "seen_max_drop")},
                                    **{f"seen_{m}": v for m, v in r["seen_dsc"].items()}}
                                   for k, r in kt["results"].items()])
        rec.extra["kt"] = strip_examples(kt)
    if "ablation" in only:
        with rec.timer("ablation_s"):
            rows = phantom_ablation(replace(s, eval_seed=4242) if args.val else s, clip, sam)
        cells = list(dict.fromkeys((r["group"], r["cell"]) for r in rows))
        table = []
        for g, c in cells:
            rs = {r["modality"]: r for r in rows if r["group"] == g and r["cell"] == c}
            vals = [rs[m].get("dsc", float("nan")) for m in ("ct", "cxr", "us", "mri")]
            table.append([g, c] + vals + [float(sum(vals) / 4)])
        md.append(f"## Table 7: ablation ({'validation' if args.val else 'test'} phantoms), DSC\n\n" +
                  R.markdown_table(["group", "setting", "CT effusion", "CXR pneumothorax", "US mass", "MRI tumour",
                                    "mean"], table))
        write_csv(out / "ablation.csv", rows)
        rec.extra["ablation"] = rows
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
