"""Issue 15 (pipeline flow): slices streamed into the outputs through views, chunked intensity
preparation, bounded memory, per-case stage timings, all-air slices skipped, ``--slices A:B``,
cohort parts + ``medkt segment-merge`` equal to the one-part run, and Ray equal to local."""
from __future__ import annotations

import csv
import hashlib
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from medkt.cli.main import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--config", "tiny"]
STAGES = ("read_s", "prepare_s", "m2ib_s", "postprocess_s", "sam_encode_s", "sam_decode_s", "write_s")
AFFINES = {"ras": np.diag([0.8, 0.9, 2.0, 1.0]),
           "flipped": np.diag([-0.8, 0.9, -2.0, 1.0]),
           "permuted": np.array([[0, 0, 2.0, 0], [-0.7, 0, 0, 0], [0, 0.9, 0, 0], [0, 0, 0, 1]])}


def _ct(shape=(40, 36, 10), air=(0, 0), seed=0) -> np.ndarray:
    """int16 HU: a body ellipse (40 HU) with noise in air (-1000); ``air`` all-air slices at each end of axis 2."""
    rng = np.random.default_rng(seed)
    i, j = np.mgrid[:shape[0], :shape[1]]
    body = ((i - shape[0] / 2) / (shape[0] * 0.4)) ** 2 + ((j - shape[1] / 2) / (shape[1] * 0.4)) ** 2 <= 1
    a = np.full(shape, -1000, np.int16)
    a[body] = 40
    a += rng.normal(0, 20, shape).astype(np.int16)
    lo, hi = air
    if lo:
        a[..., :lo] = -1000
    if hi:
        a[..., shape[2] - hi:] = -1000
    return a


def _rows(out: Path) -> list[dict]:
    with open(out / "cases.csv") as f:
        return list(csv.DictReader(f))


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".medkt" not in p.parts}


# ---------------------------------------------------------------------- slicing by views
@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal", 1])
def test_view_writes_equal_reassemble(name, axis):
    from medkt import io as mio
    vol = mio.volume_from_array(np.arange(7 * 6 * 5, dtype=np.int16).reshape(7, 6, 5), affine=AFFINES[name])
    smap = mio.make_slice_map(vol, axis)
    rng = np.random.default_rng(1)
    masks = {k: rng.integers(0, 2, smap.slice_shape).astype(np.uint8) for k in smap.indices}
    out = np.zeros(vol.spatial_shape, np.uint8)
    for k, m in masks.items():
        view = smap.view(out, k)
        assert np.shares_memory(view, out)  # no copy: the slice is written in place
        view[...] = m
    np.testing.assert_array_equal(out, mio.reassemble(masks, smap))
    # reading: iter_extract gives what extract gives, one contiguous slice at a time
    for a, b in zip(smap.iter_extract(vol.array), smap.extract(vol.array)):
        assert a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
    ks = smap.indices[1:3]
    for k, a in zip(ks, smap.iter_extract(vol.array, ks)):
        np.testing.assert_array_equal(a, smap.view(vol.array, k))


