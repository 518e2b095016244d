"""The inversion budget by model size: which models get the short ``fast`` recipe by default.

The paper's 5 000-step inversion was tuned for ViT-B/L CLIPs.  On small encoders it is
far more than needed: on the natural world (``world-clip``, a 0.83 M-parameter 32 px ViT)
the ``fast`` preset reaches the paper recipe's KT accuracy with a small fraction of its
inversion FLOPs (docs/transfer.md, "Inversion time-to-quality").  So when a user gives no
recipe at all (no ``--preset``, ``--config``, ``--steps`` or ``--set inversion.*``), a
*small* model is inverted with the options of :data:`SMALL_MODEL_PRESET` (merged over the
default preset, which keeps its fine-tuning recipe).

"Small" = the vision tower has at most :data:`SMALL_VISUAL_PARAMS` parameters (the worlds'
models: 0.22–0.83 M; the smallest released CLIP ViT, B/32: 88 M) **and** is an open_clip
ViT (the preset's progressive encoder needs one).  The bound stays within a factor of
~6 of the largest model the preset was measured on; larger models keep the paper recipe
until time-to-quality is measured on them.
"""
from __future__ import annotations

from typing import Sequence

from medkt.errors import ConfigError

SMALL_MODEL_PRESET = "fast"
SMALL_VISUAL_PARAMS = 5_000_000


def small_model_default(model) -> dict | None:
    """``{"preset", "visual_params", "limit"}`` if ``model`` is small (see module doc), else ``None``."""
    from medkt.transfer.resolution import encoder_size
    try:
        n = sum(p.numel() for p in model.parameters_of("visual"))
        encoder_size(model, model.image_size)  # an open_clip ViT
    except (ConfigError, NotImplementedError, AttributeError):
        return None
    if n > SMALL_VISUAL_PARAMS:
        return None
    return {"preset": SMALL_MODEL_PRESET, "visual_params": int(n), "limit": SMALL_VISUAL_PARAMS}


def small_model_config() -> dict:
    """The :data:`SMALL_MODEL_PRESET` file as a dict: passed as ``config`` it is merged over whatever
    preset applies (its keys are inversion options only, so the fine-tuning recipe is kept)."""
    from medkt.config import load_yaml
    from medkt.paths import config_file
    return load_yaml(config_file("transfer", SMALL_MODEL_PRESET))


def applies(preset, config, steps, overrides: Sequence[str] = ()) -> bool:
    """True when the user chose no inversion recipe (so the size-based default may apply)."""
    return (preset is None and config is None and steps is None
            and not any(str(o).strip().startswith("inversion.") for o in overrides or ()))
