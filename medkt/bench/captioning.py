"""Captioning pipeline (MSCOCO Karpathy test): CoCa generation, scored with pycocoevalcap.

Generation shards freely (one caption per image, per block); the scores are set-level
(CIDEr's IDF comes from the whole reference set, BLEU is a corpus statistic), so they
are computed only after gathering every block, through
:func:`medkt.metrics.caption_scores` (BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE; a metric
that cannot run here — SPICE offline, METEOR without Java — is listed as skipped with
its reason, never reported as 0).
"""
from __future__ import annotations

import json

import torch

from medkt.bench.common import BlockResult, UnitResult, image_batch
from medkt.bench.datasets import open_dataset
from medkt.models.base import CAPTION


class Worker:
    def __init__(self, spec, model):
        model.require(CAPTION)
        self.model = model.eval()
        self.spec = spec
        self.method = spec.options.method
        self.max_len = spec.options.max_len

    def __call__(self, cases) -> BlockResult:
        ds = open_dataset(self.spec.dataset, cases)
        pixels = image_batch(self.model, ds, cases)
        with torch.no_grad():
            caps = self.model.generate(pixels, method=self.method, max_len=self.max_len)
        rows = [{"case_id": c.case_id, "caption": " ".join(str(t).split()),
                 "references": json.dumps(c.captions)} for c, t in zip(cases, caps)]
        return BlockResult(rows)


def finalize(rows: list[dict], arrays: dict, context) -> UnitResult:
    """Corpus-level caption scores over all gathered captions."""
    from medkt.metrics import caption_scores
    if not rows:
        return UnitResult(rows, {"n_images": 0})
    refs = {r["case_id"]: json.loads(r["references"]) for r in rows}
    cands = {r["case_id"]: (r["caption"] or "<empty>") for r in rows}
    res = caption_scores(refs, cands, metrics=context.metrics, tokenizer=context.tokenizer)
    metrics = {**res.scores, "n_images": len(rows), "tokenizer": res.tokenizer}
    if res.skipped:
        metrics["skipped"] = dict(res.skipped)
    if res.notes:
        metrics["notes"] = list(res.notes)
    return UnitResult(rows, metrics)
