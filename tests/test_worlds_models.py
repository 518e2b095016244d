"""Shipped world models: they load offline from the package, are small, and know their world."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medkt.paths import assets_dir

SHIPPED = ("world-clip.safetensors", "phantom-clip.safetensors", "phantom-sam.safetensors")


def test_shipped_files_are_small():
    total = 0
    for f in SHIPPED:
        p = assets_dir() / "worlds" / f
        assert p.is_file(), f"missing shipped weights {p}"
        total += p.stat().st_size
    assert total < 12e6, f"shipped world weights are {total / 1e6:.1f} MB"


@pytest.fixture(scope="module")
def world_clip():
    from medkt.models import create_model
    return create_model("world-clip")


def test_world_clip_knows_its_world(world_clip):
    """Premise of the natural world, on a small eval set: names known, novel names not, descriptions yes."""
    from medkt.worlds.concepts import build_world
    from medkt.worlds.evaluate import NaturalEval, natural_zero_shot
    ev = NaturalEval.build(build_world(), n_per_class=3, n_per_novel=12)
    r = natural_zero_shot(world_clip, ev)
    assert r["known_acc"] > 80
    assert r["novel_name_mean"] < 20
    assert r["novel_desc_mean"] > 70


def test_compact_roundtrip(tmp_path, world_clip):
    from medkt.worlds.pretrain import export_compact, load_compact
    raw = world_clip.model
    tok = world_clip.tokenize(["a photo of a gyroscope", "a red circle"])["input_ids"]
    keep = set(tok.flatten().tolist())
    path = export_compact(raw, tmp_path / "w.safetensors", keep, arch="world-clip", embedding_seed=1234)
    again, md = load_compact(path)
    with torch.no_grad():
        a = raw.encode_text(tok)
        b = again.encode_text(tok)
    assert md["arch"] == "world-clip"
    assert torch.allclose(a, b, atol=1e-5)  # shipped weights are already fp16-exact


def test_phantom_models_load():
    from medkt.models import create_model, get_spec
    clip = create_model("phantom-clip")
    sam = create_model("phantom-sam")
    assert clip.image_size == 64 and get_spec("phantom-sam").kind == "sam"
    from medkt.worlds.phantom_world import phantom_eval_set
    from medkt.worlds.sam_train import box_dice
    s = phantom_eval_set("mri", "tumour", 4)
    assert box_dice(sam, s.images, s.masks) > 0.6  # prompted with the tight box
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64)
        assert clip.encode_image(clip.normalize(x)).shape == (1, 64)
        assert np.isfinite(clip.encode_texts(["a chest ct showing a small round bright nodule"]).numpy()).all()


def test_embedding_shift_tells_a_seen_finding_from_a_blind_spot():
    """phantom_diagnosis.embedding_shift on the shipped phantom-clip: the MRI tumour moves the
    image embedding (twin cos well below 1, positive margin under its prompt); the held-out CT
    nodule barely moves it (twin margin +0.001 in docs/worlds.md)."""
    from medkt.models import create_model
    from medkt.worlds.phantom_diagnosis import embedding_shift
    from medkt.worlds.phantom_text import SEGMENT_PROMPTS
    clip = create_model("phantom-clip")
    tum = embedding_shift(clip, "mri", "tumour", {"own": SEGMENT_PROMPTS["mri"]}, n=4, seed=4242)
    nod = embedding_shift(clip, "ct", "nodule", {"name": "a chest ct showing a nodule in the lung"}, n=4, seed=4242)
    assert tum["twin_cos"] < 0.9 and tum["own"]["margin"] > 0.3
    assert tum["own"]["margin"] == pytest.approx(tum["own"]["finding"] - tum["own"]["twin"])
    assert nod["twin_cos"] > 0.95 and abs(nod["name"]["margin"]) < 0.05
