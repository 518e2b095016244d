"""Full-size surrogates: each real model's exact architecture with random weights, saved
exactly where and how a real download lies on disk (for tests and benchmarks, no network).

A surrogate is loaded by the same code a user's real download goes through
(``create_model(NAME)`` → ``medkt.models.resolve`` → the Hugging Face cache / ``MEDKT_HOME``
→ open_clip / segment_anything / transformers loaders), strictly, so a loading bug in that
path shows up without the real multi-hundred-MB files.  Layouts written:

* **Hugging Face cache** (``HF_HUB_CACHE``; :func:`hf_cache_put`):
  ``models--ORG--NAME/{refs/main, blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>}``,
  etag = SHA-256 for large (LFS) files, the git blob SHA-1 for small ones, as
  ``huggingface_hub`` stores them.
* ``biomedclip``: ``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`` with
  ``open_clip_config.json`` (timm ``vit_base_patch16_224`` vision tower, HF BERT text tower,
  context 256) and ``open_clip_pytorch_model.bin`` (a torch pickle of the state dict, including
  the BERT ``position_ids`` buffer that transformers < 4.31 saved); plus
  ``microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract`` with ``config.json`` and a
  30522-line ``vocab.txt`` (open_clip reads the text tower's config and tokenizer from there).
* ``clip-vit-b32`` / ``clip-vit-b16`` (and ``-l14`` in principle): open_clip's ``openai`` tag
  resolves to ``timm/vit_base_patch{32,16}_clip_224.openai``; ``open_clip_model.safetensors``
  is the one file open_clip downloads from there.
* ``sam-vit-b`` / ``medsam``: ``MEDKT_HOME/weights/<name>/sam_vit_b_01ec64.pth`` /
  ``medsam_vit_b.pth``, plain ``torch.save`` state dicts of segment_anything's own
  ``sam_model_registry["vit_b"]()`` (built independently of medkt's builder).
* ``medclip-vit``: the unzipped ``medclip-vit-pretrained`` folder
  ``MEDKT_HOME/weights/medclip-vit/pytorch_model.bin`` (MedCLIP's key names, transformers 4.x
  Swin layout, ``position_ids`` included) plus ``emilyalsentzer/Bio_ClinicalBERT``
  (``config.json`` + 28996-line cased ``vocab.txt``) in the Hugging Face cache.

The weights are random and the vocabularies synthetic (special tokens, then filler words):
nothing here is a real model's content.  :func:`build_surrogate` returns a
:class:`Surrogate` whose ``fingerprint`` equals :func:`~medkt.models.checkpoints.weights_fingerprint`
of the loaded module (``model.model`` / ``model.sam`` / ``model.net``).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from medkt.models.verify import sha256_of

BIOMEDCLIP_REPO = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDBERT_REPO = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
CLINICALBERT_REPO = "emilyalsentzer/Bio_ClinicalBERT"
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
BIOMEDCLIP_CONFIG = {  # the hub's open_clip_config.json (models-and-apis.md §8)
    "model_cfg": {
        "embed_dim": 512,
        "vision_cfg": {"timm_model_name": "vit_base_patch16_224", "timm_model_pretrained": False,
                       "timm_pool": "", "timm_proj": "linear", "image_size": 224},
        "text_cfg": {"hf_model_name": BIOMEDBERT_REPO, "hf_tokenizer_name": BIOMEDBERT_REPO,
                     "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                     "context_length": 256}},
    "preprocess_cfg": {"mean": OPENAI_MEAN, "std": OPENAI_STD}}
BERT_BASE = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "attention_probs_dropout_prob": 0.1,
             "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
             "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
             "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2}


@dataclass
class Surrogate:
    """What :func:`build_surrogate` wrote: registry ``name``, the ``files`` (snapshot paths),
    ``fingerprint`` of the weights a strict load must reproduce, and the bytes written."""

    name: str
    files: list[Path] = field(default_factory=list)
    fingerprint: str = ""
    nbytes: int = 0


# ---------------------------------------------------------------------- Hugging Face cache layout
def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fake_commit(repo: str) -> str:
    """A fixed 40-hex "commit" per repo (surrogates are deterministic, so is their revision)."""
    return hashlib.sha1(f"medkt-surrogate:{repo}".encode()).hexdigest()


def hf_cache_put(cache: Path, repo: str, files: dict[str, bytes | Callable[[Path], None]],
                 revision: str | None = None) -> Path:
    """Write ``files`` into the Hugging Face cache as ``huggingface_hub`` lays out a download.

    ``files`` maps a repo file name to its bytes (small files, git-blob etag) or to a writer
    ``fn(path)`` (large files: written once into ``blobs/`` and named by their SHA-256, as
    LFS files are).  Returns the snapshot folder ``models--ORG--NAME/snapshots/<commit>``.
    """
    commit = revision or fake_commit(repo)
    root = Path(cache) / ("models--" + repo.replace("/", "--"))
    blobs, snap = root / "blobs", root / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            etag = _git_blob_sha1(content)
            (blobs / etag).write_bytes(content)
        else:
            tmp = blobs / f".{name}.incomplete"
            content(tmp)
            etag = sha256_of(tmp, chunk=1 << 22)
            tmp.replace(blobs / etag)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blobs / etag, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return snap


def synthetic_vocab(size: int, *, cased: bool = False) -> bytes:
    """A BERT WordPiece ``vocab.txt`` of exactly ``size`` lines: specials, characters and
    ``##`` pieces, a few words, then ``[unusedN]`` fillers (so token ids span the real range)."""
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,;:-()/%")
    if cased:
        chars += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    words = ("the a an of and with in on showing image scan ct mri x-ray chest lung nodule tumor tumour brain "
             "breast liver kidney lesion mass normal benign malignant left right photo medical").split()
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + words
    toks += [f"[unused{i}]" for i in range(size - len(toks))]
    return ("\n".join(toks[:size]) + "\n").encode()


