"""medkt.evaluation: class prompts, the one zero-shot classifier, and `medkt zeroshot` on transfer runs."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medkt.errors import ConfigError, InputError
from medkt.evaluation.prompts import (CLASS_PROMPT, class_prompt, default_template_set, indefinite_article,
                                      prompt_name, resolve_templates)



@pytest.fixture(scope="module")
def world_clip():
    from medkt.models import create_model
    return create_model("world-clip")


# ---------------------------------------------------------------------- prompts
def test_article_expansion():
    assert class_prompt("astrolabe") == "a photo of an astrolabe"
    assert class_prompt("Gyroscope") == "a photo of a gyroscope"  # title case lowered, as the KT captions
    assert class_prompt("Astrolabe", "itap of {a}.") == "itap of an astrolabe."
    assert class_prompt("astrolabe", "a photo of a {}.") == "a photo of a astrolabe."  # {} keeps working, as is
    assert class_prompt("red_car", "{}") == "red car"
    assert class_prompt("an apple", "{a}") == "an apple"  # a phrase with its article keeps it
    assert class_prompt("a red circle inside a blue square") == "a photo of a red circle inside a blue square"
    assert [indefinite_article(w) for w in ("MRI scan", "CT scan", "X-ray", "unicorn", "hour", "umbrella")] == \
        ["an", "a", "an", "a", "an", "an"]
    assert prompt_name("Pleural_Effusion") == "pleural effusion" and prompt_name("MRI") == "MRI"
    for bad in ("a photo", "a {x} photo", "{a} and {}", "{a} {a}"):
        with pytest.raises(ConfigError):
            class_prompt("dog", bad)


def test_template_sets_and_defaults(world_clip):
    import open_clip.zero_shot_metadata as zs

    from medkt.models import create_model
    from medkt.transfer.concepts import Concept, caption
    oa = resolve_templates("openai-imagenet")
    assert len(oa) == 80 and oa == [t("{}") for t in zs.OPENAI_IMAGENET_TEMPLATES]
    oa_a = resolve_templates("openai-imagenet-a")
    assert len(oa_a) == 80 and not any("a {}" in t for t in oa_a) and "a bad photo of {a}." in oa_a
    assert resolve_templates("openai_imagenet") == oa  # former bench name still works
    assert len(resolve_templates("openai-imagenet-7")) == 7
    assert resolve_templates(["world", "simple", "{} scan"]) == ["a photo of {a}", "an image of {a}", "{} scan"]
    with pytest.raises(ConfigError, match="template set"):
        resolve_templates(["no-such-set"])
    # the default is the prompt the model family was trained with
    assert default_template_set(world_clip) == "world"
    assert default_template_set(create_model("tiny-clip")) == "openai-imagenet"
    assert default_template_set(SimpleNamespace(name="?", family="?", default_templates=["{a}"])) == ["{a}"]
    # the `name` fine-tuning caption IS the class prompt (one definition)
    c = Concept("Astrolabe", ("an old instrument",))
    assert caption(c, "name") == class_prompt("Astrolabe") == "a photo of an astrolabe"
    assert resolve_templates("simple") == [CLASS_PROMPT]


# ---------------------------------------------------------------------- one classifier, three callers
@pytest.fixture(scope="module")
def world_images():
    from medkt.worlds.concepts import build_world
    from medkt.worlds.natural import eval_set
    w = build_world()
    classes = list(w.known)[:4] + list(w.novel)[:2]
    ims, lab = eval_set(w, classes, 3)
    return [c.name for c in classes], ims, lab


def test_classifier_parity_cli_bench_worlds(tmp_path, world_clip, world_images):
    """The folder path of `medkt zeroshot`, the bench worker and the worlds' evaluation give the same scores."""
    from PIL import Image

    from medkt.bench.classification import Worker
    from medkt.bench.tasks import ClassificationOptions
    from medkt.evaluation.classifier import ZeroShotClassifier, image_features
    from medkt.evaluation.imagesets import load_class_folders
    from medkt.worlds.captions import class_prompts
    from medkt.worlds.evaluate import image_features as world_features
    from medkt.worlds.evaluate import text_classifier
    names, ims, lab = world_images
    for k, n in enumerate(names):
        (tmp_path / n).mkdir()
        for i, im in enumerate(ims[lab == k]):
            Image.fromarray(im).save(tmp_path / n / f"{i}.png")
    folders = load_class_folders(tmp_path, world_clip.image_size)
    x = torch.cat([folders[n] for n in names])
    clf = ZeroShotClassifier.build(world_clip, names)  # world-clip's default: the `world` set
    s_cli = clf.scores(world_clip, x)
    worker = Worker(SimpleNamespace(options=ClassificationOptions(names, resolve_templates("world"), "auto"), dataset=None),
                    world_clip)
    s_bench = worker.scores([im for k in range(len(names)) for im in ims[lab == k]])  # arrays, as a dataset reads
    order = np.concatenate([np.where(lab == k)[0] for k in range(len(names))])
    s_world = world_features(world_clip, ims[order]) @ text_classifier(world_clip, class_prompts(names)).t()
    assert torch.allclose(s_cli, s_bench, atol=1e-6) and torch.allclose(s_cli, s_world.cpu(), atol=1e-6)
    assert (s_cli.argmax(1) == s_bench.argmax(1)).all()
    # one resize rule: a non-square image gives the same features as a list item and in a batch
    big = np.ascontiguousarray(np.repeat(np.repeat(ims[:2], 2, axis=1), 3, axis=2)[:, :, :80])  # [2, 64, 80, 3]
    f_list = image_features(world_clip, [big[0], big[1]])
    f_batch = image_features(world_clip, big)
    assert torch.allclose(f_list, f_batch, atol=1e-6)


