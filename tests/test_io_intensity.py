"""Intensity preparation per modality: CT windows, MR percentiles, min-max; parameters for run.json."""
from __future__ import annotations

import json

import numpy as np
import pytest

from medkt import io as mio
from medkt.errors import ConfigError, UnknownNameError
from medkt.io.testing import pydicom_file


@pytest.mark.parametrize("name,level,width", [("lung", -600, 1500), ("mediastinum", 50, 350), ("abdomen", 50, 400),
                                              ("brain", 40, 80), ("bone", 400, 1800)])
def test_ct_window_presets(name, level, width):
    hu = np.array([level - width / 2 - 100, level - width / 2, level, level + width / 4, level + width / 2, 3000.0])
    out, params = mio.prepare_intensity(hu, "CT", window=name)
    np.testing.assert_allclose(out, [0, 0, 0.5, 0.75, 1, 1], atol=1e-6)
    assert out.dtype == np.float32
    assert params == {"modality": "CT", "method": "ct_window", "window": name, "level": level, "width": width}


@pytest.mark.parametrize("spec", ["40,400", (40, 400), [40.0, 400.0], {"level": 40, "width": 400}])
def test_custom_ct_window(spec):
    out, params = mio.prepare_intensity(np.array([-160.0, 40.0, 240.0]), "CT", window=spec)
    np.testing.assert_allclose(out, [0, 0.5, 1])
    assert (params["level"], params["width"]) == (40, 400)


def test_ct_default_window_is_recorded():
    out, params = mio.prepare_intensity(mio.read_image(pydicom_file("CT_small.dcm")))
    assert params["window"] == "abdomen" and params["method"] == "ct_window"
    assert out.min() >= 0 and out.max() <= 1 and 0 < out.mean() < 1
    json.dumps(params)  # goes into run.json as is


def test_bad_windows():
    with pytest.raises(UnknownNameError, match="Did you mean: lung"):
        mio.resolve_window("lungs")
    with pytest.raises(ConfigError, match="positive"):
        mio.resolve_window((40, 0))
    with pytest.raises(ConfigError, match="LEVEL,WIDTH"):
        mio.resolve_window("40,abc")


def test_mr_percentiles_over_nonzero_voxels():
    rng = np.random.default_rng(0)
    a = np.zeros((20, 20, 5))
    a[5:15, 5:15] = rng.normal(500, 100, (10, 10, 5))
    out, params = mio.prepare_intensity(a, "MR")
    lo, hi = np.percentile(a[a != 0], [0.5, 99.5])
    assert params["method"] == "percentile" and params["nonzero_only"]
    assert params["low"] == pytest.approx(lo) and params["high"] == pytest.approx(hi)
    assert out.min() == 0 and out.max() == 1
    np.testing.assert_allclose(out[a == 0], 0)  # background below the low percentile


@pytest.mark.parametrize("modality", ["US", "CXR", "DX", "unknown"])
def test_minmax_for_other_modalities(modality):
    out, params = mio.prepare_intensity(np.array([[10, 20], [30, 50]], np.uint16), modality)
    np.testing.assert_allclose(out, [[0, 0.25], [0.5, 1]])
    assert params["method"] == "minmax" and (params["low"], params["high"]) == (10, 50)


def test_explicit_window_overrides_modality_and_monochrome1_inverts():
    vol = mio.volume_from_array(np.array([[0.0, 1000.0]]), modality="CR")
    vol.meta["photometric"] = "MONOCHROME1"
    out, params = mio.prepare_intensity(vol)
    np.testing.assert_allclose(out, [[1, 0]])
    assert params["inverted"] is True
    out, params = mio.prepare_intensity(np.array([-160.0, 240.0]), "unknown", window="40,400")
    assert params["method"] == "ct_window"


def test_constant_image_gives_zeros():
    out, params = mio.prepare_intensity(np.full((3, 3), 7.0), "US")
    assert (out == 0).all() and params["constant_image"]


@pytest.mark.parametrize("modality,window,photometric,bad", [
    ("CT", "lung", None, False), ("MR", None, None, False), ("US", None, None, False),
    ("CR", None, "MONOCHROME1", False), ("MR", None, None, True)])
def test_mapping_per_slice_equals_prepare_intensity(modality, window, photometric, bad):
    """segment prepares a volume slice by slice (IntensityMapping): bit-identical to the whole
    volume, the same params, and no copy of a finite input."""
    rng = np.random.default_rng(3)
    a = (rng.normal(0, 400, (12, 10, 7))).astype(np.float32 if bad else np.int16)
    if bad:
        a[2, 3, 4] = np.nan
    vol = mio.volume_from_array(a, modality=modality)
    if photometric:
        vol.meta["photometric"] = photometric
    whole, params = mio.prepare_intensity(vol, window=window)
    m = mio.intensity_mapping(vol, window=window)
    assert m.params == params
    assert (m.source is vol.array) != bad  # NaN input: a finite copy
    per_slice = np.stack([m.apply(m.source[..., k]) for k in range(a.shape[-1])], axis=-1)
    assert per_slice.dtype == np.float32
    np.testing.assert_array_equal(per_slice, whole)