def _torch_writer(state: dict) -> Callable[[Path], None]:
    return lambda p: torch.save({k: v.contiguous() for k, v in state.items()}, str(p))


def _safetensors_writer(state: dict) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(p))
    return write


def _fingerprint(module) -> str:
    from medkt.models.checkpoints import weights_fingerprint
    return weights_fingerprint(module)


def _size(files: list[Path]) -> int:
    return sum(Path(f).resolve().stat().st_size for f in files)


# ---------------------------------------------------------------------- builders
def _biomedclip(home: Path, cache: Path, seed: int) -> Surrogate:
    """BiomedCLIP: open_clip CustomTextCLIP (timm ViT-B/16 + BiomedBERT), random weights."""
    bert_snap = hf_cache_put(cache, BIOMEDBERT_REPO, {
        "config.json": json.dumps({**BERT_BASE, "vocab_size": 30522}, indent=2).encode(),
        "vocab.txt": synthetic_vocab(30522)})
    import open_clip
    from transformers import BertConfig
    cfg = json.loads(json.dumps(BIOMEDCLIP_CONFIG["model_cfg"]))
    cfg["text_cfg"]["hf_model_pretrained"] = False
    torch.manual_seed(seed)
    from unittest import mock
    with mock.patch("transformers.AutoConfig.from_pretrained",  # the text config, without a hub lookup
                    lambda *a, **k: BertConfig(**{**BERT_BASE, "vocab_size": 30522})):
        model = open_clip.CustomTextCLIP(**cfg).eval()
    state = dict(model.state_dict())
    # transformers < 4.31 (BiomedCLIP's release) saved BERT's position_ids buffer; keep it as the real file has it
    state["text.transformer.embeddings.position_ids"] = torch.arange(512)[None]
    snap = hf_cache_put(cache, BIOMEDCLIP_REPO, {
        "open_clip_config.json": json.dumps(BIOMEDCLIP_CONFIG, indent=4).encode(),
        "open_clip_pytorch_model.bin": _torch_writer(state)})
    files = [snap / "open_clip_config.json", snap / "open_clip_pytorch_model.bin", bert_snap / "config.json",
             bert_snap / "vocab.txt"]
    return Surrogate("biomedclip", files, _fingerprint(model), _size(files))


def _openai_clip(arch: str, name: str):
    def build(home: Path, cache: Path, seed: int) -> Surrogate:
        import open_clip
        from medkt.models.resolve import open_clip_hub_repo
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None).eval()
        repo = open_clip_hub_repo(arch, "openai")
        snap = hf_cache_put(cache, repo, {"open_clip_model.safetensors": _safetensors_writer(model.state_dict())})
        files = [snap / "open_clip_model.safetensors"]
        return Surrogate(name, files, _fingerprint(model), _size(files))
    return build


def _sam(name: str, filename: str, arch: str = "vit_b"):
    def build(home: Path, cache: Path, seed: int) -> Surrogate:
        from segment_anything import sam_model_registry
        torch.manual_seed(seed)
        sam = sam_model_registry[arch]().eval()  # segment_anything's own builder, not medkt's
        path = home / "weights" / name / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        _torch_writer(sam.state_dict())(path)
        return Surrogate(name, [path], _fingerprint(sam), _size([path]))
    return build


