"""Classification dataset adapters: RareConcepts, ImageNet-1k val, ImageNet-100, CheXpert-5x200c, JSRT."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medkt.bench.datasets import (BenchItem, DatasetAdapter, list_images, natural_key, read_image_file,
                                  register_dataset, safe_id, stem)
from medkt.errors import InputError


def _folder_classes(root: Path) -> list[Path]:
    return sorted([d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")],
                  key=lambda d: natural_key(d.name))


def scan_image_folder(adapter: DatasetAdapter, root: Path, names: dict[str, str] | None = None,
                      min_classes: int = 1) -> tuple[list[BenchItem], list[str]]:
    """``root/<class>/<image>`` → cases labelled by folder (``names`` maps folder → class name)."""
    cases, classes = [], []
    folders = _folder_classes(root)
    for d in folders:
        files = list_images(d)
        if not files:
            continue
        label = (names or {}).get(d.name, d.name.replace("_", " "))
        classes.append(label)
        cases += [BenchItem(case_id=safe_id(f"{d.name}/{stem(f)}"), image=str(f), label=label) for f in files]
    if len(classes) < min_classes:
        found = ", ".join(d.name for d in folders[:8]) or "no sub-folders"
        raise adapter.layout_error(root, f"expected at least {min_classes} class folder(s) holding "
                                         f"images; found: {found}.")
    return cases, classes


# ---------------------------------------------------------------------- RareConcepts
@register_dataset
class RareConcepts(DatasetAdapter):
    name = "rare_concepts"
    task = "classification"
    title = "RareConcepts (Moongate, Gyroscope, Tonometer; 10 web images each), paper §4.1"
    layout = """
<root>/
  Moongate/   *.jpg | *.png     one folder per concept; the folder name is the class name
  Gyroscope/  ...
  Tonometer/  ...
"""
    default_options: dict = {}

    def scan(self, root, options):
        return scan_image_folder(self, root)


# ---------------------------------------------------------------------- ImageNet
def imagenet_names() -> dict[str, str]:
    """wnid → class name: timm's synset order (the standard class index) with open_clip's
    cleaned OpenAI class names (both ship with the installed packages, no download)."""
    import importlib.resources as res
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    text = res.files("timm").joinpath("data/_info/imagenet_synsets.txt").read_text()
    wnids = [w.strip() for w in text.splitlines() if w.strip()]
    return dict(zip(wnids, IMAGENET_CLASSNAMES))


def _read_synset_mapping(path: Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt`` lines ``n01440764 tench, Tinca tinca`` → first name."""
    out = {}
    for line in path.read_text().splitlines():
        parts = line.strip().split(" ", 1)
        if len(parts) == 2:
            out[parts[0]] = parts[1].split(",")[0].strip()
    return out


class _ImageNetBase(DatasetAdapter):
    task = "classification"
    default_options = {"label_set": "imagenet1k", "split": "val"}

    def _names(self, root: Path) -> dict[str, str]:
        mapping = imagenet_names()
        for cand in (root / "classnames.txt",):
            if cand.exists():  # one "wnid name" per line overrides the shipped names
                mapping.update(_read_synset_mapping(cand))
        return mapping

    def scan(self, root, options):
        split = options["split"]
        base = root / split if (root / split).is_dir() else root
        names = self._names(root)
        flat = list_images(base)
        solution = root / "LOC_val_solution.csv"
        if flat and solution.exists():
            cases = self._scan_flat(root, flat, solution, names)
        else:
            wnid_dirs = [d for d in _folder_classes(base) if d.name.startswith("n") and d.name[1:].isdigit()]
            if not wnid_dirs:
                raise self.layout_error(root, f"no WordNet-id class folders (n01440764/ ...) under {base}.")
            unknown = [d.name for d in wnid_dirs if d.name not in names]
            if unknown:
                raise self.layout_error(root, f"unknown WordNet ids: {', '.join(unknown[:5])}.")
            cases = []
            for d in wnid_dirs:
                cases += [BenchItem(case_id=safe_id(f"{d.name}/{stem(f)}"), image=str(f), label=names[d.name],
                               meta={"wnid": d.name}) for f in list_images(d)]
        present = sorted({c.meta["wnid"] for c in cases})
        if options["label_set"] == "folders" or self.name == "imagenet100":
            classes = [names[w] for w in present]
        else:
            classes = list(names.values())
        return cases, classes

    def _scan_flat(self, root, files, solution, names):
        labels = {}
        with open(solution, newline="") as fh:
            for row in csv.DictReader(fh):
                labels[row["ImageId"]] = row["PredictionString"].split()[0]
        cases = []
        for f in files:
            wnid = labels.get(stem(f))
            if wnid is None:
                raise self.layout_error(root, f"{f.name} is not listed in LOC_val_solution.csv.")
            cases.append(BenchItem(case_id=safe_id(f"{wnid}/{stem(f)}"), image=str(f), label=names[wnid],
                              meta={"wnid": wnid}))
        return sorted(cases, key=lambda c: natural_key(c.case_id))


