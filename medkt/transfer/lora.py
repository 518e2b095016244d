"""LoRA on the visual encoder, implemented as weight parametrisations.

``W → W + (alpha / rank) · B @ A`` with ``A`` ``[rank, in]`` (Kaiming-uniform, seeded) and
``B`` ``[out, rank]`` (zeros, so training starts at the original model).  Using
``torch.nn.utils.parametrize`` instead of wrapping ``nn.Linear`` makes it work for any
2-D weight, including ``nn.MultiheadAttention.in_proj_weight`` (open_clip's ViT blocks,
which ``peft`` cannot wrap) and timm's ``qkv`` linears (BiomedCLIP).

Targets: 2-D weights inside :meth:`visual_blocks` whose qualified name contains one of
``LoraConfig.targets`` (default ``attn`` and ``mlp``).  Base weights stay frozen.
After training, :func:`merge_lora` folds the adapters into the weights (the model is a
plain model again) and :func:`adapter_state` gives the adapter tensors to save.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from medkt.errors import ConfigError
from medkt.transfer.augment import image_seed


class LoRADelta(nn.Module):
    """Parametrisation adding ``scale * B @ A`` to a ``[out, in]`` weight."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(in_features)  # kaiming_uniform(a=sqrt(5)) bound
        self.lora_A = nn.Parameter((torch.rand(rank, in_features, generator=g) * 2 - 1) * bound)
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = float(alpha) / float(rank)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_B @ self.lora_A).to(weight.dtype)


def _targets(model, targets) -> list[tuple[str, nn.Module, str]]:
    """(qualified param name, owning module, attribute) of every LoRA target."""
    blocks = {id(b) for b in model.visual_blocks()}
    out = []
    for bname, block in model.named_modules():
        if id(block) not in blocks:
            continue
        for mname, mod in block.named_modules():
            for pname, p in list(mod.named_parameters(recurse=False)):
                full = ".".join(x for x in (bname, mname, pname) if x)
                local = ".".join(x for x in (mname, pname) if x)
                if p.dim() == 2 and any(t in local for t in targets):
                    out.append((full, mod, pname))
    return out


def apply_lora(model, rank: int = 4, alpha: float = 8.0, targets=("attn", "mlp"), seed: int = 0
               ) -> dict[str, LoRADelta]:
    """Add LoRA parametrisations to the visual blocks; returns ``{param_name: LoRADelta}``."""
    if rank < 1:
        raise ConfigError(f"finetune.lora.rank must be >= 1, got {rank}.")
    found = _targets(model, targets)
    if not found:
        raise ConfigError(f"finetune.lora.targets {list(targets)} match no 2-D weight in the visual blocks "
                          f"of model '{model.name}'.", hint="use substrings such as attn, mlp, qkv, fc")
    adapters = {}
    for full, mod, pname in found:
        w = getattr(mod, pname)
        delta = LoRADelta(w.shape[0], w.shape[1], rank, alpha, image_seed(seed, "lora", hash_name(full)))
        delta.to(device=w.device, dtype=w.dtype)
        parametrize.register_parametrization(mod, pname, delta, unsafe=True)
        mod.parametrizations[pname].original.requires_grad_(False)
        adapters[full] = delta
    model._medkt_lora = {full: (mod, pname) for full, mod, pname in found}
    return adapters


def hash_name(name: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 1_000_003


def lora_parameters(adapters: dict[str, LoRADelta]) -> list[nn.Parameter]:
    return [p for d in adapters.values() for p in (d.lora_A, d.lora_B)]


def adapter_state(adapters: dict[str, LoRADelta]) -> dict[str, torch.Tensor]:
    """``{name.lora_A, name.lora_B}`` tensors (detached copies) for saving."""
    out = {}
    for name, d in adapters.items():
        out[name + ".lora_A"] = d.lora_A.detach().clone()
        out[name + ".lora_B"] = d.lora_B.detach().clone()
    return out


def adapter_delta(adapters: dict[str, LoRADelta]) -> dict[str, torch.Tensor]:
    """The weight change ``{name: scale * B @ A}`` each adapter stands for."""
    return {n: (d.scale * d.lora_B @ d.lora_A).detach().clone() for n, d in adapters.items()}


def _remove(model, merge: bool) -> None:
    for _full, (mod, pname) in getattr(model, "_medkt_lora", {}).items():
        if parametrize.is_parametrized(mod, pname):
            parametrize.remove_parametrizations(mod, pname, leave_parametrized=merge)
    model._medkt_lora = {}


def merge_lora(model) -> None:
    """Fold every adapter into its weight and drop the parametrisations."""
    _remove(model, merge=True)


def remove_lora(model) -> None:
    """Drop the adapters, restoring the original weights exactly."""
    _remove(model, merge=False)