def _medclip(home: Path, cache: Path, seed: int) -> Surrogate:
    from medkt.models.medclip import CHECKPOINT_NAME, REAL_BERT, REAL_SWIN, MedCLIPNet, to_original_keys
    tok_snap = hf_cache_put(cache, CLINICALBERT_REPO, {
        "config.json": json.dumps({**BERT_BASE, "vocab_size": REAL_BERT["vocab_size"]}, indent=2).encode(),
        "vocab.txt": synthetic_vocab(REAL_BERT["vocab_size"], cased=True)})
    torch.manual_seed(seed)
    net = MedCLIPNet(REAL_SWIN, REAL_BERT, 512).eval()
    path = home / "weights" / "medclip-vit" / CHECKPOINT_NAME  # the unzipped medclip-vit-pretrained folder
    path.parent.mkdir(parents=True, exist_ok=True)
    _torch_writer(to_original_keys(net))(path)
    files = [path, tok_snap / "config.json", tok_snap / "vocab.txt"]
    return Surrogate("medclip-vit", files, _fingerprint(net), _size(files))


def _hf_folder_into_cache(folder: Path, cache: Path, repo: str) -> list[Path]:
    """Move a ``save_pretrained`` folder's files into the cache layout of ``repo``."""
    files = {}
    for f in sorted(folder.iterdir()):
        if f.suffix in (".safetensors", ".bin"):
            files[f.name] = (lambda src: lambda p: src.replace(p))(f)
        else:
            files[f.name] = f.read_bytes()
    snap = hf_cache_put(cache, repo, files)
    return [snap / n for n in files]


def _clip_bpe_files(folder: Path) -> None:
    """``vocab.json`` + ``merges.txt`` of the real CLIP BPE (the one open_clip ships), with the
    Hugging Face names of the two special tokens, and the repo's tokenizer config."""
    import open_clip
    st = open_clip.SimpleTokenizer()
    specials = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {specials.get(k, k): v for k, v in st.encoder.items()}
    merges = [" ".join(m) for m, _ in sorted(st.bpe_ranks.items(), key=lambda kv: kv[1])]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    eot = "<|endoftext|>"
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": eot, "unk_token": eot, "pad_token": eot}))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": eot, "unk_token": eot, "pad_token": eot}))


def _hf_clip(home: Path, cache: Path, seed: int) -> Surrogate:
    """``openai/clip-vit-base-patch32``: transformers ``CLIPModel`` (ViT-B/32 defaults), its files as
    on the hub: config.json, pytorch_model.bin, preprocessor_config.json, vocab.json, merges.txt,
    tokenizer_config.json, special_tokens_map.json."""
    import tempfile
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(projection_dim=512)).eval()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as d:
        out = Path(d)
        (out / "config.json").write_text(model.config.to_json_string())
        CLIPImageProcessor().save_pretrained(str(out))  # preprocessor_config.json (224, OpenAI mean/std)
        _clip_bpe_files(out)
        _torch_writer(model.state_dict())(out / "pytorch_model.bin")
        files = _hf_folder_into_cache(out, cache, "openai/clip-vit-base-patch32")
    return Surrogate("hf-clip-vit-b32", files, _fingerprint(model), _size(files))


def _vilt(name: str, repo: str, head: str):
    """``dandelin/vilt-b32-*``: ViLT-B/32 (``ViltConfig`` defaults) with one head, as on the hub:
    config.json, pytorch_model.bin, preprocessor_config.json and a BERT-uncased tokenizer."""
    def build(home: Path, cache: Path, seed: int) -> Surrogate:
        import tempfile

        import transformers
        from transformers import ViltConfig, ViltImageProcessor
        torch.manual_seed(seed)
        model = getattr(transformers, head)(ViltConfig(architectures=[head])).eval()
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as d:
            out = Path(d)
            (out / "config.json").write_text(model.config.to_json_string())
            ViltImageProcessor().save_pretrained(str(out))  # 384 shortest edge, size_divisor 32, mean = std = 0.5
            (out / "vocab.txt").write_bytes(synthetic_vocab(30522))
            (out / "tokenizer_config.json").write_text(json.dumps(
                {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 40}))
            (out / "special_tokens_map.json").write_text(json.dumps(
                {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                 "mask_token": "[MASK]"}))
            _torch_writer(model.state_dict())(out / "pytorch_model.bin")
            files = _hf_folder_into_cache(out, cache, repo)
        return Surrogate(name, files, _fingerprint(model), _size(files))
    return build


