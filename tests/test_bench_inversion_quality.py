"""benchmarks/bench_inversion_quality.py --report: the table's arithmetic, goal marks and merging
(made-up cells, no model; the grid itself is measured, see docs/transfer.md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_inversion_quality as B  # noqa: E402


def cell(variant, budget, seed, target, drop=1.0, flops=1e12):
    return {"variant": variant, "budget": budget, "seed": seed, "target": target, "known": 99.0 - drop,
            "drop": drop, "other_to_target": 2.0, "inversion_flops": flops, "mean_steps_run": float(budget),
            "per_lr": [{"concept": "c", "lr": 3e-4, "target_acc": target, "reference_drop": drop,
                        "other_to_target": 2.0}]}


def write_cells(folder: Path, rows) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cells.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_summary_goal_and_seed_order():
    ref = [cell("paper", 5000, s, t, flops=10e12) for s, t in ((0, 60.0), (1, 56.0), (2, 58.0))]
    rows = ref + [cell("fast", 300, 2, 57.0, flops=1e12), cell("fast", 300, 0, 55.0, flops=1e12),
                  cell("fast", 300, 1, 60.0, flops=1e12), cell("paper", 100, 0, 70.0, flops=2e12)]
    table, r = B.summarise(rows, 2.0)
    assert r["target"] == pytest.approx(58.0)
    fast = next(t for t in table if t["variant"] == "fast")
    assert fast["target_seeds"] == [55.0, 60.0, 57.0]  # seed order, not file order
    assert fast["flop_ratio"] == pytest.approx(10.0) and fast["vs_ref"] == pytest.approx(-0.666666, abs=1e-4)
    assert fast["meets_goal"] is True
    one_seed = next(t for t in table if (t["variant"], t["budget"]) == ("paper", 100))
    assert one_seed["meets_goal"] is False  # 3 seeds needed
    # a reference no better than before KT: nothing to reach, the goal is n/a
    table, _ = B.summarise(rows, 2.0, base_target=57.0)
    assert all(t["meets_goal"] is None for t in table) and B.goal_mark(table[0]) == "n/a"
    # forgetting over the budget misses the goal
    table, _ = B.summarise(ref + [cell("fast", 300, s, 60.0, drop=2.5) for s in range(3)], 2.0)
    assert B.goal_mark(next(t for t in table if t["variant"] == "fast")) == ""


def test_report_merges_cells_and_writes_outputs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_cells(a, [cell("paper", 5000, s, 58.0, flops=10e12) for s in range(3)])
    write_cells(b, [cell("fast", 300, s, 57.0) for s in range(3)] + [cell("paper", 5000, 0, 99.0)])
    (b / "baseline.json").write_text(json.dumps({"model": "m", "known": 99.0, "target": {"c": 7.0}}))
    assert B.main(["--out", str(a), "--report", "--merge", str(b)]) == 0
    rows = B.read_cells(a / "cells.jsonl")
    assert len(rows) == 6  # b's duplicate paper@5000 seed 0 counts once (a's, the first)
    assert next(r for r in rows if (r["variant"], r["seed"]) == ("paper", 0))["target"] == 58.0
    table = (a / "table.md").read_text()
    assert "| fast | 300 | 1.000 | 10.0x | **57.0** (57.0 / 57.0 / 57.0) | -1.0 |" in table
    assert "before KT (m, no fine-tuning): target 7.0 %" in table and "| fast | 300 | 0.0003 |" in table
    for name in ("summary.json", "baseline.json", "quality_vs_flops.png", "run.json"):
        assert (a / name).stat().st_size > 0, name
    assert json.loads((a / "run.json").read_text())["config"]["report"] is True
    # the merged folder alone now reproduces the same table
    assert B.main(["--out", str(a), "--report"]) == 0
    assert (a / "table.md").read_text() == table
