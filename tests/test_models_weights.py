"""Weights: offline errors via the CLI (no network), listing, verify, safe and strict loading."""
import json

import pytest
import torch

from medkt.cli.main import main
from medkt.errors import CheckpointMismatchError, WeightsError
from medkt.models import get_spec, list_models
from medkt.models.weights import load_strict, read_state_dict, resolve_file, verify, weights_status

REAL = ["clip-vit-b32", "biomedclip", "coca-vit-l14", "hf-clip-vit-b32", "medclip-vit", "vilt-b32-coco",
        "vilt-b32-mlm", "sam-vit-b", "medsam"]
TINY = ["tiny-clip", "tiny-coca", "tiny-hf-clip", "tiny-medclip", "tiny-vilt", "tiny-sam"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDKT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("name", REAL)
def test_real_model_offline_is_one_clear_error(name, home, capsys, network_attempts):
    rc = main(["models", name, "--load"])
    err = capsys.readouterr().err
    assert rc != 0
    assert f"weights for model '{name}' are not available" in err
    assert "--weights PATH" in err and "either" in err  # the two ways to provide them
    assert "Traceback" not in err and err.count("error:") == 1
    assert network_attempts == []


def test_download_refuses_offline(home, capsys, network_attempts):
    assert main(["weights", "download", "sam-vit-b"]) != 0
    err = capsys.readouterr().err
    assert "offline" in err and "MEDKT_OFFLINE=0" in err
    assert network_attempts == []


def test_models_listing(home, capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(REAL + TINY) <= set(rows)
    assert all(rows[n]["weights"].startswith("built-in") for n in TINY)
    assert all(rows[n]["weights"] == "missing" and rows[n]["source"] for n in REAL)
    assert rows["sam-vit-b"]["kind"] == "sam" and rows["medclip-vit"]["family"] == "medclip"
    assert main(["models", "--kind", "sam"]) == 0
    out = capsys.readouterr().out
    assert "medsam" in out and "tiny-clip" not in out


def test_unknown_name_in_cli(capsys):
    assert main(["models", "biomedclp", "--load"]) != 0
    assert "Did you mean: biomedclip" in capsys.readouterr().err


def test_tiny_model_loads_through_cli(capsys):
    assert main(["models", "tiny-sam", "--load", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == 256


def test_cached_file_is_found_and_verified(home, capsys):
    spec = get_spec("sam-vit-b")
    folder = home / "weights" / "sam-vit-b"
    folder.mkdir(parents=True)
    f = folder / "sam_vit_b_01ec64.pth"
    torch.save({"w": torch.zeros(1)}, f)
    assert resolve_file(spec, None) == f
    assert weights_status(spec).startswith("present")
    rows = verify(spec)
    assert rows[0][0] == str(f) and rows[0][1].startswith("MISMATCH")  # not the published file
    assert main(["weights", "verify", "sam-vit-b"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert main(["weights", "verify", "tiny-sam"]) == 0


def test_read_state_dict_rejects_corrupt_and_empty(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointMismatchError, match="model.safetensors"):
        read_state_dict(bad)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointMismatchError, match="empty"):
        read_state_dict(empty)
    with pytest.raises(WeightsError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")


def test_pickled_code_is_never_run(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    path = tmp_path / "evil.pt"
    torch.save({"w": Evil()}, path)
    with pytest.raises(CheckpointMismatchError, match="evil.pt"):
        read_state_dict(path)


def test_load_strict_reports_shapes_without_touching_the_model(tmp_path):
    lin = torch.nn.Linear(3, 2)
    before = lin.weight.clone()
    with pytest.raises(CheckpointMismatchError) as e:
        load_strict(lin, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, tmp_path / "x.pth")
    assert "x.pth" in str(e.value) and "weight (2, 4) vs model (2, 3)" in str(e.value)
    assert torch.equal(lin.weight, before)


def test_every_tiny_model_is_registered_as_tiny():
    tiny = {s.name for s in list_models() if s.tiny}
    assert set(TINY) <= tiny
