"""Build open_clip models from names, tags, ``hf-hub:`` ids, ``local-dir:`` folders or files.

Only open_clip's own factory is used, so the same code path loads real weights and the
tiny test models (``tiny-clip`` is a JSON config registered with
``open_clip.add_model_config``).  Network access is decided by :mod:`medkt.models.weights`
*before* this is called.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import torch

from medkt.errors import CheckpointMismatchError, WeightsError
from medkt.paths import assets_dir

_REGISTERED = False


def register_medkt_configs() -> None:
    """Make medkt's shipped architecture JSONs (``tiny-clip``, ``tiny-coca``...) known to open_clip."""
    global _REGISTERED
    if not _REGISTERED:
        import open_clip
        open_clip.add_model_config(str(assets_dir() / "model_configs"))
        _REGISTERED = True


def model_config(arch: str) -> dict:
    import open_clip
    register_medkt_configs()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        from medkt.errors import UnknownNameError
        raise UnknownNameError("open_clip architecture", arch, open_clip.list_models())
    return cfg


def load_open_clip(arch: str, pretrained: str | None = None, *, name: str | None = None,
                   device: str | torch.device = "cpu", seed: int | None = 0, weights_label: str | None = None):
    """Create ``arch`` (a model name, ``hf-hub:`` id or ``local-dir:`` folder) and wrap it.

    ``pretrained`` is an open_clip tag, a local checkpoint file, or ``None`` (random init,
    seeded by ``seed`` so tiny models are reproducible).
    """
    import open_clip
    from medkt.models.memory import open_clip_one_copy_loads
    from medkt.models.open_clip_adapter import from_open_clip

    register_medkt_configs()
    if pretrained is not None and Path(pretrained).suffix in (".bin", ".pt", ".pth", ".safetensors"):
        _check_checkpoint_file(arch, Path(pretrained))
    if seed is not None and pretrained is None and not arch.startswith(("hf-hub:", "local-dir:")):
        torch.manual_seed(seed)
    try:
        # A random init is deliberate here (tiny models, world models loaded afterwards):
        # silence open_clip's root-logger warning about it, keep every other message.
        with _quiet_random_init(pretrained is None and not arch.startswith(("hf-hub:", "local-dir:"))), \
                open_clip_one_copy_loads():
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=pretrained, device=device, weights_only=True)
    except RuntimeError as e:
        if "state_dict" in str(e) or "size mismatch" in str(e) or "Missing key" in str(e):
            raise CheckpointMismatchError(_first_lines(str(e)), path=str(pretrained or arch),
                                          hint=f"this checkpoint does not belong to architecture '{arch}'") \
                from None
        raise
    tokenizer = _tokenizer(arch)
    model.eval()
    label = weights_label or (f"{arch}:{pretrained}" if pretrained else
                              (arch if arch.startswith(("hf-hub:", "local-dir:")) else f"{arch}:random-init"))
    return from_open_clip(model, tokenizer, preprocess, name=name or arch, weights=label)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")


def _tokenizer(arch: str):
    """open_clip's tokenizer for ``arch``.

    For a ``local-dir:`` folder (also how a Hugging Face cache snapshot is loaded) open_clip
    reads an HF text tower's tokenizer from the folder itself, but BiomedCLIP's repo holds
    no tokenizer: its ``hf_tokenizer_name`` repo does.  Then that repo is used (from the
    Hugging Face cache when offline), as ``hf-hub:`` loading does.
    """
    import open_clip
    if arch.startswith("local-dir:"):
        folder = Path(arch[len("local-dir:"):])
        try:
            text = json.loads((folder / "open_clip_config.json").read_text()).get("model_cfg", {}).get("text_cfg", {})
        except (OSError, ValueError):
            text = {}
        name = text.get("hf_tokenizer_name")
        if name and not any((folder / f).is_file() for f in TOKENIZER_FILES):
            return _hf_tokenizer(name, text, folder)
    return open_clip.get_tokenizer(arch)


def _hf_tokenizer(name: str, text_cfg: dict, folder: Path):
    from open_clip.tokenizer import HFTokenizer
    from medkt.errors import WeightsMissingError
    from medkt.paths import enforce_offline_env, hf_cache_dir
    enforce_offline_env()
    try:
        return HFTokenizer(name, context_length=text_cfg.get("context_length", 77),
                                     tokenizer_mode=text_cfg.get("tokenizer_mode"),
                                     **text_cfg.get("tokenizer_kwargs", {}))
    except OSError:
        raise WeightsMissingError(
            f"the text tokenizer '{name}' named by {folder / 'open_clip_config.json'} is neither in that folder "
            f"nor in the Hugging Face cache {hf_cache_dir()}.",
            hint=f"on a connected machine run `MEDKT_OFFLINE=0 medkt weights download hf-hub:{name}` (or copy its "
                 "vocab.txt / tokenizer files into the model folder)") from None


# ---------------------------------------------------------------------- registry builders
def build_open_clip(spec, weights: str | None, device: str):
    """Registry builder for open_clip models: weights resolved by :func:`~medkt.models.resolve.resolve_open_clip`."""
    from medkt.models.resolve import resolve_open_clip
    arch, pretrained = resolve_open_clip(spec, weights)
    return load_open_clip(arch, pretrained, name=spec.name, device=device)


def build_tiny_open_clip(spec, weights: str | None, device: str):
    """Random init (seed 0), or ``weights``: a ``local-dir:`` folder or a checkpoint file."""
    if weights and Path(weights).is_dir():
        return load_open_clip(f"local-dir:{weights}", None, name=spec.name, device=device)
    return load_open_clip(spec.options["arch"], weights, name=spec.name, device=device, seed=0)


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init(active: bool):
    if not active:
        yield
        return
    flt = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def _first_lines(msg: str, n: int = 6) -> str:
    lines = [ln for ln in msg.splitlines() if ln.strip()]
    return "checkpoint does not match the model: " + " ".join(lines[:n])[:800]


def _check_checkpoint_file(arch: str, path: Path) -> None:
    if not path.exists():
        raise WeightsError("checkpoint file not found.", path=str(path), hint="check the --weights path")
    if path.stat().st_size == 0:
        raise CheckpointMismatchError("checkpoint file is empty (0 bytes).", path=str(path),
                                      hint="re-copy or re-download the file")


def save_local_dir(model, folder: str | Path, arch: str) -> Path:
    """Save an :class:`OpenClipModel` as an open_clip ``local-dir:`` folder (safetensors)."""
    from medkt.models.weights import write_state_dict
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model_config(arch) if not arch.startswith("local-dir:") else None
    pre = {"size": [model.image_size, model.image_size], "mean": list(model.mean), "std": list(model.std)}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": pre}, indent=2))
    write_state_dict(model.model.state_dict(), folder / "open_clip_model.safetensors")
    return folder
