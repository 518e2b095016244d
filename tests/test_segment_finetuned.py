"""Knowledge Transfer feeds segmentation: ``medkt segment --finetuned KT_RUN`` and
``medkt.segment(model=<object>, finetuned=...)``, both run layouts, and the same masks as the
bench's Table 4 pipeline for the same fine-tuned weights (tiny models, offline)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import medkt
from medkt.cli.main import main
from medkt.errors import ConfigError, InputError
from medkt.models import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--config", "tiny"]
PROMPT = "a bright blob"


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _weights_file(run) -> Path:
    """The run's one weights file, whatever the run layout (the shared reader)."""
    from medkt.transfer.outputs import find_finetuned
    return Path(find_finetuned(run))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image
    root = tmp_path_factory.mktemp("png") / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        a = (rng.random((40, 48)) * 60).astype(np.uint8)
        a[8:24, 12:30] = 230
        Image.fromarray(a).save(root / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def kt_run(tmp_path_factory):
    """A finished `medkt transfer` run (single weights file) on tiny-clip, one concept."""
    out = tmp_path_factory.mktemp("kt") / "run"
    argv = ["transfer", "--concepts", "rare", "--only", "Moongate", "--model", "tiny-clip", "-o", str(out),
            "--steps", "3", "--images-per-concept", "2", "--lr", "1e-3", "--no-progress"]
    assert main(argv) == 0
    return out


def _write_delta(path: Path, model, concepts: list[str], lr: float, scale: float) -> dict:
    from medkt.transfer.state import save_weights
    name, p = next((n, p) for n, p in model.named_parameters() if n.endswith("visual.proj"))
    delta = {name: torch.full_like(p, scale)}
    save_weights(path, delta, {"format": "delta", "concepts": concepts, "config": {"lr": lr}})
    return delta


@pytest.fixture(scope="module")
def per_concept_run(tmp_path_factory):
    """A run in the per-concept, per-lr layout (medkt.transfer.outputs): 2 concepts x 2 lrs."""
    from medkt.runs import atomic_write_json
    from medkt.transfer.outputs import finetune_dir
    run = tmp_path_factory.mktemp("kt2") / "run"
    model = create_model("tiny-clip")
    for i, (slug, name) in enumerate([("moongate", "Moongate"), ("tonometer", "Tonometer")]):
        for j, lr in enumerate([1e-4, 3e-4]):
            d = finetune_dir(run, lr, slug)
            _write_delta(d / "delta.safetensors", model, [name], lr, 0.01 * (1 + 2 * i + j))
            atomic_write_json(d / "finetune.json", {"lr": lr, "concepts": [name], "weights": "delta.safetensors"})
    atomic_write_json(run / "run.json", {"command": "transfer", "protocol": "per-concept",
                                         "concepts": ["Moongate", "Tonometer"],
                                         "weights": {"model": "tiny-clip", "source": "tiny-clip:random-init"}})
    return run


def test_model_object_is_accepted_and_used_as_is(images):
    model = create_model("tiny-clip")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    by_name = medkt.segment(images, PROMPT, config="tiny")
    by_object = medkt.segment(images, PROMPT, config="tiny", model=model)
    assert by_object.record["config"]["model"] == "tiny-clip"
    for a, b in zip(by_name, by_object):  # same seeded weights -> same maps
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="registered model name or a medkt model object"):
        medkt.segment(images, PROMPT, config="tiny", model=object())


def test_cli_finetuned_applies_and_records_the_weights(images, kt_run, tmp_path):
    weights = _weights_file(kt_run)
    out = tmp_path / "seg"
    assert main(["segment", str(images), "-o", str(out), "--prompt", PROMPT, *TINY, "--finetuned", str(kt_run)]) == 0
    rec = json.loads((out / "run.json").read_text())
    ft = rec["finetuned"]
    assert ft["path"] == str(weights) and ft["sha256"] == _sha(weights) and ft["format"] == "delta"
    assert ft["concept"] == "Moongate" and ft["lr"] == pytest.approx(1e-3) and ft["base_model"] == "tiny-clip"
    assert rec["weights"]["finetuned"]["sha256"] == ft["sha256"]
    # the weights really reach the saliency model: the maps differ from the base model's
    base = medkt.segment(images, PROMPT, config="tiny")
    tuned = medkt.segment(images, PROMPT, config="tiny", finetuned=kt_run)
    assert tuned.record["finetuned"]["sha256"] == ft["sha256"]
    assert any(not np.allclose(a.saliency, b.saliency, atol=1e-4) for a, b in zip(base, tuned))
    saved = np.load(out / "a" / "saliency.npy")
    np.testing.assert_allclose(saved, tuned.cases[0].saliency, atol=1e-6)