@register_dataset
class ImageNet1k(_ImageNetBase):
    name = "imagenet1k"
    title = "ImageNet-1k validation set (50,000 images, 1,000 classes)"
    layout = """
<root>/
  val/                         the validation images sorted into class folders (valprep.sh)
    n01440764/ ILSVRC2012_val_00000293.JPEG ...
    ...                        1,000 WordNet-id folders
  classnames.txt               optional: "n01440764 tench" lines overriding the class names
or the flat Kaggle layout:
<root>/
  val/ ILSVRC2012_val_*.JPEG
  LOC_val_solution.csv         ImageId,PredictionString
Zero-shot labels: all 1,000 classes (options.label_set=folders: only the folders present).
"""


@register_dataset
class ImageNet100(_ImageNetBase):
    name = "imagenet100"
    title = "ImageNet-100 (100-class ImageNet subset of Tian et al., CMC), validation images"
    layout = """
<root>/
  val/
    n01558993/ *.JPEG          one folder per WordNet id of the subset (100 folders)
    ...
  classnames.txt               optional: "n01558993 robin" lines overriding the class names
Zero-shot labels: the classes whose folders are present.
"""


# ---------------------------------------------------------------------- CheXpert-5x200c
CHEXPERT5 = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]


@register_dataset
class CheXpert5x200c(DatasetAdapter):
    name = "chexpert5x200c"
    task = "classification"
    title = "CheXpert-5x200c (200 chest X-rays for each of 5 findings; MedCLIP's split)"
    layout = """
<root>/
  chexpert-5x200-val-meta.csv  any *5x200*.csv: a path column (Path | imgpath | path | image) and
                               either one-hot columns Atelectasis, Cardiomegaly, Consolidation,
                               Edema, Pleural Effusion, or a 'label' column
  CheXpert-v1.0-small/...      images at the CSV paths, relative to <root>
or one folder per class:
<root>/
  Atelectasis/ *.jpg   Cardiomegaly/   Consolidation/   Edema/   Pleural Effusion/
"""
    default_options: dict = {}

    def scan(self, root, options):
        tables = sorted(root.glob("*5x200*.csv"))
        if not tables:
            return scan_image_folder(self, root, min_classes=2)
        table = tables[0]
        cases = []
        with open(table, newline="") as fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            path_col = next((c for c in ("Path", "imgpath", "path", "image") if c in cols), None)
            if path_col is None:
                raise self.layout_error(root, f"{table.name} has no path column (columns: {', '.join(cols)}).")
            onehot = [c for c in CHEXPERT5 if c in cols]
            if "label" not in cols and len(onehot) != len(CHEXPERT5):
                raise self.layout_error(root, f"{table.name} lacks the class columns {CHEXPERT5}.")
            for i, row in enumerate(reader):
                if "label" in cols and row.get("label"):
                    label = row["label"]
                else:
                    hits = [c for c in CHEXPERT5 if str(row[c]).strip() in ("1", "1.0")]
                    if len(hits) != 1:
                        raise self.layout_error(root, f"{table.name} row {i + 2} has {len(hits)} positive "
                                                      "classes; exactly one expected.")
                    label = hits[0]
                p = (root / row[path_col]) if not Path(row[path_col]).is_absolute() else Path(row[path_col])
                if not p.exists():
                    raise self.layout_error(root, f"image {row[path_col]} listed in {table.name} is missing.")
                cases.append(BenchItem(case_id=safe_id(f"{i:05d}_{stem(p)}"), image=str(p), label=label))
        classes = [c for c in CHEXPERT5 if any(x.label == c for x in cases)]
        return cases, classes


