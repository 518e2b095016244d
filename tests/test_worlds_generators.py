"""Synthetic worlds: the natural world's and the phantoms' construction guarantees (no models)."""
from __future__ import annotations

import numpy as np
import pytest

from medkt.worlds.captions import class_prompts
from medkt.worlds.concepts import WorldSpec, build_world
from medkt.worlds.natural import caption_for, eval_set, pretraining_set, render_concept
from medkt.worlds.shapes import Composition, Obj, render


@pytest.fixture(scope="module")
def world():
    return build_world(WorldSpec())


@pytest.fixture(scope="module")
def scenes(world):
    return pretraining_set(world, 3000, seed=1)


def test_world_shape(world):
    assert len(world.known) == 100 and len(world.novel) == 5
    names = [c.name for c in world.concepts]
    assert len(set(names)) == len(names)
    keys = [c.composition.key() for c in world.concepts]
    assert len(set(keys)) == len(keys), "two classes share a composition"
    # half of the known classes only ever get partial definitions (names must carry information)
    assert sum(c.partial for c in world.known) == 50
    assert build_world(WorldSpec()) == world  # deterministic


def test_held_out_compositions_never_rendered_in_pretraining(world, scenes):
    held_keys = world.held_out_keys
    held_objs = world.held_out_objects
    assert all(c.key() not in held_keys for c in scenes.compositions)
    assert all(o not in held_objs for c in scenes.compositions for o in c.objects())
    # ...but their parts do appear: every shape, colour and relation of a novel concept
    seen_shapes = {o.shape for c in scenes.compositions for o in c.objects()}
    seen_colours = {o.colour for c in scenes.compositions for o in c.objects()}
    seen_rel = {c.relation for c in scenes.compositions}
    for n in world.novel:
        for o in n.composition.objects():
            assert o.shape in seen_shapes and o.colour in seen_colours
        assert n.composition.relation in seen_rel


def test_novel_names_absent_from_pretraining_text(world, scenes):
    from medkt.worlds.pretrain import world_tokenizer
    rng = np.random.default_rng(0)
    captions = [caption_for(scenes, i, rng) for i in range(len(scenes)) for _ in range(2)]
    text = " ".join(captions)
    import re
    tok = world_tokenizer("world-clip")
    words = sorted(set(re.findall(r"[a-z]+|[^\sa-z]", text)))  # BPE works word by word
    ids = set(tok(words).flatten().tolist())
    for c in world.novel:
        assert c.name not in text
        name_ids = set(tok([c.name])[0].tolist()) - {0, 49406, 49407}
        assert not (name_ids & ids), f"a BPE token of '{c.name}' occurs in pretraining text"
    # known names do occur, alone and in definitions
    assert "a photo of" in text and any(" is a" in t for t in captions)
    assert sum(c.name in text for c in world.known) >= 95


def test_rendering_deterministic_and_distinct(world):
    comp = world.novel[2].composition
    a, ia = render(comp, np.random.default_rng(5), 32, return_mask=True)
    b, ib = render(comp, np.random.default_rng(5), 32, return_mask=True)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, b) and np.array_equal(ia["mask"], ib["mask"])
    assert ia["mask"].sum() > 20
    ims, labels = eval_set(world, list(world.novel), 4)
    assert ims.shape == (20, 32, 32, 3) and labels.tolist() == [k for k in range(5) for _ in range(4)]
    assert not np.array_equal(render_concept(world.novel[0], 1, 1), render_concept(world.novel[0], 1, 2))


def test_kt_caption_and_prompts(world):
    g = world.concept("gyroscope")
    assert g.kt_caption == "A gyroscope is a yellow cross inside a blue circle"
    assert class_prompts(["lemon", "an apple"]) == [["a photo of a lemon", "an image of a lemon"],
                                                    ["a photo of an apple", "an image of an apple"]]
    assert Composition(Obj("ring", "red"), "next to", Obj("bar", "blue")).key() == \
        Composition(Obj("bar", "blue"), "next to", Obj("ring", "red")).key()


