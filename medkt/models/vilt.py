"""ViLT (single-stream) behind the medkt interface: image-text match (ITM) and masked LM.

ViLT has no separate encoders, so it implements the ``ITM`` / ``MLM`` capabilities instead
of ``CONTRASTIVE``:

* ``match_score(pixels, tokens, pixel_mask=None)`` → ``[B]`` logit of
  ``ViltForImageAndTextRetrieval.rank_output`` (a single logit; HF has no 2-way ITM head,
  so "match" training uses ``BCEWithLogits(score, 1)``);
* ``mlm_logits(pixels, tokens, pixel_mask=None)`` → ``[B, T, V]`` from ``ViltForMaskedLM``.

``pixels`` are normalised ``[B, 3, H, W]`` (mean = std = 0.5).  ``pixel_mask`` ``[B, H, W]``
(1 = real pixel) defaults to all ones *of the given size* (transformers would otherwise
assume ``image_size`` squares).  medkt's ``preprocess`` makes ``image_size`` squares (384
for the real models); the ViLT processor's aspect-preserving resize + padding is available
as ``model.processor``.  Text: BERT tokenizer, padded to ``max_position_embeddings`` (40).
Parameter groups: ``visual_tower`` = image patch/position embeddings, ``text_tower`` = text
embeddings, ``other`` = the shared transformer and pooler, ``decoder`` = task heads.
Registered: ``vilt-b32-mlm`` (dandelin/vilt-b32-mlm), ``vilt-b32-coco``
(dandelin/vilt-b32-finetuned-coco) and ``tiny-vilt`` (random init, 64 px, both heads).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from medkt.errors import ConfigError
from medkt.models.base import ITM, MLM, VisionLanguageModel
from medkt.models.registry import ModelSpec, register_model

VILT_MEAN = (0.5, 0.5, 0.5)
VILT_STD = (0.5, 0.5, 0.5)
HEADS = {"ViltForImageAndTextRetrieval": "itm", "ViltForMaskedLM": "mlm"}


class ViltModel(VisionLanguageModel):
    """Wraps ``ViltForImageAndTextRetrieval`` (``itm``) and/or ``ViltForMaskedLM`` (``mlm``)."""

    family = "vilt"

    def __init__(self, *, itm: nn.Module | None = None, mlm: nn.Module | None = None, processor=None,
                 tokenizer=None, name: str, weights: str | None = None):
        head = itm if itm is not None else mlm
        if head is None:
            raise ConfigError("a ViLT model needs a retrieval (ITM) or masked-LM head.")
        cfg = head.config
        super().__init__(name=name, image_size=cfg.image_size, mean=VILT_MEAN, std=VILT_STD, in_channels=3,
                         weights=weights)
        self.itm = itm
        self.mlm = mlm
        self.processor = processor
        self.tokenizer = tokenizer if tokenizer is not None else getattr(processor, "tokenizer", None)
        self.max_length = int(cfg.max_position_embeddings)
        self.capabilities = frozenset(c for c, m in ((ITM, itm), (MLM, mlm)) if m is not None)

    @property
    def backbone(self) -> nn.Module:
        return (self.itm if self.itm is not None else self.mlm).vilt

    def tokenize(self, texts: Sequence[str]) -> dict:
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    def _inputs(self, pixels, tokens, pixel_mask):
        if pixel_mask is None:
            pixel_mask = torch.ones(pixels.shape[0], *pixels.shape[-2:], dtype=torch.long, device=pixels.device)
        return dict(pixel_values=pixels, pixel_mask=pixel_mask, **{k: v.to(pixels.device) for k, v in tokens.items()})

    def match_score(self, pixels: torch.Tensor, tokens: dict, pixel_mask: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Image-text match logit ``[B]`` for aligned (image, text) pairs."""
        self.require(ITM)
        return self.itm(**self._inputs(pixels, tokens, pixel_mask)).logits[:, 0]

    def mlm_logits(self, pixels: torch.Tensor, tokens: dict, pixel_mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """Masked-LM logits ``[B, T, vocab]`` over the text positions."""
        self.require(MLM)
        return self.mlm(**self._inputs(pixels, tokens, pixel_mask)).logits

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        emb = self.backbone.embeddings
        text = list(emb.text_embeddings.parameters())
        tids = {id(p) for p in text}
        shared = {id(p) for p in self.backbone.parameters()}  # the MLM decoder is tied to word embeddings
        heads = [p for h in (self.itm, self.mlm) if h is not None
                 for n, m in h.named_children() if n != "vilt" for p in m.parameters() if id(p) not in shared]
        return self._check_groups_cover({
            "visual_tower": [p for p in emb.parameters() if id(p) not in tids],
            "text_tower": text, "decoder": heads})


# ---------------------------------------------------------------------- load / save
def load_vilt(source: str, *, name: str | None = None, device: str = "cpu", spec=None) -> ViltModel:
    """Load from a hub id or folder holding one head (``config.json``) or ``itm/`` + ``mlm/`` subfolders."""
    from transformers import AutoConfig, ViltProcessor
    from medkt.models.weights import hf_local_only
    root = Path(source).expanduser()
    local = root.is_dir()
    kw = {"local_files_only": True} if local else hf_local_only(spec, source)
    parts = ([str(root / sub) for sub in ("itm", "mlm") if (root / sub / "config.json").is_file()]
             if local and not (root / "config.json").is_file() else [str(source)])
    heads = {}
    for part in parts:
        arch = (AutoConfig.from_pretrained(part, **kw).architectures or ["ViltForMaskedLM"])[0]
        if arch not in HEADS:
            raise ConfigError(f"'{part}' holds a {arch}; medkt's ViLT adapter needs one of "
                              f"{', '.join(HEADS)}.")
        import transformers
        heads[HEADS[arch]] = getattr(transformers, arch).from_pretrained(part, **kw).to(device).eval()
    processor = ViltProcessor.from_pretrained(str(source), **kw)
    return ViltModel(**heads, processor=processor, name=name or str(source), weights=str(source))


def save_vilt(model: ViltModel, folder) -> Path:
    """``save_pretrained`` each head (``itm/``, ``mlm/``) and the processor (root) into ``folder``."""
    folder = Path(folder)
    for sub, head in (("itm", model.itm), ("mlm", model.mlm)):
        if head is not None:
            head.save_pretrained(str(folder / sub))
    model.processor.save_pretrained(str(folder))
    return folder


def build_tiny_vilt(seed: int = 0, image_size: int = 64) -> ViltModel:
    """Tiny ViLT (hidden 64, 2 layers, patch 16, toy vocab) with both heads sharing one backbone."""
    from transformers import ViltConfig, ViltForImageAndTextRetrieval, ViltForMaskedLM, ViltImageProcessor, \
        ViltProcessor
    from medkt.models.hf_adapter import toy_bert_tokenizer
    tok = toy_bert_tokenizer(32)
    cfg = ViltConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, image_size=image_size, patch_size=16, max_position_embeddings=32,
                     max_image_length=-1, num_images=-1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        itm = ViltForImageAndTextRetrieval(cfg).eval()
        mlm = ViltForMaskedLM(cfg).eval()
    mlm.vilt = itm.vilt  # one shared backbone, as after ViLT pre-training; re-tie the MLM decoder
    mlm.mlm_score.decoder.weight = itm.vilt.embeddings.text_embeddings.word_embeddings.weight
    proc = ViltProcessor(image_processor=ViltImageProcessor(size={"shortest_edge": image_size}, size_divisor=16),
                         tokenizer=tok)
    return ViltModel(itm=itm, mlm=mlm, processor=proc, name="tiny-vilt", weights=f"random-init (seed {seed})")


def _build(spec: ModelSpec, weights: str | None, device: str) -> ViltModel:
    from medkt.models.weights import resolve_hf_folder
    if spec.tiny and not weights:
        return build_tiny_vilt().to(device)
    source = resolve_hf_folder(spec, weights)
    return load_vilt(source, name=spec.name, device=device, spec=spec)


for _name, _repo, _desc in [("vilt-b32-mlm", "dandelin/vilt-b32-mlm", "ViLT-B/32 pre-trained (masked LM head)"),
                            ("vilt-b32-coco", "dandelin/vilt-b32-finetuned-coco",
                             "ViLT-B/32 fine-tuned for COCO retrieval (ITM score)")]:
    register_model(ModelSpec(name=_name, family="vilt", builder=_build, description=_desc,
                             source=f"hf-hub:{_repo}", files=[{"repo": _repo}],
                             options={"repo": _repo, "arch": "ViLT-B/32", "image_size": 384, "in_channels": 3,
                                      "mean": VILT_MEAN, "std": VILT_STD}))
register_model(ModelSpec(
    name="tiny-vilt", family="vilt", builder=_build, tiny=True,
    description="tiny random-init ViLT (64 px, 2 layers, toy vocab; ITM + MLM heads) for tests",
    source="built offline (transformers ViltConfig + medkt/assets/tokenizers/toy-bert)",
    options={"arch": "ViLT (64 px, 2 layers)", "image_size": 64, "in_channels": 3, "mean": VILT_MEAN, "std": VILT_STD}))
