"""Dataset adapters: every documented layout scans and reads; wrong layouts show the expected layout."""
from __future__ import annotations

import numpy as np
import pytest

from medkt.bench.datasets import apply_limit, get_adapter, list_datasets, load_dataset
from medkt.bench.fakes import FAKES, make_fake
from medkt.errors import ConfigError, InputError, UnknownNameError


pytestmark = pytest.mark.usefixtures("one_torch_thread")

ADAPTERS = sorted(FAKES)


def test_every_adapter_has_a_fake_and_a_documented_layout():
    names = {a.name for a in list_datasets()}
    assert names == set(FAKES)
    for a in list_datasets():
        assert a.layout.strip() and "<root>/" in a.layout, a.name
        assert a.task in ("classification", "segmentation", "captions")


@pytest.mark.parametrize("name", ADAPTERS)
def test_fake_layout_scans_and_reads(tmp_path, name):
    root = make_fake(name, tmp_path / name, n=2)
    ds = load_dataset(name, root)
    assert len(ds) >= 2
    assert len({c.case_id for c in ds.cases}) == len(ds)
    case = ds.cases[0]
    img = ds.image(case)
    assert img.ndim in (2, 3) and img.shape[0] > 8
    assert img.dtype == np.uint8 or (img.min() >= 0 and img.max() <= 1)
    if ds.task == "classification":
        assert all(c.label in ds.classes for c in ds.cases)
    elif ds.task == "segmentation":
        for c in ds.cases:
            m = ds.mask(c)
            assert m.dtype == bool and m.shape == ds.image(c).shape[:2]
            assert m.any(), f"{c.case_id}: fake positives must have a lesion"
    else:
        assert all(len(c.captions) == 5 for c in ds.cases)
    again = load_dataset(name, root)
    assert [c.case_id for c in again.cases] == [c.case_id for c in ds.cases]  # stable order


@pytest.mark.parametrize("name", ADAPTERS)
def test_wrong_layout_error_shows_expected_layout(tmp_path, name):
    bad = tmp_path / "bad"
    (bad / "something").mkdir(parents=True)
    (bad / "something" / "notes.txt").write_text("not a dataset")
    with pytest.raises(InputError) as err:
        load_dataset(name, bad)
    msg = str(err.value)
    assert "expected layout" in msg and "<root>/" in msg
    first = next(line.strip() for line in get_adapter(name).layout.splitlines() if line.strip()
                 and line.strip() != "<root>/")
    assert first in msg, msg
    assert str(bad) in msg


def test_missing_folder_and_missing_mask_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dataset("udiat", tmp_path / "nope")
    root = make_fake("udiat", tmp_path / "udiat", n=3)
    (root / "GT" / "000002.png").unlink()
    with pytest.raises(InputError) as err:
        load_dataset("udiat", root)
    assert "000002.png" in str(err.value) and "GT/" in str(err.value)


def test_unknown_dataset_and_option():
    with pytest.raises(UnknownNameError, match="Did you mean: busi"):
        get_adapter("bussi")
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset("busi", ".", options={"nope": 1})


def test_limit_keeps_every_class(tmp_path):
    root = make_fake("rare_concepts", tmp_path / "rc", n=4)
    ds = load_dataset("rare_concepts", root, limit=3)
    assert len(ds) == 3 and len({c.label for c in ds.cases}) == 3
    full = [c.case_id for c in load_dataset("rare_concepts", root).cases]
    ids = [c.case_id for c in ds.cases]
    assert ids == [i for i in full if i in ids]  # the canonical order is kept
    assert [c.case_id for c in apply_limit(load_dataset("udiat", make_fake("udiat", tmp_path / "u", 5)).cases, 2)] \
        == ["000001", "000002"]


def test_dataset_specific_rules(tmp_path):
    busi = make_fake("busi", tmp_path / "busi", n=2)
    assert {c.label for c in load_dataset("busi", busi).cases} == {"benign", "malignant"}
    assert len(load_dataset("busi", busi, options={"include_normal": True})) == 6
    siim = make_fake("siim_pneumothorax", tmp_path / "siim", n=2)
    assert len(load_dataset("siim_pneumothorax", siim)) == 2  # the negative image is skipped
    assert len(load_dataset("siim_pneumothorax", siim, options={"positive_only": False})) == 3
    inet = make_fake("imagenet1k", tmp_path / "inet", n=1)
    assert len(load_dataset("imagenet1k", inet).classes) == 1000
    assert len(load_dataset("imagenet1k", inet, options={"label_set": "folders"}).classes) == 4
    jsrt = load_dataset("jsrt", make_fake("jsrt", tmp_path / "jsrt", n=2))
    assert set(jsrt.classes) == {"Lung Cancer", "Benign Nodule"}
    img = jsrt.image(jsrt.cases[0])
    assert img.shape == (64, 64) and img.dtype == np.float32
    brats = load_dataset("brats23_glioma", make_fake("brats23_glioma", tmp_path / "brats", n=1))
    assert [c.meta["slice"] for c in brats.cases] == [1, 2]  # slices with tumour only
    assert brats.spacing(brats.cases[0]) == (1.0, 1.0)
    allz = load_dataset("brats23_glioma", tmp_path / "brats", options={"slices": "all"})
    assert len(allz) == 4


def test_rle_roundtrip():
    from medkt.bench.adapters_segmentation import rle_decode, rle_encode
    rng = np.random.default_rng(0)
    m = rng.random((7, 5)) > 0.6
    assert np.array_equal(rle_decode([rle_encode(m)], 7, 5), m)
    assert rle_encode(np.zeros((3, 3), bool)) == "-1"


def test_docs_show_every_layout():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text()
    for a in list_datasets():
        assert f"## `{a.name}`" in doc
        for line in a.layout.strip("\n").splitlines():
            assert line in doc, (a.name, line)
