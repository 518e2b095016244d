"""Why does saliency (not) land on a phantom finding?  Model-side checks with counterfactual twins.

* :func:`occlusion_map` — for each patch cell, paste the normal twin's pixels into the
  finding image and measure the drop of ``cos(image, prompt)``: where the *model's*
  evidence for the prompt lies, independent of M2IB.  If this map points at the finding
  but M2IB does not, the bottleneck (layer, β) is at fault; if it does not either, the
  encoder learnt a shortcut (a global cue, a side effect of the finding, the modality).
* :func:`twin_margin` — ``cos(finding image, prompt) − cos(twin, prompt)``: how much of the
  prompt's match comes from the finding itself (≈ 0: the finding is ignored).
* :func:`diagnose` — both, plus M2IB's pointing game, per modality.
* :func:`embedding_shift` — cos(finding image, twin) and the margins under several prompts: is
  the finding seen at all, and which text does it move the image towards?

Maps are on the image grid ``[S, S]`` (bilinear from the ``g × g`` cell grid, as M2IB's).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def _embed(model, images: np.ndarray) -> torch.Tensor:
    from medkt.worlds.evaluate import image_features
    from medkt.worlds.phantom_world import gray_to_rgb
    return image_features(model, gray_to_rgb(images))


@torch.no_grad()
def occlusion_map(model, image: np.ndarray, twin: np.ndarray, text: torch.Tensor, cells: int = 8) -> np.ndarray:
    """Drop of ``cos(image, text)`` when each of ``cells²`` cells shows the twin → ``[S, S]`` (≥ 0)."""
    s = image.shape[0]
    c = s // cells
    batch = np.repeat(image[None], cells * cells, axis=0)
    for k in range(cells * cells):
        i, j = divmod(k, cells)
        batch[k, i * c:(i + 1) * c, j * c:(j + 1) * c] = twin[i * c:(i + 1) * c, j * c:(j + 1) * c]
    base = float(_embed(model, image[None]) @ text.t())
    drop = base - (_embed(model, batch) @ text.t())[:, 0]
    grid = drop.clamp_min(0).view(1, 1, cells, cells).float()
    return F.interpolate(grid, size=(s, s), mode="bilinear", align_corners=False)[0, 0].numpy()


@torch.no_grad()
def diagnose(model, modality: str, finding: str, prompt: str, n: int = 8, seed: int = 777) -> dict:
    """Occlusion pointing / mass in GT and the twin margin on ``n`` evaluation phantoms."""
    from medkt.worlds.phantom_experiments import saliency_scores
    from medkt.worlds.phantom_world import phantom_eval_seed
    from medkt.worlds.phantoms import counterfactual_set
    ims, twins, masks, _ = counterfactual_set(modality, finding, n, phantom_eval_seed(modality, finding, seed))
    text = model.encode_texts([prompt], normalize=True).float()
    rows = [saliency_scores(occlusion_map(model, im, tw, text), m) for im, tw, m in zip(ims, twins, masks)]
    margin = (_embed(model, ims) @ text.t() - _embed(model, twins) @ text.t())[:, 0]
    return {"occlusion_pointing": 100.0 * float(np.mean([r["pointing"] for r in rows])),
            "occlusion_in_mask": 100.0 * float(np.nanmean([r["energy_in_mask"] for r in rows])),
            "twin_margin": float(margin.mean())}


@torch.no_grad()
def embedding_shift(model, modality: str, finding: str, prompts: dict, n: int = 12, seed: int = 777) -> dict:
    """How far a finding moves the image embedding, and towards which prompts.

    ``prompts``: ``{key: text}``.  Returns ``twin_cos`` — mean cos(finding image, its twin) in
    [-1, 1] (≈ 1: the encoder is blind to the finding, whatever any prompt says) — and per key
    ``{"finding": mean cos(finding image, text), "twin": mean cos(twin, text), "margin": their
    difference}``.  A seen finding can have a low ``twin_cos`` and still a margin ≤ 0 under its
    description: the encoder sees it but reads it as something else (docs/worlds.md, session 24).
    """
    from medkt.worlds.phantom_world import phantom_eval_seed
    from medkt.worlds.phantoms import counterfactual_set
    ims, twins, _, _ = counterfactual_set(modality, finding, n, phantom_eval_seed(modality, finding, seed))
    a, b = _embed(model, ims).float(), _embed(model, twins).float()
    out = {"twin_cos": float((a * b).sum(1).mean())}
    for key, p in prompts.items():
        t = model.encode_texts([p], normalize=True).float()
        fa, fb = float((a @ t.t()).mean()), float((b @ t.t()).mean())
        out[key] = {"finding": fa, "twin": fb, "margin": fa - fb}
    return out
