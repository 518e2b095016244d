"""learn() API (untouched model, sweeps, noise control, resume) and the CLI verbs, offline."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medkt.cli.main import main
from medkt.models import create_model
from medkt.transfer import api, invert, learn, load_concepts, load_finetuned, protocol, state_of
from medkt.transfer.concepts import concepts_dir

RARE = load_concepts("rare")
QUICK = ["inversion.steps=12", "inversion.images_per_concept=3", "finetune.lr=1e-3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_learn_leaves_model_untouched_and_supports_sweeps():
    model = create_model("tiny-clip")
    snap = state_of(model)
    inv = invert(model, RARE, {"steps": 12, "images_per_concept": 3}, progress=False)
    runs = [learn(model, RARE, overrides=QUICK[:2], lr=lr, images=inv, progress=False)
            for lr in (1e-4, 1e-3)]
    assert _same(snap, state_of(model))
    assert runs[0].model is not model and runs[0].inversion is inv
    d0, d1 = (r.finetune.delta for r in runs)
    assert float(sum(v.abs().sum() for v in d1.values())) > float(sum(v.abs().sum() for v in d0.values()))
    r = learn(model, RARE, overrides=QUICK, images=inv, inplace=True, progress=False)
    assert r.model is model and not _same(snap, state_of(model))


def test_noise_control_uses_pure_noise():
    model = create_model("tiny-clip")
    res = learn(model, RARE.subset(["Moongate"]), overrides=QUICK + ["noise_control=true"], progress=False)
    ref = api.noise_result(model, RARE.subset(["Moongate"]), res.config)
    assert res.record["inversion"]["kind"] == "noise_control"
    assert torch.equal(res.inversion.images, ref.images) and res.finetune.steps == 1


def test_learn_resume_after_crash_in_finetune(tmp_path, monkeypatch):
    model = create_model("tiny-clip")
    real = protocol.finetune

    def boom(*a, **k):
        raise RuntimeError("injected crash")

    monkeypatch.setattr(protocol, "finetune", boom)
    with pytest.raises(RuntimeError):
        learn(model, RARE, overrides=QUICK, out_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "inversion" / ".medkt" / "done").glob("invert-*.json"))) == 3
    monkeypatch.setattr(protocol, "finetune", real)
    res = learn(model, RARE, overrides=QUICK, out_dir=tmp_path, resume=True, progress=False)
    assert res.inversion.resumed == RARE.names
    assert res.weights_path.exists()
    again = learn(model, RARE, overrides=QUICK, out_dir=tmp_path, resume=True, progress=False)
    assert again.record.get("finetune_resumed") is True
    a, b = state_of(res.model), state_of(again.model)  # delta re-applied: equal up to rounding
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def _write_folder(root, classes: dict):
    from PIL import Image
    for cls, imgs in classes.items():
        d = root / cls
        d.mkdir(parents=True)
        for i, im in enumerate(imgs):
            arr = (im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(d / f"{i}.png")


def test_cli_transfer_zeroshot_invert_end_to_end(tmp_path, capsys):
    out = tmp_path / "kt"
    argv = ["transfer", "--concepts", str(concepts_dir() / "rare.yaml"), "--model", "tiny-clip", "--out", str(out),
            "--steps", "15", "--images-per-concept", "3", "--lr", "1e-3", "--seed", "1", "--no-progress", "--joint"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "Moongate" in text and "joint/lr_1e-03/delta.safetensors" in text
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "transfer" and run["seed"] == 1 and run["config"]["inversion"]["steps"] == 15
    assert run["environment"]["packages"]["torch"] and run["timings"]["inversion_s"] > 0
    assert len(run["inversion"]["history"]["Moongate"]) >= 1 and run["finetunes"][0]["steps"] == 1  # joint: balanced, 3 of each
    assert run["protocol"] == "joint" and run["lrs"] == [1e-3]
    for c in ("moongate", "tonometer", "gyroscope"):
        assert len(list((out / "inversion" / "images" / c).glob("*.png"))) == 3
        assert (out / "inversion" / "images" / c / "images.safetensors").exists()
    weights = out / "joint" / "lr_1e-03" / "delta.safetensors"
    assert weights.exists()
    # rerunning without --resume refuses; with --resume nothing is redone
    assert main(argv) == 2 and "already holds results" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    run2 = json.loads((out / "run.json").read_text())
    assert run2["inversion"]["resumed"] == RARE.names and run2["finetunes"][0]["resumed"] is True

    # zero-shot before/after on folder-per-class sets built from the run's own images
    from safetensors.torch import load_file
    imgs = {c.name: load_file(str(out / "inversion" / "images" / c.slug / "images.safetensors"))["images"]
            for c in RARE}
    g = torch.Generator().manual_seed(0)
    _write_folder(tmp_path / "target", imgs)
    _write_folder(tmp_path / "reference", {"dog": torch.rand(2, 3, 64, 64, generator=g),
                                           "red_car": torch.rand(2, 3, 64, 64, generator=g)})
    _write_folder(tmp_path / "ood", {"zebra": torch.rand(3, 3, 64, 64, generator=g)})
    report_path = tmp_path / "zs.json"
    assert main(["zeroshot", "--model", "tiny-clip", "--finetuned", str(out), "--concepts", "rare",
                 "--target", str(tmp_path / "target"), "--reference", str(tmp_path / "reference"),
                 "--ood", str(tmp_path / "ood"), "--out", str(report_path)]) == 0
    printed = capsys.readouterr().out
    assert "target accuracy" in printed and "other -> target" in printed and "Moongate" in printed
    rep = json.loads(report_path.read_text())  # schema: docs/transfer.md "zeroshot report schema"
    assert rep["label_set"] == ["Moongate", "Tonometer", "Gyroscope", "dog", "red car"]
    for row in rep["results"]:
        assert 0 <= row["target_acc"] <= 100 and 0 <= row["reference_acc"] <= 100
        assert 0 <= row["other_to_target"] <= 100
    assert {r["concept"] for r in rep["results"]} == set(RARE.names)
    assert rep["finetuned"] == str(out)
    # the saved delta applied to a fresh model reproduces the fine-tuned weights of the run
    fresh = create_model("tiny-clip")
    assert load_finetuned(fresh, out)["format"] == "delta"

    inv_out = tmp_path / "inv"
    assert main(["invert", "--concepts", "rare", "--only", "Tonometer", "--model", "tiny-clip", "--out",
                 str(inv_out), "--steps", "5", "--images-per-concept", "2", "--no-progress",
                 "--set", "inversion.tv_weight=0.01"]) == 0
    run = json.loads((inv_out / "run.json").read_text())
    assert run["command"] == "invert" and run["concepts"] == ["Tonometer"]
    assert run["config"]["inversion"]["tv_weight"] == 0.01


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["transfer", "--concepts", "rar", "--model", "tiny-clip", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown concept set 'rar'" in err and "Did you mean: rare" in err and "Traceback" not in err
    assert main(["invert", "--concepts", "rare", "--model", "tiny-clip", "--out", str(tmp_path / "y"),
                 "--set", "inversion.objective=nope"]) == 2
    assert "unknown inversion objective 'nope'" in capsys.readouterr().err


def test_learn_with_lora_saves_only_the_adapter(tmp_path):
    model = create_model("tiny-clip")
    res = learn(model, RARE.subset(["Gyroscope"]), "lora", tmp_path, overrides=QUICK, progress=False)
    assert res.weights_path.name == "lora.safetensors" and res.weights_path.parent.name == "lr_1e-03"
    from medkt.transfer.state import read_weights
    tensors, meta = read_weights(res.weights_path)
    assert meta["format"] == "lora" and all(k.endswith((".lora_A", ".lora_B")) for k in tensors)
    fresh = create_model("tiny-clip")
    load_finetuned(fresh, tmp_path)
    tuned = dict(res.model.named_parameters())
    assert all(torch.allclose(p, tuned[n], atol=1e-5) for n, p in fresh.named_parameters())
