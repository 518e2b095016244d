"""SAM / MedSAM / tiny-SAM wrapper: shapes, SamPredictor parity, checkpoint round trip, errors."""
import numpy as np
import pytest
import torch

from medkt.errors import CheckpointMismatchError, WeightsMissingError
from medkt.models import create_model, list_models
from medkt.models.sam import SamModel, load_sam_checkpoint, save_sam_checkpoint


@pytest.fixture(scope="module")
def tiny():
    return create_model("tiny-sam")


@pytest.fixture(scope="module")
def image():
    return (np.random.RandomState(0).rand(200, 300, 3) * 255).astype(np.uint8)


def test_registry_has_sam_models():
    names = {s.name for s in list_models(kind="sam")}
    assert {"sam-vit-b", "sam-vit-l", "sam-vit-h", "medsam", "tiny-sam"} <= names


def test_tiny_sam_pipeline_shapes(tiny, image):
    assert isinstance(tiny, SamModel) and tiny.variant == "sam" and tiny.image_size == 256
    prep = tiny.prepare_image(image)
    assert prep.pixels.shape == (1, 3, 256, 256) and prep.input_hw == (171, 256)
    with torch.no_grad():
        emb = tiny.embed(prep.pixels)
        assert emb.shape == (1, 32, 16, 16)
        boxes = tiny.transform_boxes([[10, 20, 100, 150], [50, 50, 250, 180]], prep)
        low, iou = tiny.decode(emb, boxes=boxes, multimask=True)
        assert low.shape == (2, 3, 64, 64) and iou.shape == (2, 3)
        up = tiny.upscale(low, prep)
        assert up.shape == (2, 3, 200, 300)
        pts = tiny.transform_points([[[30, 40], [60, 70]]], prep)
        low1, _ = tiny.decode(emb, points=pts, point_labels=torch.tensor([[1, 0]]))
        assert low1.shape == (1, 1, 64, 64)


def test_prepare_matches_sam_predictor(tiny, image):
    prep = tiny.prepare_image(image)
    pred = tiny.predictor()
    with torch.no_grad():
        emb = tiny.embed(prep.pixels, attention="stock")  # segment_anything's own encoder forward
        pred.set_image(image)
        assert torch.equal(pred.get_image_embedding(), emb)  # so the preprocessing is SamPredictor's, exactly
        chunked = tiny.embed(prep.pixels)  # medkt's default: same maths, float rounding apart
        assert float((chunked - emb).abs().max()) <= 1e-5 * float(emb.abs().max())
        low, _ = tiny.decode(emb, boxes=tiny.transform_boxes([[10, 20, 100, 150]], prep))
        logits = tiny.upscale(low, prep)
        masks, _, lr = pred.predict(box=np.array([10, 20, 100, 150]), multimask_output=False,
                                    return_logits=True)
    assert torch.allclose(torch.from_numpy(lr), low[0], atol=1e-5)
    assert torch.allclose(torch.from_numpy(masks), logits[0], atol=1e-4)


def test_medsam_preprocessing_is_minmax_square():
    m = create_model("tiny-medsam")
    img = np.linspace(10, 200, 120 * 80).reshape(120, 80).astype(np.uint8)
    prep = m.prepare_image(img)
    assert prep.pixels.shape == (1, 3, 256, 256) and prep.input_hw == (256, 256)
    assert float(prep.pixels.min()) == 0.0 and float(prep.pixels.max()) == 1.0
    b = m.transform_boxes([[0, 0, 80, 120]], prep)
    assert torch.allclose(b, torch.tensor([[0.0, 0.0, 256.0, 256.0]]))
    with pytest.raises(Exception, match="MedSAM"):
        m.predictor()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_tiny_sam_round_trip(tiny, tmp_path, suffix):
    path = tmp_path / f"tiny{suffix}"
    save_sam_checkpoint(tiny, path)
    again = create_model("tiny-sam", weights=str(path))
    assert again.weights == str(path)
    for (k, a), (_, b) in zip(tiny.sam.state_dict().items(), again.sam.state_dict().items()):
        assert torch.equal(a, b), k
    # a folder holding the file works too (same loader as real checkpoints)
    assert create_model("tiny-sam", weights=str(tmp_path)).weights.endswith(("tiny.pth", "tiny.safetensors"))


def test_mismatched_checkpoint_names_file_and_keys(tiny, tmp_path):
    sd = tiny.sam.state_dict()
    sd.pop("mask_decoder.iou_token.weight")
    sd["bogus.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError) as e:
        create_model("tiny-sam", weights=str(path))
    msg = str(e.value)
    assert "bad.pth" in msg and "mask_decoder.iou_token.weight" in msg and "bogus.weight" in msg


def test_corrupt_checkpoint_is_reported(tiny, tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"not a checkpoint at all")
    fresh = create_model("tiny-sam")
    before = {k: v.clone() for k, v in fresh.sam.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match="corrupt.pth"):
        load_sam_checkpoint(fresh.sam, path)
    assert all(torch.equal(before[k], v) for k, v in fresh.sam.state_dict().items())


def test_real_sam_offline_missing(network_attempts):
    with pytest.raises(WeightsMissingError) as e:
        create_model("medsam")
    assert "--weights" in str(e.value) and "medsam_vit_b.pth" in str(e.value)
    assert network_attempts == []


@pytest.mark.parametrize("arch", ["vit_b", "vit_l", "vit_h"])
def test_real_architectures_match_segment_anything(arch):
    """medkt's builder gives the exact keys and shapes of sam_model_registry (so real checkpoints load)."""
    from segment_anything import sam_model_registry
    from medkt.models.sam import SAM_ARCHS, build_sam_module
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in build_sam_module(**SAM_ARCHS[arch]).state_dict().items()}
        ref = {k: tuple(v.shape) for k, v in sam_model_registry[arch]().state_dict().items()}
    assert ours == ref