def test_phantoms_masks_and_captions():
    from medkt.worlds.phantom_text import phantom_caption
    from medkt.worlds.phantom_world import HELD_OUT, pretraining_mix
    from medkt.worlds.phantoms import FINDINGS, phantom_set
    rng = np.random.default_rng(0)
    for mod, findings in FINDINGS.items():
        ims, masks, cases = phantom_set(mod, None, 2, seed=1)
        assert ims.dtype == np.uint8 and ims.shape == (2, 64, 64) and masks.sum() == 0
        assert "showing" not in phantom_caption(cases[0], rng)
        for f in findings:
            ims, masks, cases = phantom_set(mod, f, 2, seed=2)
            area = masks.reshape(2, -1).sum(1)
            assert (area > 3).all() and (area < 64 * 64 / 3).all(), (mod, f, area)
            # the finding is visible: mean intensity inside the mask differs from its surroundings
            assert all(abs(float(im[m > 0].mean()) - float(im[m == 0].mean())) > 10 for im, m in zip(ims, masks))
            assert cases[0].finding == f and phantom_caption(cases[0], rng)
        a = phantom_set(mod, findings[0], 1, seed=9)
        b = phantom_set(mod, findings[0], 1, seed=9)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert all(f != HELD_OUT for _, f, _ in pretraining_mix())


def test_counterfactual_twins_differ_only_at_the_finding():
    from scipy.ndimage import binary_dilation
    from medkt.worlds.phantom_world import phantom_eval_seed, phantom_eval_set
    from medkt.worlds.phantoms import counterfactual_set
    # findings without far-reaching effects (a pleural line, shadowing and oedema reach beyond the mask)
    for mod, f in (("ct", "nodule"), ("ct", "effusion"), ("mri", "lesion")):
        ims, twins, masks, cases = counterfactual_set(mod, f, 3, seed=5)
        for im, tw, m in zip(ims, twins, masks):
            diff = im != tw
            assert diff[m > 0].mean() > 0.5, (mod, f)  # the finding is gone in the twin
            assert not (diff & ~binary_dilation(m > 0, iterations=5)).any(), (mod, f)  # nothing else (blur tails)
        assert all(c.finding == f for c in cases)
    # the evaluation phantoms are the same with or without twins
    ev = phantom_eval_set("us", "mass", 2)
    ims, _, masks, _ = counterfactual_set("us", "mass", 2, phantom_eval_seed("us", "mass"))
    assert np.array_equal(ev.images, ims) and np.array_equal(ev.masks, masks)


def test_phantom_folders_export_for_the_kt_path(tmp_path, monkeypatch):
    """pipelines/worlds/export_phantom_folders.py: the held-out nodule as the one concept, the
    six seen findings as known classes, normals as ood; read back by ``medkt zeroshot``'s loader."""
    from pathlib import Path

    from medkt.evaluation.report import load_sets
    from medkt.transfer import load_concepts
    from medkt.worlds.phantom_world import phantom_eval_set
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "pipelines" / "worlds"))
    from export_phantom_folders import export
    counts = export(tmp_path, n_known=2, n_novel=3, n_ood=1)
    assert counts == {"target": 3, "reference": 12, "ood": 4}
    concepts = load_concepts(str(tmp_path / "concepts.yaml"))
    assert concepts.names == ["nodule"] and "small round bright" in concepts.concepts[0].descriptions[0]
    sets = load_sets(tmp_path / "target", tmp_path / "reference", tmp_path / "ood", 64, concepts.names)
    assert sets.label_set == ["nodule", "cyst", "effusion", "lesion", "mass", "pneumothorax", "tumour"]
    assert sets.target["nodule"].shape == (3, 3, 64, 64) and sets.reference.shape[0] == 12 and len(sets.ood) == 4
    # the PNGs are the evaluation phantoms, grey in all three channels
    x = sets.target["nodule"][0]
    assert torch_equal_channels(x)
    ref = phantom_eval_set("ct", "nodule", 3).images[0]
    assert np.array_equal((x[0].numpy() * 255).round().astype(np.uint8), ref)


def torch_equal_channels(x) -> bool:
    return bool((x[0] == x[1]).all() and (x[1] == x[2]).all())