def test_python_finetuned_on_a_model_object_leaves_it_untouched(images, kt_run):
    from medkt.transfer import load_finetuned
    model = create_model("tiny-clip")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = medkt.segment(images, PROMPT, config="tiny", model=model, finetuned=_weights_file(kt_run))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    load_finetuned(model, kt_run)  # the same weights applied by hand give the same maps
    by_hand = medkt.segment(images, PROMPT, config="tiny", model=model)
    for a, b in zip(res, by_hand):
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-6)


def test_per_concept_layout_needs_a_choice(images, per_concept_run, tmp_path):
    from medkt.segmentation import resolve_finetuned
    with pytest.raises(InputError) as err:
        resolve_finetuned(per_concept_run)
    msg = err.value.format()
    assert "Moongate" in msg and "Tonometer" in msg and "0.0001" in msg and "0.0003" in msg
    assert main(["segment", str(images), "-o", str(tmp_path / "x"), "--prompt", PROMPT, *TINY,
                 "--finetuned", str(per_concept_run), "--concept", "Tonometer"]) == 2  # two lrs left
    fw = resolve_finetuned(per_concept_run, concept="tonometer", lr=3e-4)
    assert fw.concept == "Tonometer" and fw.lr == 3e-4 and fw.concepts == ["Tonometer"]
    assert fw.path == per_concept_run / "concepts" / "tonometer" / "lr_3e-04" / "delta.safetensors"
    out = tmp_path / "seg"
    assert main(["segment", str(images), "-o", str(out), "--prompt", PROMPT, *TINY, "--finetuned",
                 str(per_concept_run), "--concept", "Tonometer", "--lr", "3e-4"]) == 0
    rec = json.loads((out / "run.json").read_text())["finetuned"]
    assert rec["path"] == str(fw.path) and rec["sha256"] == _sha(fw.path) and rec["concept"] == "Tonometer"
    # the chosen delta (0.04 on visual.proj) is what the saliency model carries
    from medkt.segmentation import Segmenter, load_segment_config
    seg = Segmenter(load_segment_config("tiny"), finetuned=fw)
    base = create_model("tiny-clip")
    name = next(n for n, _ in base.named_parameters() if n.endswith("visual.proj"))
    diff = dict(seg.model.named_parameters())[name] - dict(base.named_parameters())[name]
    assert torch.allclose(diff, torch.full_like(diff, 0.04), atol=1e-6)


def test_bad_finetuned_options_are_clear(images, kt_run, tmp_path):
    with pytest.raises(ConfigError, match="--finetuned KT_RUN"):
        medkt.segment(images, PROMPT, config="tiny", concept="Moongate")
    with pytest.raises(InputError, match="no fine-tune of concept 'Gyroscope'"):
        medkt.segment(images, PROMPT, config="tiny", finetuned=kt_run, concept="Gyroscope")
    with pytest.raises(ConfigError, match="(?s)trained on model 'tiny-clip'.*--model tiny-clip"):
        medkt.segment(images, PROMPT, config="tiny", model="tiny-medclip", finetuned=kt_run)
    with pytest.raises(InputError, match="not found"):
        medkt.segment(images, PROMPT, config="tiny", finetuned=tmp_path / "nowhere")


