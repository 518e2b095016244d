"""medkt refine (issue 17.2): training on segment's pseudo-labels, resume, segment --refiner, bad input.

Tiny everything: 2-D PNGs with a bright rectangle, pseudo-labels from ``medkt segment --config tiny``
(random models: the labels are poor, which is what the validation numbers are for), the ``tiny``
refine preset (BasicUNet widths 4-16 at 32 px, 2 epochs).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from PIL import Image

    import medkt
    root = tmp_path_factory.mktemp("refine")
    img, gt = root / "images", root / "gt"
    img.mkdir()
    gt.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        a = (rng.random((36, 44)) * 60).astype(np.uint8)
        m = np.zeros((36, 44), np.uint8)
        y, x = rng.integers(4, 16), rng.integers(4, 22)
        a[y:y + 12, x:x + 14] = 220
        m[y:y + 12, x:x + 14] = 255
        Image.fromarray(a).save(img / f"c{i}.png")
        Image.fromarray(m).save(gt / f"c{i}.png")
    medkt.segment(str(img), prompt="a square", config="tiny", output=root / "seg")
    return root


@pytest.fixture(scope="module")
def trained(data):
    import medkt
    return medkt.refine(data / "images", data / "seg", data / "model", config="tiny", val_gt=data / "gt",
                        progress=False)


@pytest.mark.slow  # builds the module's data: tiny segment + refine (~10-30 s on 2 shared cores)
def test_refine_writes_model_run_json_and_validation(trained, data):
    out = data / "model"
    assert {"model.safetensors", "refiner.json", "checkpoint.pt", "run.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.tmp*"))
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "refine" and run["status"] == "finished"
    assert run["config"]["network"]["name"] == "basicunet" and run["n_slices"] == 4
    assert [h["epoch"] for h in run["history"]] == [1, 2] and all(np.isfinite(h["loss"]) for h in run["history"])
    assert trained.cases == ["c0", "c1", "c2", "c3"] and not trained.failures
    mean = trained.validation["mean"]
    assert set(trained.validation) == {"c0", "c1", "c2", "c3", "mean"}
    assert 0 <= mean["pseudo_dsc"] <= 100 and 0 <= mean["refined_dsc"] <= 100
    meta = json.loads((out / "refiner.json").read_text())
    assert meta["format"] == "medkt-refiner" and meta["epochs_trained"] == 2


def test_segment_with_refiner_matches_validation(trained, data):
    """`medkt segment --refiner` writes the masks that refine's validation scored."""
    from medkt.cli.main import main
    assert main(["segment", str(data / "images"), "-o", str(data / "refined"), "--refiner", str(data / "model"),
                 "--gt", str(data / "gt")]) == 0
    run = json.loads((data / "refined" / "run.json").read_text())
    assert run["refiner"]["network"] == "basicunet" and len(run["refiner"]["sha256"]) == 64
    assert "refiner_s" in run["timings"] and "sam_s" not in run["timings"]
    dsc = {r["case_id"]: 100 * float(r["dsc"]) for r in run["cases"]}
    for cid, row in trained.validation.items():
        if cid != "mean":
            assert dsc[cid] == pytest.approx(row["refined_dsc"], abs=1e-6)
    from PIL import Image
    assert np.asarray(Image.open(data / "refined" / "c0" / "mask.png")).shape == (36, 44)
    prob = np.load(data / "refined" / "c0" / "saliency.npy")
    assert prob.shape == (36, 44) and 0 <= prob.min() and prob.max() <= 1