def test_optional_ct_spots_share_the_nodule_looks_but_never_touch_a_lung():
    """CT ``calcification`` / ``marker``: the held-out nodule's spot (size, brightness) outside
    the lungs (chest wall / mediastinum; on the air beside the skin), with counterfactual twins."""
    from scipy.ndimage import binary_dilation
    from medkt.worlds.phantoms import counterfactual_set, render_phantom
    nod = counterfactual_set("ct", "nodule", 6, seed=4)
    for f in ("calcification", "marker"):
        rng = np.random.default_rng(11)
        for _ in range(6):
            img, mask, case, parts = render_phantom("ct", f, rng, with_parts=True)
            lungs = (parts["right lung"] | parts["left lung"]) > 0
            assert mask.sum() >= 3 and not (mask.astype(bool) & lungs).any(), f
            assert case.finding == f and case.level in (("chest wall", "mediastinum") if f == "calcification"
                                                        else ("anterior", "posterior"))
        ims, twins, masks, _ = counterfactual_set("ct", f, 6, seed=4)
        area = masks.reshape(6, -1).sum(1)
        assert area.max() <= 2 * nod[2].reshape(6, -1).sum(1).max(), f  # nodule-sized
        assert all(im[m > 0].mean() > tw[m > 0].mean() + 40 for im, tw, m in zip(ims, twins, masks)), f  # bright
        for im, tw, m in zip(ims, twins, masks):
            assert not ((im != tw) & ~binary_dilation(m > 0, iterations=5)).any(), f


def test_optional_findings_join_pretraining_only_when_asked_and_never_name_the_nodule():
    from medkt.errors import MedktError
    from medkt.worlds.phantom_text import FINDING_PHRASES, HELD_OUT_PROMPTS, pair_captions, used_words
    from medkt.worlds.phantom_world import HELD_OUT, OPTIONAL_FINDINGS, phantom_pair_set, pretraining_mix
    base = pretraining_mix()
    assert not any(f in OPTIONAL_FINDINGS for _, f, _ in base)  # default recipe unchanged
    mix = pretraining_mix(extra=("calcification", "marker"))
    assert mix[:len(base)] == base and [f for _, f, _ in mix[len(base):]] == ["calcification", "marker"]
    with pytest.raises(MedktError):
        pretraining_mix(extra=("nodule",))
    data = phantom_pair_set(2, seed=3, extra=("calcification", "marker"))
    assert {c.finding for c in data.cases} >= {"calcification", "marker"} and HELD_OUT not in {
        c.finding for c in data.cases}
    rng = np.random.default_rng(0)
    caps = [t for i in range(0, len(data), 2) for _ in range(6) for t in pair_captions(data.cases[i], rng)]
    words = used_words(caps)
    assert "nodule" not in " ".join(caps) and {"small", "round", "bright", "spot"} <= words
    # the CT spots are named, and placed, outside the lung ("beside the right lung", never "in the lung")
    phrases = [p for f in ("calcification", "marker") for p in FINDING_PHRASES[f]]
    assert not any("nodule" in p or "in the lung" in p or "in the {side} lung" in p for p in phrases)
    # the name prompt carries none of the description's words
    assert not ({"small", "round", "bright", "spot"} & used_words([HELD_OUT_PROMPTS["name"]]))


def test_optional_cxr_granuloma_is_the_nodule_spot_inside_a_radiograph_lung():
    """CXR ``granuloma``: a nodule-sized bright spot inside a lung field (never the heart), whose
    twin differs only around it; captioned with the description's words, never "nodule"."""
    from scipy.ndimage import binary_dilation
    from medkt.worlds.phantom_text import FINDING_PHRASES, pair_captions, used_words
    from medkt.worlds.phantom_world import HELD_OUT, phantom_pair_set, pretraining_mix, world_findings
    from medkt.worlds.phantoms import counterfactual_set, render_phantom
    rng = np.random.default_rng(11)
    for _ in range(8):
        img, mask, case, parts = render_phantom("cxr", "granuloma", rng, with_parts=True)
        lung = (parts["right lung"] if case.side == "right" else parts["left lung"]) > 0
        assert mask.sum() >= 3 and (mask.astype(bool) <= lung).all() and not (mask & parts["heart"]).any()
        assert case.level in ("upper", "lower")
    nod = counterfactual_set("ct", "nodule", 6, seed=4)[2].reshape(6, -1).sum(1)
    ims, twins, masks, cases = counterfactual_set("cxr", "granuloma", 6, seed=4)
    assert masks.reshape(6, -1).sum(1).max() <= 2 * nod.max()  # nodule-sized
    for im, tw, m in zip(ims, twins, masks):
        assert im[m > 0].mean() > tw[m > 0].mean() + 40  # bright on the lung
        assert not ((im != tw) & ~binary_dilation(m > 0, iterations=5)).any()  # the twin differs only there
    assert "granuloma" not in world_findings("cxr") and "granuloma" in world_findings("cxr", ("granuloma",))
    base = pretraining_mix()
    mix = pretraining_mix(extra=("granuloma", "calcification", "marker"))  # CT spots keep their seeds
    assert mix[:len(base)] == base and [f for _, f, _ in mix[len(base):]] == ["calcification", "marker", "granuloma"]
    data = phantom_pair_set(2, seed=3, extra=("granuloma",))
    assert {c.finding for c in data.cases} == {"effusion", "pneumothorax", "granuloma", "mass", "cyst", "tumour",
                                               "lesion", None}
    caps = [t for i in range(0, len(data), 2) for _ in range(6) for t in pair_captions(data.cases[i], rng)]
    assert HELD_OUT not in " ".join(caps) and not any(HELD_OUT in p for p in FINDING_PHRASES["granuloma"])
    assert {"small", "round", "bright", "spot", "lung", "granuloma"} <= used_words(caps)


