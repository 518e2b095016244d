"""Where medkt keeps things, and whether it may use the network.

* ``MEDKT_HOME`` (default ``~/.cache/medkt``, or ``$XDG_CACHE_HOME/medkt``): weights
  (``weights/<name>/``) and trained world models (``worlds/``).
* Offline mode: ``MEDKT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``.  The default is offline
  unless ``MEDKT_OFFLINE=0``: hospital workstations are usually air-gapped, and a
  network attempt must be an explicit choice (``medkt weights download``).
* Shipped configs (``configs/`` in the repository, the package ``medkt.configs`` once installed):
  :func:`config_file` resolves a YAML path or a shipped name, :func:`list_configs` lists names.
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
    """The Hugging Face hub cache, resolved as ``huggingface_hub`` resolves it: ``HF_HUB_CACHE``,
    then the legacy ``HUGGINGFACE_HUB_CACHE``, then ``HF_HOME/hub``, then
    ``$XDG_CACHE_HOME/huggingface/hub`` (default ``~/.cache/huggingface/hub``)."""
    def expand(p: str) -> Path:
        return Path(os.path.expandvars(p)).expanduser()
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return expand(os.environ[var])
    if os.environ.get("HF_HOME"):
        return expand(os.environ["HF_HOME"]) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (expand(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


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
    """Files shipped inside the package (tiny world weights, model configs, a toy tokenizer)."""
    return Path(__file__).resolve().parent / "assets"


#: Kinds of shipped configs (sub-folders of ``configs/``) and what one of them is called.
CONFIG_KINDS = {"concepts": "concept set", "experiments": "experiment", "segment": "segment preset",
                "transfer": "transfer preset", "refine": "refine preset"}


def config_dir(kind: str) -> Path:
    """The folder of shipped ``kind`` configs (``concepts``, ``experiments``, ``segment``, ``transfer``).

    The YAML files live in ``configs/`` at the top of the repository and are the package
    ``medkt.configs`` (``medkt/configs`` links to ``configs/``; a wheel holds a copy), found with
    :mod:`importlib.resources`, so a source checkout, an editable install and a wheel all read the
    same names.  medkt is installed as plain files (not zip-safe), so this is a real folder.
    """
    from importlib.resources import files
    from medkt.errors import look_up
    look_up("config kind", kind, CONFIG_KINDS)
    return Path(str(files("medkt.configs").joinpath(kind)))


def list_configs(kind: str) -> list[str]:
    """Names of the shipped ``kind`` configs (file stems), sorted."""
    d = config_dir(kind)
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def config_file(kind: str, source: str | Path) -> Path:
    """The YAML file for ``source``: a path to a file, or the name of a shipped ``kind`` config.

    ``source`` is taken as a path when that file exists or when it looks like one (ends in
    ``.yaml``/``.yml`` or contains a ``/``); otherwise it is a shipped name (``"rare"``, ``"tiny"``,
    ``"paper"``, ``"table1_rare_concepts"``).

    Raises:
        UnknownNameError: no shipped ``kind`` config of that name (the message lists them).
        ConfigError: a path that does not exist.
    """
    from medkt.errors import ConfigError, UnknownNameError
    what = CONFIG_KINDS.get(kind, f"{kind} config")
    path = Path(source).expanduser()
    text = str(source)
    if path.is_file():
        return path
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        raise ConfigError("config file not found.", path=text,
                          hint=f"check the path, or name a shipped {what}: {', '.join(list_configs(kind))}")
    shipped = config_dir(kind) / f"{text}.yaml"
    if not shipped.is_file():
        raise UnknownNameError(what, text, list_configs(kind),
                               hint=f"pass a YAML path or one of the shipped {what}s: {', '.join(list_configs(kind))}")
    return shipped
