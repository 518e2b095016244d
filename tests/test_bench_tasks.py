"""Typed bench configs: one SegMetricConfig built from the spec, dataclasses across the executor
boundary and through manifest.json, misspelt keys rejected instead of defaulted."""
from __future__ import annotations

import pickle

import pytest

from medkt.bench import load_experiment
from medkt.bench.datasets import load_dataset
from medkt.bench.in_memory import task_options
from medkt.bench.fakes import make_fake
from medkt.bench.runner import unit_options
from medkt.bench.tasks import SegmentationContext, SegmentationOptions, context_from_dict
from medkt.config import to_dict
from medkt.errors import ConfigError, UnknownNameError
from medkt.metrics import SegMetricConfig


def test_segmentation_metrics_are_one_segmetricconfig(tmp_path):
    cfg = load_experiment("table4_segmentation")
    m = cfg.segmentation.metrics
    assert isinstance(m, SegMetricConfig) and (m.nsd_units, m.nsd_mode) == ("px", "medclip-samv2")
    data = {"udiat": load_dataset("udiat", make_fake("udiat", tmp_path / "u", n=2))}
    opts, ctx = unit_options(cfg, cfg.group("breast"), "target", "udiat", data)
    assert isinstance(opts, SegmentationOptions) and isinstance(ctx, SegmentationContext)
    assert opts.spec.metrics is m and ctx.metrics is m  # built once, from the spec
    assert opts.prompt == cfg.group("breast").prompt
    assert pickle.loads(pickle.dumps(opts)) == opts  # travels to Ray workers
    assert context_from_dict("segmentation", to_dict(ctx)) == ctx  # survives manifest.json


def test_defaults_are_segmetricconfig_defaults():
    cfg = load_experiment("table4_segmentation", overrides=["segmentation.metrics={}"])
    assert cfg.segmentation.metrics == SegMetricConfig()


def test_old_flat_metric_keys_say_where_they_moved():
    with pytest.raises(ConfigError, match="segmentation.metrics.nsd_units"):
        load_experiment("table4_segmentation", overrides=["segmentation.nsd_units=mm"])


def test_misspelt_keys_fail_instead_of_defaulting(tmp_path):
    with pytest.raises(UnknownNameError, match="nsd_unit"):
        load_experiment("table4_segmentation", overrides=["segmentation.metrics.nsd_unit=mm"])
    with pytest.raises(UnknownNameError, match="NSD unit"):
        load_experiment("table4_segmentation", overrides=["segmentation.metrics.nsd_units=cm"])
    ds = load_dataset("rare_concepts", make_fake("rare_concepts", tmp_path / "rc", n=1))
    with pytest.raises(UnknownNameError, match="templtes"):
        task_options("classification", ds, templtes=["photo"])
    opts, ctx = task_options("classification", ds, templates=["photo"], target_classes=["Moongate"])
    assert opts.templates == ["a photo of a {}."] and ctx.target_classes == ["Moongate"] and ctx.set == "target"


def test_mm_metrics_on_images_without_spacing_fail_with_the_fix(tmp_path, one_torch_thread):
    from medkt.bench.in_memory import evaluate_dataset
    from medkt.models import create_model
    ds = load_dataset("udiat", make_fake("udiat", tmp_path / "u", n=1))
    with pytest.raises(ConfigError, match="no pixel spacing") as e:
        evaluate_dataset("segmentation", create_model("tiny-clip"), ds, prompt="a tumour", sam="tiny-sam",
                         config={"m2ib": {"steps": 1, "samples": 1}})  # SegMetricConfig default: mm
    assert "segmentation.metrics.nsd_units: px" in str(e.value)
