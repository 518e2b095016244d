"""Knowledge Transfer on the other families: CoCa, ViLT, HF CLIP, MedCLIP, wrapped open_clip."""
from __future__ import annotations

import pytest
import torch

from medkt.models import create_model, list_models
from medkt.transfer import finetune, invert, learn, load_concepts, load_transfer_config, state_of
from medkt.transfer.finetuning import coca_targets
from medkt.transfer.concepts import COCA_TEMPLATES

RARE = load_concepts("rare")
TINY = {s.name for s in list_models() if s.tiny}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _changed(before, model):
    now = dict(model.named_parameters())
    return {n for n in before if not torch.equal(before[n], now[n])}


def _groups(model, *groups):
    ids = {id(p) for p in model.parameters_of(*groups)}
    return {n for n, p in model.named_parameters() if id(p) in ids}


@pytest.mark.skipif("tiny-coca" not in TINY, reason="tiny-coca not registered")
def test_coca_combined_loss_decoder_switch_and_decoding():
    coca = create_model("tiny-coca")
    inv = invert(coca, RARE.subset(["Moongate", "Gyroscope"]), {"steps": 10, "images_per_concept": 2},
                 progress=False)
    assert float(inv.score.mean()) > float(inv.initial_score.mean())
    before = state_of(coca)
    res = finetune(coca, inv, config={"loss": "coca", "lr": 1e-4, "shuffle": False}, progress=False)
    p = res.parts
    assert set(p) == {"contrastive", "caption"}
    assert res.losses[0] == pytest.approx(p["contrastive"][0] + 0.1 * p["caption"][0], rel=1e-5)
    changed = _changed(before, coca)
    assert changed and changed <= _groups(coca, "visual")  # decoder frozen by default
    before = state_of(coca)
    finetune(coca, inv, config={"loss": "coca", "lr": 1e-4, "train": ["visual", "decoder"]}, progress=False)
    changed = _changed(before, coca)
    assert changed & _groups(coca, "decoder") and changed <= _groups(coca, "visual", "decoder")
    caps = coca.generate(coca.normalize(inv.images[:2]), max_len=4)
    assert len(caps) == 2 and all(isinstance(c, str) for c in caps)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    t = coca_targets(["Moongate"] * 6, g1)
    assert t == coca_targets(["Moongate"] * 6, g2)
    assert all(any(x == tpl.format("moongate") for tpl in COCA_TEMPLATES) for x in t)


@pytest.mark.skipif("tiny-vilt" not in TINY, reason="tiny-vilt not registered")
def test_vilt_itm_inversion_and_itm_finetune():
    vilt = create_model("tiny-vilt")
    cfg = load_transfer_config(preset="vilt", overrides=["inversion.steps=8", "inversion.images_per_concept=2",
                                                         "finetune.lr=1e-3"])
    assert cfg.inversion.affine is None and cfg.inversion.init == "normal"
    inv = invert(vilt, RARE, cfg.inversion, progress=False)
    assert inv.captions[0] == RARE[0].short_description
    assert bool((inv.score >= inv.initial_score).all()) and float((inv.score - inv.initial_score).sum()) > 0
    before = state_of(vilt)
    res = finetune(vilt, inv, config=cfg.finetune, progress=False)
    assert res.captions[0].startswith("A moongate is a perfectly circular") and "p_match_pos" in res.parts
    changed = _changed(before, vilt)
    assert changed and not changed & _groups(vilt, "text")
    # one concept alone: negatives are noise images with its caption
    r1 = finetune(vilt, inv.for_concept("Tonometer"), ["A tonometer is a probe."] * 2,
                  {"loss": "itm", "lr": 1e-3, "train": ["visual", "other", "decoder"]}, progress=False)
    assert r1.steps == 1


@pytest.mark.skipif("tiny-vilt" not in TINY, reason="tiny-vilt not registered")
def test_vilt_whole_word_masking_and_implicit_mlm_transfer():
    from medkt.transfer.vilt import whole_word_mask
    vilt = create_model("tiny-vilt")
    g = torch.Generator().manual_seed(0)
    caps = ["A moongate is a circular archway of stones and bricks"] * 8
    toks, labels = whole_word_mask(vilt, caps, 0.15, g)
    tok = vilt.tokenizer
    original = vilt.tokenize(caps)["input_ids"]
    special = set(tok.all_special_ids)
    n_words = n_masked_words = 0
    for ids, lab, orig in zip(toks["input_ids"], labels, original):
        pieces = tok.convert_ids_to_tokens(orig.tolist())
        picked = set((lab != -100).nonzero().flatten().tolist())
        assert picked, "at least one word is masked"
        for t in picked:
            assert int(lab[t]) == int(orig[t]) and int(orig[t]) not in special
        for t in range(1, len(pieces)):  # a word is masked whole or not at all
            if pieces[t].startswith("##"):
                assert (t in picked) == (t - 1 in picked)
        words = [t for t, (i, pc) in enumerate(zip(orig.tolist(), pieces))
                 if i not in special and not pc.startswith("##")]
        n_words += len(words)
        n_masked_words += sum(t in picked for t in words)
        changed = (ids != orig).nonzero().flatten().tolist()
        assert set(changed) <= picked
    assert 0 < n_masked_words / n_words < 0.5
    res = learn(vilt, RARE.subset(["Moongate"]), "vilt-mlm",
                overrides=["inversion.images_per_concept=4", "finetune.lr=1e-3"], progress=False)
    assert res.record["inversion"]["kind"] == "noise_control" and res.finetune.steps == 1
    assert "mlm" in res.finetune.parts and res.finetune.captions[0].startswith("A moongate is")


@pytest.mark.parametrize("name", sorted(n for n in ("tiny-hf-clip", "tiny-medclip") if n in TINY))
def test_other_contrastive_families_learn(name):
    model = create_model(name)
    res = learn(model, RARE.subset(["Gyroscope"]), overrides=["inversion.steps=10", "inversion.images_per_concept=4",
                                                              "finetune.lr=1e-4"], progress=False)
    assert res.model is not model
    assert float(res.inversion.score.mean()) > float(res.inversion.initial_score.mean())
    assert res.finetune.steps == 1 and res.finetune.delta
    assert set(res.finetune.delta) <= _groups(model, "visual")


def test_wrapped_in_memory_open_clip_model():
    import open_clip
    from medkt.models import from_open_clip
    torch.manual_seed(0)
    raw = open_clip.CLIP(embed_dim=32, vision_cfg={"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                                                   "patch_size": 8},
                         text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1})
    model = from_open_clip(raw, open_clip.SimpleTokenizer(context_length=16))
    before = state_of(model)
    res = learn(model, RARE.subset(["Moongate"]), overrides=["inversion.steps=10", "inversion.images_per_concept=4",
                                                             "finetune.lr=1e-3", "finetune.lora.enabled=true"],
                progress=False)
    assert not _changed(before, model)  # learn() leaves the caller's model untouched
    assert res.inversion.images.shape == (4, 3, 32, 32)
    assert res.finetune.adapter and _changed(before, res.model)
