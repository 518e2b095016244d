"""Captioning: BLEU and CIDEr on hand-checked captions; skipped metrics are reported, never zero."""
from __future__ import annotations

import math
import os
import shutil

import pytest

pytest.importorskip("pycocoevalcap")

from medkt.errors import OptionalDependencyError  # noqa: E402
from medkt.metrics import caption_scores  # noqa: E402
from medkt.metrics.captioning import python_tokenize  # noqa: E402

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")

REFS = {"i1": ["The cat sat on the mat."],
        "i2": ["A dog runs in the park", "a small dog runs"]}
CANDS = {"i1": "the cat sat on a mat", "i2": "a dog runs in the"}


def test_bleu_by_hand():
    # corpus-level clipped n-gram precisions over both images:
    # 1-gram (5+5)/(6+5), 2-gram (3+4)/(5+4), 3-gram (2+3)/(4+3), 4-gram (1+2)/(3+2);
    # candidate length 11 >= closest reference lengths 6 + 4, so no brevity penalty.
    r = caption_scores(REFS, CANDS, metrics=["bleu"], tokenizer="python")
    p = [10 / 11, 7 / 9, 5 / 7, 3 / 5]
    assert r["BLEU-1"] == pytest.approx(p[0], abs=1e-6)
    assert r["BLEU-2"] == pytest.approx(math.sqrt(p[0] * p[1]), abs=1e-6)
    assert r["BLEU-4"] == pytest.approx(math.prod(p) ** 0.25, abs=1e-6)
    assert r.tokenizer == "python" and not r.skipped


def test_cider_by_hand():
    # CIDEr-D with IDF from the 2 images' references: every n-gram below occurs in one image's
    # references (or none), so idf = log 2 for all of them and cancels in the cosines.
    # i1: hyp "a b c e" vs ref "a b c d": cos 3/4, 2/3, 1/2, 0 for n = 1..4, equal lengths
    #     -> 10 * mean = 10 * (3/4 + 2/3 + 1/2) / 4;  i2: no shared n-gram -> 0.
    refs = {1: ["alpha beta gamma delta"], 2: ["kilo lima mike november"]}
    cands = {1: "alpha beta gamma echo", 2: "papa quebec romeo sierra"}
    r = caption_scores(refs, cands, metrics=["cider"], tokenizer="python")
    assert r["CIDEr"] == pytest.approx(10 * (3 / 4 + 2 / 3 + 1 / 2) / 4 / 2, abs=1e-6)
    # a candidate identical to its reference scores 10 on its own image
    r = caption_scores(refs, {1: refs[1][0], 2: cands[2]}, metrics=["cider", "rouge_l"], tokenizer="python")
    assert r["CIDEr"] == pytest.approx(5.0, abs=1e-6)
    assert r["ROUGE-L"] == pytest.approx(0.5, abs=1e-6)


def test_python_tokenizer_follows_ptb_conventions():
    assert python_tokenize("The X-ray doesn't show (any) effusion, e.g. none!") == \
        "the x-ray does n't show any effusion e.g none"


def test_without_java_scores_are_skipped_with_reasons(monkeypatch, network_attempts):
    monkeypatch.setattr("medkt.metrics.captioning.java_available", lambda: False)
    r = caption_scores(REFS, CANDS)  # all metrics, tokenizer="auto"
    assert set(r.scores) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}
    assert set(r.skipped) == {"METEOR", "SPICE"}
    assert all("Java" in why for why in r.skipped.values())
    assert r.tokenizer == "python" and any("Java not found" in n for n in r.notes)
    assert "skipped METEOR" in r.message()
    with pytest.raises(KeyError, match="skipped"):
        r["METEOR"]
    with pytest.raises(OptionalDependencyError):
        caption_scores(REFS, CANDS, tokenizer="ptb")
    assert network_attempts == []


def _corenlp_present() -> bool:
    import pycocoevalcap.spice.get_stanford_models as g
    return os.path.exists(os.path.join(g.SPICEDIR, g.SPICELIB, f"{g.JAR}.jar"))


@pytest.mark.skipif(_corenlp_present(), reason="CoreNLP is installed; SPICE would really run")
def test_spice_offline_is_skipped_without_download(monkeypatch, network_attempts):
    monkeypatch.setattr("medkt.metrics.captioning.java_available", lambda: True)
    monkeypatch.setenv("MEDKT_OFFLINE", "1")
    r = caption_scores(REFS, CANDS, metrics=["spice"], tokenizer="python")
    assert "SPICE" not in r.scores
    assert "offline" in r.skipped["SPICE"] and "CoreNLP" in r.skipped["SPICE"]
    assert network_attempts == []


@pytest.mark.java
@pytest.mark.slow  # Java start-up for METEOR and the PTB tokenizer: ~8-17 s on 2 CPU cores
@needs_java
def test_meteor_and_ptb_tokenizer_with_java():
    r = caption_scores(REFS, CANDS, metrics=["bleu", "meteor"], tokenizer="ptb")
    assert r.tokenizer == "ptb"
    assert 0.0 < r["METEOR"] <= 1.0
    py = caption_scores(REFS, CANDS, metrics=["bleu"], tokenizer="python")
    assert r["BLEU-4"] == pytest.approx(py["BLEU-4"], abs=1e-9)  # same tokens on these captions
