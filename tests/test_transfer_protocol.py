"""The transfer protocol (issue 12): per-concept by default, --joint, lr sweeps on one inversion,
the Python API = the CLI, run layout reader, honest console output."""
from __future__ import annotations

import json

import pytest
import torch

import medkt.transfer as T
from medkt.cli.main import main
from medkt.errors import ConfigError, InputError
from medkt.models import create_model
from medkt.transfer import load_concepts, run
from medkt.transfer.finetuning import FinetuneResult, epoch_batches
from medkt.transfer.config import FinetuneConfig
from medkt.transfer.outputs import find_finetuned, list_finetuned, lr_tag, run_protocol
from medkt.transfer.state import read_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RARE = load_concepts("rare")
# batch_images = images_per_concept: every concept is inverted in its own batch, so its images
# are bitwise the same whichever other concepts are in the set
FAST = dict(steps=6, images_per_concept=2, batch_images=2, seed=3, progress=False)
CLI_FAST = ["--steps", "6", "--images-per-concept", "2", "--batch-images", "2", "--seed", "3", "--no-progress"]


def _delta(path) -> dict:
    return read_weights(path)[0]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_per_concept_default_one_delta_each_from_the_original_weights(tmp_path):
    base = create_model("tiny-clip")
    snap = T.state_of(base)
    kt = run(RARE, base, lr=1e-3, out=tmp_path / "all", **FAST)
    assert kt.protocol == "per-concept" and _equal(snap, T.state_of(base))  # base untouched
    rows = list_finetuned(tmp_path / "all")
    assert [r.concept for r in rows] == RARE.names and len({r.path for r in rows}) == 3
    assert all(r.path == tmp_path / "all" / "concepts" / c.slug / "lr_1e-03" / "delta.safetensors"
               for r, c in zip(rows, RARE))
    rec = json.loads((tmp_path / "all" / "run.json").read_text())
    assert rec["protocol"] == "per-concept" and rec["lrs"] == [1e-3] and len(rec["finetunes"]) == 3
    # Tonometer's delta does not depend on Moongate/Gyroscope being in the set (each fine-tune starts
    # from the original weights, on its own concept's images only)
    alone = run(RARE, base, only=["Tonometer"], lr=1e-3, out=tmp_path / "one", **FAST)
    assert alone.concepts.names == ["Tonometer"]
    d_all = _delta(find_finetuned(tmp_path / "all", "Tonometer"))
    d_one = _delta(find_finetuned(tmp_path / "one"))
    assert _equal(d_all, d_one) and any(v.abs().sum() > 0 for v in d_all.values())
    assert not _equal(d_all, _delta(find_finetuned(tmp_path / "all", "moongate")))


def test_joint_gives_one_model_for_the_set(tmp_path):
    kt = run(RARE, "tiny-clip", lr=1e-3, joint=True, out=tmp_path, **FAST)
    assert kt.protocol == "joint" and run_protocol(tmp_path) == "joint" and len(kt.finetunes) == 1
    rows = list_finetuned(tmp_path)
    assert [r.concept for r in rows] == RARE.names
    assert {r.path for r in rows} == {tmp_path / "joint" / "lr_1e-03" / "delta.safetensors"}
    # joint default: balanced batches (batch_size images of every concept per batch): 2 images each
    # -> one batch of 6, the step count of one concept alone
    assert kt.finetunes[0].concepts == RARE.names and kt.finetunes[0].summary["steps"] == 1
    # --joint alone = the joint recipe (configs/transfer/joint.yaml): text encoder, balanced batches
    assert kt.record["preset"] == "joint" and kt.config.finetune.train == ["text"]
    assert kt.config.finetune.sampling == "balanced"
    delta = _delta(rows[0].path)
    text_names = {n for n, p in kt.base_model.named_parameters()
                  if id(p) in {id(q) for q in kt.base_model.parameters_of("text")}}
    assert delta and set(delta) <= text_names
    # with a preset, its recipe is kept and only the sampling becomes balanced (unless given)
    paper = run(RARE, "tiny-clip", lr=1e-3, joint=True, preset="paper", **FAST)
    assert paper.config.finetune.train == ["visual"] and paper.record["joint_defaults"] == {"finetune.sampling": "balanced"}
    explicit = run(RARE, "tiny-clip", lr=1e-3, joint=True, preset="paper", sampling="random", **FAST)
    assert explicit.config.finetune.sampling == "random" and explicit.finetunes[0].summary["steps"] == 2