def test_cli_and_bench_table4_give_the_same_masks(tmp_path):
    """`medkt segment --finetuned` on the bench's own KT weights reproduces the bench's masks."""
    from medkt.bench import load_experiment, run_benchmark
    from medkt.bench.fakes import make_fake, quick_overrides
    from PIL import Image
    base = load_experiment("table4_segmentation")
    # lr 1e-2: a fine-tune large enough to change the tiny model's masks (1e-5 does not)
    cfg = load_experiment("table4_segmentation", quick_overrides(base, lrs=("1e-2",)) + ["batch_size=4"])
    group = next(g for g in cfg.groups if g.name == "breast")  # 2-D PNG slices (UDIAT layout)
    data = make_fake("udiat", tmp_path / "data" / cfg.data[group.target].root, n=2)
    out = tmp_path / "bench"
    run_benchmark(cfg, out, data_root=tmp_path / "data", groups=["breast"], runs=["lr_0.01"])
    kt = out / "kt" / "breast" / "lr_0.01"
    maps = out / "parts" / "part-000-of-001" / "units" / "lr_0.01" / "breast" / "target" / "maps"
    cases = sorted(p.stem for p in maps.glob("*.npz"))
    assert cases == ["000001", "000002"]
    # bench and CLI read the PNGs through the same medkt.io stack, so they see the same floats
    argv = ["segment", str(data / "original"), "--prompt", group.prompt, "--model", cfg.model,
            "--sam", cfg.segmentation.sam, "--seed", str(cfg.seed), "--mask-format", "png",
            *[a for k, v in cfg.segmentation.config["m2ib"].items() for a in ("--set", f"m2ib.{k}={v}")]]
    changed = 0
    for finetuned in (True, False):
        seg = tmp_path / f"seg-{finetuned}"
        assert main(argv + ["-o", str(seg)] + (["--finetuned", str(kt)] if finetuned else [])) == 0
        for cid in cases:
            with np.load(maps / f"{cid}.npz") as z:
                bench_mask, bench_sal = z["mask"], z["saliency"]
            cli_mask = np.asarray(Image.open(seg / cid / "mask.png")) > 0
            cli_sal = np.round(np.clip(np.load(seg / cid / "saliency.npy"), 0, 1) * 255).astype(int)
            if finetuned:  # same weights: the same masks
                np.testing.assert_array_equal(cli_mask, bench_mask)
                assert np.abs(cli_sal - bench_sal.astype(int)).max() <= 1
            else:  # the base model's masks are not the bench's: the weights matter
                changed += int((cli_mask != bench_mask).sum())
    assert changed > 0
    rec = json.loads((tmp_path / "seg-True" / "run.json").read_text())["finetuned"]
    assert rec["sha256"] == _sha(_weights_file(kt)) and rec["concept"] == "Breast Tumor"


@pytest.mark.parametrize("fmt", ["lora", "full"])
def test_lora_and_full_weights_reach_the_saliency_model(fmt, tmp_path):
    from medkt.segmentation import Segmenter, load_segment_config, resolve_finetuned
    from medkt.transfer.state import save_weights
    base = create_model("tiny-clip")
    name, p = next((n, p) for n, p in base.named_parameters() if n.endswith("attn.out_proj.weight"))
    g = torch.Generator().manual_seed(0)
    if fmt == "lora":
        a, b = torch.randn(2, p.shape[1], generator=g), torch.randn(p.shape[0], 2, generator=g)
        tensors, meta, want = {f"{name}.lora_A": a, f"{name}.lora_B": b}, {"scale": "0.5"}, p + 0.5 * b @ a
    else:
        want = p + torch.randn(p.shape, generator=g)
        tensors = {n: (want if n == name else q) for n, q in base.named_parameters()}
        meta = {}
    path = save_weights(tmp_path / f"{fmt}.safetensors", tensors, {"format": fmt, "concepts": ["Moongate"], **meta})
    fw = resolve_finetuned(path)
    assert fw.format == fmt and fw.concept == "Moongate" and fw.sha256 == _sha(path)
    seg = Segmenter(load_segment_config("tiny"), finetuned=fw)
    assert torch.allclose(dict(seg.model.named_parameters())[name], want, atol=1e-5)


def test_base_model_check_uses_the_recorded_weights(tmp_path, images):
    """KT run on a ``local-dir:`` spec, then segmentation with the same spec: accepted (the spec
    string is not the model's name); the same name with other weights: refused by weights digest."""
    from medkt.models.open_clip_loader import save_local_dir
    folder = save_local_dir(create_model("tiny-clip"), tmp_path / "clip-dir", "tiny-clip")
    spec = f"local-dir:{folder}"
    run = tmp_path / "kt"
    assert main(["transfer", "--concepts", "rare", "--only", "Moongate", "--model", spec, "-o", str(run),
                 "--steps", "2", "--images-per-concept", "2", "--lr", "1e-3", "--no-progress"]) == 0
    rec = json.loads((run / "run.json").read_text())
    assert len(rec["weights"]["weights_sha256"]) == 64
    out = medkt.segment(images, PROMPT, config="tiny", model=spec, finetuned=run)
    assert out.record["finetuned"]["base_sha256"] == rec["weights"]["weights_sha256"]
    other = create_model("tiny-clip")
    with torch.no_grad():
        next(p for n, p in other.named_parameters() if n.endswith("visual.proj")).mul_(1.5)
    with pytest.raises(ConfigError, match="(?s)with different weights.*--model local-dir:"):
        medkt.segment(images, PROMPT, config="tiny", model=other, finetuned=run)
