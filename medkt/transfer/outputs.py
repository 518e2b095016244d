"""Output folder layout of ``medkt invert`` / ``medkt transfer``, and its reader (all writes atomic).

An inversion folder (what ``medkt invert -o DIR`` writes, and ``<run>/inversion`` of a
transfer run)::

    <inv>/images/<concept-slug>/000.png ...          inverted images, pixels in [0, 1] → uint8
                                                      (no per-image min-max rescale)
    <inv>/images/<concept-slug>/images.safetensors   raw float tensors ("images" [n, C, H, W]
                                                      in [0, 1], or "tokens" [n, T, D] when relaxed)
    <inv>/.medkt/done/invert-<slug>.json             done-marker of a finished concept (resume)
    <inv>/run.json                                   (``medkt invert`` only)

A transfer run (``medkt transfer -o RUN``): ONE inversion shared by every concept and
learning rate, then one fine-tune from the original weights per (concept, lr) — the
paper's protocol, ``"protocol": "per-concept"`` — or one per lr for the whole set
(``--joint``, ``"protocol": "joint"``)::

    RUN/run.json                                      "protocol", "lrs", "concepts", "finetunes"
    RUN/inversion/...                                 the inversion folder above
    RUN/concepts/<slug>/lr_<tag>/<format>.safetensors per-concept weights (format: delta | lora | full)
    RUN/concepts/<slug>/lr_<tag>/finetune.json        written last = done-marker (lr, losses, steps)
    RUN/joint/lr_<tag>/<format>.safetensors           --joint: one model for the whole set
    RUN/joint/lr_<tag>/finetune.json

``<tag>`` is :func:`lr_tag` (``3e-04``, ``2.5e-05``); never parse it, the lr is in
``finetune.json``.  Read a run with :func:`list_finetuned` (the contract shared with
``medkt zeroshot`` and ``medkt segment --finetuned``) and pick one file with
:func:`find_finetuned`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from medkt.errors import ConfigError, InputError
from medkt.runs import atomic_path, atomic_write_json

PROTOCOLS = ("per-concept", "joint")
DONE = "finetune.json"


# ---------------------------------------------------------------------- inversion folders
def concept_dir(out_dir, slug: str) -> Path:
    return Path(out_dir) / "images" / slug


def marker_path(out_dir, stage: str, slug: str) -> Path:
    return Path(out_dir) / ".medkt" / "done" / f"{stage}-{slug}.json"


def save_png(path, image01: torch.Tensor) -> None:
    """Write ``[C, H, W]`` in [0, 1] (C = 1 or 3) as an 8-bit PNG, atomically."""
    from PIL import Image
    arr = (image01.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def save_concept(out_dir, slug: str, tensor: torch.Tensor, *, captions: list[str], layer: int | None,
                 info: dict, fingerprint: str, write_png: bool = True) -> None:
    """Write one concept's images (PNG + safetensors), then its done-marker (last)."""
    from safetensors.torch import save_file
    d = concept_dir(out_dir, slug)
    key = "images" if layer is None else "tokens"
    if write_png and layer is None:
        for k, img in enumerate(tensor):
            save_png(d / f"{k:03d}.png", img)
    with atomic_path(d / "images.safetensors") as tmp:
        save_file({key: tensor.detach().float().cpu().contiguous()}, str(tmp),
                  metadata={"captions": json.dumps(captions), "layer": "" if layer is None else str(layer)})
    atomic_write_json(marker_path(out_dir, "invert", slug),
                      {"concept": slug, "fingerprint": fingerprint, "layer": layer, **info})


def load_concept(out_dir, slug: str, fingerprint: str) -> tuple[torch.Tensor, dict] | None:
    """A finished concept's tensor and marker info, or ``None`` if it is not done."""
    from safetensors.torch import load_file
    marker = marker_path(out_dir, "invert", slug)
    if not marker.exists():
        return None
    info = json.loads(marker.read_text())
    if info.get("fingerprint") != fingerprint:
        raise ConfigError(f"cannot resume: concept '{slug}' in {out_dir} was inverted with different "
                          "settings (config, seed or model).", path=str(marker),
                          hint="rerun with the original settings, or pass --overwrite to start over")
    tensors = load_file(str(concept_dir(out_dir, slug) / "images.safetensors"))
    return tensors["images" if info.get("layer") is None else "tokens"], info


# ---------------------------------------------------------------------- transfer runs
def lr_tag(lr: float) -> str:
    """Folder tag of a learning rate: ``3e-04``, ``2.5e-05``, ``1e-03`` (exact, sortable by eye)."""
    mant, exp = f"{float(lr):.6e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp):+03d}"


def inversion_dir(run_dir) -> Path:
    """The shared inversion folder of a transfer run."""
    return Path(run_dir) / "inversion"


