"""Knowledge-Transfer weights for the saliency model (``medkt segment --finetuned KT_RUN``).

The paper's Table 4 workflow: learn a finding with ``medkt transfer`` on the CLIP-family
model, then segment with the fine-tuned model.  :func:`resolve_finetuned` picks one weights
file of a transfer run (any layout :func:`medkt.transfer.outputs.list_finetuned` reads: one
file per concept and lr, one per lr for a joint run, or the older single
``weights/finetuned-<format>.safetensors``) or takes a ``.safetensors`` file itself, and
:func:`apply_finetuned` applies it (``delta``, ``lora`` or ``full``) to a model.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from medkt.errors import ConfigError


@dataclass
class FinetunedWeights:
    """One fine-tuned weights file and what it holds.

    ``source``: what the caller passed (run folder or file); ``path``: the weights file;
    ``concepts``: the concepts it was fine-tuned on (one for the per-concept protocol);
    ``concept`` / ``lr``: the chosen concept (``None`` for a joint or single-file run with
    several) and learning rate; ``format``: ``delta``, ``lora`` or ``full``; ``sha256``: of
    the file's bytes; ``base_model``: the model name the run fine-tuned (from its run.json,
    ``None`` if unknown).
    """

    source: Path
    path: Path
    concepts: list[str] = field(default_factory=list)
    concept: str | None = None
    lr: float | None = None
    format: str = "delta"
    sha256: str = ""
    base_model: str | None = None

    def as_record(self) -> dict:
        """The ``run.json`` entry."""
        return {"source": str(self.source), "path": str(self.path), "concept": self.concept,
                "concepts": self.concepts, "lr": self.lr, "format": self.format, "sha256": self.sha256,
                "base_model": self.base_model}


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run_json(path: Path) -> dict:
    """run.json of the transfer run holding ``path`` (the folder itself or up to 3 levels above a file)."""
    for d in [path, *path.parents][:5]:
        if (d / "run.json").is_file():
            try:
                rec = json.loads((d / "run.json").read_text())
            except (OSError, ValueError):
                return {}
            return rec if rec.get("command") in ("transfer", None) else {}
    return {}


def model_object(model):
    """``model`` if it is a model object, ``None`` for a name (or nothing); else a clear error."""
    if model is None or isinstance(model, str):
        return None
    from medkt.models.base import VisionLanguageModel
    if isinstance(model, VisionLanguageModel):
        return model
    raise ConfigError(f"model= must be a registered model name or a medkt model object, got "
                      f"{type(model).__name__}.",
                      hint="pass a name such as 'biomedclip', or a model from medkt.models.create_model(...)")


def resolve_finetuned(source, concept: str | None = None, lr: float | None = None) -> FinetunedWeights:
    """The weights file of transfer run ``source`` for ``concept`` (name or slug) and ``lr``.

    ``source`` may also be a ``.safetensors`` file.  ``concept`` / ``lr`` may be omitted when
    the run holds one choice; otherwise :class:`~medkt.errors.InputError` lists the choices.
    """
    if source is None:
        raise ConfigError("--concept / --lr choose among fine-tuned weights, but none were given.",
                          hint="add --finetuned KT_RUN (finetuned= in Python), or drop --concept / --lr")
    from medkt.transfer.concepts import slugify
    from medkt.transfer.outputs import list_finetuned
    from medkt.transfer.state import find_weights, read_meta
    source = Path(source)
    file = Path(find_weights(source, concept, lr))  # the file itself, or the run's one file for concept / lr
    meta = read_meta(file)
    if source.is_dir():
        rows = [r for r in list_finetuned(source) if Path(r.path) == file]
        concepts = list(dict.fromkeys(r.concept for r in rows))
        lrs = sorted({r.lr for r in rows})
    else:
        concepts = json.loads(meta.get("concepts", "[]"))
        lrs = [float(json.loads(meta.get("config", "{}")).get("lr", "nan"))]
    if concept is not None:
        chosen = next((c for c in concepts if slugify(c) == slugify(concept)), None)
        if chosen is None:
            raise ConfigError(f"concept '{concept}' is not in the fine-tuned weights {file} "
                              f"(they hold: {', '.join(concepts) or 'no concept list'}).",
                              hint="drop --concept, or pass the transfer run folder to choose among its concepts")
    else:
        chosen = concepts[0] if len(concepts) == 1 else None
    rec = _run_json(source if source.is_dir() else file.parent)
    base = (rec.get("weights") or {}).get("model") or (rec.get("model") or {}).get("name")
    return FinetunedWeights(source=source, path=file, concepts=concepts, concept=chosen,
                            lr=lrs[0] if len(lrs) == 1 and lrs[0] == lrs[0] else None,  # NaN: not recorded
                            format=meta.get("format", "delta"), sha256=_file_sha256(file),
                            base_model=base)


def check_base_model(fw: FinetunedWeights, model_name: str) -> None:
    """Refuse weights fine-tuned from another model (by registered name) before applying them."""
    if fw.base_model and model_name and fw.base_model != model_name:
        raise ConfigError(f"the fine-tuned weights {fw.path} were trained on model '{fw.base_model}', "
                          f"but the saliency model is '{model_name}'.",
                          hint=f"pass --model {fw.base_model} (or model='{fw.base_model}')")


def apply_finetuned(model, fw: FinetunedWeights):
    """Apply ``fw`` to ``model`` in place (``delta`` / ``lora`` / ``full``); returns ``model``."""
    from medkt.transfer.state import load_finetuned
    check_base_model(fw, getattr(model, "name", ""))
    load_finetuned(model, fw.path)
    return model