# ---------------------------------------------------------------------- JSRT
JSRT_NAMES = {"malignant": "Lung Cancer", "benign": "Benign Nodule", "normal": "No Nodule"}


@register_dataset
class JSRT(DatasetAdapter):
    name = "jsrt"
    task = "classification"
    title = "JSRT (154 chest radiographs with a lung nodule: malignant or benign; 93 without)"
    layout = """
<root>/
  CLNDAT_EN.txt            the JSRT clinical-data list: one line per nodule image, naming the
                           file (JPCLN001.IMG) and 'malignant' or 'benign'
  JPCLN001.IMG ...         2048x2048 12-bit big-endian raw images (or .png with the same stem)
  JPCNN001.IMG ...         non-nodule images (only with options.include_normal=true)
or one folder per class:
<root>/
  malignant/ *.png   benign/ *.png   [normal/ *.png]
Classes: malignant -> "Lung Cancer", benign -> "Benign Nodule" (options.class_names).
"""
    default_options = {"include_normal": False, "class_names": JSRT_NAMES, "invert_raw": True}

    def scan(self, root, options):
        names = {**JSRT_NAMES, **options["class_names"]}
        listing = root / "CLNDAT_EN.txt"
        if not listing.exists():
            folders = {d.name for d in _folder_classes(root)}
            if not folders & {"malignant", "benign"}:
                raise self.layout_error(root, "neither CLNDAT_EN.txt nor malignant/ and benign/ folders found.")
            cases, classes = scan_image_folder(self, root, names)
            if not options["include_normal"]:
                cases = [c for c in cases if c.label != names["normal"]]
                classes = [c for c in classes if c != names["normal"]]
            return cases, classes
        cases = []
        for line in listing.read_text(errors="replace").splitlines():
            toks = line.replace("\t", " ").split()
            if not toks or not toks[0].upper().startswith("JPC"):
                continue
            kind = next((k for k in ("malignant", "benign") if k in line.lower()), None)
            if kind is None:
                continue
            cases.append(self._case(root, toks[0], names[kind]))
        if options["include_normal"]:
            for f in sorted(root.glob("JPCNN*")):
                if f.suffix.upper() in (".IMG", ".PNG"):
                    cases.append(self._case(root, f.name, names["normal"]))
        classes = [names[k] for k in ("malignant", "benign", "normal") if any(c.label == names[k] for c in cases)]
        return sorted(cases, key=lambda c: natural_key(c.case_id)), classes

    def _case(self, root: Path, filename: str, label: str) -> BenchItem:
        base = stem(Path(filename))
        for cand in (root / filename, root / f"{base}.IMG", root / f"{base}.png", root / f"{base}.PNG"):
            if cand.exists():
                return BenchItem(case_id=safe_id(base), image=str(cand), label=label)
        raise self.layout_error(root, f"{filename} is listed in CLNDAT_EN.txt but missing.")

    def read_image(self, case, options):
        if not case.image.upper().endswith(".IMG"):
            return read_image_file(case.image)
        raw = np.fromfile(case.image, dtype=">u2")
        side = int(round(np.sqrt(raw.size)))
        if side * side != raw.size:
            raise InputError(f"JSRT raw image has {raw.size} pixels; expected a square (2048x2048).",
                             path=case.image)
        arr = raw.reshape(side, side).astype(np.float32) / 4095.0
        arr = np.clip(arr, 0, 1)
        return 1.0 - arr if options["invert_raw"] else arr
