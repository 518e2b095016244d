"""Retrieval Recall@K on a hand-made similarity matrix with several captions per image."""
from __future__ import annotations

import numpy as np
import pytest

from medkt.errors import InputError
from medkt.metrics import retrieval_recall
from medkt.metrics.retrieval import ranks_image_to_text, ranks_text_to_image

# 3 images x 6 captions (2 per image): caption j describes image CAP2IMG[j]
CAP2IMG = [0, 0, 1, 1, 2, 2]
SIM = np.array([
    #  c0   c1   c2   c3   c4   c5
    [0.9, 0.1, 0.8, 0.0, 0.2, 0.3],   # image 0: best caption c0 (its own) -> rank 0
    [0.1, 0.2, 0.3, 0.4, 0.6, 0.5],   # image 1: its captions c2/c3 rank 3 and 2 -> best rank 2
    [0.0, 0.9, 0.1, 0.3, 0.2, 0.8],   # image 2: c5 ranks 1 (after c1) -> best rank 1
])


def test_ranks_by_hand():
    # text -> image: column-wise ranks of the true image
    # c0: [0.9,0.1,0.0] -> 0; c1: [0.1,0.2,0.9] img0 -> 2; c2: [0.8,0.3,0.1] img1 -> 1
    # c3: [0.0,0.4,0.3] img1 -> 0; c4: [0.2,0.6,0.2] img2 -> 2 (img1 higher; img0 ties and has the lower index)
    # c5: [0.3,0.5,0.8] img2 -> 0
    assert ranks_text_to_image(SIM, CAP2IMG).tolist() == [0, 2, 1, 0, 2, 0]
    assert ranks_image_to_text(SIM, CAP2IMG).tolist() == [0, 2, 1]


def test_recall_at_k_both_directions():
    r = retrieval_recall(SIM, CAP2IMG, ks=(1, 2, 3))
    assert r["t2i_R@1"] == pytest.approx(3 / 6)
    assert r["t2i_R@2"] == pytest.approx(4 / 6)
    assert r["t2i_R@3"] == 1.0
    assert r["i2t_R@1"] == pytest.approx(1 / 3)
    assert r["i2t_R@2"] == pytest.approx(2 / 3)
    assert r["i2t_R@3"] == 1.0
    assert r["n_images"] == 3 and r["n_captions"] == 6
    assert r["rsum"] == pytest.approx(3 / 6 + 4 / 6 + 1 + 1 / 3 + 2 / 3 + 1)


def test_default_ks_and_a_random_check_against_argsort():
    rng = np.random.default_rng(0)
    n_img, per = 20, 5
    cap2img = np.repeat(np.arange(n_img), per)
    sim = rng.standard_normal((n_img, n_img * per))
    r = retrieval_recall(sim, cap2img)
    assert set(r) >= {"t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10"}
    order = np.argsort(-sim.T, axis=1)
    t2i_r5 = np.mean([cap2img[j] in order[j, :5] for j in range(sim.shape[1])])
    assert r["t2i_R@5"] == pytest.approx(t2i_r5)
    order_i = np.argsort(-sim, axis=1)
    i2t_r5 = np.mean([np.any(cap2img[order_i[i, :5]] == i) for i in range(n_img)])
    assert r["i2t_R@5"] == pytest.approx(i2t_r5)


def test_errors():
    with pytest.raises(InputError, match="transpose"):
        retrieval_recall(SIM.T, CAP2IMG)
    with pytest.raises(InputError, match="no caption"):
        retrieval_recall(SIM, [0, 0, 1, 1, 1, 1])