@pytest.mark.parametrize("keep", [[], ["train.ema=0.5", "train.ensemble=2"]], ids=["last", "ema-ensemble"])
def test_resume_gives_the_uninterrupted_weights(data, tmp_path, keep):
    from medkt.refinement.config import load_refine_config
    from medkt.refinement.train import load_training_data, train
    cfg = load_refine_config("tiny", ["train.epochs=3", *keep])
    samples, _, _ = load_training_data(data / "images", data / "seg", cfg)
    fulls, hist_full, info_full = train(samples, cfg, tmp_path / "a", progress=False)

    def stop(epoch, net, history):
        if epoch == 2:
            raise KeyboardInterrupt
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir(exist_ok=True)
    with pytest.raises(KeyboardInterrupt):
        train(samples, cfg, tmp_path / "b", progress=False, on_epoch=stop)
    assert (tmp_path / "b" / "checkpoint.pt").is_file()  # epoch 1 was checkpointed
    resumeds, hist, info = train(samples, cfg, tmp_path / "b", resume=True, progress=False)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert info == info_full and info["kept_epochs"] == ([3, 2] if keep else [3]) and len(resumeds) == len(fulls)
    for full, resumed in zip(fulls, resumeds):
        for (k, v), w in zip(full.state_dict().items(), resumed.state_dict().values()):
            assert np.array_equal(v.numpy(), w.numpy()), k
    assert [h["loss"] for h in hist] == [h["loss"] for h in hist_full]


def test_resume_refuses_other_settings(data, trained):
    import medkt
    from medkt.errors import ResumeMismatchError
    with pytest.raises(ResumeMismatchError, match="other settings"):
        medkt.refine(data / "images", data / "seg", data / "model", config="tiny", resume=True, progress=False,
                     overrides=["train.lr=0.01"])


def test_confidence_weights():
    from medkt.refinement.config import LabelConfig
    from medkt.refinement.data import confidence
    lab = np.array([[1, 1, 0, 0]])
    sal = np.array([[0.9, 0.1, 0.9, 0.1]])
    assert np.array_equal(confidence(lab, sal, LabelConfig()), np.ones((1, 4), np.float32))
    w = confidence(lab, sal, LabelConfig(confidence="saliency").validate())
    np.testing.assert_allclose(w, [[0.9, 0.1, 0.1, 0.9]], rtol=1e-6)
    w = confidence(lab, sal, LabelConfig(confidence="saliency", ignore_below=0.2, min_weight=0.5).validate())
    np.testing.assert_allclose(w, [[0.9, 0.0, 0.0, 0.9]], rtol=1e-6)


def test_boundary_band_and_its_weights():
    from medkt.refinement.config import LabelConfig
    from medkt.refinement.data import boundary_band, confidence
    m = np.zeros((9, 9), np.uint8)
    m[3:6, 2:7] = 1
    band = boundary_band(m, 1)
    # within one pixel (chessboard distance) of the border, inside or outside: dilation minus erosion
    ys, xs = np.mgrid[:9, :9]
    outside = (ys >= 2) & (ys <= 6) & (xs >= 1) & (xs <= 7) & (m == 0)
    inside = (m == 1) & ~((ys == 4) & (xs >= 3) & (xs <= 5))
    assert np.array_equal(band, outside | inside)
    assert not boundary_band(np.zeros((5, 5)), 2).any() and not boundary_band(np.ones((5, 5)), 2).any()
    edge = np.zeros((6, 6), np.uint8)
    edge[:, :3] = 1  # touches the image edge: only the inner border is a border
    assert np.array_equal(np.nonzero(boundary_band(edge, 1).any(axis=0))[0], [2, 3])
    w = confidence(m, None, LabelConfig(boundary_ignore=1).validate())
    assert np.array_equal(w == 0, band) and w.max() == 1
    sal = np.full(m.shape, 0.8)
    w = confidence(m, sal, LabelConfig(confidence="saliency", boundary_ignore=1).validate())
    assert np.all(w[band] == 0) and np.allclose(w[(m == 1) & ~band], 0.8) and np.allclose(w[(m == 0) & ~band], 0.2)