def test_prepare_intensity_in_chunks_equals_one_pass(monkeypatch):
    from medkt.io import intensity
    rng = np.random.default_rng(0)
    ct = rng.normal(0, 400, (30, 20, 9)).astype(np.int16)
    mr = np.abs(rng.normal(100, 50, (30, 20, 9))).astype(np.float32)
    mr[0] = 0
    one = [intensity.prepare_intensity(ct, "ct")[0], intensity.prepare_intensity(mr, "mr")[0],
           intensity.prepare_intensity(mr, "us")[0]]
    monkeypatch.setattr(intensity, "_CHUNK", 50)  # many small chunks
    many = [intensity.prepare_intensity(ct, "ct")[0], intensity.prepare_intensity(mr, "mr")[0],
            intensity.prepare_intensity(mr, "us")[0]]
    for a, b in zip(one, many):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    # the one-pass reference: float64 arithmetic on the whole array, then float32
    ref = np.clip((ct.astype(np.float64) - (50 - 200)) / 400, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(one[0], ref)


@pytest.mark.slow  # 160 tiny slices: ~8 s on 2 shared cores
def test_case_memory_is_input_prepared_and_outputs(tmp_path, monkeypatch):
    """numpy memory traced during a streamed case stays near input + prepared + mask + saliency
    (plus one batch of slices), far below what holding every slice's results would take."""
    import medkt
    from medkt.segmentation import Segmenter, load_segment_config
    seg = Segmenter(load_segment_config("tiny"))
    a = _ct((64, 64, 160))
    vol_bytes = a.nbytes
    full = vol_bytes + a.size * (4 + 1 + 4)  # input int16 + prepared float32 + mask uint8 + saliency float32
    batch = 32 * 64 * 64 * 4 * 12  # one chunk of 32 slices, ~12 float32 slice-sized arrays each
    import nibabel as nib

    from medkt.io import intensity
    monkeypatch.setattr(intensity, "_CHUNK", 1 << 14)  # as for a full-size volume: chunks << the volume
    img = nib.Nifti1Image(a, np.eye(4))
    # warm-up on a small volume: module imports (plotting, writers) are not data memory
    medkt.segment(nib.Nifti1Image(a[..., :2], np.eye(4)), prompt="a body", modality="ct", segmenter=seg,
                  output=tmp_path / "warm", config=load_segment_config("tiny"))
    tracemalloc.start()
    try:
        res = medkt.segment(img, prompt="a body", modality="ct", segmenter=seg, output=tmp_path / "o",
                            config=load_segment_config("tiny"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.table[0]["status"] == "ok" and res.table[0]["slices_segmented"] == 160
    assert peak < full + batch, (peak, full, batch)
    # keeping every slice's saliency, coarse and mask plus all prepared slices (the old flow) needs more
    assert full + a.size * (4 + 4 + 1 + 1) > full + batch


# ---------------------------------------------------------------------- air, range, timings
def test_air_slices_and_slice_range(tmp_path, capsys):
    import nibabel as nib
    d = tmp_path / "in"
    d.mkdir()
    nib.save(nib.Nifti1Image(_ct(air=(2, 3)), AFFINES["ras"]), d / "ct.nii.gz")
    out = tmp_path / "out"
    assert main(["segment", str(d / "ct.nii.gz"), "-o", str(out), "--prompt", "a body", "--modality", "ct",
                 *TINY]) == 0
    printed = capsys.readouterr().out
    row = _rows(out)[0]
    assert (int(row["slices"]), int(row["slices_air"]), int(row["slices_segmented"])) == (10, 5, 5)
    assert "5 air skipped" in printed and all(s[:-2].replace("_", " ") in printed for s in STAGES)
    run = json.loads((out / "run.json").read_text())
    case = run["cases"][0]
    assert case["slices_air"] == 5 and all(case[s] >= 0 for s in STAGES) and case["s_per_slice"] > 0
    assert [r["slice"] for r in run["slices"]["ct"] if r["status"] == "air"] == [0, 1, 7, 8, 9]
    mask = np.asarray(nib.load(out / "ct" / "mask.nii.gz").dataobj)
    sal = np.asarray(nib.load(out / "ct" / "saliency.nii.gz").dataobj)
    assert not mask[..., [0, 1, 7, 8, 9]].any() and not sal[..., [0, 1, 7, 8, 9]].any()
    assert sal[..., 2:7].any()
    # --keep-air segments them all; --slices limits the range (display slice = array axis 2 here)
    import medkt
    r = medkt.segment(d / "ct.nii.gz", prompt="a body", modality="ct", config="tiny", skip_air=False)
    assert (r.table[0]["slices_air"], r.table[0]["slices_segmented"]) == (0, 10)
    r = medkt.segment(d / "ct.nii.gz", prompt="a body", modality="ct", config="tiny", slices="1:4")
    row = r.table[0]
    assert (row["slices_outside_range"], row["slices_air"], row["slices_segmented"]) == (7, 1, 2)
    assert not r.saliency[..., [0, 1, 4, 5, 6, 7, 8, 9]].any() and r.saliency[..., 2:4].any(axis=(0, 1)).all()
    # a non-CT volume: air = prepared intensity below air.threshold on nearly every pixel
    mr = np.abs(np.random.default_rng(0).normal(50, 10, (24, 20, 6))).astype(np.float32)
    mr[..., 0] = 0
    r = medkt.segment(mr, prompt="a body", modality="mr", config="tiny")
    assert r.table[0]["slices_air"] == 1 and not r.mask[..., 0].any()


def test_slice_range_parsing():
    from medkt.errors import ConfigError
    from medkt.segmentation.cases import slice_range
    assert slice_range(None, 5) == [0, 1, 2, 3, 4]
    assert slice_range("1:3", 5) == [1, 2] and slice_range("3:", 5) == [3, 4] and slice_range(":-3", 5) == [0, 1]
    assert slice_range("-2:", 5) == [3, 4] and slice_range("2", 5) == [2] and slice_range("9:20", 5) == []
    for bad in ("a:b", "1:2:3", "", " : x"):
        with pytest.raises(ConfigError, match="A:B"):
            slice_range(bad, 5)
    assert main(["segment", "x.nii.gz", "-o", "y", "--prompt", "p", "--slices", "1-4", *TINY]) == 2


# ---------------------------------------------------------------------- parts and merge
@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    import nibabel as nib
    d = tmp_path_factory.mktemp("cohort") / "scans"
    d.mkdir()
    for n, name in enumerate(["c", "a", "e", "b", "d"]):
        nib.save(nib.Nifti1Image(_ct((32, 28, 3), seed=n), AFFINES["flipped"]), d / f"{name}.nii.gz")
    return d


VOLATILE = {"seconds", "case_s", "case_cpu_s", "s_per_slice", *STAGES}


def _stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def test_parts_merge_equal_one_part_run(cohort, tmp_path, capsys):
    common = ["--prompt", "a body", "--modality", "ct", "--set", "output.coarse=true", *TINY]
    assert main(["segment", str(cohort), "-o", str(tmp_path / "one"), *common]) == 0
    for i in range(2):
        assert main(["segment", str(cohort), "-o", str(tmp_path / f"p{i}"), "--num-parts", "2", "--part-id", str(i),
                     *common]) == 0
    p0 = json.loads((tmp_path / "p0" / "run.json").read_text())["part"]
    assert p0["case_ids"] == ["a", "c", "e"] and p0["n_cases_total"] == 5  # by case id, strided
    assert "part 0 of 2 (3 of 5 cases)" in capsys.readouterr().out
    assert main(["segment-merge", str(tmp_path / "p1"), str(tmp_path / "p0"), "-o", str(tmp_path / "merged")]) == 0
    one, merged = tmp_path / "one", tmp_path / "merged"
    assert [r["case_id"] for r in _rows(merged)] == ["a", "b", "c", "d", "e"]
    key = {r["case_id"]: r for r in _stable(_rows(one))}
    assert _stable(_rows(merged)) == [key[c] for c in "abcde"]
    d1, d2 = _digest(one), _digest(merged)
    cases = {k: v for k, v in d1.items() if "/" in k}
    assert cases and cases == {k: v for k, v in d2.items() if "/" in k}  # masks, saliency, coarse, overlays
    run = json.loads((merged / "run.json").read_text())
    assert run["status"] == "finished" and [p["part_id"] for p in run["parts"]] == [0, 1]
    assert len(run["cases"]) == 5 and set(run["slices"]) == set("abcde")
    assert run["timings"]["m2ib_s"] > 0
    # a dry run lists the part's cases only
    assert main(["segment", str(cohort), "--dry-run", "--num-parts", "2", "--part-id", "1"]) == 0
    assert "2 case(s) would be processed" in capsys.readouterr().out


def test_merge_refuses_what_is_not_one_run(cohort, tmp_path, capsys):
    from medkt.errors import ConfigError, InputError
    from medkt.segmentation.cohort import merge_parts, select_part
    common = ["--prompt", "a body", "--modality", "ct", *TINY]
    assert main(["segment", str(cohort), "-o", str(tmp_path / "p0"), "--num-parts", "3", "--part-id", "0",
                 *common]) == 0
    assert main(["segment", str(cohort), "-o", str(tmp_path / "q1"), "--num-parts", "3", "--part-id", "1",
                 "--seed", "7", *common]) == 0
    with pytest.raises(InputError, match="parts 1, 2 of 3 are missing"):
        merge_parts([tmp_path / "p0"], tmp_path / "m")
    with pytest.raises(InputError, match="given twice"):
        merge_parts([tmp_path / "p0", tmp_path / "p0"], tmp_path / "m")
    with pytest.raises(InputError, match="configuration differs"):
        merge_parts([tmp_path / "p0", tmp_path / "q1"], tmp_path / "m")
    with pytest.raises(InputError, match="no run.json"):
        merge_parts([cohort], tmp_path / "m")
    assert main(["segment-merge", str(tmp_path / "p0"), "-o", str(tmp_path / "m")]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="0..1"):
        select_part([], 2, 2)
    assert main(["segment", str(cohort), "-o", str(tmp_path / "x"), "--num-parts", "0", *common]) == 2


# ---------------------------------------------------------------------- Ray
@pytest.mark.slow  # starts a local Ray instance and 3 actors (~1-3 min on 2 shared cores)
def test_ray_equals_local(cohort, tmp_path, network_attempts):
    ray = pytest.importorskip("ray", reason="Ray is optional (pip install 'medkt[ray]')")
    import medkt
    kw = dict(prompt="a body", modality="ct", config="tiny", overrides=["output.coarse=true"])
    local = medkt.segment(cohort, output=tmp_path / "local", **kw)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in sorted(cohort.iterdir())[:2]:
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "z.nii.gz").write_bytes(b"not a nifti")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:  # one Ray instance for both runs (a run that finds Ray started leaves it running)
        seen = []
        remote = medkt.segment(cohort, output=tmp_path / "ray", executor="ray", workers=2, on_case=seen.append, **kw)
        # a case failing in a worker is recorded with the local run's reason, and the run goes on
        res = medkt.segment(bad, output=tmp_path / "ray_bad", executor="ray", workers=1, **kw)
        # --resume: the finished cases are not sent to the workers again
        again = medkt.segment(bad, output=tmp_path / "ray_bad", executor="ray", workers=1, resume=True, **kw)
    finally:
        ray.shutdown()
    assert network_attempts == []
    assert remote.record["executor"] == {"executor": "ray", "workers": 2}
    assert sorted(r["case_id"] for r in seen) == list("abcde")
    assert remote.record["weights"] == local.record["weights"]
    assert _stable(_rows(tmp_path / "ray")) == _stable(_rows(tmp_path / "local"))
    d_local, d_ray = _digest(tmp_path / "local"), _digest(tmp_path / "ray")
    per_case = {k: v for k, v in d_local.items() if "/" in k}
    assert per_case and per_case == {k: v for k, v in d_ray.items() if "/" in k}  # byte-identical
    rows = {r["case_id"]: r for r in res.table}
    assert {c: r["status"] for c, r in rows.items()} == {"a": "ok", "b": "ok", "z": "failed"}
    assert [(r["case_id"], r["status"], "resumed" in r["reason"]) for r in again.table] == [
        ("a", "ok", True), ("b", "ok", True), ("z", "failed", False)]
    here = medkt.segment(bad / "z.nii.gz", output=tmp_path / "local_bad", **kw).table[0]
    assert rows["z"]["reason"] == here["reason"] and here["status"] == "failed"


def test_batch_runner_pending_skips_finished_cases(tmp_path):
    """What an executor submits up front under --resume: the cases without a valid done-marker."""
    from medkt.batch import BatchRunner
    from medkt.runs import prepare_output_dir, release_output_dir
    out = prepare_output_dir(tmp_path / "o", [])
    try:
        BatchRunner(out, progress=False).run(["a", "b"], lambda c: {"x": 1})
        again = BatchRunner(out, resume=True, progress=False)
        assert again.pending(["a", "b", "c"]) == ["c"]
        assert BatchRunner(out, progress=False).pending(["a", "b"]) == ["a", "b"]
    finally:
        release_output_dir(out)
