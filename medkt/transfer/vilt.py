"""ViLT-specific fine-tuning losses (single-stream model: ``ITM`` / ``MLM`` capabilities).

* ``itm`` (paper §4.4.2): maximise the match score of (image, its caption) and minimise
  it for negatives — ``BCEWithLogits`` on ``match_score`` with labels 1 / 0.  Negatives
  (``itm_negatives`` per positive): the image with a caption of another concept (the
  caption bank: other concepts + ``negative_captions``); when the bank holds no other
  caption (one concept alone), the caption with a pure-noise image instead.
* ``mlm`` (implicit transfer, paper §8.9): masked-language modelling of the caption
  "A <name> is <short description>" next to an image (pure noise in the implicit setting,
  ``noise_control: true``; inverted images in the explicit MLM baseline), with
  whole-word masking at ``mlm_probability`` (15 %), BERT's 80/10/10 replacement, and a
  fresh mask at every step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from medkt.models.base import ITM, MLM, to_device


def itm_loss(ctx, batch):
    """``(loss, parts)`` for the ITM fine-tune (see module docstring)."""
    model, cfg, g = ctx.model, ctx.cfg, ctx.generator
    model.require(ITM)
    x, caps = batch["x"], batch["captions"]
    pix = ctx.pixels(x)
    neg_pix, neg_caps = [], []
    for i, c in enumerate(caps):
        others = [b for b in ctx.bank if b != c]
        for _ in range(max(0, cfg.itm_negatives)):
            if others:
                j = int(torch.randint(0, len(others), (1,), generator=g))
                neg_pix.append(pix[i])
                neg_caps.append(others[j])
            else:
                noise = torch.rand(x.shape[1:], generator=g).to(x.device, x.dtype)
                neg_pix.append(ctx.pixels(noise[None])[0])
                neg_caps.append(c)
    all_pix = torch.cat([pix, torch.stack(neg_pix)]) if neg_pix else pix
    all_caps = list(caps) + neg_caps
    labels = torch.cat([torch.ones(len(caps)), torch.zeros(len(neg_caps))]).to(x.device)
    logits = model.match_score(all_pix, to_device(model.tokenize(all_caps), x.device)).float().view(-1)
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    with torch.no_grad():
        pos = torch.sigmoid(logits[: len(caps)]).mean()
    return loss, {"itm": float(loss.detach()), "p_match_pos": float(pos)}


def whole_word_mask(model, captions, probability: float, generator: torch.Generator):
    """Tokenise ``captions`` and mask whole words → ``(tokens dict, labels [B, T])``.

    Each word is selected with ``probability`` (at least one per caption); every
    word-piece of a selected word becomes a target: 80 % ``[MASK]``, 10 % a random token,
    10 % unchanged.  Labels are ``-100`` at unselected positions.
    """
    tok = model.tokenizer
    enc = tok(list(captions), padding="max_length", truncation=True, max_length=model.max_length,
              return_tensors="pt")
    ids = enc["input_ids"].clone()
    labels = torch.full_like(ids, -100)
    special = set(tok.all_special_ids)
    for b in range(ids.shape[0]):
        words: dict[int, list[int]] = {}
        pieces = tok.convert_ids_to_tokens(ids[b].tolist())
        w = -1
        for t, (tid, piece) in enumerate(zip(ids[b].tolist(), pieces)):
            if tid in special:
                continue
            if not piece.startswith("##") or w < 0:
                w += 1
            words.setdefault(w, []).append(t)
        if not words:
            continue
        pick = torch.rand(len(words), generator=generator) < probability
        if not bool(pick.any()):
            pick[int(torch.randint(0, len(words), (1,), generator=generator))] = True
        for wi, chosen in enumerate(pick.tolist()):
            if not chosen:
                continue
            for t in words[wi]:
                labels[b, t] = ids[b, t]
                r = float(torch.rand(1, generator=generator))
                if r < 0.8:
                    ids[b, t] = tok.mask_token_id
                elif r < 0.9:
                    ids[b, t] = int(torch.randint(0, tok.vocab_size, (1,), generator=generator))
    out = {k: enc[k] for k in ("attention_mask", "token_type_ids") if k in enc}
    out["input_ids"] = ids
    return out, labels


def mlm_loss(ctx, batch):
    """``(loss, parts)`` for the MLM fine-tune: cross-entropy on the masked word-pieces."""
    model, cfg = ctx.model, ctx.cfg
    model.require(MLM)
    x = batch["x"]
    tokens, labels = whole_word_mask(model, batch["captions"], cfg.mlm_probability, ctx.generator)
    logits = model.mlm_logits(ctx.pixels(x), to_device(tokens, x.device))
    labels = labels.to(x.device)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)
    return loss, {"mlm": float(loss.detach())}