# ---------------------------------------------------------------------- report pieces
def _result(concept, lr, target, ref, other=0.0, base_ref=90.0):
    return {"concept": concept, "lr": lr, "target_acc": target, "reference_acc": ref,
            "reference_drop": base_ref - ref, "other_to_target": other}


def test_max_forgetting_selects_largest_lr_by_reference_only():
    from medkt.evaluation.report import select_lr
    base = {"reference_acc": 90.0, "concepts": {"a": {"target_acc": 0.0, "other_to_target": 1.0},
                                                "b": {"target_acc": 5.0, "other_to_target": 2.0}}}
    rows = [_result("a", 1e-4, 40, 89.5), _result("a", 3e-4, 20, 88.5),  # larger lr wins although target is lower
            _result("a", 1e-3, 95, 80.0),  # best target, but over budget: never chosen
            _result("b", 1e-4, 50, 85.0), _result("b", 3e-4, 60, 70.0)]  # nothing within 2 points
    sel = select_lr(rows, base, 2.0)
    assert [r["concept"] for r in sel] == ["a", "b"]
    assert sel[0] == {"concept": "a", "lr": 3e-4, "target_acc": 20, "reference_acc": 88.5, "reference_drop": 1.5,
                      "other_to_target": 0.0}
    assert sel[1]["lr"] is None and sel[1]["target_acc"] == 5.0 and sel[1]["reference_drop"] == 0.0
    assert "no lr" in sel[1]["note"]
    assert select_lr(rows, base, 10.0)[0]["lr"] == 1e-3  # budget exactly at the drop is inside it
    assert select_lr(rows, base, 20.0)[1]["lr"] == 3e-4


def test_other_to_target_excludes_own_images():
    from medkt.evaluation.report import EvalSets, Predictions, concept_metrics, confusion
    sets = EvalSets(["a", "b"], {"a": torch.zeros(4, 3, 2, 2), "b": torch.zeros(2, 3, 2, 2)}, ["dog"],
                    torch.zeros(3, 3, 2, 2), torch.tensor([2, 2, 2]), torch.zeros(4, 3, 2, 2))
    # all of a's own images are called a; 1 of b's 2 images and 1 of 4 OOD images too
    p = Predictions({"a": torch.tensor([0, 0, 0, 0]), "b": torch.tensor([0, 1])}, torch.tensor([2, 0, 2]),
                    torch.tensor([0, 2, 2, 1]))
    ma = concept_metrics(p, sets, "a")
    assert ma["target_acc"] == 100.0 and ma["n_other"] == 6  # 2 of b + 4 OOD, none of a's own
    assert ma["other_to_target"] == pytest.approx(100 * 2 / 6)
    assert ma["reference_to_target"] == pytest.approx(100 / 3)
    mb = concept_metrics(p, sets, "b")
    assert mb["target_acc"] == 50.0 and mb["other_to_target"] == pytest.approx(100 * 1 / 8)  # 4 of a + 4 OOD
    cm = confusion(p, sets)
    assert cm["rows"] == ["a", "b", "ood", "reference"] and cm["cols"] == ["a", "b", "known"]
    assert cm["counts"] == [[4, 0, 0], [1, 1, 0], [1, 1, 2], [1, 0, 2]]