def test_optional_ct_lung_findings_are_not_the_nodule():
    """CT ``atelectasis`` (a thin bright band) and ``ggo`` (a faint round opacity) lie inside one
    lung and differ from their twins only there; neither is a small round *bright* spot."""
    from scipy.ndimage import binary_dilation
    from medkt.worlds.phantom_text import FINDING_PHRASES
    from medkt.worlds.phantom_world import world_findings
    from medkt.worlds.phantoms import counterfactual_set, render_phantom
    nod_ims, _, nod_masks, _ = counterfactual_set("ct", "nodule", 6, seed=4)
    nod_peak = min(int(im[m > 0].max()) for im, m in zip(nod_ims, nod_masks))  # the faintest nodule's peak
    for f in ("atelectasis", "ggo"):
        assert f not in world_findings("ct") and f in world_findings("ct", (f,))
        assert not any("nodule" in p for p in FINDING_PHRASES[f])
        rng = np.random.default_rng(11)
        for _ in range(6):
            img, mask, case, parts = render_phantom("ct", f, rng, with_parts=True)
            lung = (parts["right lung"] if case.side == "right" else parts["left lung"]) > 0
            assert mask.sum() >= 3 and (mask.astype(bool) <= lung).all(), f
        ims, twins, masks, _ = counterfactual_set("ct", f, 6, seed=4)
        for im, tw, m in zip(ims, twins, masks):
            assert im[m > 0].mean() > tw[m > 0].mean() + 15, f  # visible
            assert not ((im != tw) & ~binary_dilation(m > 0, iterations=5)).any(), f
            ys, xs = np.nonzero(m)
            extent = max(np.ptp(ys), np.ptp(xs)) + 1
            if f == "atelectasis":  # a band: long and thin, never a round spot
                assert extent >= 2.5 * m.sum() / extent, (extent, m.sum())
            else:  # round, nodule-sized, but its peak well under any nodule's
                assert m.sum() <= 2 * nod_masks.reshape(6, -1).sum(1).max() and im[m > 0].max() < nod_peak - 40


@pytest.mark.slow
def test_pretrain_recipe_with_the_optional_ct_spots(tmp_path, monkeypatch):
    """pipelines/worlds/pretrain_phantom_clip.py --extra: the spots join the pairs and the
    zero-shot check, and the held-out name stays out of the exported text."""
    import json
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "pipelines" / "worlds"))
    from pretrain_phantom_clip import main
    assert main(["--out", str(tmp_path), "--steps", "2", "--batch-size", "8", "--per-kind", "2",
                 "--eval-every", "2", "--extra", "calcification,marker"]) == 0
    rec = json.loads((tmp_path / "phantom-clip.json").read_text())
    assert rec["extra_findings"] == ["calcification", "marker"] and rec["n_images"] == 2 * 2 * 8
    assert {"calcification", "marker"} <= set(rec["final_eval"]["ct"]) and "nodule" in rec["final_eval"]["ct"]


