"""Where medkt keeps things, and whether it may use the network.

* ``MEDKT_HOME`` (default ``~/.cache/medkt``, or ``$XDG_CACHE_HOME/medkt``): weights
  (``weights/<name>/``) and trained world models (``worlds/``).
* Offline mode: ``MEDKT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``.  The default is offline
  unless ``MEDKT_OFFLINE=0``: hospital workstations are usually air-gapped, and a
  network attempt must be an explicit choice (``medkt weights download``).
"""
from __future__ import annotations

import os
from pathlib import Path


def medkt_home() -> Path:
    env = os.environ.get("MEDKT_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "medkt"


def weights_dir() -> Path:
    return medkt_home() / "weights"


def worlds_dir() -> Path:
    return medkt_home() / "worlds"


def hf_cache_dir() -> Path:
    hf_home = os.environ.get("HF_HOME")
    base = Path(hf_home).expanduser() if hf_home else Path.home() / ".cache" / "huggingface"
    return Path(os.environ.get("HF_HUB_CACHE", base / "hub"))


def torch_cache_dir() -> Path:
    return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")).expanduser()


def is_offline() -> bool:
    """True unless the user explicitly allowed network access with ``MEDKT_OFFLINE=0``."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or \
            os.environ.get("TRANSFORMERS_OFFLINE", "0") not in ("", "0"):
        return True
    return os.environ.get("MEDKT_OFFLINE", "1") not in ("0", "false", "no")


def enforce_offline_env() -> None:
    """Make Hugging Face and friends stay off the network when medkt is offline."""
    if is_offline():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def assets_dir() -> Path:
    """Files shipped inside the package (tiny world weights, default configs)."""
    return Path(__file__).resolve().parent / "assets"


def repo_configs_dir() -> Path:
    """``configs/`` of a source checkout, or the copy shipped in the package."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "configs", here / "configs"):
        if cand.is_dir():
            return cand
    return here.parent / "configs"
