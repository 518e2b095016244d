"""Every experiment config (one per paper table) runs end to end on tiny models and fake data,
and its report puts the paper's numbers next to the measured ones."""
from __future__ import annotations

import csv
import json
import math

import pytest

from medkt.bench import list_experiments, load_experiment, run_benchmark
from medkt.bench.experiment import run_id
from medkt.bench.fakes import make_fakes_for, quick_overrides
from medkt.bench.plots import SWEEP_METRICS
from medkt.errors import ConfigError


pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXPERIMENTS = list_experiments()


def test_one_config_per_paper_table():
    assert {"table1_rare_concepts", "table1_rare_concepts_vilt", "table2_medclip_jsrt", "table3_chexpert_ood",
            "table4_segmentation", "table5_retrieval", "table6_captioning"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_shipped_config_is_consistent(name):
    cfg = load_experiment(name)
    assert cfg.paper.table and cfg.paper.rows and cfg.sweep.lrs
    groups = {g.name for g in cfg.groups}
    sweep = {run_id(lr) for lr in cfg.sweep.lrs}
    for row in cfg.paper.rows:
        assert row.group in groups | {None}, row
        if row.model == cfg.paper_model:  # other paper models may need --set overrides (see the file)
            assert run_id(row.run) in sweep | {"baseline"}, row
        assert row.values and all(isinstance(v, (int, float)) for v in row.values.values())
    assert any(r.model == cfg.paper_model for r in cfg.paper.rows)


def test_paper_numbers_transcribed():
    def value(name, model, group, run, metric):
        cfg = load_experiment(name)
        return next(r.values[metric] for r in cfg.paper.rows
                    if r.model == model and r.group == group and run_id(r.run) == run_id(run))
    assert value("table1_rare_concepts", "clip-vit-b32", "moongate", 2e-5, "target_acc") == 60.0
    assert value("table1_rare_concepts", "clip-vit-l14", "tonometer", "baseline", "reference_acc") == 70.79
    assert value("table1_rare_concepts_vilt", "vilt-b32", "gyroscope", 5e-5, "target_acc") == 30.0
    assert value("table2_medclip_jsrt", "medclip", "lung_cancer", 3e-5, "reference_acc") == 53.70
    assert value("table3_chexpert_ood", "clip-vit-l14", None, 1e-5, "target_acc") == 25.90
    assert value("table4_segmentation", "medclip-samv2", "breast", 1e-5, "nsd") == 61.56
    assert value("table5_retrieval", "vilt-b32-huggingface", None, 9e-7, "i2t_R@1") == 74.6
    assert value("table6_captioning", "coca", None, "baseline", "CIDEr") == 31.1


def test_config_errors_are_typed(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean"):
        load_experiment("table1_rare_concepts", ["sweep.lrz=[1e-5]"])
    with pytest.raises(ConfigError, match="not under 'data:'"):
        load_experiment("table1_rare_concepts", ["groups.0.target=nowhere"])
    with pytest.raises(ConfigError):
        load_experiment("table_does_not_exist")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_end_to_end(tmp_path, name):
    base = load_experiment(name)
    cfg = load_experiment(name, quick_overrides(base) + ["batch_size=4"])
    make_fakes_for(cfg, tmp_path / "data", n=2)
    group = cfg.groups[0].name
    res = run_benchmark(cfg, tmp_path / "out", data_root=tmp_path / "data", groups=[group])
    out = tmp_path / "out"
    rows = _rows(out / "per_case.csv")
    assert {r["run"] for r in rows} == {"baseline", "lr_1e-05"}
    assert all(r["group"] == group for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(res.summary, default=str))
    for run in ("baseline", "lr_1e-05"):
        for metric in SWEEP_METRICS[cfg.task]:
            if metric == "reference_acc" and not cfg.groups[0].reference:
                continue
            v = summary["groups"][group][run][metric]
            assert isinstance(v, float) and 0.0 <= v <= 10.0 and not math.isnan(v), (run, metric, v)
    report = (out / "report.md").read_text()
    assert "**paper**" in report and "**measured**" in report and cfg.paper.table in report
    # the paper's first number for this group sits on a labelled paper line, the measured value below it
    row = next(r for r in cfg.paper.rows if r.group in (None, group) and r.model == cfg.paper_model
               and run_id(r.run) == "baseline")
    metric, paper_value = next(iter(row.values.items()))
    lines = report.splitlines()
    i = next(k for k, line in enumerate(lines) if "**paper**" in line and f"| {paper_value:.2f} |" in line)
    measured = summary["groups"][group]["baseline"][metric]
    assert "**measured**" in lines[i + 1] and f"| {100 * measured:.2f} |" in lines[i + 1]
    assert (out / "figures" / "lr_sweep.png").stat().st_size > 1000
    if cfg.task == "segmentation":
        assert any((out / "figures").glob("overlays_*.png"))
    assert (out / "parts" / "part-000-of-001" / "run.json").exists()
