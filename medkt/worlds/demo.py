"""``medkt demo``: Knowledge Transfer and zero-shot segmentation on the shipped world models.

Offline, CPU, a few minutes.  The quick demo teaches ``world-clip`` one novel concept
over a learning-rate sweep and runs the phantom segmentation pipeline (baseline for the
four modalities, and before / after KT of the held-out finding).  ``full=True`` runs every
novel concept, every variant (paper recipe, no name, text encoder, both, noise control,
LoRA) and larger evaluation sets.  Outputs (``out_dir``): ``report.md``, ``run.json``,
``fig4_lr_sweep.png``, ``fig_overlays_baseline.png``, ``fig_overlays_kt.png``,
``kt_sweep.csv``, ``segmentation.csv``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from medkt.worlds import report as R


@dataclass
class DemoConfig:
    """What ``medkt demo`` runs (``full`` switches to the whole sweep and all ablations)."""

    full: bool = False
    concept: str = "gyroscope"  # paper caption fails on it (diagnostic rank 4); --full runs all five
    lrs: tuple = (3e-5, 1e-4, 3e-4, 1e-3)
    lrs_full: tuple = (3e-5, 1e-4, 3e-4, 5e-4, 1e-3, 2e-3)
    seed: int = 0
    threads: int = 2
    variants: tuple = ("visual", "paper")  # medkt's captions vs the paper's caption alone
    variants_full: tuple = ("visual", "paper", "name-only", "no-name", "text", "both", "noise", "lora")
    inversion_steps: int = 300
    n_known: int = 10  # eval images per known class (full: 20)
    n_novel: int = 30  # eval images per novel concept (full: 40)
    n_ood: int = 100  # unnamed-composition images for specificity (full: 200)
    phantom_n: int = 8  # phantoms per modality (full: 24)
    phantom_kt_lrs: tuple = (1e-4, 3e-4, 1e-3)
    phantom_kt_variants: tuple = ("paper", "name-prompts")
    extra_lrs_given: bool = False  # --lrs given: use cfg.lrs in --full too


def run_demo(out_dir: str | Path, cfg: DemoConfig | None = None, *, overwrite: bool = False,
             log=print) -> dict:
    """Run the demo into ``out_dir``; returns the run record as a dict."""
    import torch
    from medkt.runs import RunRecord, prepare_output_dir, seed_everything, write_csv
    from medkt.worlds.experiments import VARIANT_NOTES, KTSettings, NaturalExperiment, summarize_sweep
    from medkt.worlds.phantom_experiments import (PhantomSettings, phantom_baseline, phantom_kt,
                                                  strip_examples)
    from medkt.worlds.phantoms import TARGET_FINDING
    cfg = cfg or DemoConfig()
    out = prepare_output_dir(out_dir, overwrite=overwrite)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    rec = RunRecord("demo", config=asdict(cfg), seed=cfg.seed,
                    weights={m: f"medkt/assets/worlds/{m}.safetensors"
                             for m in ("world-clip", "phantom-clip", "phantom-sam")})
    t0 = time.time()
    # ------------------------------------------------------------------ natural world
    log("== natural world: world-clip ==")
    lrs = cfg.lrs_full if cfg.full and not cfg.extra_lrs_given else cfg.lrs
    ks = KTSettings(lrs=lrs, seed=cfg.seed, inversion_steps=cfg.inversion_steps,
                    n_known=max(cfg.n_known, 20) if cfg.full else cfg.n_known,
                    n_novel=max(cfg.n_novel, 40) if cfg.full else cfg.n_novel,
                    n_ood=max(cfg.n_ood, 200) if cfg.full else cfg.n_ood)
    with rec.timer("load_s"):
        exp = NaturalExperiment.create(ks)
    with rec.timer("baseline_s"):
        base = exp.baseline()
    log(R.markdown_table(R.BASE_HEADER, R.baseline_rows(base)))
    log("caption diagnostic (rank of the concept's own prompt from its KT caption): " +
        ", ".join(f"{n} {d['rank']}" for n, d in base["diagnostic"].items()))
    names = [c.name for c in exp.world.novel] if cfg.full else [cfg.concept]
    variants = list(cfg.variants_full) if cfg.full else list(cfg.variants)
    log(f"KT: {', '.join(names)} | variants: {', '.join(variants)} | lrs: {', '.join(f'{x:g}' for x in ks.lrs)}")
    with rec.timer("kt_s"):
        rows = exp.sweep(names, variants, log=log)
    summary = summarize_sweep(rows, base)
    log(R.markdown_table(R.SUMMARY_HEADER, R.summary_rows(summary)))
    R.plot_lr_sweep(rows, base, out / "fig4_lr_sweep.png",
                    variants=None if not cfg.full else ["visual", "paper", "text", "noise"])
    write_csv(out / "kt_sweep.csv", rows)
    # ------------------------------------------------------------------ phantoms
    log("== phantom world: phantom-clip + phantom-sam ==")
    ps = PhantomSettings(n_per_modality=max(cfg.phantom_n, 24) if cfg.full else cfg.phantom_n, seed=cfg.seed,
                         kt_lrs=tuple(cfg.phantom_kt_lrs), kt_variants=tuple(cfg.phantom_kt_variants),
                         inversion_steps=cfg.inversion_steps)
    with rec.timer("segmentation_s"):
        seg_base = phantom_baseline(ps, log=log)
    with rec.timer("segmentation_kt_s"):
        seg_kt = phantom_kt(ps, log=log)
    R.plot_overlays({f"{m} {TARGET_FINDING[m]}": r["examples"][:2] for m, r in seg_base.items()},
                    out / "fig_overlays_baseline.png", "phantom pipeline (M2IB -> top 10 % -> box -> phantom-sam)")
    best = max((k for k in seg_kt["results"] if k != "baseline"), default="baseline",
               key=lambda k: seg_kt["results"][k]["dsc"])
    R.plot_overlays({k: seg_kt["results"][k]["examples"][:2] for k in dict.fromkeys(("baseline", best))},
                    out / "fig_overlays_kt.png", f"held-out finding '{seg_kt['concept']}': before / after KT")
    seg_csv = [{"experiment": f"baseline {TARGET_FINDING[m]}", "modality": m, **{k: r[k] for k in ("dsc", "nsd", "iou", "energy_in_mask",
                                                                             "pointing")}}
               for m, r in seg_base.items()]
    seg_csv += [{"experiment": f"nodule {k}", "modality": "ct", **{x: r[x] for x in ("dsc", "nsd", "iou",
                                                                                     "energy_in_mask", "pointing")}}
                for k, r in seg_kt["results"].items()]
    write_csv(out / "segmentation.csv", seg_csv)
    log(R.markdown_table(["modality"] + R.SEG_HEADER[1:], R.seg_rows(seg_base)))
    kt_header = ["CT nodule (held out)"] + R.SEG_HEADER[1:] + R.KT_EXTRA_HEADER
    log(R.markdown_table(kt_header, R.seg_rows(seg_kt["results"], detection=True)))
    total = time.time() - t0
    # ------------------------------------------------------------------ report
    diag = [[n, d["rank"], d["nearest"], f"{d['margin']:+.3f}"] for n, d in base["diagnostic"].items()]
    nb = base["name_binding"]
    sections = [
        ("Natural world: zero-shot before Knowledge Transfer",
         R.markdown_table(R.BASE_HEADER, R.baseline_rows(base)) +
         "\n\nNovel names were never in the pretraining text; their compositions never in its images."),
        ("Caption diagnostic (is the KT caption nearest to the concept's own class prompt?)",
         R.markdown_table(["concept", "rank of own prompt", "nearest prompt", "cosine margin"], diag) +
         f"\n\nWith the paper's caption alone (variant `paper`), visual-only KT moves the concept's images "
         f"onto this caption's embedding, so it can only teach the name when the rank is 1; variant "
         f"`visual` alternates it with the class prompt 'a photo of a <name>'.  Name-binding index "
         f"(the same test for {nb['n']} pairs of fresh rare words x novel descriptions): "
         f"{100 * nb['p_bound']:.0f}% bound, mean margin "
         f"{nb['mean_margin']:+.3f}."),
        ("Knowledge Transfer: best learning rate per variant",
         R.markdown_table(R.SUMMARY_HEADER, R.summary_rows(summary)) +
         "\n\nBest lr = highest mean target accuracy with at most 5 points of known-class forgetting. "
         "Specificity = share of unnamed-composition images *not* called the new concept.\n\n" +
         "".join(f"* `{v}`: {VARIANT_NOTES[v]}\n" for v in summary if v in VARIANT_NOTES) + "\n"
         "![accuracy vs learning rate](fig4_lr_sweep.png)"),
        ("All KT runs", R.markdown_table(R.SWEEP_HEADER, R.sweep_rows(rows))),
        ("Phantom segmentation of the seen findings (M2IB -> top 10 % -> box -> phantom-sam), scores in %",
         R.markdown_table(["modality"] + R.SEG_HEADER[1:], R.seg_rows(seg_base)) +
         "\n\nTargets: " + ", ".join(f"{m} {f}" for m, f in TARGET_FINDING.items()) + "." +
         "\n\n![overlays](fig_overlays_baseline.png)"),
        (f"Held-out finding '{seg_kt['concept']}': KT from its description",
         f"Description: *{seg_kt['description']}*; segmentation prompt: *{seg_kt['prompt']}*.\n\n" +
         R.markdown_table(kt_header, R.seg_rows(seg_kt["results"], detection=True)) +
         "\n\nVariants: `paper` = the paper's caption 'A nodule is <description>'; `name-prompts` = it "
         "alternated with 'a photo of a nodule'.  Last column: the largest DSC loss on the four seen "
         f"findings against the baseline.  Overlays: baseline and the best row ({best}).\n\n"
         "![before / after](fig_overlays_kt.png)"),
    ]
    intro = (f"{'Full' if cfg.full else 'Quick'} demo, seed {cfg.seed}, {torch.get_num_threads()} CPU threads, "
             f"{total:.0f} s. Models: world-clip, phantom-clip, phantom-sam (shipped weights). "
             "See docs/worlds.md for what these worlds can and cannot show.")
    R.write_report(out / "report.md", sections, intro)
    rec.extra.update({"natural": {"baseline": base, "runs": rows, "summary": summary,
                                  "settings": asdict(ks)},
                      "phantoms": {"baseline": strip_examples(seg_base), "kt": strip_examples(seg_kt),
                                   "settings": asdict(ps)}})
    rec.write(out)
    log(f"wrote {out}/report.md, run.json and figures in {total:.0f} s")
    return rec.as_dict()
