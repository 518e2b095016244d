"""Image-text retrieval pipeline (Flickr30k / MSCOCO Karpathy test): R@1/5/10 both ways.

* ``similarity`` (CLIP-style dual encoders): a block returns its images' and its captions'
  embeddings; the merge stacks all of them and scores the full gallery once.
* ``itm`` (ViLT): every image is scored against every caption of the gallery with the
  match head (the gallery is all captions of the evaluated images); a block returns its
  rows of the full ``[images, captions]`` score matrix.

R@K is a set-level metric: it is computed only after gathering every block (so a sharded
run gives the same numbers as an unsharded one).  "Text retrieval" in the paper is
image→text (``i2t_R@K``), "image retrieval" text→image (``t2i_R@K``).
"""
from __future__ import annotations

import numpy as np
import torch

from medkt.bench.common import BlockResult, UnitResult, image_batch, itm_scores, scorer_for
from medkt.bench.datasets import open_dataset
from medkt.errors import InputError


class Worker:
    def __init__(self, spec, model):
        self.model = model.eval()
        self.spec = spec
        self.scorer = scorer_for(model, spec.options.scorer)
        self.gallery = list(spec.options.gallery)
        self.itm_batch = spec.options.itm_batch
        if self.scorer == "itm" and not self.gallery:
            raise InputError("ITM retrieval needs the caption gallery (options.gallery).")

    def __call__(self, cases) -> BlockResult:
        ds = open_dataset(self.spec.dataset, cases)
        pixels = image_batch(self.model, ds, cases)
        rows = [{"case_id": c.case_id, "n_captions": len(c.captions)} for c in cases]
        with torch.no_grad():
            if self.scorer == "similarity":
                texts = [t for c in cases for t in c.captions]
                img = self.model.encode_image(pixels, normalize=True).float().cpu().numpy()
                txt = self.model.encode_texts(texts, normalize=True).float().cpu().numpy()
                return BlockResult(rows, {"image_emb": img, "text_emb": txt})
            scores = itm_scores(self.model, pixels, self.gallery, self.itm_batch).numpy()
            return BlockResult(rows, {"itm": scores.astype(np.float32)})


def similarity_matrix(arrays: dict) -> np.ndarray:
    """``[n_images, n_captions]`` scores from the gathered arrays of either scorer."""
    if "itm" in arrays:
        return np.asarray(arrays["itm"], dtype=np.float64)
    img = np.asarray(arrays["image_emb"], dtype=np.float64)
    txt = np.asarray(arrays["text_emb"], dtype=np.float64)
    return img @ txt.T


def finalize(rows: list[dict], arrays: dict, context) -> UnitResult:
    """R@K both ways over the gathered gallery, plus per-image ranks (1-based)."""
    from medkt.metrics.retrieval import ranks_image_to_text, ranks_text_to_image, retrieval_recall
    if not rows:
        return UnitResult(rows, {"n_images": 0})
    cap2img = np.repeat(np.arange(len(rows)), [r["n_captions"] for r in rows])
    sim = similarity_matrix(arrays)
    if sim.shape != (len(rows), cap2img.size):
        raise InputError(f"retrieval scores have shape {sim.shape}, expected {(len(rows), cap2img.size)}; "
                         "were all parts merged?")
    metrics = retrieval_recall(sim, cap2img, ks=context.ks)
    i2t = ranks_image_to_text(sim, cap2img)
    t2i = ranks_text_to_image(sim, cap2img)
    out_rows = []
    for i, r in enumerate(rows):
        mine = t2i[cap2img == i]
        out_rows.append({**r, "i2t_rank": int(i2t[i]) + 1, "t2i_best_rank": int(mine.min()) + 1,
                         "t2i_ranks": " ".join(str(int(x) + 1) for x in mine)})
    return UnitResult(out_rows, metrics)