# ---------------------------------------------------------------------- `medkt zeroshot` end to end
LRS = (1e-4, 1e-2)


def _write(d: Path, ims) -> None:
    from PIL import Image
    d.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(ims):
        Image.fromarray(im).save(d / f"{i:03d}.png")


@pytest.fixture(scope="module")
def kt_tree(tmp_path_factory, world_clip):
    """Target / reference / OOD folders from the world and a per-concept run in the transfer layout
    (medkt.transfer.outputs), whose deltas are random visual perturbations growing with lr."""
    from medkt.transfer.outputs import finetune_dir
    from medkt.transfer.state import save_weights
    from medkt.worlds.concepts import build_world
    from medkt.worlds.experiments import ood_images
    from medkt.worlds.natural import eval_set
    root = tmp_path_factory.mktemp("kt")
    w = build_world()
    novel, known = list(w.novel)[:2], list(w.known)[:4]
    ims, lab = eval_set(w, novel, 4)
    for k, c in enumerate(novel):
        _write(root / "target" / c.name.upper(), ims[lab == k])  # folder by name, any case
    ims, lab = eval_set(w, known, 3)
    for k, c in enumerate(known):
        _write(root / "reference" / c.name, ims[lab == k])
    _write(root / "ood", ood_images(w, 4))
    run = root / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"protocol": "per-concept", "concepts": [c.name for c in novel],
                                              "model": {"name": "world-clip"}}))
    g = torch.Generator().manual_seed(0)
    vis = {k: p for k, p in world_clip.named_parameters() if ".visual." in k}
    for c in novel:
        for lr in LRS:
            d = finetune_dir(run, lr, c.name)
            save_weights(d / "delta.safetensors", {k: 3 * lr * torch.randn(p.shape, generator=g)
                                                   for k, p in vis.items()}, {"format": "delta"})
            (d / "finetune.json").write_text(json.dumps({"lr": lr, "concepts": [c.name],
                                                         "weights": "delta.safetensors"}))
    joint = root / "joint-run"  # --joint layout: one model per lr for the whole set
    joint.mkdir()
    (joint / "run.json").write_text(json.dumps({"protocol": "joint", "concepts": [c.name for c in novel],
                                                "model": {"name": "world-clip"}}))
    for lr in LRS:
        d = finetune_dir(joint, lr, None)
        save_weights(d / "delta.safetensors", {k: 3 * lr * torch.randn(p.shape, generator=g)
                                               for k, p in vis.items()}, {"format": "delta"})
        (d / "finetune.json").write_text(json.dumps({"lr": lr, "concepts": [c.name for c in novel],
                                                     "weights": "delta.safetensors"}))
    return SimpleNamespace(root=root, run=run, joint=joint, concepts=[c.name for c in novel],
                           known=[c.name for c in known])


def _strip(rep: dict) -> dict:
    return {k: v for k, v in rep.items() if k not in ("seconds", "plot")}