SURROGATES: dict[str, Callable[[Path, Path, int], Surrogate]] = {
    "biomedclip": _biomedclip,
    "clip-vit-b32": _openai_clip("ViT-B-32-quickgelu", "clip-vit-b32"),
    "clip-vit-b16": _openai_clip("ViT-B-16-quickgelu", "clip-vit-b16"),
    "sam-vit-b": _sam("sam-vit-b", "sam_vit_b_01ec64.pth"),
    "medsam": _sam("medsam", "medsam_vit_b.pth"),  # same architecture as sam-vit-b
    "medclip-vit": _medclip,
    "hf-clip-vit-b32": _hf_clip,
    "vilt-b32-mlm": _vilt("vilt-b32-mlm", "dandelin/vilt-b32-mlm", "ViltForMaskedLM"),
    "vilt-b32-coco": _vilt("vilt-b32-coco", "dandelin/vilt-b32-finetuned-coco", "ViltForImageAndTextRetrieval"),
}


def build_surrogate(name: str, *, medkt_home: str | Path | None = None, hf_cache: str | Path | None = None,
                    seed: int = 0) -> Surrogate:
    """Write the surrogate of registered model ``name`` (see module docstring).

    ``medkt_home`` / ``hf_cache`` default to the current ``MEDKT_HOME`` and Hugging Face cache
    (:mod:`medkt.paths`); point them at a scratch folder in tests.  Disk: ≈0.4 GB (SAM ViT-B)
    to ≈0.8 GB (BiomedCLIP) per model, fp32.
    """
    from medkt.errors import UnknownNameError
    from medkt.paths import hf_cache_dir, medkt_home as default_home
    if name not in SURROGATES:
        raise UnknownNameError("surrogate model", name, SURROGATES)
    home = Path(medkt_home) if medkt_home is not None else default_home()
    cache = Path(hf_cache) if hf_cache is not None else hf_cache_dir()
    with torch.random.fork_rng(devices=[]):
        return SURROGATES[name](home, cache, seed)


def loaded_module(model):
    """The inner module whose state dict a surrogate's ``fingerprint`` describes."""
    for attr in ("sam", "net", "model", "itm", "mlm"):
        if isinstance(getattr(model, attr, None), torch.nn.Module):
            return getattr(model, attr)
    return model


def check_load(name: str, encode: bool = False) -> dict:
    """Load registered model ``name`` the way a user does (``create_model(name)``, offline) and
    run one small forward (for SAM the prompt decoder; the image encoder too with ``encode``);
    → ``{"fingerprint", "weights", "parameters", "forward"}``.

    Run it in a process whose ``MEDKT_HOME`` / ``HF_HUB_CACHE`` point at the surrogate's
    folders *before* ``huggingface_hub`` is imported (it reads them once, at import).
    """
    import numpy as np
    from medkt.models import create_model
    from medkt.models.checkpoints import weights_fingerprint
    model = create_model(name)
    out = {"fingerprint": weights_fingerprint(loaded_module(model)), "weights": str(model.weights),
           "parameters": sum(p.numel() for p in loaded_module(model).parameters())}
    rng = np.random.default_rng(0)
    with torch.no_grad():
        if getattr(model, "kind", "vlm") == "sam":
            img = (rng.random((96, 128)) * 255).astype(np.uint8)
            prep = model.prepare_image(img)
            g = model.embedding_size  # the 1024 px encoder (~1 TF) only when asked: its weights are fingerprinted
            emb = model.embed(prep.pixels) if encode else torch.zeros(1, 256, g, g)
            low, _ = model.decode(emb, boxes=model.transform_boxes([[10, 10, 60, 50]], prep))
            out["forward"] = list(model.upscale(low, prep).shape)
        elif getattr(model, "family", "") == "vilt":
            px = model.normalize(torch.rand(1, 3, model.image_size, model.image_size))
            tok = model.tokenize(["a chest x-ray showing a lung nodule"])
            head = model.match_score if model.itm is not None else model.mlm_logits
            out["forward"] = [list(head(px, tok).shape), int(tok["input_ids"].shape[-1])]
        else:
            px = model.normalize(torch.rand(1, model.in_channels, model.image_size, model.image_size))
            img = model.encode_image(px)
            tok = model.tokenize(["a chest x-ray showing a lung nodule"])
            txt = model.encode_text(tok)
            out["forward"] = [list(img.shape), list(txt.shape), int(tok["input_ids"].shape[-1])]
    return out
