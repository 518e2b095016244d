"""Image-caption dataset adapters: Flickr30k and MSCOCO, Karpathy splits (retrieval, captioning)."""
from __future__ import annotations

import json
from pathlib import Path

from medkt.bench.datasets import BenchItem, DatasetAdapter, register_dataset, safe_id, stem


class KarpathyAdapter(DatasetAdapter):
    """Karpathy's ``dataset_*.json`` (``images[].{filename, filepath?, split, sentences[].raw}``)."""

    task = "captions"
    json_name = ""
    image_dirs: tuple[str, ...] = ()
    default_options = {"split": "test", "captions_per_image": 5}

    def scan(self, root, options):
        path = root / self.json_name
        if not path.exists():
            raise self.layout_error(root, f"{self.json_name} not found.")
        try:
            data = json.loads(path.read_text())
            images = data["images"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise self.layout_error(root, f"{self.json_name} is not a Karpathy split file ({e}).") from None
        split = options["split"]
        per = options["captions_per_image"]
        cases = []
        for item in images:
            if item.get("split") != split:
                continue
            img = self._find(root, item)
            if img is None:
                raise self.layout_error(root, f"image {item.get('filename')} of the {split} split is missing.")
            caps = [s["raw"].strip() for s in item.get("sentences", [])]
            if per:
                caps = caps[: int(per)]
            if not caps:
                raise self.layout_error(root, f"image {item.get('filename')} has no sentences.")
            cases.append(BenchItem(case_id=safe_id(stem(Path(item["filename"]))), image=str(img), captions=caps,
                              meta={"imgid": item.get("imgid", item.get("cocoid"))}))
        if not cases:
            raise self.layout_error(root, f"no images with split '{split}' in {self.json_name}.")
        return cases, []

    def _find(self, root: Path, item: dict) -> Path | None:
        cands = []
        if item.get("filepath"):
            cands.append(root / item["filepath"] / item["filename"])
        cands += [root / d / item["filename"] for d in self.image_dirs]
        return next((c for c in cands if c.exists()), None)


@register_dataset
class Flickr30k(KarpathyAdapter):
    name = "flickr30k"
    title = "Flickr30k, Karpathy test split (1,000 images, 5,000 captions)"
    json_name = "dataset_flickr30k.json"
    image_dirs = ("flickr30k-images", "images")
    layout = """
<root>/
  dataset_flickr30k.json     Karpathy's split file: images[].{filename, split, sentences[].raw}
  flickr30k-images/          1000092795.jpg ...  (or images/)
options.split: test (default) | val | train; options.captions_per_image: 5
"""


@register_dataset
class MSCOCOKarpathy(KarpathyAdapter):
    name = "mscoco_karpathy"
    title = "MSCOCO, Karpathy test split (5,000 images, ~25,000 captions)"
    json_name = "dataset_coco.json"
    image_dirs = ("val2014", "train2014", "images")
    layout = """
<root>/
  dataset_coco.json          Karpathy's split file: images[].{filepath, filename, split, sentences[].raw}
  val2014/                   COCO_val2014_000000391895.jpg ...  (the file's filepath/filename)
  train2014/                 (restval images, only for other splits)
options.split: test (default) | val | restval | train; options.captions_per_image: 5
"""
