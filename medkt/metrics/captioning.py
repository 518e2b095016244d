"""Captioning scores through pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr(-D), SPICE.

* BLEU, ROUGE-L and CIDEr are pure Python.  CIDEr-D's IDF comes from the references of
  the evaluated set, so it is only comparable across runs on the *same* set.
* METEOR needs Java; the PTB tokenizer needs Java; SPICE needs Java **and** Stanford
  CoreNLP 3.6.0, which pycocoevalcap downloads on first use (never while medkt is
  offline).  A metric that cannot run is **skipped with a reason** — it is absent from
  ``scores`` and listed in ``skipped``; it is never reported as 0.
* Tokenisation: ``"ptb"`` (Stanford PTBTokenizer, Java, the COCO standard), ``"python"``
  (medkt's approximation: lower-case, PTB-style contractions, PTB punctuation removed) or
  ``"auto"`` (PTB when Java is found, else Python, with a note).

``references``: ``{id: [caption, ...]}`` or a list of caption lists; ``candidates``:
``{id: caption}`` or a list of captions, one per id.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from medkt.errors import InputError, OptionalDependencyError, UnknownNameError

log = logging.getLogger("medkt")

__all__ = ["CaptionScores", "caption_scores", "python_tokenize", "java_available", "CAPTION_METRICS"]

CAPTION_METRICS = ("bleu", "meteor", "rouge_l", "cider", "spice")
TOKENIZERS = ("auto", "ptb", "python")
_PTB_DROP = {"''", "'", "``", "`", "-lrb-", "-rrb-", "-lcb-", "-rcb-", ".", "?", "!", ",", ":", "-",
             "--", "...", ";", "(", ")", "[", "]", "{", "}"}
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-/.']\w+)*|\.\.\.|--|[^\w\s]")


@dataclass
class CaptionScores:
    """``scores`` (computed metrics only), ``skipped`` ({metric: reason}), tokenizer used, notes."""

    scores: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    tokenizer: str = ""
    notes: list = field(default_factory=list)
    n: int = 0

    def __getitem__(self, key):
        if key in self.skipped and key not in self.scores:
            raise KeyError(f"{key} was skipped: {self.skipped[key]}")
        return self.scores[key]

    def message(self) -> str:
        lines = [", ".join(f"{k} {v:.4f}" for k, v in self.scores.items()) or "no scores computed"]
        lines += [f"skipped {k}: {why}" for k, why in self.skipped.items()]
        lines += self.notes
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"scores": self.scores, "skipped": self.skipped, "tokenizer": self.tokenizer,
                "notes": self.notes, "n": self.n}


def java_available() -> bool:
    return shutil.which("java") is not None


def python_tokenize(text: str) -> str:
    """Lower-case, split like PTB (``don't`` → ``do n't``), drop PTB's punctuation tokens."""
    text = text.lower().replace("\n", " ")
    text = re.sub(r"(\w)n't\b", r"\1 n't", text)
    tokens = [t for t in _TOKEN.findall(text) if t not in _PTB_DROP]
    return " ".join(tokens)


def _normalise(references, candidates) -> tuple[dict, dict]:
    if not isinstance(references, Mapping):
        references = {i: r for i, r in enumerate(references)}
    if not isinstance(candidates, Mapping):
        candidates = {i: c for i, c in enumerate(candidates)}
    refs = {k: ([v] if isinstance(v, str) else list(v)) for k, v in references.items()}
    cands = {k: (v if isinstance(v, str) else _single(k, v)) for k, v in candidates.items()}
    if set(refs) != set(cands):
        only_r = sorted(set(refs) - set(cands), key=str)[:5]
        only_c = sorted(set(cands) - set(refs), key=str)[:5]
        raise InputError(f"references and candidates have different ids (only in references: {only_r}; "
                         f"only in candidates: {only_c}).", hint="give one candidate per reference id")
    if not refs:
        raise InputError("no captions to score.")
    empty = [k for k, v in refs.items() if not v]
    if empty:
        raise InputError(f"id {empty[0]!r} has no reference caption.")
    return refs, cands


def _single(key, value) -> str:
    value = list(value)
    if len(value) != 1:
        raise InputError(f"candidate {key!r} must be one caption, got {len(value)}.")
    return value[0]


def _tokenize(refs: dict, cands: dict, how: str, result: CaptionScores) -> tuple[dict, dict]:
    if how == "auto":
        how = "ptb" if java_available() else "python"
        if how == "python":
            result.notes.append("Java not found: tokenised with medkt's Python PTB approximation instead of "
                                "the Stanford PTBTokenizer; scores may differ slightly from COCO's.")
    if how == "ptb":
        if not java_available():
            raise OptionalDependencyError("java", "the PTB tokenizer (tokenizer='ptb')")
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
        tok = PTBTokenizer()
        r = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
        c = tok.tokenize({k: [{"caption": v}] for k, v in cands.items()})
        result.tokenizer = "ptb"
        return r, c
    result.tokenizer = "python"
    return ({k: [python_tokenize(c) for c in v] for k, v in refs.items()},
            {k: [python_tokenize(v)] for k, v in cands.items()})


