"""Model specs (issue 12 item 8): local-dir:, hf-hub:, ARCH/TAG and checkpoint files through
create_model, model.spec, weights_fingerprint and `medkt models SPEC` -- all offline."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medkt.cli.main import main
from medkt.errors import ConfigError, UnknownNameError, WeightsError, WeightsMissingError
from medkt.models import create_model, parse_spec, weights_fingerprint
from medkt.models.open_clip_loader import save_local_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def clip():
    return create_model("tiny-clip")


@pytest.fixture(scope="module")
def clip_dir(clip, tmp_path_factory):
    return save_local_dir(clip, tmp_path_factory.mktemp("tiny-clip-dir"), "tiny-clip")


def _embed(model):
    torch.manual_seed(1)
    x = torch.rand(2, 3, model.image_size, model.image_size)
    with torch.no_grad():
        return model.encode_image(model.normalize(x)), model.encode_texts(["a red circle", "a photo of a dog"])


def fake_hf_cache(root: Path, repo: str, files: dict[str, Path], commit: str = COMMIT) -> Path:
    """The Hugging Face cache layout: blobs named by SHA-256, snapshot symlinks, refs/main."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    for name, src in files.items():
        data = src.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snap), snap / name)
    return snap


@pytest.fixture(scope="module")
def hf_cache(clip_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-home") / "hub"
    fake_hf_cache(root, "medkt-test/tiny-clip", {f.name: f for f in clip_dir.iterdir()})
    return root


# ---------------------------------------------------------------------- local-dir:
def test_local_dir_spec_loads_the_saved_model(clip, clip_dir):
    m = create_model(f"local-dir:{clip_dir}")
    assert m.spec == f"local-dir:{clip_dir.resolve()}"
    assert weights_fingerprint(m) == weights_fingerprint(clip)
    for a, b in zip(_embed(m), _embed(clip)):
        assert torch.allclose(a, b, atol=1e-6)
    assert create_model(str(clip_dir)).spec == m.spec  # a bare folder path is the same spec


def test_local_dir_errors_are_clear(tmp_path):
    with pytest.raises(WeightsError, match="not a folder"):
        create_model(f"local-dir:{tmp_path / 'nope'}")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(WeightsError, match="cannot tell which model"):
        create_model(f"local-dir:{tmp_path}")
    with pytest.raises(ConfigError, match="--weights cannot be combined"):
        create_model(f"local-dir:{tmp_path}", weights=str(tmp_path))


# ---------------------------------------------------------------------- hf-hub:
def test_hf_hub_spec_resolves_from_the_cache(clip, hf_cache, monkeypatch, network_attempts):
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    m = create_model("hf-hub:medkt-test/tiny-clip")
    assert m.spec == "hf-hub:medkt-test/tiny-clip" and m.weights == f"hf-hub:medkt-test/tiny-clip@{COMMIT}"
    assert weights_fingerprint(m) == weights_fingerprint(clip)
    assert weights_fingerprint(create_model(f"hf-hub:medkt-test/tiny-clip@{COMMIT}")) == weights_fingerprint(clip)
    with pytest.raises(WeightsMissingError, match="not in the Hugging Face cache"):
        create_model("hf-hub:medkt-test/tiny-clip@" + "f" * 40)
    with pytest.raises(WeightsMissingError, match="medkt weights download hf-hub:medkt-test/other"):
        create_model("hf-hub:medkt-test/other")
    assert network_attempts == []


@pytest.mark.slow  # a fresh interpreter importing torch + open_clip: ~7 s alone, 25 s on a busy 2-core box
def test_hf_hub_spec_in_a_fresh_process_with_hf_home(clip, hf_cache):
    """HF_HOME (not HF_HUB_CACHE) set before anything imports huggingface_hub, HF_HUB_OFFLINE=1."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HF_HOME")}
    env.update(HF_HOME=str(hf_cache.parent), HF_HUB_OFFLINE="1", MEDKT_OFFLINE="1")
    code = ("from medkt.models import create_model, weights_fingerprint as f; "
            "m = create_model('hf-hub:medkt-test/tiny-clip'); print(m.spec, m.weights, f(m))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    spec, label, fp = out.stdout.split()
    assert (spec, label, fp) == ("hf-hub:medkt-test/tiny-clip", f"hf-hub:medkt-test/tiny-clip@{COMMIT}",
                                 weights_fingerprint(clip))


def test_weights_verify_checks_hf_hub_blobs(hf_cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    assert main(["weights", "verify", "hf-hub:medkt-test/tiny-clip"]) == 0
    assert "ok (sha256 = Hugging Face LFS oid)" in capsys.readouterr().out


# ---------------------------------------------------------------------- ARCH/TAG and ARCH + weights
def test_open_clip_arch_tag_specs(clip, tmp_path, network_attempts):
    p = parse_spec("ViT-B-32/openai")
    assert (p.kind, p.arch, p.tag) == ("open_clip", "ViT-B-32", "openai")
    with pytest.raises(WeightsMissingError, match="offline"):
        create_model("ViT-B-32/openai")
    with pytest.raises(UnknownNameError, match="pretrained tag"):
        parse_spec("ViT-B-32/opneai")
    with pytest.raises(ConfigError, match="ViT-B-32/openai"):
        create_model("ViT-B-32")  # an architecture alone needs a tag or --weights
    f = tmp_path / "raw.safetensors"
    from medkt.models.checkpoints import write_state_dict
    write_state_dict(clip.model.state_dict(), f)
    m = create_model("tiny-clip", weights=str(f))
    assert m.spec == "tiny-clip" and weights_fingerprint(m) == weights_fingerprint(clip)
    assert network_attempts == []


# ---------------------------------------------------------------------- checkpoint files
def test_checkpoint_file_specs_are_recognised(clip, tmp_path):
    from medkt.models.checkpoints import write_state_dict
    from medkt.models.medclip import save_medclip_checkpoint
    from medkt.models.sam import save_sam_checkpoint
    f = tmp_path / "clip.safetensors"
    write_state_dict(clip.model.state_dict(), f)
    m = create_model(str(f))
    assert m.spec == str(f.resolve()) and weights_fingerprint(m) == weights_fingerprint(clip)
    sam = create_model("tiny-sam")
    g = Path(save_sam_checkpoint(sam, tmp_path / "my_sam.pth"))
    s2 = create_model(str(g))
    assert s2.name == "tiny-sam" and weights_fingerprint(s2) == weights_fingerprint(sam)
    med = create_model("tiny-medclip")
    h = Path(save_medclip_checkpoint(med, tmp_path / "pytorch_model.bin"))
    assert weights_fingerprint(create_model(str(h))) == weights_fingerprint(med)
    bad = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(3)}, bad)
    with pytest.raises(WeightsError, match="cannot tell which architecture"):
        create_model(str(bad))
    with pytest.raises(WeightsError, match="not found"):
        create_model(str(tmp_path / "missing.pth"))


def test_unknown_spec_lists_the_forms():
    with pytest.raises(UnknownNameError) as e:
        create_model("tiny-clp")
    assert "Did you mean: tiny-clip" in str(e.value) and "hf-hub:ORG/NAME" in str(e.value)


# ---------------------------------------------------------------------- fingerprint
def test_weights_fingerprint_tracks_every_weight(clip):
    a, b = create_model("tiny-clip"), create_model("tiny-clip")
    fa = weights_fingerprint(a)
    assert len(fa) == 64 and fa == weights_fingerprint(b) == weights_fingerprint(clip)
    with torch.no_grad():
        p = next(iter(b.model.visual.parameters()))
        p.view(-1)[0] += 1e-6
    assert weights_fingerprint(b) != fa
    sd = dict(a.state_dict())
    want = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().contiguous()
        want.update(f"{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        want.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    assert fa == want.hexdigest()  # the documented definition, recomputed independently
    assert weights_fingerprint(create_model("tiny-sam")) != fa


# ---------------------------------------------------------------------- medkt models SPEC
def test_models_cli_describes_specs(clip, clip_dir, hf_cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    assert main(["models", f"local-dir:{clip_dir}", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["family"], d["image_size"], d["in_channels"]) == ("open_clip", 64, 3)
    assert d["weights"].startswith("present") and len(d["mean"]) == 3
    assert main(["models", "hf-hub:medkt-test/tiny-clip", "--load", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["weights"] == f"present: Hugging Face cache (commit {COMMIT})"
    assert d["fingerprint"] == weights_fingerprint(clip) and d["image_size"] == 64
    assert main(["models", "medclip-vit", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["weights"], d["image_size"], d["in_channels"]) == ("missing", 224, 1)
    assert main(["models", "ViT-B-16/openai"]) == 0
    out = capsys.readouterr().out
    assert "image_size      224" in out and "missing" in out


def test_hf_hub_spec_for_a_transformers_clip(tmp_path, monkeypatch):
    from medkt.models.hf_adapter import save_hf_clip
    tiny = create_model("tiny-hf-clip")
    folder = save_hf_clip(tiny, tmp_path / "saved")
    root = tmp_path / "hub"
    fake_hf_cache(root, "medkt-test/tiny-hf-clip", {f.name: f for f in folder.iterdir() if f.is_file()})
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    m = create_model("hf-hub:medkt-test/tiny-hf-clip")
    assert m.family == "hf_clip" and m.spec == "hf-hub:medkt-test/tiny-hf-clip"
    assert weights_fingerprint(m) == weights_fingerprint(tiny)
    assert create_model(f"local-dir:{folder}").family == "hf_clip"
