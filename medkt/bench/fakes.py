"""Tiny synthetic datasets in each adapter's documented layout (tests, demos, docs).

``make_fake(name, root, n=4, seed=0)`` writes a few small images (and masks, captions,
CSV / JSON / NIfTI side files) exactly as :mod:`medkt.bench.datasets` expects them, so
every experiment config can run end to end without the real data::

    from medkt.bench.fakes import make_fake
    make_fake("busi", "/tmp/data/BUSI", n=3)
    # medkt bench table4_segmentation --data-root /tmp/data ...

The pixels are random textures with a brighter blob where the mask is; they carry no
medical meaning.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from medkt.errors import look_up


def _rng(seed: int, *key) -> np.random.Generator:
    return np.random.default_rng([seed, *[zlib.crc32(str(k).encode()) for k in key]])


def _blob(h: int, w: int, rng) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.12, 0.25) * h, rng.uniform(0.12, 0.25) * w
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _image(h: int, w: int, rng, mask=None, rgb: bool = True, tint=None) -> np.ndarray:
    base = rng.uniform(0.1, 0.5, size=(h, w)).astype(np.float32)
    if mask is not None:
        base[mask] += 0.45
    base = np.clip(base, 0, 1)
    if not rgb:
        return (base * 255).astype(np.uint8)
    tint = np.asarray(tint if tint is not None else [1.0, 1.0, 1.0], dtype=np.float32)
    return (np.clip(base[..., None] * tint, 0, 1) * 255).astype(np.uint8)


def _save(path: Path, arr: np.ndarray) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _save_nifti(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> None:
    import nibabel as nib
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.diag([*spacing, 1.0])), str(path))


def _class_folders(root: Path, classes: list[str], n: int, seed: int, suffix: str = ".png", size=(40, 48)):
    for k, cls in enumerate(classes):
        tint = [0.6 + 0.4 * ((k >> b) & 1) for b in range(3)]
        for i in range(n):
            _save(root / cls / f"img{i}{suffix}", _image(*size, _rng(seed, cls, i), tint=tint))


def fake_rare_concepts(root: Path, n: int, seed: int):
    _class_folders(root, ["Moongate", "Gyroscope", "Tonometer"], n, seed, ".jpg")


def _wnids(count: int, offset: int = 0) -> list[str]:
    from medkt.bench.adapters_classification import imagenet_names
    return list(imagenet_names())[offset:offset + count]


def fake_imagenet1k(root: Path, n: int, seed: int, classes: int = 4):
    _class_folders(root / "val", _wnids(classes), n, seed, ".JPEG")


def fake_imagenet100(root: Path, n: int, seed: int, classes: int = 4):
    _class_folders(root / "val", _wnids(classes, offset=100), n, seed, ".JPEG")


def fake_chexpert5x200c(root: Path, n: int, seed: int):
    from medkt.bench.adapters_classification import CHEXPERT5
    lines = ["Path," + ",".join(CHEXPERT5)]
    for k, cls in enumerate(CHEXPERT5):
        for i in range(n):
            rel = f"CheXpert-v1.0-small/valid/patient{k:02d}{i:03d}/study1/view1_frontal.jpg"
            _save(root / rel, _image(48, 40, _rng(seed, cls, i), rgb=False))
            lines.append(rel + "," + ",".join("1" if c == cls else "0" for c in CHEXPERT5))
    (root / "chexpert-5x200-val-meta.csv").write_text("\n".join(lines) + "\n")


def fake_jsrt(root: Path, n: int, seed: int, side: int = 64):
    root.mkdir(parents=True, exist_ok=True)
    lines = ["[File name]\t[Degree of Subtlety]\t[Nodule size]\t[Age]\t[Sex]\t[X]\t[Y]\t[Malignant or Benign]"]
    for i in range(2 * n):
        name = f"JPCLN{i + 1:03d}.IMG"
        kind = "malignant" if i % 2 == 0 else "benign"
        raw = (_rng(seed, name).uniform(0, 4095, size=(side, side))).astype(">u2")
        raw.tofile(root / name)
        lines.append(f"{name}\t3\t15\t60\tmale\t1000\t1000\t{kind}\tleft upper lobe\tadenocarcinoma")
    (root / "CLNDAT_EN.txt").write_text("\n".join(lines) + "\n")


def _pairs_2d(img_dir: Path, mask_dir: Path, n: int, seed: int, rgb=False, size=(44, 52), mask_suffix=""):
    for i in range(n):
        rng = _rng(seed, img_dir.name, i)
        m = _blob(*size, rng)
        _save(img_dir / f"{i + 1:06d}.png", _image(*size, rng, m, rgb=rgb))
        _save(mask_dir / f"{i + 1:06d}{mask_suffix}.png", (m * 255).astype(np.uint8))


def fake_udiat(root: Path, n: int, seed: int):
    _pairs_2d(root / "original", root / "GT", n, seed)


def fake_busi(root: Path, n: int, seed: int):
    for cls in ("benign", "malignant", "normal"):
        for i in range(n):
            rng = _rng(seed, cls, i)
            m = _blob(44, 52, rng) if cls != "normal" else np.zeros((44, 52), bool)
            _save(root / cls / f"{cls} ({i + 1}).png", _image(44, 52, rng, m, rgb=True))
            _save(root / cls / f"{cls} ({i + 1})_mask.png", (m * 255).astype(np.uint8))
            if cls == "benign" and i == 0:  # a second lesion mask, merged by the adapter
                _save(root / cls / f"{cls} ({i + 1})_mask_1.png", np.zeros((44, 52), np.uint8))


def fake_siim_pneumothorax(root: Path, n: int, seed: int):
    from medkt.bench.adapters_segmentation import rle_encode
    lines = ["ImageId, EncodedPixels"]
    for i in range(n + 1):
        rng = _rng(seed, "siim", i)
        m = _blob(48, 48, rng) if i < n else np.zeros((48, 48), bool)  # the last one is negative
        image_id = f"1.2.276.0.7230010.3.1.4.{i}"
        _save(root / "images" / f"{image_id}.png", _image(48, 48, rng, m, rgb=False))
        lines.append(f"{image_id}, {rle_encode(m)}")
    (root / "train-rle.csv").write_text("\n".join(lines) + "\n")


def _volume(shape, rng, hu: bool):
    lab = np.zeros(shape, np.uint8)
    img = rng.uniform(0, 1, size=shape).astype(np.float32)
    for z in range(1, shape[2] - 1):
        lab[..., z] = _blob(shape[0], shape[1], _rng(0, "slice", z)) * (1 + z % 3)
    img[lab > 0] += 1.0
    return (img * 800 - 900 if hu else img * 300).astype(np.int16), lab


def fake_unitochest(root: Path, n: int, seed: int, shape=(32, 28, 4)):
    for i in range(n):
        img, lab = _volume(shape, _rng(seed, "unito", i), hu=True)
        _save_nifti(root / "imagesTs" / f"unito_{i:03d}_0000.nii.gz", img)
        _save_nifti(root / "labelsTs" / f"unito_{i:03d}.nii.gz", lab)


def fake_brats23_glioma(root: Path, n: int, seed: int, shape=(32, 28, 4)):
    for i in range(n):
        subj = f"BraTS-GLI-{i:05d}-000"
        img, lab = _volume(shape, _rng(seed, "brats", i), hu=False)
        for mod in ("t1c", "t1n", "t2f", "t2w"):
            _save_nifti(root / subj / f"{subj}-{mod}.nii.gz", img)
        _save_nifti(root / subj / f"{subj}-seg.nii.gz", lab)


WORDS = ["a", "dog", "cat", "man", "woman", "red", "car", "on", "the", "street", "runs", "sits", "with", "ball"]


def _karpathy(root: Path, json_name: str, img_dir: str, n: int, seed: int, coco: bool):
    images = []
    for i in range(n + 1):
        rng = _rng(seed, json_name, i)
        fname = f"COCO_val2014_{i:012d}.jpg" if coco else f"{1000000 + i}.jpg"
        _save(root / img_dir / fname, _image(40, 48, rng, tint=[rng.uniform(0.5, 1) for _ in range(3)]))
        sents = [{"raw": " ".join(rng.choice(WORDS, size=6)) + "."} for _ in range(5)]
        item = {"filename": fname, "split": "test" if i < n else "train", "sentences": sents, "imgid": i}
        if coco:
            item.update(filepath=img_dir, cocoid=i)
        images.append(item)
    (root / json_name).write_text(json.dumps({"images": images, "dataset": "coco" if coco else "flickr30k"}))


def fake_flickr30k(root: Path, n: int, seed: int):
    _karpathy(root, "dataset_flickr30k.json", "flickr30k-images", n, seed, coco=False)


def fake_mscoco_karpathy(root: Path, n: int, seed: int):
    _karpathy(root, "dataset_coco.json", "val2014", n, seed, coco=True)


FAKES = {"rare_concepts": fake_rare_concepts, "imagenet1k": fake_imagenet1k, "imagenet100": fake_imagenet100,
         "chexpert5x200c": fake_chexpert5x200c, "jsrt": fake_jsrt, "unitochest": fake_unitochest,
         "udiat": fake_udiat, "busi": fake_busi, "siim_pneumothorax": fake_siim_pneumothorax,
         "brats23_glioma": fake_brats23_glioma, "flickr30k": fake_flickr30k,
         "mscoco_karpathy": fake_mscoco_karpathy}


def make_fake(name: str, root: str | Path, n: int = 4, seed: int = 0) -> Path:
    """Write a tiny fake copy of dataset ``name`` (``n`` items per class / split) under ``root``."""
    fn = look_up("fake dataset", name, FAKES)
    root = Path(root)
    fn(root, n, seed)
    return root


def make_fakes_for(cfg, data_root: str | Path, n: int = 3, seed: int = 0) -> Path:
    """Fake every dataset an experiment config names, at ``data_root/<spec.root>``."""
    data_root = Path(data_root)
    for spec in cfg.data.values():
        dest = data_root / spec.root
        if not dest.exists():
            make_fake(spec.adapter, dest, n=n, seed=seed)
    return data_root


TINY_TWINS = {"clip-vit-b32": "tiny-clip", "clip-vit-b16": "tiny-clip", "clip-vit-l14": "tiny-clip",
              "biomedclip": "tiny-clip", "medclip-vit": "tiny-medclip", "vilt-b32-mlm": "tiny-vilt",
              "vilt-b32-coco": "tiny-vilt", "coca-vit-l14": "tiny-coca", "coca-vit-l14-mscoco": "tiny-coca",
              "sam-vit-b": "tiny-sam", "sam-vit-l": "tiny-sam", "sam-vit-h": "tiny-sam", "medsam": "tiny-medsam"}


def quick_overrides(cfg, *, lrs=("1e-5",), concepts: int = 1) -> list[str]:
    """Overrides that run ``cfg`` in seconds: tiny twin models, 2 inversion steps and images,
    one learning rate, one template, few concepts, short M2IB/caption settings.  For smoke
    tests and demos on fake data; the numbers mean nothing."""
    ov = [f"model={TINY_TWINS.get(cfg.model, cfg.model)}", "transfer.inversion.steps=2",
          "transfer.inversion.images_per_concept=2", f"sweep.lrs=[{', '.join(lrs)}]", "sweep.batch_sizes=[]",
          "sweep.labels=[]"]
    for i, g in enumerate(cfg.groups):
        if not g.concepts or len(g.concepts) > concepts:
            from medkt.transfer import load_concepts
            names = g.concepts or load_concepts(cfg.concepts).names
            ov.append(f"groups.{i}.concepts=[{', '.join(repr(n) for n in names[:concepts])}]")
    if cfg.task == "classification":
        ov += ["classification.templates=[photo]"]
        ov += [f"data.{a}.options.label_set=folders" for a, s in cfg.data.items() if s.adapter == "imagenet1k"]
    if cfg.task == "segmentation":
        ov += [f"segmentation.sam={TINY_TWINS.get(cfg.segmentation.sam, cfg.segmentation.sam)}",
               "segmentation.config.m2ib={steps: 1, samples: 1}", "segmentation.overlays=3"]
    if cfg.task == "captioning":
        ov += ["captioning.method=greedy", "captioning.max_len=5", "captioning.metrics=[bleu, rouge_l, cider]",
               "captioning.tokenizer=python"]
    return ov
