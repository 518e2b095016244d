"""Safety of outputs in batches: atomic writes, overwrite refusal, failures recorded, interrupted runs resumed."""
from __future__ import annotations

import csv
import json
import os

import nibabel as nib
import numpy as np
import pytest

from medkt import io as mio
from medkt.errors import OutputError
from medkt.runs import BatchRunner, RunRecord, prepare_output_dir, write_csv


def _nifti_folder(root, n=4, bad=()):
    root.mkdir(parents=True)
    for i in range(n):
        data = np.full((4, 5, 3), i, np.int16)
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), root / f"case{i}.nii.gz")
    for name, payload in bad:
        (root / name).write_bytes(payload)
    return root


def _segment_case(out_dir, calls):
    def fn(case):
        vol = mio.read_case(case)
        calls.append(case.case_id)
        path = mio.write_mask((vol.array > 0).astype(np.uint8), vol, out_dir / f"{case.case_id}.nii.gz")
        return {"mask": path.name}
    return fn


def test_interrupted_batch_resumes_without_rewriting_finished_outputs(tmp_path):
    inp = _nifti_folder(tmp_path / "in", 5)
    out = prepare_output_dir(tmp_path / "out", [inp])
    cases = mio.discover_cases(inp)
    calls: list[str] = []
    seg = _segment_case(out, calls)

    def interrupted(case):          # Ctrl-C after two finished cases
        if len(calls) == 2:
            raise KeyboardInterrupt
        return seg(case)

    with pytest.raises(KeyboardInterrupt):
        BatchRunner(out, progress=False).run(cases, interrupted, case_id=lambda c: c.case_id)
    assert calls == ["case0", "case1"]
    first = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes()) for p in out.glob("*.nii.gz")}
    assert set(first) == {"case0.nii.gz", "case1.nii.gz"}
    assert not [p for p in out.rglob("*.tmp*")]                       # no temp files left behind

    with pytest.raises(OutputError, match="--resume"):                 # not silently overwritten
        prepare_output_dir(out, [inp])
    out = prepare_output_dir(out, [inp], resume=True)
    calls.clear()
    record = RunRecord(command="test")
    results = BatchRunner(out, resume=True, record=record, progress=False).run(
        mio.discover_cases(inp), seg, case_id=lambda c: c.case_id)
    assert calls == ["case2", "case3", "case4"]
    assert [r.status for r in results] == ["ok"] * 5
    assert [r.reason.startswith("resumed") for r in results] == [True, True, False, False, False]
    for name, (mtime, ino, data) in first.items():
        st = (out / name).stat()
        assert (st.st_mtime_ns, st.st_ino, (out / name).read_bytes()) == (mtime, ino, data)
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"case{i}.nii.gz" for i in range(5)]


def test_batch_goes_on_past_bad_cases_and_records_reasons(tmp_path):
    inp = _nifti_folder(tmp_path / "in", 2, bad=[("broken.nii.gz", b"\x1f\x8bnot-gzip"), ("empty.png", b"")])
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.int16), np.eye(4)), inp / "fmri.nii.gz")
    out = prepare_output_dir(tmp_path / "out", [inp])
    cases = mio.discover_cases(inp)
    assert len(cases) == 5
    record = RunRecord(command="segment")
    results = BatchRunner(out, record=record, progress=False).run(cases, _segment_case(out, []),
                                                                  case_id=lambda c: c.case_id)
    status = {r.case_id: r for r in results}
    assert status["case0"].status == status["case1"].status == "ok"
    assert "not a readable NIfTI" in status["broken"].reason
    assert "empty (0 bytes)" in status["empty"].reason
    assert "--nifti-volume" in status["fmri"].reason
    write_csv(out / "cases.csv", [r.row() for r in results])
    rows = {r["case_id"]: r for r in csv.DictReader(open(out / "cases.csv"))}
    assert rows["broken"]["status"] == "failed" and "NIfTI" in rows["broken"]["reason"]
    run = json.loads(record.write(out).read_text())
    assert {f["case_id"] for f in run["failures"]} == {"broken", "empty", "fmri"}
    assert all(f["reason"] for f in run["failures"])


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    vol = mio.volume_from_array(np.zeros((3, 3, 3)), np.eye(4))
    target = tmp_path / "out" / "mask.nii.gz"

    def crash(img, filename):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(nib, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        mio.write_mask(np.ones((3, 3, 3), np.uint8), vol, target)
    assert os.listdir(tmp_path / "out") == []
