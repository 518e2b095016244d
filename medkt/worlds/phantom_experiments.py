"""Segmentation experiments on the phantoms (the paper's Tables 4 and 7 in miniature).

* :func:`run_pipeline` — M2IB saliency (``phantom-clip``) → coarse mask → prompts →
  ``phantom-sam``, through :class:`medkt.segmentation.Segmenter`; DSC / NSD / IoU per image
  with :func:`medkt.metrics.segmentation_scores` (NSD tolerance 2 px), plus two saliency
  scores: *energy in mask* (share of saliency inside the GT) and the pointing game (the
  saliency maximum lies in the GT).
* :func:`phantom_baseline` — the pipeline on each modality's seen target finding
  (:data:`~medkt.worlds.phantoms.TARGET_FINDING`).
* :func:`phantom_kt` — Knowledge Transfer of the held-out finding (``nodule``) from its
  description, per variant and lr: the nodule pipeline and the seen findings before / after.
* :func:`phantom_ablation` — Table 7: one pipeline setting changed at a time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from medkt.worlds.phantom_text import DESCRIPTIONS, HELD_OUT_PROMPTS, SEGMENT_PROMPTS
from medkt.worlds.phantom_world import HELD_OUT, phantom_eval_set
from medkt.worlds.phantoms import MODALITIES, TARGET_FINDING

# KT variants of the phantom experiment: transfer-config presets (configs/transfer/*.yaml)
KT_VARIANTS = {"paper": [], "name-prompts": ["finetune.caption=definition+name"]}


@dataclass
class PhantomSettings:
    """Pipeline and KT settings of the phantom experiments (defaults = ``medkt demo``).

    The pipeline defaults (``m2ib_*`` and ``segment_overrides``) are the winners of the
    Table 7 ablation on validation phantoms (docs/segmentation.md); ``configs/segment/phantom.yaml``
    holds the same settings.  β 10 with quarter-patch ``m2ib_shifts`` is the pointing follow-up's
    validation pick (docs/worlds.md), not the default: on the test phantoms it traded MRI for US
    and made ``medkt demo`` 2.7× slower.
    """

    n_per_modality: int = 16
    seed: int = 0
    eval_seed: int = 777  # test phantoms; 4242 = validation phantoms (where defaults are chosen)
    m2ib_beta: float = 3.0
    m2ib_steps: int = 20
    m2ib_samples: int = 10
    m2ib_layer: int | None = 1
    m2ib_feature_norm: str = "image"
    m2ib_shifts: tuple = ()  # m2ib.shifts: ((dy, dx), ...) model-input px; () = off
    segment_overrides: list = field(default_factory=list)  # dotted SegmentConfig overrides after the defaults
    kt_lrs: tuple = (1e-4, 3e-4, 1e-3)
    kt_variants: tuple = ("paper", "name-prompts")
    inversion_steps: int = 300
    images_per_concept: int = 10
    extra_overrides: list = field(default_factory=list)  # transfer-config overrides for every KT run
    nodule_prompt: str = "description"  # key of phantom_text.HELD_OUT_PROMPTS: the nodule row's segmentation prompt
    nodule_distractor: str | None = None  # a second CT finding in the nodule's phantoms (phantom_eval_set)


def segment_config(s: PhantomSettings):
    from medkt.segmentation import load_segment_config
    ov = [f"m2ib.beta={s.m2ib_beta}", f"m2ib.steps={s.m2ib_steps}", f"m2ib.samples={s.m2ib_samples}",
          f"m2ib.feature_norm={s.m2ib_feature_norm}", "m2ib.resize=squash", "postprocess.mode=percentile",
          "postprocess.percentile=90", "postprocess.top_k=1", "prompts.mode=box",
          "sam.model=phantom-sam"]
    if s.m2ib_layer is not None:
        ov.append(f"m2ib.layer={s.m2ib_layer}")
    if s.m2ib_shifts:
        ov.append("m2ib.shifts=[" + ",".join(f"[{int(dy)},{int(dx)}]" for dy, dx in s.m2ib_shifts) + "]")
    return load_segment_config(None, ov + list(s.segment_overrides), model="phantom-clip", seed=s.seed)


def saliency_scores(sal: np.ndarray, gt: np.ndarray) -> dict:
    g = gt > 0
    total = float(sal.sum())
    return {"energy_in_mask": float(sal[g].sum() / total) if total > 0 else float("nan"),
            "pointing": float(g.flat[int(np.argmax(sal))])}


def run_pipeline(model, sam_model, images: np.ndarray, masks: np.ndarray, prompt: str,
                 s: PhantomSettings, keep: int = 0) -> dict:
    """Segment ``images`` (uint8 ``[N, S, S]``) for ``prompt``; mean scores and ``keep`` examples."""
    from medkt.metrics import segmentation_scores
    from medkt.segmentation import Segmenter
    seg = Segmenter(segment_config(s), model=model, sam_model=sam_model)
    ims = [im.astype(np.float32) / 255.0 for im in images]
    t0 = time.time()
    results = seg.segment_slices(ims, prompt)
    rows, examples = [], []
    for i, (r, gt) in enumerate(zip(results, masks)):
        # boundary-voxel NSD: the convention docs/worlds.md's numbers were measured with
        sc = segmentation_scores(r.mask, gt, nsd_units="px", nsd_tolerance=2.0, nsd_mode="surface")
        row = {k: sc[k] for k in ("dsc", "nsd", "iou")}
        row.update(saliency_scores(r.saliency, gt))
        rows.append(row)
        if i < keep:
            examples.append({"image": images[i], "gt": gt, "saliency": r.saliency, "mask": r.mask,
                             "dsc": row["dsc"]})
    mean = {k: 100.0 * float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
    return {"n": len(rows), "prompt": prompt, **mean, "seconds": round(time.time() - t0, 1),
            "rows": rows, "examples": examples}


@torch.no_grad()
def nodule_detection(model, n: int = 16, seed: int = 777) -> float:
    """Balanced zero-shot accuracy (%) of CT "normal" vs "nodule" by name (prompts below)."""
    from medkt.worlds.evaluate import image_features, predict, text_classifier
    from medkt.worlds.phantom_world import gray_to_rgb
    clf = text_classifier(model, [["axial chest ct with clear lungs"], [f"axial chest ct showing a {HELD_OUT}"]])
    accs = []
    for j, finding in enumerate((None, HELD_OUT)):
        d = phantom_eval_set("ct", finding, n, seed)
        accs.append(float((predict(image_features(model, gray_to_rgb(d.images)), clf) == j).mean()))
    return 100.0 * float(np.mean(accs))


def _models(model=None, sam_model=None):
    from medkt.models import create_model
    return (model if model is not None else create_model("phantom-clip"),
            sam_model if sam_model is not None else create_model("phantom-sam"))


def phantom_baseline(s: PhantomSettings | None = None, model=None, sam_model=None, keep: int = 2,
                     log=print) -> dict:
    """Pipeline DSC / NSD / IoU per modality on its seen target finding (``phantom-clip`` as pretrained)."""
    s = s or PhantomSettings()
    model, sam_model = _models(model, sam_model)
    out = {}
    for mod in MODALITIES:
        data = phantom_eval_set(mod, TARGET_FINDING[mod], s.n_per_modality, s.eval_seed)
        r = run_pipeline(model, sam_model, data.images, data.masks, SEGMENT_PROMPTS[mod], s, keep)
        out[mod] = r
        if log:
            log(f"  {mod:4s} {TARGET_FINDING[mod]:12s} DSC {r['dsc']:5.1f}  NSD {r['nsd']:5.1f}  IoU {r['iou']:5.1f}  "
                f"saliency-in-mask {r['energy_in_mask']:5.1f}  pointing {r['pointing']:5.1f}  ({r['seconds']}s)")
    return out


def _nodule_row(model, sam_model, data, s: PhantomSettings, keep: int) -> dict:
    r = run_pipeline(model, sam_model, data.images, data.masks, HELD_OUT_PROMPTS[s.nodule_prompt], s, keep)
    r["detection"] = nodule_detection(model, s.n_per_modality, s.eval_seed)
    seen = phantom_baseline(s, model, sam_model, keep=0, log=None)
    r["seen_dsc"] = {m: round(x["dsc"], 2) for m, x in seen.items()}
    return r


def phantom_kt(s: PhantomSettings | None = None, model=None, sam_model=None, keep: int = 2, log=print) -> dict:
    """KT of the held-out finding from its description, per variant (:data:`KT_VARIANTS`) and lr.

    Each row: the nodule pipeline (prompt ``HELD_OUT_PROMPTS[s.nodule_prompt]``,
    :data:`~medkt.worlds.phantom_text.HELD_OUT_PROMPTS`),
    normal-vs-nodule accuracy, ``seen_dsc`` (DSC of the four seen findings with the same
    model) and ``seen_max_drop`` (largest DSC loss on a seen finding against the baseline).
    """
    from medkt.transfer import invert, learn, load_concepts, load_transfer_config
    s = s or PhantomSettings()
    model, sam_model = _models(model, sam_model)
    concept = load_concepts([{"name": HELD_OUT, "descriptions": [DESCRIPTIONS[HELD_OUT]]}])
    base_ov = [f"inversion.steps={s.inversion_steps}", f"inversion.images_per_concept={s.images_per_concept}",
               f"seed={s.seed}"] + list(s.extra_overrides)
    t0 = time.time()
    inv = invert(model, concept, load_transfer_config(overrides=base_ov).inversion, seed=s.seed, progress=False)
    t_inv = time.time() - t0
    data = phantom_eval_set("ct", HELD_OUT, s.n_per_modality, s.eval_seed, distractor=s.nodule_distractor)
    rows = {"baseline": _nodule_row(model, sam_model, data, s, keep)}
    base = rows["baseline"]

    def show(name, r):
        if log:
            seen = " ".join(f"{m} {v:.1f}" for m, v in r["seen_dsc"].items())
            log(f"  {name:22s} nodule DSC {r['dsc']:5.1f}  saliency-in-mask {r['energy_in_mask']:5.1f}  "
                f"pointing {r['pointing']:5.1f}  normal-vs-{HELD_OUT} {r['detection']:5.1f} | seen DSC {seen}")
    base["seen_max_drop"] = 0.0
    show("baseline", base)
    for variant in s.kt_variants:
        cfg = load_transfer_config(overrides=base_ov + KT_VARIANTS[variant])
        for lr in s.kt_lrs:
            res = learn(model, concept, cfg, images=inv, lr=lr, progress=False)
            r = _nodule_row(res.model, sam_model, data, s, keep)
            r["seen_max_drop"] = round(max(base["seen_dsc"][m] - v for m, v in r["seen_dsc"].items()), 2)
            rows[f"{variant} lr {lr:g}"] = r
            show(f"{variant} lr {lr:g}", r)
    return {"concept": HELD_OUT, "description": DESCRIPTIONS[HELD_OUT], "prompt": HELD_OUT_PROMPTS[s.nodule_prompt],
            "inversion_s": round(t_inv, 1), "results": rows, "inverted": inv.images[:4].cpu().numpy()}


# Table 7 in miniature: each cell changes one setting of the defaults (dotted SegmentConfig overrides).
ABLATION = {
    "M2IB beta / layer": {f"beta {b:g}, layer {la}": [f"m2ib.beta={b}", f"m2ib.layer={la}"]
                          for la in (0, 1, 2) for b in (1.0, 3.0, 10.0)},
    "M2IB features": {"standardised (feature_norm image)": ["m2ib.feature_norm=image"],
                      "raw (MedCLIP-SAMv2, feature_norm none)": ["m2ib.feature_norm=none"],
                      "raw, 10 steps, beta 1, layer 2 (old phantom default)": [
                          "m2ib.feature_norm=none", "m2ib.steps=10", "m2ib.beta=1.0", "m2ib.layer=2"]},
    "post-processing": {"k-means": ["postprocess.mode=kmeans"], "Otsu": ["postprocess.mode=otsu"],
                        "percentile 90": ["postprocess.mode=percentile", "postprocess.percentile=90"],
                        "percentile 80": ["postprocess.mode=percentile", "postprocess.percentile=80"],
                        "CRF + k-means": ["postprocess.mode=kmeans", "postprocess.crf=true"]},
    "prompt mode": {"box": ["prompts.mode=box"], "boxes": ["prompts.mode=boxes"],
                    "points": ["prompts.mode=points", "prompts.num_points=3"],
                    "box+points": ["prompts.mode=box+points", "prompts.num_points=3"]},
    "SAM mask selection": {"single mask": ["sam.multimask=false"],
                           "multimask, best IoU": ["sam.multimask=true", "sam.select=iou"],
                           "multimask, average": ["sam.multimask=true", "sam.select=average"],
                           "multimask, MRM": ["sam.multimask=true", "sam.select=mrm"]},
}


def phantom_ablation(s: PhantomSettings | None = None, model=None, sam_model=None, groups=None,
                     log=print) -> list[dict]:
    """Table 7: DSC (and saliency scores) on the seen findings for every cell of :data:`ABLATION`.

    Cells that need a missing optional package (CRF: pydensecrf) are reported with
    ``error`` instead of scores.  Returns one row per cell and modality.
    """
    from medkt.errors import MedktError
    s = s or PhantomSettings()
    model, sam_model = _models(model, sam_model)
    data = {m: phantom_eval_set(m, TARGET_FINDING[m], s.n_per_modality, s.eval_seed) for m in MODALITIES}
    rows = []
    for group, cells in (groups or ABLATION).items():
        for cell, ov in (cells.items() if isinstance(cells, dict) else ABLATION[group].items()):
            cs = replace(s, segment_overrides=list(s.segment_overrides) + list(ov))
            line = []
            for m in MODALITIES:
                try:
                    r = run_pipeline(model, sam_model, data[m].images, data[m].masks, SEGMENT_PROMPTS[m], cs)
                except MedktError as e:  # e.g. CRF without pydensecrf
                    rows.append({"group": group, "cell": cell, "modality": m, "error": str(e).splitlines()[0]})
                    line.append(f"{m} n/a")
                    continue
                rows.append({"group": group, "cell": cell, "modality": m,
                             **{k: round(r[k], 2) for k in ("dsc", "nsd", "iou", "energy_in_mask", "pointing")}})
                line.append(f"{m} {r['dsc']:5.1f}")
            if log:
                log(f"  {group:20s} {cell:22s} " + " | ".join(line))
    return rows


def strip_examples(res: dict) -> dict:
    """Copy of a result tree without image arrays / per-row lists (for run.json)."""
    if isinstance(res, dict):
        return {k: strip_examples(v) for k, v in res.items() if k not in ("examples", "rows", "inverted")}
    return res
