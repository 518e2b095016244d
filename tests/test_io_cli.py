"""``medkt inspect``: the dry-run listing of cases, with problems and skipped files."""
from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np

from medkt.cli.main import main
from medkt.io.testing import make_dicom_series, pydicom_file


def _input(tmp_path):
    d = tmp_path / "in"
    make_dicom_series(d / "ok", 3, spacing=2.0)
    make_dicom_series(d / "tilted", 3, tilt_mm=1.0)
    shutil.copy(pydicom_file("rtstruct.dcm"), d)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), d / "t1.nii.gz")
    return d


def test_inspect_lists_cases_and_problems(tmp_path, capsys):
    rc = main(["inspect", str(_input(tmp_path))])
    out = capsys.readouterr().out
    assert rc == 1  # one case has a problem
    assert "3 cases, 2 readable" in out
    assert "ok  " in out and "32x32x3" in out and "0.661468x0.661468x2" in out
    assert "gantry tilt" in out and "PROBLEM" in out
    assert "rtstruct.dcm: RTSTRUCT" in out


def test_inspect_json_and_read(tmp_path, capsys):
    d = _input(tmp_path)
    shutil.rmtree(d / "tilted")
    rc = main(["inspect", str(d), "--json", "--read"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    rows = {r["case_id"]: r for r in data["cases"]}
    assert set(rows) == {"ok", "t1"}
    assert rows["ok"]["modality"] == "CT" and rows["ok"]["dtype"] == "int16"
    assert rows["t1"]["shape"] == [4, 4, 4] and rows["t1"]["problem"] is None


def test_inspect_empty_folder_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["inspect", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert rc == 2 and "folder is empty" in err and "Traceback" not in err
