"""MedCLIP reimplementation: published key names, strict loading, pooling, preprocessing, prompts."""
import numpy as np
import pytest
import torch

from medkt.errors import CheckpointMismatchError, ConfigError
from medkt.models import create_model
from medkt.models.medclip import (REAL_BERT, REAL_SWIN, MedCLIPNet, load_medclip_checkpoint,
                                  save_medclip_checkpoint, to_original_keys)
from medkt.models.prompt_classifier import PromptClassifier
from medkt.prompts.chexpert import CHEXPERT_COMPETITION_TASKS, generate_chexpert_class_prompts


def published_medclip_vit_keys() -> set[str]:
    """Key names of MedCLIP's medclip-vit ``pytorch_model.bin`` (models-and-apis.md §7).

    Prefixes vision_model.model.* (transformers 4.x SwinModel, swin-tiny-patch4-window7-224),
    vision_model.projection_head.weight, text_model.model.* (BertModel with pooler, 12 layers),
    text_model.projection_head.weight and logit_scale; written out from the 4.x naming scheme,
    independently of medkt's module code.
    """
    keys = {"logit_scale", "vision_model.projection_head.weight", "text_model.projection_head.weight"}
    v = "vision_model.model."
    keys |= {v + k for k in ("embeddings.patch_embeddings.projection.weight",
                             "embeddings.patch_embeddings.projection.bias", "embeddings.norm.weight",
                             "embeddings.norm.bias", "layernorm.weight", "layernorm.bias")}
    for i, depth in enumerate([2, 2, 6, 2]):
        for j in range(depth):
            b = f"{v}encoder.layers.{i}.blocks.{j}."
            keys |= {b + "attention.self.relative_position_bias_table",
                     b + "attention.self.relative_position_index"}
            for lin in ("attention.self.query", "attention.self.key", "attention.self.value",
                        "attention.output.dense", "intermediate.dense", "output.dense",
                        "layernorm_before", "layernorm_after"):
                keys |= {b + lin + ".weight", b + lin + ".bias"}
        if i < 3:
            d = f"{v}encoder.layers.{i}.downsample."
            keys |= {d + "reduction.weight", d + "norm.weight", d + "norm.bias"}
    t = "text_model.model."
    keys |= {t + "embeddings.position_ids"}  # present in the file; dropped on load (MedCLIP#37)
    for k in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        keys.add(f"{t}embeddings.{k}.weight")
    keys |= {t + "embeddings.LayerNorm.weight", t + "embeddings.LayerNorm.bias",
             t + "pooler.dense.weight", t + "pooler.dense.bias"}
    for i in range(12):
        b = f"{t}encoder.layer.{i}."
        for lin in ("attention.self.query", "attention.self.key", "attention.self.value",
                    "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                    "output.dense", "output.LayerNorm"):
            keys |= {b + lin + ".weight", b + lin + ".bias"}
    return keys


@pytest.fixture(scope="module")
def tiny():
    return create_model("tiny-medclip")


def test_real_architecture_keys_match_published_names():
    with torch.device("meta"):
        net = MedCLIPNet(REAL_SWIN, REAL_BERT, 512)
    assert set(to_original_keys(net)) == published_medclip_vit_keys()
    sd = to_original_keys(net)
    assert tuple(sd["vision_model.projection_head.weight"].shape) == (512, 768)
    assert tuple(sd["text_model.projection_head.weight"].shape) == (512, 768)


def test_checkpoint_with_published_names_loads_strictly(tiny, tmp_path):
    path = tmp_path / "pytorch_model.bin"
    save_medclip_checkpoint(tiny, path)
    raw = torch.load(path, weights_only=True)
    assert "text_model.model.embeddings.position_ids" in raw  # published layout, dropped on load
    assert any(k.endswith("attention.self.query.weight") and k.startswith("vision_model.model.") for k in raw)
    again = create_model("tiny-medclip", weights=str(tmp_path))
    for k, v in tiny.net.state_dict().items():
        assert torch.equal(v, again.net.state_dict()[k]), k
    # one renamed key -> strict failure naming the file and the key; nothing is loaded
    raw["vision_model.projection_head.weights"] = raw.pop("vision_model.projection_head.weight")
    torch.save(raw, tmp_path / "bad.bin")
    fresh = create_model("tiny-medclip")
    before = {k: v.clone() for k, v in fresh.net.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as e:
        load_medclip_checkpoint(fresh.net, tmp_path / "bad.bin")
    assert "bad.bin" in str(e.value) and "vision_model.projection_head.weight" in str(e.value)
    assert all(torch.equal(before[k], v) for k, v in fresh.net.state_dict().items())


def test_encoders_and_one_channel_preprocessing(tiny):
    assert tiny.in_channels == 1 and tiny.mean == (0.5862785803043838,) and tiny.std == (0.27950088968644304,)
    img = (np.random.RandomState(0).rand(40, 90, 3) * 255).astype(np.uint8)
    x = tiny.preprocess(img)
    assert x.shape == (1, 64, 64)
    # centred zero padding: top rows are padding -> (0 - mean) / std
    assert torch.allclose(x[0, 0], torch.full((64,), -0.5862785803043838 / 0.27950088968644304), atol=1e-4)
    zi = tiny.encode_image(torch.stack([x, x.flip(-1)]))
    zt = tiny.encode_texts(["mild pulmonary edema", "small left pleural effusion"])
    assert zi.shape == (2, 64) and zt.shape == (2, 64)
    assert torch.allclose(zi.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(zt.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert tiny.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-4)


def test_text_pooling_is_unmasked_three_layer_mean(tiny):
    tok = tiny.tokenize(["edema", "small left pleural effusion"])
    text = tiny.net.text_model
    with torch.no_grad():
        hs = text.model(**tok, output_hidden_states=True).hidden_states
        manual = text.projection_head((hs[1].mean(1) + hs[2].mean(1) + hs[-1].mean(1)) / 3)
        assert torch.allclose(tiny.encode_text(tok, normalize=False), manual, atol=1e-5)


def test_chexpert_prompts_seeded():
    a, b = generate_chexpert_class_prompts(5, seed=1), generate_chexpert_class_prompts(5, seed=1)
    assert a == b and list(a) == CHEXPERT_COMPETITION_TASKS and all(len(v) == 5 for v in a.values())
    full = generate_chexpert_class_prompts()
    assert len(full["Atelectasis"]) == 3 * 7 * 10 and len(full["Pleural Effusion"]) == 6 * 3 * 3
    assert "mild subsegmental atelectasis at the mid lung zone" in full["Atelectasis"]
    assert "small left bilateral pleural effusion" in full["Pleural Effusion"]  # severity, location, subtype


def test_prompt_classifier_max_and_mean(tiny):
    prompts = generate_chexpert_class_prompts(3, seed=0)
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = tiny.encode_image(x)
        sims = [tiny.logit_scale * img @ tiny.encode_texts(p).T for p in prompts.values()]
    lmax = PromptClassifier(tiny, prompts, "max")(x)
    lmean = PromptClassifier(tiny, prompts, "mean")(x)
    assert lmax.shape == (2, 5)
    assert torch.allclose(lmax, torch.stack([s.max(1).values for s in sims], 1), atol=1e-4)
    assert torch.allclose(lmean, torch.stack([s.mean(1) for s in sims], 1), atol=1e-4)
    assert (lmax >= lmean - 1e-5).all()
    with pytest.raises(ConfigError):
        PromptClassifier(tiny, prompts, "median")
