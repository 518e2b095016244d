"""``medkt demo`` (reduced sizes) and the phantom segmentation pipeline on the shipped models."""
from __future__ import annotations

import json

import numpy as np


def test_phantom_pipeline_segments_mri_tumour():
    from medkt.worlds.phantom_experiments import PhantomSettings, run_pipeline
    from medkt.worlds.phantom_text import SEGMENT_PROMPTS
    from medkt.worlds.phantom_world import phantom_eval_set
    from medkt.models import create_model
    data = phantom_eval_set("mri", "tumour", 4)
    r = run_pipeline(create_model("phantom-clip"), create_model("phantom-sam"), data.images, data.masks,
                     SEGMENT_PROMPTS["mri"], PhantomSettings(n_per_modality=4), keep=1)
    assert r["n"] == 4 and 0 <= r["dsc"] <= 100
    assert r["dsc"] > 50, r  # measured ~80 % on 8+ images
    assert r["pointing"] >= 50  # the saliency maximum lies on the tumour in most cases
    ex = r["examples"][0]
    assert ex["saliency"].shape == ex["gt"].shape == ex["mask"].shape == (64, 64)


def test_demo_writes_report_tables_and_figures(tmp_path, capsys):
    from medkt.worlds.demo import DemoConfig, run_demo
    cfg = DemoConfig(concept="tonometer", lrs=(3e-4,), inversion_steps=40, n_known=2, n_novel=6, n_ood=10,
                     phantom_n=2, phantom_kt_lrs=(3e-4,), phantom_kt_variants=("paper",))
    out = tmp_path / "demo"
    rec = run_demo(out, cfg)
    for f in ("report.md", "run.json", "fig4_lr_sweep.png", "fig_overlays_baseline.png", "fig_overlays_kt.png",
              "kt_sweep.csv", "segmentation.csv"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "demo" and run["natural"]["runs"][0]["concept"] == "tonometer"
    assert {r["variant"] for r in run["natural"]["runs"]} == {"visual", "paper"}
    assert set(run["phantoms"]["baseline"]) == {"ct", "cxr", "us", "mri"}
    text = (out / "report.md").read_text()
    assert "| known classes (100) |" in text and "best lr" in text and "DSC" in text
    printed = capsys.readouterr().out
    assert "known classes (100)" in printed and "CT nodule" in printed
    assert np.isfinite(rec["natural"]["baseline"]["known_acc"])


def test_demo_cli_refuses_existing_output_and_bad_concept(tmp_path):
    from medkt.cli.main import main
    out = tmp_path / "d"
    out.mkdir()
    (out / "x.txt").write_text("keep")
    assert main(["demo", "-o", str(out)]) != 0  # existing results: needs --overwrite
    assert (out / "x.txt").read_text() == "keep"
    assert main(["demo", "-o", str(tmp_path / "e"), "--concept", "moongat"]) != 0