def test_nodule_row_uses_the_chosen_prompt_and_eval_seed(monkeypatch):
    """phantom_kt's nodule row: ``nodule_prompt`` picks HELD_OUT_PROMPTS, ``eval_seed`` reaches
    the normal-vs-nodule check (it used the test seed whatever the settings)."""
    import medkt.worlds.phantom_experiments as PE
    from medkt.worlds.phantom_text import HELD_OUT_PROMPTS
    seen = {}
    monkeypatch.setattr(PE, "run_pipeline", lambda m, sm, ims, masks, prompt, s, keep: seen.update(prompt=prompt) or {})

    def eval_set(mod, finding, n, seed=777):
        seen.setdefault("seeds", []).append(seed)
        return _Tiny()
    monkeypatch.setattr(PE, "phantom_eval_set", eval_set)
    monkeypatch.setattr(PE, "phantom_baseline", lambda s, m, sm, keep=0, log=None: {"ct": {"dsc": 1.0}})
    monkeypatch.setattr("medkt.worlds.evaluate.image_features", lambda model, ims: np.zeros((len(ims), 2)))
    monkeypatch.setattr("medkt.worlds.evaluate.text_classifier", lambda model, prompts: None)
    monkeypatch.setattr("medkt.worlds.evaluate.predict", lambda feats, clf: np.zeros(len(feats), int))
    for key in ("name", "description"):
        seen.clear()
        r = PE._nodule_row(None, None, _Tiny(), PE.PhantomSettings(n_per_modality=2, eval_seed=4242,
                                                                    nodule_prompt=key), keep=0)
        assert seen["prompt"] == HELD_OUT_PROMPTS[key] and seen["seeds"] == [4242, 4242]
        assert r["detection"] == 50.0 and r["seen_dsc"] == {"ct": 1.0}  # all called "normal": half right


class _Tiny:
    images = np.zeros((2, 8, 8), np.uint8)
    masks = np.zeros((2, 8, 8), np.uint8)


def test_phantom_tables_passes_the_kt_seed_and_overrides(tmp_path, monkeypatch):
    """pipelines/worlds/phantom_tables.py --seed / --kt-set / --seg-set reach the settings (models stubbed)."""
    from pathlib import Path
    import medkt.models
    import medkt.worlds.phantom_experiments as PE
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "pipelines" / "worlds"))
    from phantom_tables import main
    got = {}
    row = {"dsc": 1.0, "nsd": 1.0, "iou": 1.0, "energy_in_mask": 1.0, "pointing": 0.0, "detection": 50.0,
           "seen_max_drop": 0.0, "seen_dsc": {"ct": 1.0}}
    monkeypatch.setattr(medkt.models, "create_model", lambda name, weights=None: name)
    monkeypatch.setattr(PE, "phantom_kt", lambda s, clip, sam, keep=0: got.update(s=s, clip=clip) or {
        "results": {"baseline": row}})
    assert main(["-o", str(tmp_path / "out"), "--only", "kt", "--seed", "3", "--kt-set", "inversion.lr=0.01",
                 "--kt-set", "inversion.steps=5", "--eval-seed", "4242", "--seg-set", "postprocess.percentile=98"]) == 0
    s = got["s"]
    assert s.seed == 3 and s.eval_seed == 4242 and s.extra_overrides == ["inversion.lr=0.01", "inversion.steps=5"]
    assert s.segment_overrides == ["postprocess.percentile=98"]
    assert (tmp_path / "out" / "kt.csv").exists()


def test_eval_set_with_a_distractor_adds_it_to_the_same_phantoms():
    """phantom_eval_set(distractor=...): the same nodule phantoms (masks, cases) with a marker added
    outside the body; the images differ only around the marker."""
    from scipy.ndimage import binary_dilation
    from medkt.worlds.phantom_world import phantom_eval_set
    from medkt.worlds.phantoms import render_phantom
    plain = phantom_eval_set("ct", "nodule", 4, seed=4242)
    mixed = phantom_eval_set("ct", "nodule", 4, seed=4242, distractor="marker")
    assert np.array_equal(plain.masks, mixed.masks) and plain.cases == mixed.cases
    from medkt.worlds.phantom_world import phantom_eval_seed
    rng = np.random.default_rng(phantom_eval_seed("ct", "nodule", 4242))
    for a, b in zip(plain.images, mixed.images):
        other = np.random.default_rng()
        other.bit_generator.state = rng.bit_generator.state
        render_phantom("ct", "nodule", rng)
        marker = render_phantom("ct", "marker", other)[1] > 0
        diff = a != b
        assert diff.any() and not (diff & ~binary_dilation(marker, iterations=5)).any()
        assert b[marker].mean() > a[marker].mean() + 40  # a bright spot where the marker is
