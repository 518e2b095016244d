"""Weights bookkeeping: snapshots for sweeps, deltas, and saved fine-tuned weights.

Saved weights are one safetensors file with ``metadata["format"]``:

* ``delta`` — ``{param_name: trained - original}`` of the trained parameters only
  (apply with :func:`apply_delta`; small for visual-only fine-tunes of big models);
* ``full`` — ``{param_name: tensor}`` of every parameter;
* ``lora`` — adapter only: ``{param_name + ".lora_A": [r, in], param_name + ".lora_B":
  [out, r]}`` with ``metadata["scale"]`` (= alpha / rank); loading merges
  ``W += scale * B @ A``.

Parameter names are ``model.named_parameters()`` names of the medkt wrapper.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Sequence

import torch

from medkt.errors import CheckpointMismatchError, InputError


def named_params(model) -> dict[str, torch.nn.Parameter]:
    return dict(model.named_parameters())


def names_of(model, params) -> list[str]:
    ids = {id(p): n for n, p in model.named_parameters()}
    return [ids[id(p)] for p in params if id(p) in ids]


def state_of(model, groups: Sequence[str] = ("all",)) -> dict[str, torch.Tensor]:
    """Cloned ``{name: tensor}`` of the parameters in ``groups`` (``all``, ``visual``, ``text``...)."""
    wanted = {id(p) for p in model.parameters_of(*groups)}
    return {n: p.detach().clone() for n, p in model.named_parameters() if id(p) in wanted}


def _check_names(model, tensors: dict, what: str) -> dict[str, torch.nn.Parameter]:
    params = named_params(model)
    missing = [k for k in tensors if k not in params]
    if missing:
        raise CheckpointMismatchError(f"{what} names {len(missing)} parameter(s) the model does not have, "
                                      f"e.g. '{missing[0]}'.",
                                      hint="load it into the same model (name and family) it was saved from")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(params[k].shape):
            raise CheckpointMismatchError(f"{what}: '{k}' has shape {tuple(v.shape)}, the model "
                                          f"{tuple(params[k].shape)}.")
    return params


@torch.no_grad()
def restore(model, snapshot: dict[str, torch.Tensor]) -> None:
    """Copy a :func:`state_of` snapshot back into ``model``."""
    params = _check_names(model, snapshot, "snapshot")
    for k, v in snapshot.items():
        params[k].copy_(v)


@torch.no_grad()
def apply_delta(model, delta: dict[str, torch.Tensor], scale: float = 1.0) -> None:
    """``param += scale * delta[name]`` for every entry of ``delta``."""
    params = _check_names(model, delta, "delta")
    for k, v in delta.items():
        params[k].add_(v.to(params[k].device, params[k].dtype), alpha=scale)


@contextlib.contextmanager
def frozen(model):
    """Eval mode and ``requires_grad=False`` on every parameter; both restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        model.train(was_training)


# ---------------------------------------------------------------------- files
def save_weights(path, tensors: dict[str, torch.Tensor], metadata: dict) -> Path:
    """Atomically write ``tensors`` with string ``metadata`` as safetensors."""
    from safetensors.torch import save_file
    from medkt.runs import atomic_path
    meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in metadata.items()}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    return Path(path)


def read_weights(path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open
    path = Path(path)
    if not path.exists():
        raise InputError("weights file not found.", path=str(path))
    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, meta


def read_meta(path) -> dict:
    """The string metadata of a safetensors file (header only; no tensor is read)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def find_weights(path, concept: str | None = None, lr: float | None = None) -> Path:
    """A weights file itself, or the one of a transfer run folder for ``concept`` / ``lr``
    (see :func:`medkt.transfer.outputs.find_finetuned`; either may be omitted when the
    run holds only one choice)."""
    path = Path(path)
    if path.is_dir():
        from medkt.transfer.outputs import find_finetuned
        return find_finetuned(path, concept, lr)
    if not path.exists():
        raise InputError("weights file not found.", path=str(path),
                         hint="pass a .safetensors file or the --out folder of `medkt transfer`")
    return path


@torch.no_grad()
def load_finetuned(model, path, concept: str | None = None, lr: float | None = None) -> dict:
    """Apply saved fine-tuned weights (``delta``, ``lora`` or ``full``) to ``model`` in place.

    ``path``: a weights file or a transfer run folder (then ``concept`` / ``lr`` pick the
    file when the run holds several)."""
    file = find_weights(path, concept, lr)
    tensors, meta = read_weights(file)
    fmt = meta.get("format", "delta")
    if fmt == "delta":
        apply_delta(model, tensors)
    elif fmt == "full":
        restore(model, tensors)
    elif fmt == "lora":
        scale = float(meta.get("scale", "1.0"))
        pairs = {k[: -len(".lora_A")] for k in tensors if k.endswith(".lora_A")}
        delta = {n: scale * (tensors[n + ".lora_B"].float() @ tensors[n + ".lora_A"].float()) for n in pairs}
        apply_delta(model, delta)
    else:
        raise InputError(f"unknown weights format '{fmt}'.", path=str(file),
                         hint="expected delta, full or lora (files written by medkt transfer)")
    meta["path"] = str(file)
    return meta