def _spice_blocker() -> str | None:
    """Why SPICE cannot run here (None if it can be attempted)."""
    if not java_available():
        return "needs Java (no 'java' on PATH); install a JRE, e.g. apt-get install default-jre-headless"
    import pycocoevalcap.spice.get_stanford_models as g
    jar = os.path.join(g.SPICEDIR, g.SPICELIB, f"{g.JAR}.jar")
    if os.path.exists(jar):
        return None
    from medkt.paths import is_offline
    if is_offline():
        return (f"needs Stanford CoreNLP 3.6.0, which pycocoevalcap downloads from nlp.stanford.edu on first "
                f"use, and medkt is offline; run once with MEDKT_OFFLINE=0, or place {g.JAR}.jar and "
                f"{g.JAR}-models.jar in {os.path.dirname(jar)}")
    return None


def caption_scores(references, candidates, metrics: Sequence[str] | None = None,
                   tokenizer: str = "auto") -> CaptionScores:
    """Score ``candidates`` against ``references``; see the module docstring for inputs.

    Returns :class:`CaptionScores` with keys ``BLEU-1``..``BLEU-4``, ``METEOR``, ``ROUGE-L``,
    ``CIDEr``, ``SPICE`` for the metrics that ran; the others are in ``skipped`` with a
    reason (also logged as a warning).
    """
    metrics = list(metrics) if metrics is not None else list(CAPTION_METRICS)
    for m in metrics:
        if m not in CAPTION_METRICS:
            raise UnknownNameError("caption metric", m, CAPTION_METRICS)
    if tokenizer not in TOKENIZERS:
        raise UnknownNameError("tokenizer", tokenizer, TOKENIZERS)
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        raise OptionalDependencyError("pycocoevalcap", "captioning metrics", extra="caption") from None
    refs, cands = _normalise(references, candidates)
    result = CaptionScores(n=len(refs))
    gts, res = _tokenize(refs, cands, tokenizer, result)
    for m in metrics:
        try:
            _run_metric(m, gts, res, result)
        except Exception as e:  # noqa: BLE001 - a failing scorer is reported, never a silent zero
            result.skipped[_label(m)] = f"failed: {type(e).__name__}: {e}"
    for name, why in result.skipped.items():
        log.warning("captioning: %s skipped: %s", name, why)
    return result


def _label(m: str) -> str:
    return {"bleu": "BLEU-4", "meteor": "METEOR", "rouge_l": "ROUGE-L", "cider": "CIDEr", "spice": "SPICE"}[m]


def _run_metric(m: str, gts: dict, res: dict, result: CaptionScores) -> None:
    if m == "bleu":
        from pycocoevalcap.bleu.bleu import Bleu
        score, _ = Bleu(4).compute_score(gts, res, verbose=0)
        for i, s in enumerate(score, 1):
            result.scores[f"BLEU-{i}"] = float(s)
    elif m == "rouge_l":
        from pycocoevalcap.rouge.rouge import Rouge
        result.scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    elif m == "cider":
        from pycocoevalcap.cider.cider import Cider
        result.scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
        if len(gts) < 10:
            result.notes.append("CIDEr's IDF is estimated from the references of the evaluated set; with "
                                f"only {len(gts)} images it is unstable.")
    elif m == "meteor":
        if not java_available():
            result.skipped["METEOR"] = "needs Java (no 'java' on PATH); install a JRE, e.g. " \
                                       "apt-get install default-jre-headless"
            return
        from pycocoevalcap.meteor.meteor import Meteor
        scorer = Meteor()
        try:
            result.scores["METEOR"] = float(scorer.compute_score(gts, res)[0])
        finally:
            _close_meteor(scorer)
    elif m == "spice":
        why = _spice_blocker()
        if why:
            result.skipped["SPICE"] = why
            return
        from pycocoevalcap.spice.spice import Spice
        result.scores["SPICE"] = float(Spice().compute_score(gts, res)[0])


def _close_meteor(scorer) -> None:
    """Stop METEOR's Java process now (even after a failed call, whose lock is still held)."""
    import threading
    proc = getattr(scorer, "meteor_p", None)
    if proc is None:
        return
    try:
        proc.stdin.close()
        proc.kill()
        proc.wait(timeout=10)
    except Exception:  # noqa: BLE001
        pass
    scorer.lock = threading.Lock()  # so that pycocoevalcap's __del__ cannot block on a held lock
