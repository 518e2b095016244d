"""CI guard on the shipped phantom weights: saliency must land on the finding and the whole
M2IB → post-processing → prompt → SAM path must segment it.

A fixed small set (validation phantoms, seed 4242, never the test phantoms the docs report)
for two modalities; the pipeline defaults of :class:`PhantomSettings` (the Table 7 winners).
Thresholds sit below the measured values on this set (see docs/worlds.md), so a regression in
saliency, post-processing, prompting or SAM plumbing fails here within seconds.
"""
from __future__ import annotations

import pytest

GUARD = {"cxr": 8, "us": 8}  # modality → phantoms (validation seed 4242: the first 8 of Table 7's set)


@pytest.fixture(scope="module")
def models():
    from medkt.models import create_model
    return create_model("phantom-clip"), create_model("phantom-sam")


@pytest.mark.slow  # ~5-15 s per modality on the shared 2-core machine (model load included); runs in CI
@pytest.mark.parametrize("modality", sorted(GUARD))
def test_shipped_phantom_pipeline_grounds_and_segments(models, modality):
    from medkt.worlds.phantom_experiments import PhantomSettings, run_pipeline
    from medkt.worlds.phantom_text import SEGMENT_PROMPTS
    from medkt.worlds.phantom_world import phantom_eval_set
    from medkt.worlds.phantoms import TARGET_FINDING
    n = GUARD[modality]
    data = phantom_eval_set(modality, TARGET_FINDING[modality], n, seed=4242)
    r = run_pipeline(*models, data.images, data.masks, SEGMENT_PROMPTS[modality], PhantomSettings(n_per_modality=n))
    assert r["n"] == n
    assert r["pointing"] >= 80, r
    assert r["dsc"] >= 65, r


def test_phantom_preset_matches_experiment_defaults():
    from dataclasses import asdict
    from medkt.segmentation import load_segment_config
    from medkt.worlds.phantom_experiments import PhantomSettings, segment_config
    preset, ours = load_segment_config("phantom"), segment_config(PhantomSettings())
    for section in ("m2ib", "postprocess", "prompts", "sam"):
        assert asdict(getattr(preset, section)) == asdict(getattr(ours, section)), section
    assert preset.model == ours.model == "phantom-clip"