def test_lr_list_runs_one_inversion_and_one_finetune_per_lr(tmp_path, monkeypatch, capsys):
    import medkt.transfer.inversion as inversion
    calls = []
    real = inversion.invert
    monkeypatch.setattr(inversion, "invert", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "kt"
    assert main(["transfer", "--concepts", "rare", "--model", "tiny-clip", "-o", str(out),
                 "--lr", "1e-4,1e-3", *CLI_FAST]) == 0
    assert len(calls) == 1
    rows = list_finetuned(out)
    assert len(rows) == 6 and sorted({r.lr for r in rows}) == [1e-4, 1e-3]
    assert len(list((out / "inversion" / ".medkt" / "done").glob("invert-*.json"))) == 3
    text = capsys.readouterr().out
    for c in RARE.names:  # one printed row per concept and lr
        assert sum(line.strip().startswith(c) and "lr_" in line for line in text.splitlines()) == 2
    assert "protocol: per-concept" in text and "mean of the first -> last 10 %" in text
    for r in rows:
        assert (r.path.parent / "finetune.json").exists() and r.path.parent.name == f"lr_{lr_tag(r.lr)}"
    with pytest.raises(InputError, match="say which one"):
        find_finetuned(out)
    assert find_finetuned(out, "gyroscope", 1e-4) == out / "concepts" / "gyroscope" / "lr_1e-04" / "delta.safetensors"


def test_cli_and_python_api_give_identical_numbers(tmp_path, capsys):
    cli, api = tmp_path / "cli", tmp_path / "api"
    assert main(["transfer", "--concepts", "rare", "--only", "Moongate", "--only", "Gyroscope", "--model",
                 "tiny-clip", "-o", str(cli), "--lr", "3e-4,1e-3", "--epochs", "2", *CLI_FAST]) == 0
    kt = run("rare", "tiny-clip", only=["Moongate", "Gyroscope"], out=api, lr=[3e-4, 1e-3], epochs=2, **FAST)
    a, b = list_finetuned(cli), list_finetuned(api)
    assert [(r.concept, r.lr) for r in a] == [(r.concept, r.lr) for r in b] and len(a) == 4
    for ra, rb in zip(a, b):
        assert _equal(_delta(ra.path), _delta(rb.path))
    ja, jb = (json.loads((d / "run.json").read_text()) for d in (cli, api))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(ja["finetunes"]) == strip(jb["finetunes"]) and ja["config"] == jb["config"]
    assert ja["inversion"]["per_concept"] == jb["inversion"]["per_concept"]
    # the in-memory model of the API run = base + saved delta
    m = kt.model("Gyroscope", 1e-3)
    ref = create_model("tiny-clip")
    T.load_finetuned(ref, api, concept="Gyroscope", lr=1e-3)
    assert all(torch.equal(p, dict(ref.named_parameters())[n]) for n, p in m.named_parameters())


def test_resume_says_reused_and_refuses_changed_finetune(tmp_path, capsys):
    out = tmp_path / "kt"
    argv = ["transfer", "--concepts", "rare", "--only", "Moongate", "--model", "tiny-clip", "-o", str(out),
            "--lr", "1e-3", *CLI_FAST]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "-> +" in first or "-> -" in first  # similarity start -> end of a fresh inversion
    assert main(argv + ["--resume"]) == 0
    text = capsys.readouterr().out
    assert "reused from" in text and " -> +" not in text and " -> -" not in text
    assert "reused from concepts/moongate/lr_1e-03/delta.safetensors" in text
    assert main(argv + ["--resume", "--epochs", "3"]) == 2
    assert "cannot resume: the fine-tune" in capsys.readouterr().err


def test_noise_control_prints_no_similarity(tmp_path, capsys):
    assert main(["transfer", "--concepts", "rare", "--only", "Tonometer", "--model", "tiny-clip", "-o",
                 str(tmp_path / "n"), "--noise-control", "--lr", "1e-3", *CLI_FAST]) == 0
    text = capsys.readouterr().out
    assert "noise control" in text and "->" not in text.split("fine-tunes")[0]


def test_invert_api_writes_run_json(tmp_path):
    inv = T.invert("tiny-clip", "rare", only=["Gyroscope"], steps=5, images_per_concept=2, out_dir=tmp_path,
                   progress=False, overrides=["inversion.tv_weight=0.01"])
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec["command"] == "invert" and rec["concepts"] == ["Gyroscope"] and inv.images.shape[0] == 2
    assert rec["config"]["inversion"]["tv_weight"] == 0.01 and rec["config"]["inversion"]["steps"] == 5
    with pytest.raises(Exception, match="already holds results"):
        T.invert("tiny-clip", "rare", only=["Gyroscope"], steps=5, out_dir=tmp_path, progress=False)


def test_lr_options_and_errors(capsys, tmp_path):
    from medkt.transfer.protocol import resolve_lrs
    assert resolve_lrs("1e-4, 3e-4,1e-4", 2e-5) == [1e-4, 3e-4] and resolve_lrs(None, 2e-5) == [2e-5]
    assert resolve_lrs(5e-4, 0) == [5e-4] and resolve_lrs([3e-4, 1e-4], 0) == [1e-4, 3e-4]
    with pytest.raises(ConfigError):
        resolve_lrs([0.0], 1)
    with pytest.raises(SystemExit):
        main(["transfer", "--concepts", "rare", "--model", "tiny-clip", "-o", str(tmp_path), "--lr", "1e-4,x"])
    assert "is not a learning rate" in capsys.readouterr().err
    from medkt.transfer.protocol import resolve_config
    with pytest.raises(ConfigError, match="unknown option"):
        resolve_config(stepz=3)


def test_learn_lr_keyword_does_not_touch_the_callers_config():
    cfg = T.load_transfer_config(overrides=["inversion.steps=4", "inversion.images_per_concept=2"])
    res = T.learn(create_model("tiny-clip"), RARE.subset(["Moongate"]), cfg, lr=1e-3, progress=False)
    assert res.config.finetune.lr == 1e-3 and cfg.finetune.lr == 2e-5


def test_balanced_sampling_mixes_every_concept_in_every_batch():
    names = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    g = torch.Generator().manual_seed(0)
    batches = epoch_batches(names, FinetuneConfig(sampling="balanced", batch_size=4), g)
    assert len(batches) == 3 and sorted(i for b in batches for i in b) == list(range(30))
    for b in batches:
        counts = {n: sum(names[i] == n for i in b) for n in "abc"}
        assert len(set(counts.values())) == 1  # 4, 4, 4 then 6, 6, 6 (a trailing pair joins)
    one = ["a"] * 10  # one concept: balanced == random (same order, same batches)
    assert epoch_batches(one, FinetuneConfig(sampling="balanced"), torch.Generator().manual_seed(1)) == \
        epoch_batches(one, FinetuneConfig(sampling="random"), torch.Generator().manual_seed(1))


def test_loss_summary_is_mean_of_first_and_last_tenth():
    s = FinetuneResult(model=None, delta={}, trained=[], losses=[float(v) for v in range(20)], steps=20).summary()
    assert s["loss_first"] == 0.5 and s["loss_last"] == 18.5


def test_every_public_name_imports():
    for name in T.__all__:
        assert getattr(T, name) is not None
    assert {"run", "invert", "learn", "finetune", "list_finetuned", "TransferRun"} <= set(T.__all__)
    with pytest.raises(AttributeError):
        T.nope  # noqa: B018