def test_tta_averages_flipped_views():
    import torch

    from medkt.refinement.model import predict_probabilities
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)  # not flip-symmetric: the views differ
    img = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    p0 = predict_probabilities(net, [img], 16)[0]
    pf = predict_probabilities(net, [img[:, ::-1].copy()], 16)[0][:, ::-1]
    np.testing.assert_allclose(predict_probabilities(net, [img], 16, tta="hflip")[0], (p0 + pf) / 2, atol=1e-6)
    assert not np.allclose(p0, pf, atol=1e-3)
    pv = predict_probabilities(net, [img[::-1].copy()], 16)[0][::-1]
    pb = predict_probabilities(net, [img[::-1, ::-1].copy()], 16)[0][::-1, ::-1]
    np.testing.assert_allclose(predict_probabilities(net, [img], 16, tta="hvflip")[0], (p0 + pf + pv + pb) / 4,
                               atol=1e-6)
    net2 = torch.nn.Conv2d(1, 1, 3, padding=1)
    q0 = predict_probabilities(net2, [img], 16)[0]
    np.testing.assert_allclose(predict_probabilities([net, net2], [img], 16)[0], (p0 + q0) / 2, atol=1e-6)


@pytest.mark.slow  # tiny refine + segment (~5-10 s on 2 shared cores)
def test_ensemble_with_ema_and_tta_round_trip(data, tmp_path):
    """train.ensemble keeps the last epochs' weights; the refiner averages them (and the TTA views)
    and `medkt segment --refiner` writes the masks that validation scored."""
    import medkt
    from medkt.refinement import Refiner
    from medkt.refinement.model import predict_probabilities
    res = medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", progress=False, epochs=3,
                       val_gt=data / "gt", overrides=["train.ensemble=2", "train.ema=0.5", "predict.tta=hflip",
                                                      "labels.boundary_ignore=1"])
    meta = json.loads((tmp_path / "m" / "refiner.json").read_text())
    assert meta["members"] == ["model.safetensors", "model-epoch002.safetensors"] and meta["kept_epochs"] == [3, 2]
    assert res.record["kept_epochs"] == [3, 2] and res.record["selected_by"] == "last"
    ref = Refiner.load(tmp_path / "m")
    assert len(ref.nets) == 2 and ref.describe()["members"] == 2 and ref.describe()["tta"] == "hflip"
    img = np.asarray(__import__("PIL.Image").Image.open(data / "images" / "c0.png"), np.float32) / 255
    each = [predict_probabilities(n, [img], 32, tta="hflip")[0] for n in ref.nets]
    np.testing.assert_allclose(ref.probabilities([img])[0], np.mean(each, axis=0), atol=1e-6)
    out = medkt.segment(str(data / "images"), refiner=tmp_path / "m", output=tmp_path / "seg", gt=data / "gt")
    run = json.loads((tmp_path / "seg" / "run.json").read_text())
    dsc = {r["case_id"]: 100 * float(r["dsc"]) for r in run["cases"]}
    for cid, row in res.validation.items():
        if cid != "mean":
            assert dsc[cid] == pytest.approx(row["refined_dsc"], abs=1e-6)
    assert out is not None
    # retraining into the same folder without the ensemble removes the stale member file
    medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", progress=False, epochs=1,
                 overwrite=True)
    assert not list((tmp_path / "m").glob("model-epoch*")) and len(Refiner.load(tmp_path / "m").nets) == 1


@pytest.mark.slow  # tiny refine with validation at every epoch (~5-10 s on 2 shared cores)
def test_select_by_validation_on_a_held_out_split(data, tmp_path):
    import shutil

    import medkt
    vimg, vgt = tmp_path / "val_images", tmp_path / "val_gt"
    vimg.mkdir()
    vgt.mkdir()
    for i in (1, 3):  # held-out cases under new ids: not in the training set
        shutil.copy(data / "images" / f"c{i}.png", vimg / f"v{i}.png")
        shutil.copy(data / "gt" / f"c{i}.png", vgt / f"v{i}.png")
    res = medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", progress=False, epochs=4,
                       val_gt=vgt, val_images=vimg, overrides=["train.select=val", "train.lr=0.02"])
    assert set(res.validation) == {"v1", "v3", "mean"} and res.record["val_cases"] == ["v1", "v3"]
    assert np.isnan(res.validation["mean"]["pseudo_dsc"])  # held-out cases have no pseudo-label
    vals = [h["val_dsc"] for h in res.history]
    best = int(np.argmax(vals)) + 1  # first epoch with the best validation DSC
    assert res.record["kept_epochs"] == [best] and res.record["selected_by"] == "val"
    assert res.validation["mean"]["refined_dsc"] == pytest.approx(vals[best - 1], abs=1e-9)
    assert res.record["selected_val_dsc"] == pytest.approx(vals[best - 1], abs=1e-9)


