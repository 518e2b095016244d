"""Classification scores on hand-made score matrices."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medkt.errors import InputError
from medkt.metrics import (accuracy, classification_report, per_class_accuracy, reference_accuracy,
                           specificity, target_accuracy, top_k_accuracy)

# 6 images, 3 classes; arg-max predictions: 0, 1, 1, 2, 0, 2
SCORES = np.array([
    [0.9, 0.05, 0.05],   # true 0, pred 0
    [0.2, 0.7, 0.1],     # true 0, pred 1 (true class 2nd)
    [0.1, 0.8, 0.1],     # true 1, pred 1
    [0.3, 0.3, 0.4],     # true 1, pred 2 (true class 2nd: tie with class 0, which has lower index)
    [0.5, 0.2, 0.3],     # true 2, pred 0 (true class 2nd)
    [0.1, 0.2, 0.7],     # true 2, pred 2
])
LABELS = np.array([0, 0, 1, 1, 2, 2])
NAMES = ["cat", "dog", "moongate"]


def test_accuracy_and_top_k_by_hand():
    assert accuracy(SCORES, LABELS) == pytest.approx(3 / 6)
    assert accuracy(torch.from_numpy(SCORES), torch.from_numpy(LABELS)) == pytest.approx(0.5)
    assert top_k_accuracy(SCORES, LABELS, k=1) == pytest.approx(3 / 6)
    # image 3: class 0 ties with the true class 1 and has the lower index -> rank 2
    assert top_k_accuracy(SCORES, LABELS, k=2) == pytest.approx(5 / 6)
    assert top_k_accuracy(SCORES, LABELS, k=3) == 1.0
    assert accuracy(np.array(["a", "b", "a"]), np.array(["a", "b", "b"])) == pytest.approx(2 / 3)


def test_per_class_target_reference_specificity():
    pc = per_class_accuracy(SCORES, LABELS)
    assert pc == {0: 0.5, 1: 0.5, 2: 0.5}
    named = per_class_accuracy(SCORES, np.array(NAMES)[LABELS], class_names=NAMES)
    assert named == {"cat": 0.5, "dog": 0.5, "moongate": 0.5}
    t = target_accuracy(SCORES, LABELS, targets=2)
    assert t[2] == 0.5 and t["all"] == 0.5 and t["n"] == {2: 2}
    t = target_accuracy(SCORES, LABELS, targets=[1, 2])
    assert t["all"] == pytest.approx(2 / 4)
    ref = reference_accuracy(SCORES, LABELS, before=0.6)
    assert ref["accuracy"] == 0.5 and ref["delta"] == pytest.approx(-0.1) and ref["n"] == 6
    # images not of class 2 (4 of them): one (image 3) is labelled 2
    s = specificity(SCORES, LABELS, concept=2)
    assert s == {"false_positive_rate": 0.25, "specificity": 0.75, "n": 4}
    # unseen classes: labels outside the score columns count as "other"
    s = specificity(np.array(["moongate", "moongate", "cat"]), np.array(["moongate", "unseen", "unseen"]),
                    concept="moongate")
    assert s["false_positive_rate"] == 0.5 and s["n"] == 2
    preds = SCORES.argmax(1)  # a class without images gets nan
    assert math.isnan(per_class_accuracy(preds, LABELS, class_names=[0, 1, 2, 3])[3])
    with pytest.raises(InputError, match="class names"):
        per_class_accuracy(SCORES, LABELS, class_names=[0, 1, 2, 3])


def test_report_and_errors():
    rep = classification_report(SCORES, LABELS, ks=(1, 2, 5), targets=[2])
    assert rep["top1"] == rep["accuracy"] == 0.5 and rep["top2"] == pytest.approx(5 / 6)
    assert "top5" not in rep and rep["target"][2] == 0.5
    with pytest.raises(InputError):
        accuracy(SCORES, LABELS[:3])
    with pytest.raises(InputError):
        top_k_accuracy(SCORES, np.array([0, 0, 1, 1, 2, 3]), k=1)
