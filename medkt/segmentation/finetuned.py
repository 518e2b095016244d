"""Knowledge-Transfer weights for the saliency model (``medkt segment --finetuned KT_RUN``).

The paper's Table 4 workflow: learn a finding with ``medkt transfer`` on the CLIP-family
model, then segment with the fine-tuned model.  :func:`resolve_finetuned` picks one weights
file of a transfer run (any layout :func:`medkt.transfer.outputs.list_finetuned` reads: one
file per concept and lr, one per lr for a joint run, or the older single
``weights/finetuned-<format>.safetensors``) or takes a ``.safetensors`` file itself, and
:func:`apply_finetuned` applies it (``delta``, ``lora`` or ``full``) to a model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from medkt.errors import ConfigError
from medkt.models.verify import sha256_of


@dataclass
class FinetunedWeights:
    """One fine-tuned weights file and what it holds.

    ``source``: what the caller passed (run folder or file); ``path``: the weights file;
    ``concepts``: the concepts it was fine-tuned on (one for the per-concept protocol);
    ``concept`` / ``lr``: the chosen concept (``None`` for a joint or single-file run with
    several) and learning rate; ``format``: ``delta``, ``lora`` or ``full``; ``sha256``: of
    the file's bytes; ``base_model`` / ``base_spec`` / ``base_sha256``: the name, spec and
    weights digest of the model the run fine-tuned (from its run.json, ``None`` if unknown).
    """

    source: Path
    path: Path
    concepts: list[str] = field(default_factory=list)
    concept: str | None = None
    lr: float | None = None
    format: str = "delta"
    sha256: str = ""
    base_model: str | None = None
    base_spec: str | None = None
    base_sha256: str | None = None

    def as_record(self) -> dict:
        """The ``run.json`` entry."""
        return {"source": str(self.source), "path": str(self.path), "concept": self.concept,
                "concepts": self.concepts, "lr": self.lr, "format": self.format, "sha256": self.sha256,
                "base_model": self.base_model, "base_spec": self.base_spec, "base_sha256": self.base_sha256}


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
    w = rec.get("weights") or {}
    base = w.get("model") or (rec.get("model") or {}).get("name")
    spec = (rec.get("model") or {}).get("spec")
    return FinetunedWeights(source=source, path=file, concepts=concepts, concept=chosen,
                            lr=lrs[0] if len(lrs) == 1 and lrs[0] == lrs[0] else None,  # NaN: not recorded
                            format=meta.get("format", "delta"), sha256=sha256_of(file),
                            base_model=base, base_spec=spec, base_sha256=w.get("weights_sha256"))


def check_base_model(fw: FinetunedWeights, model=None, *, spec: str | None = None) -> None:
    """Refuse weights fine-tuned from another model before applying them.

    With a model object: its weights' sha256 must equal the starting weights the transfer run
    recorded (so ``clip-vit-b32`` and ``ViT-B-32/openai`` naming the same weights pass, and
    other weights under the same name do not); runs that recorded no digest fall back to the
    model name.  With only a ``spec`` string (before a large model is built): refused only when
    both it and the run's model are registered names that differ; anything else is checked
    once the model exists.
    """
    if model is None:
        from medkt.models.registry import is_registered
        if spec and fw.base_model and is_registered(spec) and is_registered(fw.base_model) \
                and spec != fw.base_model and spec != fw.base_spec:
            _refuse(fw, spec)
        return
    if fw.base_sha256:
        from medkt.transfer.inversion import weights_digest
        if weights_digest(model) != fw.base_sha256:
            _refuse(fw, getattr(model, "spec", None) or model.name, digest=True)
        return
    name = getattr(model, "name", "")
    if fw.base_model and name and fw.base_model != name:
        _refuse(fw, name)


def _refuse(fw: FinetunedWeights, now: str, digest: bool = False) -> None:
    what = (f"from other weights (sha256 {fw.base_sha256[:12]} recorded)" if digest else
            f"on model '{fw.base_model}'")
    raise ConfigError(f"the fine-tuned weights {fw.path} were trained {what}, but the saliency model is "
                      f"'{now}'" + (" with different weights." if digest else "."),
                      hint=f"pass the transfer run's model: --model {fw.base_spec or fw.base_model} "
                           f"(model='{fw.base_spec or fw.base_model}'), with the same --weights")


def apply_finetuned(model, fw: FinetunedWeights):
    """Apply ``fw`` to ``model`` in place (``delta`` / ``lora`` / ``full``); returns ``model``."""
    from medkt.transfer.state import load_finetuned
    check_base_model(fw, model)
    load_finetuned(model, fw.path)
    return model
