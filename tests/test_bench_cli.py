"""``medkt bench``: run parts from the CLI, merge them, list datasets, and typed errors (exit code 2)."""
from __future__ import annotations

import json

import pytest

from medkt.bench import load_experiment
from medkt.bench.fakes import make_fakes_for, quick_overrides
from medkt.cli.main import main


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bench_parts_and_merge_from_the_cli(tmp_path, capsys):
    name = "table3_chexpert_ood"
    sets = quick_overrides(load_experiment(name))
    data = make_fakes_for(load_experiment(name, sets), tmp_path / "data", n=2)
    args = ["bench", name, "-o", str(tmp_path / "out"), "--data-root", str(data), "--limit", "6",
            "--num-parts", "2", "--runs", "baseline"] + [x for s in sets for x in ("--set", s)]
    for part in ("0", "1"):
        assert main(args + ["--part-id", part]) == 0
    assert "medkt bench merge" in capsys.readouterr().out
    assert main(["bench", "merge", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_parts"] == 2 and summary["datasets"]["chexpert"]["n_cases"] == 6
    assert "**paper** (Table 3" in (tmp_path / "out" / "report.md").read_text()


def test_bench_errors_exit_2_with_a_message(tmp_path, capsys):
    bad = tmp_path / "empty"
    bad.mkdir()
    rc = main(["bench", "table4_segmentation", "-o", str(tmp_path / "o"), "--data-root", str(bad),
               "--groups", "breast", "--set", "data.udiat.root=" + str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "expected layout for dataset 'udiat'" in err and "original/" in err
    assert main(["bench", "table4_segmentation", "-o", str(tmp_path / "o"), "--num-parts", "2",
                 "--part-id", "2"]) == 2
    assert "0-based" in capsys.readouterr().err
    assert main(["bench", "table_nine", "-o", str(tmp_path / "o")]) == 2
    assert main(["bench", "merge", str(tmp_path / "nothing-here")]) == 2


def test_bench_lists(capsys):
    assert main(["bench", "list"]) == 0
    assert "table5_retrieval" in capsys.readouterr().out
    assert main(["bench", "datasets", "brats23_glioma"]) == 0
    out = capsys.readouterr().out
    assert "BraTS-GLI-00000-000-seg.nii.gz" in out and "options:" in out


def test_runnable_pipeline_scripts(tmp_path, monkeypatch, capsys):
    """pipelines/*.py are thin recipes over the package: one runs on fake data in-process."""
    from pathlib import Path

    from medkt.bench.fakes import make_fake
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "pipelines"))
    import zero_shot_classification
    root = make_fake("rare_concepts", tmp_path / "rc", n=2)
    rc = zero_shot_classification.main(["--dataset", "rare_concepts", "--root", str(root), "--model", "tiny-clip",
                                        "--templates", "photo", "a picture of a {}.", "--target", "Moongate",
                                        "--json", str(tmp_path / "m.json")])
    assert rc == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_target"] == 6 and metrics["n_target_cases"] == 2 and 0 <= metrics["target_acc"] <= 1
    import paper_tables  # noqa: F401  (imports without side effects)


def test_unreadable_case_is_recorded_not_fatal(tmp_path):
    from medkt.bench.datasets import load_dataset
    from medkt.bench import evaluate_dataset
    from medkt.bench.fakes import make_fake
    from medkt.models import create_model
    root = make_fake("udiat", tmp_path / "udiat", n=3)
    (root / "original" / "000002.png").write_bytes(b"not an image")
    res = evaluate_dataset("segmentation", create_model("tiny-clip"), load_dataset("udiat", root), batch_size=3,
                           prompt="a breast tumour", sam="tiny-sam", config={"m2ib": {"steps": 1, "samples": 1}},
                           metrics={"nsd_units": "px"})  # PNGs carry no spacing
    assert [r["status"] for r in res.rows] == ["ok", "failed", "ok"]
    assert "not a readable image file" in res.rows[1]["reason"] and "000002.png" in res.rows[1]["reason"]
    assert res.metrics["n_cases"] == 3 and res.metrics["n_scored"] == 2 and 0 <= res.metrics["dsc"] <= 1
