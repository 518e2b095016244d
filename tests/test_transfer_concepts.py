"""Concept sets shipped from the paper's Tables 12-17, caption styles, presets (no models)."""
from __future__ import annotations

import pytest

from medkt.errors import ConfigError, UnknownNameError
from medkt.transfer import list_presets, load_concepts, load_transfer_config
from medkt.transfer.concepts import COCA_TEMPLATES, caption, inversion_text

MOONGATE = ("A perfectly circular archway built from uniformly cut stones or bricks, set into a larger wall. "
            "It forms a smooth circle, framing views of gardens or landscapes beyond, creating a picturesque "
            "portal.")
MOONGATE_SHORT = ("A perfectly circular archway built from uniformly cut stones or bricks, set into a larger "
                  "wall. It forms a smooth circle, framing views of gardens, creating a picturesque portal.")


def test_shipped_sets_have_the_paper_tables():
    sizes = {"rare": 3, "jsrt": 2, "chexpert": 5, "segmentation": 4, "mscoco": 80}
    for name, n in sizes.items():
        cs = load_concepts(name)
        assert len(cs) == n and cs.name == name
        assert all(len(c.descriptions) == 1 and len(c.descriptions[0]) > 30 for c in cs)
    rare = load_concepts("rare")
    assert rare.names == ["Moongate", "Tonometer", "Gyroscope"]
    assert rare.get("moongate").descriptions[0] == MOONGATE
    assert rare.get("Moongate").short_description == MOONGATE_SHORT
    assert all(c.short_description for c in rare)
    assert load_concepts("jsrt").get("Lung Cancer").descriptions[0].endswith(
        "It may appear in the lung\u2019s periphery or near the airways.")
    assert load_concepts("segmentation").names == ["Lung Nodules", "Breast Tumor", "Pneumothorax", "Brain Tumor"]
    coco = load_concepts("mscoco")
    assert coco.names[0] == "person" and coco.names[-1] == "toothbrush"
    assert coco.get("stop sign").descriptions[0] == ('A red, octagonal sign with the word "STOP" in white, '
                                                      "used to indicate where vehicles must halt.")


def test_load_by_path_and_errors(tmp_path):
    from medkt.transfer.concepts import concepts_dir
    assert load_concepts(concepts_dir() / "rare.yaml").names == load_concepts("rare").names
    with pytest.raises(UnknownNameError, match="Did you mean: rare"):
        load_concepts("rar")
    bad = tmp_path / "bad.yaml"
    bad.write_text("concepts:\n  - name: X\n")
    with pytest.raises(ConfigError, match="no descriptions"):
        load_concepts(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text("concepts:\n  - {name: A, description: one}\n  - {name: a, description: two}\n")
    with pytest.raises(ConfigError, match="twice"):
        load_concepts(dup)
    cs = load_concepts([{"name": "Pleural Effusion", "description": "Fluid."}])
    assert cs[0].slug == "pleural-effusion"


def test_caption_styles():
    c = load_concepts("rare").get("Moongate")
    assert caption(c) == "A moongate is a perfectly circular archway" + MOONGATE[len("A perfectly circular archway"):]
    assert caption(c, "description") == MOONGATE
    assert caption(c, "plural").startswith("moongate are a perfectly")
    assert caption(c, "definition", short=True).endswith("creating a picturesque portal.")
    assert inversion_text(c, "short") == MOONGATE_SHORT
    with pytest.raises(UnknownNameError):
        caption(c, "nope")


def test_coca_templates_are_the_26_of_section_8_8():
    assert len(COCA_TEMPLATES) == 26 and len(set(COCA_TEMPLATES)) == 26
    assert all(t.count("{}") == 1 for t in COCA_TEMPLATES)
    assert COCA_TEMPLATES[0] == "a bad photo of a {}." and COCA_TEMPLATES[-1] == "a photo of the large {}."


def test_presets_load_and_defaults_are_the_paper():
    names = list_presets()
    for required in ("paper", "author", "kazemi", "pii", "relaxed", "vilt", "vilt-mlm", "coca", "coca-decoder",
                     "lora", "noise-control", "text-only", "both-encoders", "no-name", "clip-bank"):
        assert required in names
    for n in names:
        load_transfer_config(preset=n)
    d = load_transfer_config()
    assert load_transfer_config(preset="paper") == d
    inv, ft = d.inversion, d.finetune
    assert (inv.steps, inv.images_per_concept, inv.objective, inv.tv_weight, inv.schedule) == \
        (5000, 10, "cosine", 0.005, "cosine")
    assert (inv.affine.p, inv.affine.degrees, inv.affine.translate, list(inv.affine.scale)) == (0.5, 30, 0.1, [0.7, 1.0])
    assert (ft.batch_size, ft.weight_decay, ft.epochs, ft.train, ft.loss, ft.caption) == \
        (4, 0.2, 1, ["visual"], "supcon", "definition")
    a = load_transfer_config(preset="author", overrides=["inversion.steps=7"])
    assert (a.inversion.objective, a.inversion.grad_clip, list(a.inversion.affine.scale), a.inversion.steps) == \
        ("l2_raw", 1.0, [0.7, 1.2], 7)
    assert load_transfer_config(preset="vilt").inversion.affine is None
    with pytest.raises(UnknownNameError):
        load_transfer_config(preset="paperr")
    with pytest.raises(UnknownNameError):
        load_transfer_config(overrides=["inversion.stepz=3"])


def test_definition_caption_uses_an_before_a_vowel():
    from medkt.transfer.concepts import load_concepts
    cs = load_concepts([{"name": "Astrolabe", "descriptions": ["A brass disc with engraved scales."]}])
    assert caption(cs.concepts[0]) == "An astrolabe is a brass disc with engraved scales."


def test_joined_caption_styles_alternate_over_a_concepts_images():
    from medkt.transfer.concepts import load_concepts
    c = load_concepts([{"name": "Gyroscope", "descriptions": ["A spinning wheel.", "A ring in a ring."]}])[0]
    caps = [caption(c, "definition+name", k) for k in range(4)]
    assert caps == ["A gyroscope is a spinning wheel.", "a photo of a gyroscope",
                    "A gyroscope is a ring in a ring.", "a photo of a gyroscope"]
    assert caption(c, "name") == "a photo of a gyroscope"
    with pytest.raises(UnknownNameError):
        caption(c, "definition+nam")
