"""Evaluation metrics with declared conventions.

Segmentation (2-D and 3-D, binary and multi-class) — :mod:`medkt.metrics.segmentation`::

    segmentation_scores(pred, gt, spacing=None, config=None, **overrides) -> dict
        # pred, gt: arrays of the same shape, (H, W) or (D, H, W) (any axis order, but the
        # same for both); spacing: one value per array axis, same order as array.shape (mm).
        # Binary (config.classes is None): foreground = value > config.threshold (default 0).
        # Returns {"dsc", "iou", "nsd", "hd95", "case_type", "gt_voxels", "pred_voxels"};
        # multi-class adds "<metric>/<class>" and "case_type/<class>" keys, and "<metric>"
        # is the macro mean over classes.
    SegMetricConfig(nsd_tolerance=2.0, nsd_units="mm"|"px",
                    nsd_mode="deepmind"|"surface"|"medclip-samv2",
                    empty_policy="default"|"monai"|{...}, threshold=0.0, classes=None, ...,
                    hd95_mode="deepmind"|"monai"|"medpy")
        # defaults: DeepMind surface-distance conventions (the challenges, MedSAM)
    compute_dice(pred, gt), compute_iou(pred, gt)                        # bool arrays -> float
    compute_nsd(pred, gt, tolerance, spacing=None, mode="deepmind")
    compute_hd95(pred, gt, spacing=None, percentile=95.0, mode="deepmind")
    compute_slab_nsd(pred, gt, tolerance_px=2.0)                          # MedCLIP-SAMv2 compat
    resolve_empty_policy(spec) -> {metric: {case_type: value}}

Aggregation — :mod:`medkt.metrics.aggregate`::

    summarize(rows, metrics=None, seed=0, n_boot=2000, level=0.95) -> dict
        # {metric: {n, n_nan, mean, sd, median, q1, q3, min, max, ci_low, ci_high}}
    bootstrap_ci(values, seed=0, n_boot=2000, level=0.95) -> (low, high)
    summarize_segmentation(rows, config, seed=0) -> dict   # per class, macro, case-type counts, policy

Folders / files of masks — :mod:`medkt.metrics.evaluate`::

    evaluate(pred, gt, out=None, **options) -> EvaluationReport   # also ``medkt evaluate``

Classification, retrieval, captioning — :mod:`medkt.metrics.classification`,
:mod:`medkt.metrics.retrieval`, :mod:`medkt.metrics.captioning`::

    accuracy(scores_or_preds, labels), top_k_accuracy(scores, labels, k), per_class_accuracy(...)
    target_accuracy(scores_or_preds, labels, targets), reference_accuracy(...), specificity(...)
    retrieval_recall(similarity, caption_to_image, ks=(1, 5, 10)) -> {"t2i_R@1", ..., "i2t_R@10"}
        # similarity: (n_images, n_captions); caption_to_image[j] = image index of caption j
    caption_scores(references, candidates, metrics=None, tokenizer="auto") -> CaptionScores
        # .scores (computed only), .skipped {metric: reason} -- never a silent 0

Names are imported lazily, so ``import medkt.metrics`` does not import MONAI or torch.
"""
from __future__ import annotations

from medkt._lazy import lazy_exports

_LAZY = {
    # segmentation
    "SegMetricConfig": "segmentation",
    "segmentation_scores": "segmentation",
    "compute_dice": "segmentation",
    "compute_iou": "segmentation",
    "binarize": "segmentation",
    "resolve_empty_policy": "segmentation",
    "EMPTY_POLICIES": "segmentation",
    "SEG_METRICS": "segmentation",
    # conventions
    "NSD_MODES": "conventions",
    "HD95_MODES": "conventions",
    # surfaces
    "compute_nsd": "surface",
    "compute_hd95": "surface",
    "compute_slab_nsd": "surface",
    # aggregation
    "summarize": "aggregate",
    "bootstrap_ci": "aggregate",
    "summarize_segmentation": "aggregate",
    # folders
    "evaluate": "evaluate",
    "EvaluationReport": "evaluate",
    # classification
    "accuracy": "classification",
    "top_k_accuracy": "classification",
    "per_class_accuracy": "classification",
    "target_accuracy": "classification",
    "reference_accuracy": "classification",
    "specificity": "classification",
    "classification_report": "classification",
    # retrieval
    "retrieval_recall": "retrieval",
    # captioning
    "caption_scores": "captioning",
    "CaptionScores": "captioning",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
