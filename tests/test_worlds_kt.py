"""CI guard for Knowledge Transfer: a reduced but real natural-world KT experiment.

On the shipped ``world-clip`` (no pretraining here): invert one novel concept from its
description, fine-tune the visual encoder with "A <name> is <description>" through the
public :mod:`medkt.transfer` API, and check that the concept is learnt (target accuracy
rises clearly) while the 100 known classes are kept.  A regression in inversion,
captions, fine-tuning or parameter freezing makes this fail.
"""
from __future__ import annotations

import pytest

from medkt.worlds.experiments import KTSettings, NaturalExperiment

CONCEPT = "tonometer"
LR = 3e-4


@pytest.fixture(scope="module")
def experiment():
    return NaturalExperiment.create(KTSettings(n_known=4, n_novel=24, n_ood=40, inversion_steps=200, seed=0))


def test_kt_learns_novel_concept_and_keeps_known(experiment):
    base = experiment.evaluate(experiment.model, CONCEPT)
    row = experiment.run(CONCEPT, LR, "visual")
    gain = row["target_acc"] - base["target_acc"]
    forgetting = base["known_acc"] - row["known_acc"]
    assert gain >= 20, f"target accuracy {base['target_acc']:.1f} -> {row['target_acc']:.1f}"
    assert forgetting <= 5, f"known-class accuracy {base['known_acc']:.1f} -> {row['known_acc']:.1f}"
    assert row["specificity"] >= 90


def test_kt_leaves_model_untouched_and_noise_control_gains_less(experiment):
    import torch
    before = {k: v.clone() for k, v in experiment.model.state_dict().items()}
    noise = experiment.run(CONCEPT, LR, "noise")
    kt = experiment.run(CONCEPT, LR, "visual")
    assert all(torch.equal(before[k], v) for k, v in experiment.model.state_dict().items())
    assert kt["target_acc"] - noise["target_acc"] >= 15