def finetune_dir(run_dir, lr: float, slug: str | None) -> Path:
    """Folder of one fine-tune: ``concepts/<slug>/lr_<tag>`` (per-concept) or ``joint/lr_<tag>`` (``slug=None``)."""
    base = Path(run_dir) / ("joint" if slug is None else Path("concepts") / slug)
    return base / f"lr_{lr_tag(lr)}"


class Finetuned(NamedTuple):
    """One fine-tuned weights file of a transfer run, for one concept.

    ``concept``: the concept's name (as in the concept set, e.g. ``"Moongate"``); ``lr``:
    the fine-tuning learning rate; ``path``: the ``.safetensors`` file (delta, lora or full;
    apply with :func:`medkt.transfer.load_finetuned`).  In a joint run every concept has a
    row and all rows of one lr share the same ``path``.
    """

    concept: str
    lr: float
    path: Path


def read_run(run_dir) -> dict:
    """``run.json`` of a transfer run (``{}`` if it is not written yet)."""
    p = Path(run_dir) / "run.json"
    return json.loads(p.read_text()) if p.exists() else {}


def run_protocol(run_dir) -> str:
    """``"per-concept"`` or ``"joint"`` (from run.json, else from the folders)."""
    proto = read_run(run_dir).get("protocol")
    if proto in PROTOCOLS:
        return proto
    return "joint" if (Path(run_dir) / "joint").is_dir() else "per-concept"


def _legacy(run_dir: Path) -> list[Finetuned]:
    """Runs written before the per-concept layout: ``weights/finetuned-<fmt>.safetensors``."""
    from medkt.transfer.state import read_meta
    rows = []
    for f in sorted((run_dir / "weights").glob("finetuned-*.safetensors")):
        meta = read_meta(f)
        cfg = json.loads(meta.get("config", "{}"))
        for c in json.loads(meta.get("concepts", "[]")):
            rows.append(Finetuned(c, float(cfg.get("lr", "nan")), f))
    return rows


def list_finetuned(run_dir) -> list[Finetuned]:
    """Every finished fine-tune of a transfer run: ``[Finetuned(concept, lr, path), ...]``.

    Sorted by the run's concept order, then by lr.  Only fine-tunes whose
    ``finetune.json`` exists (written last) are listed, so an interrupted run lists what
    is done.  Raises :class:`~medkt.errors.InputError` if ``run_dir`` holds none.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("transfer run folder not found.", path=str(run_dir),
                         hint="pass the --out folder of `medkt transfer`")
    rows: list[Finetuned] = []
    for done in sorted(run_dir.glob(f"concepts/*/lr_*/{DONE}")) + sorted(run_dir.glob(f"joint/lr_*/{DONE}")):
        info = json.loads(done.read_text())
        path = done.parent / info["weights"]
        rows += [Finetuned(c, float(info["lr"]), path) for c in info["concepts"]]
    rows = rows or _legacy(run_dir)
    if not rows:
        raise InputError("no fine-tuned weights in this folder.", path=str(run_dir),
                         hint="pass the --out folder of a finished `medkt transfer` run "
                              "(it holds concepts/<concept>/lr_<lr>/ or joint/lr_<lr>/)")
    order = {c: i for i, c in enumerate(read_run(run_dir).get("concepts", []))}
    return sorted(rows, key=lambda r: (order.get(r.concept, len(order)), r.concept, r.lr))


def find_finetuned(run_dir, concept: str | None = None, lr: float | None = None) -> Path:
    """The one weights file of ``run_dir`` for ``concept`` (name or slug, any case) and ``lr``.

    Either may be omitted when the run holds only one choice; otherwise the error lists
    the choices.
    """
    from medkt.transfer.concepts import slugify
    rows = list_finetuned(run_dir)
    if concept is not None:
        key = slugify(concept)
        rows_c = [r for r in rows if slugify(r.concept) == key]
        if not rows_c:
            raise InputError(f"no fine-tune of concept '{concept}' in this run.", path=str(run_dir),
                             hint="choose one of: " + ", ".join(dict.fromkeys(r.concept for r in rows)))
        rows = rows_c
    if lr is not None:
        rows_l = [r for r in rows if np.isclose(r.lr, float(lr), rtol=1e-6, atol=0.0)]
        if not rows_l:
            raise InputError(f"no fine-tune at lr {lr:g} in this run.", path=str(run_dir),
                             hint="choose one of: " + ", ".join(f"{v:g}" for v in sorted({r.lr for r in rows})))
        rows = rows_l
    paths = list(dict.fromkeys(r.path for r in rows))
    if len(paths) != 1:
        concepts = list(dict.fromkeys(r.concept for r in rows))
        lrs = sorted({r.lr for r in rows})
        what = []
        if len(concepts) > 1:
            what.append("--concept " + " | ".join(concepts))
        if len(lrs) > 1:
            what.append("--lr " + " | ".join(f"{v:g}" for v in lrs))
        raise InputError(f"this run holds {len(paths)} fine-tuned weights files; say which one.",
                         path=str(run_dir), hint="choose " + " and ".join(what))
    return paths[0]
