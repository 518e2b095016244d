"""Resume correctness of inversions: the fingerprint covers the weights, the image size and the
normalisation; a mismatch is refused with a clear error, --overwrite re-inverts, a reuse says so."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from medkt.cli.main import main
from medkt.errors import ConfigError, ResumeMismatchError
from medkt.models import create_model
from medkt.transfer import invert, load_concepts
from medkt.transfer.config import InversionConfig, coerce
from medkt.transfer.inversion import weights_digest, fingerprint_parts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ONE = load_concepts("rare").subset(["Moongate"])
FAST = {"steps": 3, "images_per_concept": 2}


def _tiny(image_size: int | None = None):
    """tiny-clip (seeded random init); ``image_size`` builds the same architecture at another size."""
    if image_size is None:
        return create_model("tiny-clip")
    import open_clip
    from medkt.models.open_clip_adapter import from_open_clip
    from medkt.models.open_clip_loader import register_medkt_configs
    register_medkt_configs()
    torch.manual_seed(0)
    m, _, pre = open_clip.create_model_and_transforms("tiny-clip", force_image_size=image_size)
    return from_open_clip(m, open_clip.get_tokenizer("tiny-clip"), pre, name="tiny-clip",
                          weights="tiny-clip:random-init")


@pytest.fixture()
def done(tmp_path):
    out = tmp_path / "inv"
    invert(_tiny(), ONE, FAST, seed=0, out_dir=out, progress=False)
    return out


def test_digest_sees_every_weight_and_buffer():
    a, b = _tiny(), _tiny()
    assert weights_digest(a) == weights_digest(b)  # same seeded init, separate objects
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-3
    assert weights_digest(a) != weights_digest(b)
    c = _tiny()
    c._std.mul_(2)  # a normalisation buffer
    assert weights_digest(a) != weights_digest(c)
    parts = fingerprint_parts(a, coerce(InversionConfig, FAST), 0)
    assert parts["image_size"] == 64 and len(parts["mean"]) == len(parts["std"]) == 3


def test_same_model_resumes_and_says_reused_from(done, caplog):
    with caplog.at_level(logging.INFO, logger="medkt.transfer"):
        res = invert(_tiny(), ONE, FAST, seed=0, out_dir=done, resume=True, progress=False)
    assert res.resumed == ["Moongate"]
    assert res.reused_from == {"Moongate": str(done / "images" / "moongate")}
    assert f"reused from {done / 'images' / 'moongate'}" in caplog.text


def test_different_weights_same_name_refused(done):
    other = _tiny()
    with torch.no_grad():
        other.model.visual.conv1.weight.mul_(1.01)
    assert other.name == "tiny-clip"
    with pytest.raises(ResumeMismatchError) as err:
        invert(other, ONE, FAST, seed=0, out_dir=done, resume=True, progress=False)
    msg = err.value.format()
    assert isinstance(err.value, ConfigError)
    assert "Moongate" in msg and str(done) in msg and "model weights differ" in msg
    assert "image size" not in msg and "--overwrite" in msg


def test_different_image_size_refused(done):
    small = _tiny(image_size=32)
    with pytest.raises(ResumeMismatchError, match="image size 64 there, 32 now"):
        invert(small, ONE, FAST, seed=0, out_dir=done, resume=True, progress=False)


def test_different_config_names_the_field(done):
    with pytest.raises(ResumeMismatchError, match=r"inversion config differs \(steps: 3 there, 4 now\)"):
        invert(_tiny(), ONE, {**FAST, "steps": 4}, seed=0, out_dir=done, resume=True, progress=False)


def test_cli_overwrite_reinverts_with_other_weights(tmp_path, capsys, caplog):
    ckpt = tmp_path / "other.pt"
    other = _tiny()
    with torch.no_grad():
        other.model.visual.conv1.weight.mul_(1.01)
    torch.save(other.model.state_dict(), ckpt)
    out = tmp_path / "inv"
    argv = ["invert", "--concepts", "rare", "--only", "Moongate", "--model", "tiny-clip", "-o", str(out),
            "--steps", "3", "--images-per-concept", "2", "--no-progress"]
    marker = out / ".medkt" / "done" / "invert-moongate.json"
    assert main(argv) == 0
    first = json.loads(marker.read_text())["fingerprint_parts"]["weights_sha256"]
    capsys.readouterr()
    # other weights under the same model name: refused, with the folder, the difference and the fix
    assert main(argv + ["--weights", str(ckpt), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "model weights differ" in err and str(out) in err and "--overwrite" in err
    # --overwrite re-inverts with the new weights
    assert main(argv + ["--weights", str(ckpt), "--overwrite"]) == 0
    second = json.loads(marker.read_text())["fingerprint_parts"]["weights_sha256"]
    assert second != first and second == weights_digest(create_model("tiny-clip", weights=str(ckpt)))
    assert "reused from" not in caplog.text
    # and a resume with those weights now reuses them, and says so
    with caplog.at_level(logging.INFO, logger="medkt.transfer"):
        assert main(argv + ["--weights", str(ckpt), "--resume"]) == 0
    assert f"reused from {out / 'images' / 'moongate'}" in caplog.text
    assert json.loads((out / "run.json").read_text())["inversion"]["resumed"] == ["Moongate"]


def test_finetune_resume_with_other_weights_refused(tmp_path):
    """The fine-tune fingerprint holds the starting weights too: the same images (given, so the
    inversion check cannot catch it) fine-tuned from other weights are refused, never reused."""
    from medkt.transfer import run
    images = invert(_tiny(), ONE, FAST, seed=0, progress=False)
    out = tmp_path / "kt"
    run(ONE, _tiny(), images=images, lr=1e-4, epochs=1, out=out, progress=False)
    again = run(ONE, _tiny(), images=images, lr=1e-4, epochs=1, out=out, resume=True, progress=False)
    assert [f.resumed for f in again.finetunes] == [True]
    other = _tiny()
    with torch.no_grad():
        other.model.visual.conv1.weight.mul_(1.01)
    with pytest.raises(ResumeMismatchError) as err:
        run(ONE, other, images=images, lr=1e-4, epochs=1, out=out, resume=True, progress=False)
    assert "model weights" in err.value.format() and "--overwrite" in err.value.format()
