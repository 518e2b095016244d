"""Model specs: every way ``create_model`` / ``--model`` names a model.

=========================  ===========================================================
``tiny-clip``              a registered name (``medkt models`` lists them)
``local-dir:PATH``         a folder: open_clip (``open_clip_config.json`` + weights),
                           transformers CLIP or ViLT (``save_pretrained``), or a folder
                           holding one checkpoint file.  A bare existing folder path works too.
``hf-hub:ORG/NAME[@REV]``  a Hugging Face repo (open_clip layout, e.g. BiomedCLIP, or a
                           transformers ``CLIPModel``), read from the Hugging Face cache;
                           ``@REV`` pins a commit or branch
``ARCH/TAG``               an open_clip architecture and pretrained tag (``ViT-B-32/openai``)
``ARCH``                   an open_clip architecture, with ``weights=FILE`` (``--weights``)
``PATH/TO/FILE.pt``        a checkpoint file; its architecture is read from its metadata
                           (files medkt writes) or recognised from its tensor names and
                           shapes (SAM, MedCLIP, open_clip CLIP ViTs)
=========================  ===========================================================

:func:`parse_spec` classifies a string (no file is read beyond ``stat``); the loaded
model carries the canonical spec string as ``model.spec``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from medkt.errors import ConfigError, UnknownNameError, WeightsError

SPEC_FORMS = ("a registered name (`medkt models`)", "local-dir:PATH", "hf-hub:ORG/NAME[@REV]",
              "an open_clip ARCH/TAG such as ViT-B-32/openai", "a checkpoint file path")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ParsedSpec:
    """A classified model spec.  ``kind``: registry, local-dir, hf-hub, open_clip or file."""

    kind: str
    text: str  # canonical form, recorded as ``model.spec``
    name: str = ""  # registry name
    path: str = ""  # local-dir folder or checkpoint file (absolute)
    repo: str = ""  # hf-hub ORG/NAME
    revision: str | None = None  # hf-hub @REV
    arch: str = ""  # open_clip architecture
    tag: str | None = None  # open_clip pretrained tag


def _open_clip_archs() -> list[str]:
    import open_clip
    from medkt.models.open_clip_loader import register_medkt_configs
    register_medkt_configs()
    return open_clip.list_models()


def parse_spec(spec: str) -> ParsedSpec:
    """Classify ``spec`` (see the module docstring); unknown strings raise :class:`UnknownNameError`."""
    from medkt.models.checkpoints import CHECKPOINT_SUFFIXES
    from medkt.models.registry import _REGISTRY, _load_providers
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"a model spec must be a non-empty string, got {spec!r}.",
                          hint="use " + ", ".join(SPEC_FORMS))
    spec = spec.strip()
    if spec.startswith("local-dir:"):
        p = Path(spec[len("local-dir:"):]).expanduser().resolve()
        if not p.is_dir():
            raise WeightsError("local-dir: is not a folder.", path=str(p),
                               hint="pass a folder written by save_local_dir / save_pretrained")
        return ParsedSpec("local-dir", f"local-dir:{p}", path=str(p))
    if spec.startswith("hf-hub:"):
        repo, _, rev = spec[len("hf-hub:"):].partition("@")
        if not _REPO.match(repo):
            raise ConfigError(f"'{spec}' is not a Hugging Face repo id.",
                              hint="use hf-hub:ORG/NAME or hf-hub:ORG/NAME@REV")
        return ParsedSpec("hf-hub", spec, repo=repo, revision=rev or None)
    _load_providers()
    if spec in _REGISTRY:
        return ParsedSpec("registry", spec, name=spec)
    p = Path(spec).expanduser()
    if p.is_file() or p.suffix in CHECKPOINT_SUFFIXES:
        if not p.is_file():
            raise WeightsError("checkpoint file not found.", path=str(p), hint="check the --model path")
        return ParsedSpec("file", str(p.resolve()), path=str(p.resolve()))
    if p.is_dir():
        return ParsedSpec("local-dir", f"local-dir:{p.resolve()}", path=str(p.resolve()))
    archs = _open_clip_archs()
    if spec.count("/") == 1:
        arch, tag = spec.split("/")
        if arch in archs:
            import open_clip
            tags = open_clip.list_pretrained_tags_by_model(arch)
            if tag not in tags:
                raise UnknownNameError(f"pretrained tag of open_clip '{arch}'", tag, tags or ["(none)"])
            return ParsedSpec("open_clip", spec, arch=arch, tag=tag)
    if spec in archs:
        return ParsedSpec("open_clip", spec, arch=spec)
    raise UnknownNameError("model", spec, _REGISTRY.keys(),
                           hint="a model spec is " + ", ".join(SPEC_FORMS) + "; registered names: "
                                + ", ".join(sorted(_REGISTRY)))


# ---------------------------------------------------------------------- building
def build_from_spec(p: ParsedSpec, weights: str | None, device: str):
    """Build a non-registry spec (registry specs go through their :class:`ModelSpec` builder)."""
    if p.kind == "local-dir":
        return _build_local_dir(Path(p.path), device, label=p.text)
    if p.kind == "hf-hub":
        return _build_hf_hub(p, device)
    if p.kind == "open_clip":
        return _build_open_clip_arch(p, weights, device)
    if p.kind == "file":
        return _build_file(Path(p.path), device)
    raise ConfigError(f"cannot build spec kind '{p.kind}'.")  # pragma: no cover


def folder_family(folder: Path) -> str | None:
    """'open_clip', 'hf_clip', 'vilt' or None, from the files in a model folder."""
    import json
    if (folder / "open_clip_config.json").is_file():
        return "open_clip"
    cfg = folder / "config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text())
        except (OSError, ValueError):
            return None
        kind = str(data.get("model_type", "")).lower()
        return "hf_clip" if kind == "clip" else "vilt" if kind == "vilt" else None
    if any((folder / sub / "config.json").is_file() for sub in ("itm", "mlm")):
        return "vilt"
    return None


def _build_local_dir(folder: Path, device: str, *, label: str):
    from medkt.models.checkpoints import CHECKPOINT_SUFFIXES
    fam = folder_family(folder)
    if fam == "open_clip":
        from medkt.models.open_clip_loader import load_open_clip
        return load_open_clip(f"local-dir:{folder}", None, name=label, device=device, weights_label=label)
    if fam == "hf_clip":
        from medkt.models.hf_adapter import load_hf_clip
        return load_hf_clip(str(folder), name=label, device=device)
    if fam == "vilt":
        from medkt.models.vilt import load_vilt
        return load_vilt(str(folder), name=label, device=device)
    files = sorted(f for f in folder.iterdir() if f.suffix in CHECKPOINT_SUFFIXES)
    if len(files) == 1:
        return _build_file(files[0], device)
    raise WeightsError("cannot tell which model this folder holds.", path=str(folder),
                       hint="expected open_clip_config.json (open_clip), config.json (transformers CLIP / "
                            "ViLT) or exactly one checkpoint file; or pass --model NAME --weights FOLDER")


def _build_hf_hub(p: ParsedSpec, device: str):
    """Resolve ``hf-hub:`` through the Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``)."""
    from medkt.models.resolve import hf_cached
    from medkt.paths import enforce_offline_env, hf_cache_dir, is_offline
    enforce_offline_env()
    for marker in ("open_clip_config.json", "config.json"):
        hit = hf_cached(p.repo, marker, p.revision)
        if hit:
            snapshot = Path(hit).parent
            commit = snapshot.name
            label = f"hf-hub:{p.repo}@{commit}"
            model = _build_local_dir(snapshot, device, label=label)
            model.name = p.text
            return model
    from medkt.errors import WeightsMissingError
    where = f"the Hugging Face cache {hf_cache_dir()}"
    rev = f" at revision {p.revision}" if p.revision else ""
    raise WeightsMissingError(
        f"'{p.repo}'{rev} is not in {where}" + (" and medkt is offline." if is_offline() else "."),
        hint=f"on a connected machine run `MEDKT_OFFLINE=0 medkt weights download {p.text}` (add --allow-unpinned "
             "without @REV) and copy the cache here, or pass a local folder as local-dir:PATH")


def _build_open_clip_arch(p: ParsedSpec, weights: str | None, device: str):
    from medkt.models.open_clip_loader import build_open_clip, load_open_clip
    from medkt.models.registry import ModelSpec
    if p.tag is None:
        if not weights:
            import open_clip
            tags = open_clip.list_pretrained_tags_by_model(p.arch)
            raise ConfigError(f"open_clip architecture '{p.arch}' needs a pretrained tag or a checkpoint.",
                              hint=(f"use {p.arch}/{tags[0]} (tags: {', '.join(tags)})" if tags else
                                    "this architecture has no published tags") + ", or --weights FILE")
        return load_open_clip(p.arch, str(Path(weights).expanduser()), name=p.text, device=device)
    spec = ModelSpec(name=p.text, family="open_clip", builder=build_open_clip, source=f"open_clip {p.arch} / {p.tag}",
                     options={"arch": p.arch, "tag": p.tag})
    return build_open_clip(spec, weights, device)


# ---------------------------------------------------------------------- checkpoint files
def peek_checkpoint(path: Path) -> tuple[dict[str, tuple], dict]:
    """``({name: shape}, safetensors metadata)`` without reading the tensors' data."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        try:
            with safe_open(str(path), "pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, dict(f.metadata() or {})
        except Exception as e:  # noqa: BLE001 - corrupt file: one clear error
            from medkt.errors import CheckpointMismatchError
            raise CheckpointMismatchError(f"cannot read checkpoint ({type(e).__name__}).", path=str(path),
                                          hint="the file is corrupt or truncated") from None
    from medkt.models.checkpoints import read_state_dict
    return {k: tuple(v.shape) for k, v in read_state_dict(path).items()}, {}


def infer_checkpoint(path: Path) -> tuple[str, str]:
    """``("registry", NAME)`` or ``("open_clip", ARCH)`` for a checkpoint file, or raise."""
    from medkt.models.world_models import PHANTOM_SAM_FORMAT, WORLD_FORMAT
    shapes, md = peek_checkpoint(path)
    if md.get("medkt_spec"):
        return "registry", md["medkt_spec"]
    if md.get("format") == WORLD_FORMAT:
        return "registry", {"world-clip": "world-clip", "world-phantom-clip": "phantom-clip",
                            "world-phantom-clip-v2": "phantom-clip"}.get(md.get("arch"), "")
    if md.get("format") == PHANTOM_SAM_FORMAT:
        return "registry", "phantom-sam"
    if any(k.startswith("image_encoder.") for k in shapes) and any(k.startswith("mask_decoder.") for k in shapes):
        return "registry", _sam_name(path, shapes)
    if any(k.startswith("vision_model.model.") for k in shapes) and any(k.startswith("text_model.model.")
                                                                      for k in shapes):
        width = shapes.get("text_model.model.embeddings.word_embeddings.weight", (0, 0))[1]
        return "registry", "medclip-vit" if width == 768 else "tiny-medclip"
    if "visual.conv1.weight" in shapes and "token_embedding.weight" in shapes:
        return "open_clip", _open_clip_arch_of(path, shapes)
    raise WeightsError("cannot tell which architecture this checkpoint belongs to.", path=str(path),
                       hint="pass --model NAME (or an open_clip ARCH) together with --weights FILE")


def _count_blocks(shapes: dict, prefix: str) -> int:
    idx = {int(k[len(prefix):].split(".")[0]) for k in shapes if k.startswith(prefix)}
    return max(idx) + 1 if idx else 0


def _sam_name(path: Path, shapes: dict) -> str:
    from medkt.models.sam import SAM_ARCHS
    from medkt.models.world_models import PHANTOM_SAM_ARCH
    dim = shapes.get("image_encoder.patch_embed.proj.weight", (0,))[0]
    depth = _count_blocks(shapes, "image_encoder.blocks.")
    names = {"vit_b": "medsam" if "medsam" in path.name.lower() else "sam-vit-b", "vit_l": "sam-vit-l",
             "vit_h": "sam-vit-h", "tiny": "tiny-sam"}
    for arch, cfg in list(SAM_ARCHS.items()) + [("phantom", PHANTOM_SAM_ARCH)]:
        if cfg["encoder_embed_dim"] == dim and cfg["encoder_depth"] == depth:
            return names.get(arch, "phantom-sam")
    raise WeightsError(f"SAM checkpoint with a {dim}-wide, {depth}-block encoder matches no known SAM.",
                       path=str(path), hint="pass --model NAME --weights FILE for a registered SAM")


def _open_clip_arch_of(path: Path, shapes: dict) -> str:
    """The unique open_clip ViT config whose sizes match the checkpoint's tensors."""
    import math
    import open_clip
    conv = shapes["visual.conv1.weight"]
    grid = math.isqrt(shapes["visual.positional_embedding"][0] - 1)
    got = {"embed_dim": shapes["text_projection"][1], "v_width": conv[0], "patch": conv[-1],
           "image": grid * conv[-1], "v_layers": _count_blocks(shapes, "visual.transformer.resblocks."),
           "context": shapes["positional_embedding"][0], "vocab": shapes["token_embedding.weight"][0],
           "t_width": shapes["token_embedding.weight"][1], "t_layers": _count_blocks(shapes, "transformer.resblocks.")}
    found = []
    for arch in _open_clip_archs():
        cfg = open_clip.get_model_config(arch) or {}
        v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
        if "timm_model_name" in v or "hf_model_name" in t or isinstance(v.get("layers"), (list, tuple)):
            continue
        isz = v.get("image_size", 224)
        want = {"embed_dim": cfg.get("embed_dim"), "v_width": v.get("width", 768), "patch": v.get("patch_size"),
                "image": isz if isinstance(isz, int) else isz[0], "v_layers": v.get("layers"),
                "context": t.get("context_length", 77), "vocab": t.get("vocab_size", 49408),
                "t_width": t.get("width", 512), "t_layers": t.get("layers", 12)}
        if want == got:
            found.append(arch)
    if len(found) == 1:
        return found[0]
    if not found:
        raise WeightsError("this open_clip checkpoint matches no known architecture.", path=str(path),
                           hint="pass --model ARCH --weights FILE with its open_clip architecture")
    raise WeightsError(f"this checkpoint fits several open_clip architectures ({', '.join(found)}), which "
                       "differ in activation or preprocessing, not in tensor shapes.", path=str(path),
                       hint=f"name one: --model {found[0]} --weights FILE")


def _build_file(path: Path, device: str):
    kind, name = infer_checkpoint(path)
    if kind == "open_clip":
        from medkt.models.open_clip_loader import load_open_clip
        return load_open_clip(name, str(path), name=str(path), device=device)
    from medkt.models.registry import get_spec
    spec = get_spec(name)
    model = spec.builder(spec, str(path), device)
    return model