def test_bce_loss_is_the_weighted_cross_entropy():
    import torch
    import torch.nn.functional as F

    from medkt.refinement.train import make_loss
    g = torch.Generator().manual_seed(0)
    logits, label = torch.randn(2, 1, 8, 8, generator=g), (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    weight = torch.rand(2, 1, 8, 8, generator=g)
    want = F.binary_cross_entropy_with_logits(logits, label, weight=weight, reduction="sum") / weight.sum()
    assert float(make_loss("bce")(logits, label, weight)) == pytest.approx(float(want), rel=1e-6)
    assert float(make_loss("bce+dice")(logits, label, weight)) > float(want)  # plus a Dice term in (0, 1]


@pytest.mark.slow  # tiny refine + segment (~5-10 s on 2 shared cores)
def test_threshold_calibrated_on_validation(data, tmp_path):
    import medkt
    from medkt.refinement import Refiner
    from medkt.refinement.validation import THRESHOLDS
    res = medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", progress=False, epochs=2,
                       val_gt=data / "gt", overrides=["predict.calibrate=val", "train.loss=bce"])
    thr, curve = res.record["calibrated_threshold"], res.record["threshold_curve"]
    assert thr in THRESHOLDS and set(curve) == set(THRESHOLDS) and curve[thr] == max(curve.values())
    assert res.validation["mean"]["refined_dsc"] == pytest.approx(curve[thr], abs=1e-9)
    assert Refiner.load(tmp_path / "m").config.labels.threshold == thr
    medkt.segment(str(data / "images"), refiner=tmp_path / "m", output=tmp_path / "seg", gt=data / "gt")
    run = json.loads((tmp_path / "seg" / "run.json").read_text())
    assert np.mean([100 * float(r["dsc"]) for r in run["cases"]]) == pytest.approx(curve[thr], abs=1e-6)


def test_saliency_confidence_trains(data, tmp_path):
    import medkt
    res = medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", progress=False, epochs=1,
                       overrides=["labels.confidence=saliency", "labels.ignore_below=0.3",
                                  "network.name=dynunet"])
    assert res.history[0]["epoch"] == 1 and np.isfinite(res.history[0]["loss"])
    assert res.refiner().config.network.name == "dynunet"


def test_bad_case_is_recorded_and_training_goes_on(data, tmp_path):
    import shutil

    from PIL import Image

    import medkt
    seg = tmp_path / "seg"
    shutil.copytree(data / "seg", seg)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(seg / "c1" / "mask.png")  # wrong size
    shutil.rmtree(seg / "c2")  # no pseudo-label
    res = medkt.refine(data / "images", seg, tmp_path / "m", config="tiny", progress=False, epochs=1)
    reasons = {f["case_id"]: f["reason"] for f in res.failures}
    assert set(reasons) == {"c1", "c2"} and "shape" in reasons["c1"] and "no pseudo-label" in reasons["c2"]
    assert res.cases == ["c0", "c3"]
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert {f["case_id"] for f in run["failures"]} == {"c1", "c2"}


