"""The Ray executor (tasks for inversions, an actor pool for segmentation) on a local Ray
instance started inside the test gives the same per-case results as the local executor."""
from __future__ import annotations

import json

import pytest

from medkt.bench import load_experiment, run_benchmark
from medkt.bench.executors import LocalExecutor, RayExecutor, make_executor
from medkt.bench.fakes import make_fakes_for, quick_overrides
from medkt.errors import ConfigError

ray = pytest.importorskip("ray", reason="Ray is optional (pip install 'medkt[ray]'); its executor is untested here")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_unknown_executor():
    with pytest.raises(ConfigError, match="local or ray"):
        make_executor("dask")


@pytest.mark.slow  # starts a local Ray instance: ~26 s alone on 2 CPU cores
def test_ray_equals_local(tmp_path, network_attempts):
    name = "table4_segmentation"
    cfg = load_experiment(name, quick_overrides(load_experiment(name)) + ["batch_size=1"])
    data = make_fakes_for(cfg, tmp_path / "data", n=3)
    local = run_benchmark(cfg, tmp_path / "local", data_root=data, groups=["breast"], executor=LocalExecutor())
    executor = RayExecutor(num_cpus=2, num_actors=2)
    try:
        assert ray.is_initialized() and executor.needs_saved_models
        remote = run_benchmark(cfg, tmp_path / "ray", data_root=data, groups=["breast"], executor=executor)
    finally:
        executor.close()
    assert not ray.is_initialized()
    assert network_attempts == []
    # KT ran as a Ray task (its inversion is on disk) and evaluation went through 2 actors
    assert (tmp_path / "ray" / "kt" / "inversions" / "images" / "breast-tumor" / "images.safetensors").exists()
    record = json.loads((tmp_path / "ray" / "parts" / "part-000-of-001" / "run.json").read_text())
    assert record["executor"] == "ray" and record["num_actors"] == 2
    per_case_local = (tmp_path / "local" / "per_case.csv").read_text()
    assert (tmp_path / "ray" / "per_case.csv").read_text() == per_case_local
    assert per_case_local.count("\n") == 1 + 2 * 3  # header + (baseline, KT) x 3 cases
    assert remote.summary["groups"] == local.summary["groups"]
