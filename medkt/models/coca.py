"""CoCa (open_clip) with medkt's own caption decoding.

open_clip 3.3's ``CoCa.generate()`` asserts on a transformers class that no longer exists
(open_clip#1129), so :class:`CocaModel` decodes itself:

* ``generate(pixels, method="greedy" | "beam", max_len=30, num_beams=4, min_len=1)`` →
  one caption string per image (special tokens stripped, lower-case BPE text);
* ``caption_loss(pixels, texts)`` → teacher-forced token cross-entropy (pad id 0 ignored),
  the ``caption`` term of open_clip's ``CoCaLoss``;
* parameter group ``decoder`` = ``model.text_decoder`` (multimodal decoder).

``pixels`` are normalised ``[B, 3, S, S]`` tensors (see :class:`VisionLanguageModel`).
The image is encoded once per call; each decoding step re-runs the (small) text tower on
the prefix, which keeps the code independent of open_clip internals beyond ``forward``.
Registered: ``coca-vit-l14`` (laion2b_s13b_b90k), ``coca-vit-l14-mscoco``
(mscoco_finetuned_laion2b_s13b_b90k) and ``tiny-coca`` (random init, 64 px).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from medkt.errors import ConfigError
from medkt.models.base import CAPTION, CONTRASTIVE, VISUAL_TOKENS
from medkt.models.open_clip_adapter import OpenClipModel
from medkt.models.registry import ModelSpec, register_model

SOT_ID, EOT_ID, PAD_ID = 49406, 49407, 0
METHODS = ("greedy", "beam")


class CocaModel(OpenClipModel):
    """open_clip ``CoCa`` behind the medkt interface, plus captioning (``CAPTION``)."""

    family = "coca"
    capabilities = frozenset({CONTRASTIVE, VISUAL_TOKENS, CAPTION})

    # ------------------------------------------------------------------ contrastive
    def encode_text(self, tokens: dict, normalize: bool = True) -> torch.Tensor:
        z = self.model.encode_text(tokens["input_ids"], normalize=False)  # CoCa defaults to True
        return F.normalize(z, dim=-1) if normalize else z

    # ------------------------------------------------------------------ captioning
    @property
    def sot_id(self) -> int:
        return int(getattr(self.tokenizer, "sot_token_id", SOT_ID))

    @property
    def eot_id(self) -> int:
        return int(getattr(self.tokenizer, "eot_token_id", EOT_ID))

    @property
    def pad_id(self) -> int:
        return int(getattr(self.model, "pad_id", PAD_ID))

    @property
    def max_context(self) -> int:
        return int(getattr(self.model, "context_length", 76))

    def _next_logits(self, tokens: torch.Tensor, latent: torch.Tensor, embs: torch.Tensor) -> torch.Tensor:
        out = self.model(None, tokens, image_latent=latent, image_embs=embs, output_labels=False)
        return out["logits"][:, -1].float()

    def caption_loss(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Mean teacher-forced cross-entropy of ``texts`` given ``pixels`` (pad tokens ignored)."""
        ids = self.tokenize(list(texts))["input_ids"].to(pixels.device)
        out = self.model(pixels, ids)
        logits, labels = out["logits"], out["labels"]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=self.pad_id)

    @torch.no_grad()
    def generate(self, pixels: torch.Tensor, method: str = "greedy", max_len: int = 30, *,
                 num_beams: int = 4, min_len: int = 1, length_penalty: float = 1.0) -> list[str]:
        """Caption each image of ``pixels`` ``[B, 3, S, S]`` → ``B`` strings.

        ``max_len`` counts generated tokens (capped by the decoder context); start-of-text
        and the pad id are never generated; ``min_len``
        suppresses end-of-text until that many tokens exist; beam scores are summed
        log-probabilities divided by ``length ** length_penalty``.
        """
        if method not in METHODS:
            raise ConfigError(f"unknown caption decoding method '{method}'; use one of {', '.join(METHODS)}.")
        max_len = max(1, min(int(max_len), self.max_context - 1))
        latent, embs = self.model._encode_image(pixels)
        if method == "greedy":
            seqs = self._greedy(latent, embs, max_len, min_len)
        else:
            seqs = [self._beam(latent[i:i + 1], embs[i:i + 1], max_len, min_len, num_beams, length_penalty)
                    for i in range(pixels.shape[0])]
        return [self.decode_ids(s) for s in seqs]

    def _mask(self, logits: torch.Tensor, n_generated: int, min_len: int) -> torch.Tensor:
        logits[:, self.sot_id] = float("-inf")
        logits[:, self.pad_id] = float("-inf")  # pad is ignored in training: never a real target
        if n_generated < min_len:
            logits[:, self.eot_id] = float("-inf")
        return logits

    def _greedy(self, latent, embs, max_len: int, min_len: int) -> list[list[int]]:
        b = latent.shape[0]
        tokens = torch.full((b, 1), self.sot_id, dtype=torch.long, device=latent.device)
        done = torch.zeros(b, dtype=torch.bool, device=latent.device)
        for step in range(max_len):
            nxt = self._mask(self._next_logits(tokens, latent, embs), step, min_len).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.eot_id), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            done |= nxt == self.eot_id
            if bool(done.all()):
                break
        return [row[1:].tolist() for row in tokens]

    def _beam(self, latent, embs, max_len: int, min_len: int, k: int, alpha: float) -> list[int]:
        """Beam search for one image (``latent`` ``[1, D]``, ``embs`` ``[1, N, C]``)."""
        dev = latent.device
        beams = torch.full((1, 1), self.sot_id, dtype=torch.long, device=dev)
        scores = torch.zeros(1, device=dev)
        finished: list[tuple[float, list[int]]] = []
        for step in range(max_len):
            n = beams.shape[0]
            logp = F.log_softmax(self._mask(
                self._next_logits(beams, latent.expand(n, -1), embs.expand(n, -1, -1)), step, min_len), -1)
            cand = (scores[:, None] + logp).reshape(-1)
            top, idx = cand.topk(min(2 * k, cand.numel()))
            vocab = logp.shape[-1]
            new_beams, new_scores = [], []
            for s, i in zip(top.tolist(), idx.tolist()):
                src, tok = divmod(i, vocab)
                seq = beams[src].tolist()[1:] + [tok]
                if tok == self.eot_id:
                    finished.append((s / (len(seq) ** alpha), seq))
                else:
                    new_beams.append(torch.cat([beams[src], beams.new_tensor([tok])]))
                    new_scores.append(s)
                if len(new_beams) == k:
                    break
            if len(finished) >= k or not new_beams:
                break
            beams, scores = torch.stack(new_beams), torch.tensor(new_scores, device=dev)
        if not finished:  # hit max_len: rank the live beams
            finished = [(s / (beams.shape[1] - 1) ** alpha, b.tolist()[1:])
                        for s, b in zip(scores.tolist(), beams)]
        return max(finished, key=lambda t: t[0])[1]

    def decode_ids(self, ids: Sequence[int]) -> str:
        """Token ids → text, stopping at end-of-text and dropping special tokens."""
        out = []
        for t in ids:
            if t == self.eot_id:
                break
            if t not in (self.sot_id, self.pad_id):
                out.append(int(t))
        if hasattr(self.tokenizer, "decode"):
            text = self.tokenizer.decode(out)
        else:
            import open_clip
            text = open_clip.decode(torch.tensor(out))
        return text.replace("<start_of_text>", "").replace("<end_of_text>", "").strip()