def test_typed_errors(data, tmp_path):
    import medkt
    from medkt.errors import ConfigError, InputError, UnknownNameError, WeightsError
    from medkt.refinement import Refiner
    with pytest.raises(InputError, match="pseudo-label folder does not exist"):
        medkt.refine(data / "images", tmp_path / "nope", tmp_path / "m", config="tiny")
    with pytest.raises(ConfigError, match="ignore_below needs"):
        medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", overrides=["labels.ignore_below=0.2"])
    with pytest.raises(UnknownNameError, match="unet"):
        medkt.refine(data / "images", data / "seg", tmp_path / "m", overrides=["network.name=unet"])
    for opt in ("train.select=val", "predict.calibrate=val"):
        with pytest.raises(ConfigError, match="need ground truth"):
            medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", overrides=[opt])
    with pytest.raises(UnknownNameError, match="bce"):
        medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", overrides=["train.loss=dice"])
    with pytest.raises(ConfigError, match="cannot be combined"):
        medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", val_gt=data / "gt",
                     overrides=["train.select=val", "train.ensemble=2"])
    with pytest.raises(ConfigError, match="train.ensemble must be between 1"):
        medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", overrides=["train.ensemble=3"])
    with pytest.raises(ConfigError, match="train.ema"):
        medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", overrides=["train.ema=1"])
    with pytest.raises(UnknownNameError, match="hflip"):
        medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", overrides=["predict.tta=flip"])
    with pytest.raises(ConfigError, match="boundary_ignore"):
        medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny",
                     overrides=["labels.boundary_ignore=-1"])
    with pytest.raises(InputError, match="--val-images needs --val-gt"):
        medkt.refine(data / "images", data / "seg", tmp_path / "m", config="tiny", val_images=data / "images")
    with pytest.raises(InputError, match="nothing to do"):
        medkt.refine(data / "images", data / "seg")
    with pytest.raises(WeightsError, match="no trained refiner"):
        Refiner.load(tmp_path)
    with pytest.raises(ConfigError, match="replaces the zero-shot"):
        medkt.segment(str(data / "images"), refiner=data / "model", diagnostics=True)


def test_cli_refine(data, tmp_path, capsys):
    from medkt.cli.main import main
    assert main(["refine", str(data / "images"), str(data / "seg"), "-o", str(tmp_path / "m"), "--config", "tiny",
                 "--epochs", "1", "--no-progress", "--val-gt", str(data / "gt")]) == 0
    out = capsys.readouterr().out
    assert "trained on 4 case(s), 4 slice(s), 1 epoch(s)" in out and "validation DSC: pseudo-labels" in out
    assert main(["refine", str(data / "images"), str(data / "seg"), "-o", str(tmp_path / "m"), "--config",
                 "tiny"]) == 2  # exists: needs --resume or --overwrite


def test_volume_round_trip(tmp_path):
    """3-D: pseudo-labels + saliency as NIfTI, display slices for training, refined mask on the source grid."""
    import nibabel as nib

    import medkt
    vols, gt = tmp_path / "vols", tmp_path / "gt"
    vols.mkdir()
    gt.mkdir()
    aff = np.array([[-0.8, 0, 0, 5], [0, 0.8, 0, -3], [0, 0, 2.0, 1], [0, 0, 0, 1]])
    rng = np.random.default_rng(5)
    v = rng.normal(0, 20, (24, 20, 4)).astype(np.float32)
    v[6:14, 5:12, 1:3] += 200
    m = np.zeros(v.shape, np.uint8)
    m[6:14, 5:12, 1:3] = 1
    nib.save(nib.Nifti1Image(v, aff), vols / "vol.nii.gz")
    nib.save(nib.Nifti1Image(m, aff), gt / "vol.nii.gz")
    medkt.segment(str(vols), prompt="a bright block", config="tiny", output=tmp_path / "seg")
    assert (tmp_path / "seg" / "vol" / "saliency.nii.gz").is_file()
    res = medkt.refine(vols, tmp_path / "seg", tmp_path / "m", config="tiny", epochs=1, progress=False,
                       val_gt=gt, overrides=["labels.confidence=saliency"])
    assert res.n_slices == 4 and set(res.validation) == {"vol", "mean"}
    out = medkt.segment(str(vols), refiner=tmp_path / "m", output=tmp_path / "ref", keep_arrays=True)
    img = nib.load(tmp_path / "ref" / "vol" / "mask.nii.gz")
    assert img.shape == (24, 20, 4)
    np.testing.assert_allclose(img.affine, aff, atol=1e-5)
    from medkt.metrics.segmentation import compute_dice
    assert 100 * compute_dice(out.cases[0].mask > 0, m > 0) == pytest.approx(res.validation["vol"]["refined_dsc"])