def test_zeroshot_cli_and_api_identical_schema(kt_tree, capsys):
    from medkt.cli.main import main
    from medkt.evaluation import zeroshot
    r = kt_tree.root
    out = r / "report.json"
    argv = ["zeroshot", "--finetuned", str(kt_tree.run), "--target", str(r / "target"), "--reference",
            str(r / "reference"), "--ood", str(r / "ood"), "--max-forgetting", "2", "-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    api = zeroshot(finetuned=kt_tree.run, target=r / "target", reference=r / "reference", ood=r / "ood",
                   max_forgetting=2)
    assert _strip(json.loads(json.dumps(api))) == _strip(rep)  # the same numbers, key for key
    # schema
    assert rep["schema"] == "medkt.zeroshot/1" and rep["protocol"] == "per-concept"
    assert rep["concepts"] == kt_tree.concepts and rep["label_set"] == kt_tree.concepts + sorted(kt_tree.known)
    assert rep["templates"]["label"].startswith("world") and rep["templates"]["source"] == "model default"
    assert rep["lrs"] == list(LRS) and len(rep["results"]) == len(LRS) * len(kt_tree.concepts)
    assert rep["n_images"] == {"target": {c: 4 for c in kt_tree.concepts}, "reference": 12, "ood": 4}
    for row in rep["results"]:
        assert {"concept", "lr", "target_acc", "reference_acc", "reference_drop", "other_to_target",
                "reference_to_target", "confusion", "weights"} <= set(row)
        assert row["reference_drop"] == pytest.approx(rep["base"]["reference_acc"] - row["reference_acc"])
        assert row["confusion"]["rows"] == kt_tree.concepts + ["ood", "reference"]
        assert sum(map(sum, row["confusion"]["counts"])) == 8 + 4 + 12
    sel = rep["selected"]
    assert [s["concept"] for s in sel] == kt_tree.concepts
    for s in sel:
        assert set(s) - {"note"} == {"concept", "lr", "target_acc", "reference_acc", "reference_drop",
                                     "other_to_target"}
        assert s["reference_drop"] <= 2 + 1e-9
    assert set(rep["selected_mean"]) == {"target_acc", "reference_acc", "reference_drop", "other_to_target"}
    # printed: templates, concept rows x lr columns, selection; the plot next to the report
    assert "templates: world" in printed and "1e-04" in printed and "1e-02" in printed
    assert all(c in printed for c in kt_tree.concepts) and "selected (--max-forgetting 2)" in printed
    assert (r / "report.png").stat().st_size > 1000


def test_zeroshot_plain_model_has_no_after_column(kt_tree, capsys):
    from medkt.cli.main import main
    r = kt_tree.root
    assert main(["zeroshot", "--model", "world-clip", "--target", str(r / "target"), "--reference",
                 str(r / "reference"), "--templates", "simple", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["results"] == [] and rep["lrs"] == [] and rep["selected"] is None and rep["finetuned"] is None
    assert rep["templates"] == {"label": "simple (1 template)", "templates": ["a photo of {a}"], "source": "given"}
    assert main(["zeroshot", "--model", "world-clip", "--target", str(r / "target")]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    header = lines[next(i for i, t in enumerate(lines) if t.startswith("target accuracy")) + 1]
    assert header.split() == ["model"] and "base" not in printed and "e-0" not in printed
    assert "other -> target" in printed  # two concepts: each is the other's "other" class


def test_zeroshot_bad_inputs(kt_tree, tmp_path):
    from medkt.evaluation import zeroshot
    r = kt_tree.root
    (tmp_path / "t" / kt_tree.concepts[0]).mkdir(parents=True)
    for p in (r / "target" / kt_tree.concepts[0].upper()).iterdir():
        (tmp_path / "t" / kt_tree.concepts[0] / p.name).write_bytes(p.read_bytes())
    with pytest.raises(InputError, match="no folder for concept"):
        zeroshot(finetuned=kt_tree.run, target=tmp_path / "t")
    with pytest.raises(ConfigError, match="needs --reference"):
        zeroshot(finetuned=kt_tree.run, target=r / "target", max_forgetting=2)
    (tmp_path / "t" / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        zeroshot("world-clip", target=tmp_path / "t")


def test_zeroshot_joint_run_one_model_per_lr(kt_tree, world_clip):
    from medkt.evaluation import zeroshot
    r = kt_tree.root
    rep = zeroshot(world_clip, finetuned=kt_tree.joint, target=r / "target", reference=r / "reference",
                   ood=r / "ood", max_forgetting=100)
    assert rep["protocol"] == "joint" and len(rep["results"]) == len(LRS) * len(kt_tree.concepts)
    for lr in LRS:
        a, b = [x for x in rep["results"] if x["lr"] == lr]
        assert a["weights"] == b["weights"] and a["confusion"] == b["confusion"]
        assert a["reference_acc"] == b["reference_acc"]
    assert [s["lr"] for s in rep["selected"]] == [max(LRS)] * 2  # a budget of 100 points admits every lr


def test_text_side_change_rebuilds_class_embeddings(world_clip):
    import copy

    from medkt.evaluation.report import _text_unchanged
    work = copy.deepcopy(world_clip)
    with torch.no_grad():
        next(p for n, p in work.named_parameters() if ".visual." in n).add_(0.1)
    assert _text_unchanged(work, world_clip)  # a visual-only fine-tune keeps the class embeddings
    with torch.no_grad():
        work.parameters_of("text")[0].add_(0.1)
    assert not _text_unchanged(work, world_clip)
