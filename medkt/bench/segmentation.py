"""Zero-shot segmentation pipeline: M2IB saliency → post-processing → SAM (``medkt.segment``).

A worker holds one :class:`medkt.segmentation.Segmenter` (the CLIP-family model — baseline or
after KT — and SAM, each loaded once) and segments a block of slices with the group's
text prompt.  Per case: DSC, NSD, IoU, HD95 and the case type from
:func:`medkt.metrics.segmentation_scores` with the experiment's ``segmentation.metrics``
(a :class:`medkt.metrics.SegMetricConfig`, built once when the config is loaded; its
conventions are stated in the summary); the saliency map and the mask are
kept for the qualitative overlays (paper Figs. 6–7).  The summary is the per-case mean
with a bootstrap CI (:func:`medkt.metrics.summarize_segmentation`).
"""
from __future__ import annotations

import numpy as np

from medkt.bench.common import BlockResult, UnitResult, failed_row, read_cases
from medkt.bench.datasets import open_dataset
from medkt.bench.tasks import SegmentationContext, SegmentationOptions
from medkt.errors import ConfigError


class Worker:
    def __init__(self, spec, model):
        from medkt.models import create_model
        from medkt.segmentation import Segmenter, load_segment_config
        opts: SegmentationOptions = spec.options
        self.spec = spec
        self.prompt = opts.prompt
        cfg = load_segment_config(dict(opts.spec.config))
        cfg.model = spec.model
        cfg.sam.model = opts.spec.sam
        cfg.sam.weights = opts.spec.sam_weights
        if cfg.seed is None:
            cfg.seed = spec.seed
        cfg.validate()
        sam = create_model(cfg.sam.model, weights=cfg.sam.weights, device=spec.device)
        self.segmenter = Segmenter(cfg, device=spec.device, model=model.eval(), sam_model=sam)
        self.metric_cfg = opts.spec.metrics
        self.save_maps = opts.spec.save_predictions

    def __call__(self, cases) -> BlockResult:
        from medkt.metrics import segmentation_scores
        ds = open_dataset(self.spec.dataset, cases)
        readable, failed = read_cases(ds, cases, with_mask=True)
        if self.metric_cfg.distance_units == "mm":
            lacking = [c.case_id for c, _, _ in readable if ds.spacing(c) is None]
            if lacking:  # a setting that cannot work for this dataset: stop before segmenting
                raise ConfigError(f"dataset '{ds.name}', case '{lacking[0]}': NSD/HD95 are set to mm but the "
                                  "image carries no pixel spacing (2-D image files have none).",
                                  hint="set segmentation.metrics.nsd_units: px (evaluate_dataset: "
                                       "metrics={'nsd_units': 'px'}; pipelines: --nsd-units px)")
        results = {}
        if readable:
            out = self.segmenter.segment_slices([im for _, im, _ in readable], self.prompt,
                                                names=[c.case_id for c, _, _ in readable])
            results = {c.case_id: (res, gt) for (c, _, gt), res in zip(readable, out)}
        rows, maps = [], {}
        for c in cases:
            if c.case_id in failed:
                rows.append(failed_row(c, failed[c.case_id]))
                continue
            res, gt = results[c.case_id]
            if gt.shape != res.mask.shape:
                rows.append(failed_row(c, f"mask shape {gt.shape} differs from image {res.mask.shape}"))
                continue
            spacing = ds.spacing(c) if self.metric_cfg.distance_units == "mm" else None
            scores = segmentation_scores(res.mask, gt, spacing=spacing, config=self.metric_cfg)
            rows.append({"case_id": c.case_id, "status": "ok", "sam_status": res.status,
                         **{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in scores.items()}})
            if self.save_maps:
                maps[c.case_id] = {"saliency": np.round(np.clip(res.saliency, 0, 1) * 255).astype(np.uint8),
                                   "mask": res.mask.astype(bool)}
        return BlockResult(rows, case_arrays=maps)


def finalize(rows: list[dict], arrays: dict, context: SegmentationContext) -> UnitResult:
    from medkt.metrics import summarize_segmentation
    summary = summarize_segmentation(rows, context.metrics, seed=context.seed)
    metrics: dict = {"n_cases": summary["n_cases"], "n_scored": summary["n_scored"],
                     "cases": summary.get("cases", {}), "case_types": summary.get("case_types", {}),
                     "conventions": summary["conventions"]}
    for m, st in summary["metrics"].items():
        metrics[m] = st["mean"]
        metrics[f"{m}_ci"] = [st["ci_low"], st["ci_high"]]
        metrics[f"{m}_sd"] = st["sd"]
    return UnitResult(rows, metrics)
