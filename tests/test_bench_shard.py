"""Sharding: 3 parts + merge equal the unsharded run; set-level metrics after gathering; resume."""
from __future__ import annotations

import json
import shutil

import pytest

from medkt.bench import load_experiment, merge_runs, run_benchmark
from medkt.bench.fakes import make_fakes_for, quick_overrides
from medkt.bench.shard import all_blocks, check_part, part_blocks
from medkt.errors import ConfigError, InputError, OutputError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_blocks_are_strided_and_cover_everything():
    parts = [part_blocks(10, 3, 3, i) for i in range(3)]
    assert [[b.number for b in p] for p in parts] == [[0, 3], [1], [2]]
    covered = sorted(i for p in parts for b in p for i in range(b.start, b.stop))
    assert covered == list(range(10))
    assert [b.stop for b in all_blocks(10, 3)] == [3, 6, 9, 10]
    with pytest.raises(ConfigError, match="0-based"):
        check_part(3, 3)


def _numbers(summary: dict) -> dict:
    """The numeric leaves of a summary's group results (for approx comparison)."""
    out = {}
    for g, runs in summary["groups"].items():
        for r, metrics in runs.items():
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    out[f"{g}/{r}/{k}"] = v
    return out


@pytest.mark.parametrize("name,runs", [("table5_retrieval", None), ("table6_captioning", ["baseline"])])
def test_three_parts_merged_equal_the_unsharded_run(tmp_path, name, runs):
    cfg = load_experiment(name, quick_overrides(load_experiment(name)) + ["batch_size=1"])
    data = make_fakes_for(cfg, tmp_path / "data", n=5)
    # KT weights are computed once and reused by every part (kt_dir); captioning: baseline only (cost)
    kw = dict(data_root=data, kt_dir=tmp_path / "shared", runs=runs)
    whole = run_benchmark(cfg, tmp_path / "whole", **kw)
    sharded = tmp_path / "sharded"
    for part in (0, 2):
        res = run_benchmark(cfg, sharded, num_parts=3, part_id=part, **kw)
        assert res.summary is None and not (sharded / "per_case.csv").exists()
    with pytest.raises(InputError, match="parts 1 of 3 are missing"):
        merge_runs([sharded])
    run_benchmark(cfg, sharded, num_parts=3, part_id=1, **kw)
    merged = merge_runs([sharded])
    # per-case tables: byte for byte
    assert (sharded / "per_case.csv").read_text() == (tmp_path / "whole" / "per_case.csv").read_text()
    # summaries (R@K / CIDEr computed once on the gathered set): to float tolerance
    a, b = _numbers(whole.summary), _numbers(merged)
    assert a.keys() == b.keys() and len(a) >= 5
    assert b == pytest.approx(a, rel=1e-9, abs=1e-12)
    assert merged["num_parts"] == 3 and whole.summary["num_parts"] == 1
    # each part really did only its share
    part1 = json.loads((sharded / "parts" / "part-001-of-003" / "manifest.json").read_text())
    assert part1["part_id"] == 1 and all(u["n_cases"] == 5 for u in part1["units"].values())
    done = list((sharded / "parts" / "part-001-of-003" / "units").rglob("blocks/*.json"))
    assert sorted({p.name for p in done}) == ["000001.json", "000004.json"]


def test_resume_and_output_safety(tmp_path):
    name = "table2_medclip_jsrt"
    cfg = load_experiment(name, quick_overrides(load_experiment(name)) + ["batch_size=2"])
    data = make_fakes_for(cfg, tmp_path / "data", n=2)
    out = tmp_path / "out"
    run_benchmark(cfg, out, data_root=data, groups=["lung_cancer"])
    before = (out / "per_case.csv").read_text()
    with pytest.raises(OutputError, match="--resume"):
        run_benchmark(cfg, out, data_root=data, groups=["lung_cancer"])
    changed = load_experiment(name, quick_overrides(load_experiment(name)) + ["batch_size=3"])
    with pytest.raises(OutputError, match="different configuration"):
        run_benchmark(changed, out, data_root=data, groups=["lung_cancer"])
    # an interrupted run: one block and the merged outputs are gone
    unit = out / "parts" / "part-000-of-001" / "units" / "lr_1e-05" / "lung_cancer" / "reference"
    (unit / "blocks" / "000001.json").unlink()
    (out / "per_case.csv").unlink()
    res = run_benchmark(cfg, out, data_root=data, groups=["lung_cancer"], resume=True)
    assert (out / "per_case.csv").read_text() == before
    assert res.summary["groups"]["lung_cancer"]["lr_1e-05"]["n_reference"] == 10
    # a merge refuses an incomplete unit and names the block
    (unit / "blocks" / "000002.json").unlink()
    with pytest.raises(InputError, match="blocks 2"):
        merge_runs([out])
    with pytest.raises(OutputError, match="inside the input"):
        run_benchmark(cfg, data / "JSRT" / "out", data_root=data, groups=["lung_cancer"])
    shutil.rmtree(out)


def test_a_part_folder_held_by_another_run_is_refused(tmp_path):
    """Two runs into one bench part folder: the second is refused, naming the holder's pid."""
    import subprocess
    import sys
    from medkt.bench.store import part_name
    name = "table5_retrieval"
    cfg = load_experiment(name, quick_overrides(load_experiment(name)) + ["batch_size=1"])
    data = make_fakes_for(cfg, tmp_path / "data", n=2)
    out = tmp_path / "bench"
    hold = ("import sys, time\nfrom medkt.outdir import lock_output_dir\nlock_output_dir(sys.argv[1])\n"
            "print('ready', flush=True)\ntime.sleep(120)\n")
    part = out / "parts" / part_name(0, 1)
    part.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", hold, str(part)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(OutputError, match=f"in use by another medkt run \\(pid {proc.pid} "):
            run_benchmark(cfg, out, data_root=data, runs=["baseline"], resume=True)
    finally:
        proc.kill()
        proc.wait()