# ---------------------------------------------------------------------- registry
def _build(spec: ModelSpec, weights: str | None, device: str):
    from medkt.models.open_clip_loader import build_open_clip, build_tiny_open_clip
    model = (build_tiny_open_clip if spec.tiny else build_open_clip)(spec, weights, device)
    if spec.tiny and not weights:
        # open_clip 3.3 never initialises the decoder's text_projection (torch.empty, i.e.
        # arbitrary memory; its init_parameters() is broken): initialise it, seeded.
        dec = model.model.text_decoder
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            torch.nn.init.normal_(dec.text_projection, std=dec.width ** -0.5)
    return model


for _name, _tag, _desc in [
        ("coca-vit-l14", "laion2b_s13b_b90k", "CoCa ViT-L/14 (LAION-2B)"),
        ("coca-vit-l14-mscoco", "mscoco_finetuned_laion2b_s13b_b90k", "CoCa ViT-L/14 fine-tuned on MS-COCO")]:
    register_model(ModelSpec(name=_name, family="coca", builder=_build, description=_desc,
                             source=f"open_clip coca_ViT-L-14 / {_tag}",
                             options={"arch": "coca_ViT-L-14", "tag": _tag}))

register_model(ModelSpec(
    name="tiny-coca", family="coca", builder=_build, tiny=True,
    description="tiny random-init open_clip CoCa (64 px, 2+2+2 layers) for tests and demos",
    source="built offline (medkt/assets/model_configs/tiny-coca.json)", options={"arch": "tiny-coca"}))
