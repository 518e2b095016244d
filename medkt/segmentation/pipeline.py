"""The zero-shot pipeline on 2-D images: M2IB saliency → coarse mask → prompts → SAM.

:class:`SegmentConfig` is the one schema (YAML in ``configs/segment/*.yaml``, CLI
``--config`` / ``--set``), :class:`Segmenter` loads the two models once and segments
lists of 2-D slices in batches (M2IB ``m2ib.batch_size`` images at a time, each with its
own α; SAM embeddings ``sam.embed_batch_size`` at a time).  Volumes, files and outputs
are handled in :mod:`medkt.segmentation.api`.

Images given to :meth:`Segmenter.segment_slices` are ``H×W`` or ``H×W×3`` float arrays in
[0, 1] (already windowed / intensity-prepared) or uint8; every result is on the same
``H×W`` pixel grid.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from medkt.config import load_config
from medkt.errors import ConfigError
from medkt.segmentation.cases import AirConfig, check_slice_range
from medkt.segmentation.m2ib import M2IBConfig, TextMap
from medkt.segmentation.postprocess import PostprocessConfig, postprocess
from medkt.segmentation.prompts import PromptConfig, Prompts, make_prompts
from medkt.segmentation.saliency import SaliencyEngine
from medkt.segmentation.sam_segmenter import SamConfig, SamSegmenter

log = logging.getLogger("medkt.segmentation")

MASK_FORMATS = ("auto", "nifti", "dicom-seg", "png")


@dataclass
class OutputConfig:
    """What ``medkt segment`` writes per case.  ``mask_format``: ``auto`` (NIfTI for
    NIfTI input, DICOM-SEG for DICOM input when highdicom is installed else NIfTI, PNG for
    2-D images), ``nifti``, ``dicom-seg`` or ``png``."""

    mask_format: str = "auto"
    saliency: bool = True
    overlay: bool = True
    coarse: bool = False


@dataclass
class DiagnosticsConfig:
    """Prompt-sensitivity diagnostic (see :mod:`medkt.segmentation.diagnostics`)."""

    enabled: bool = False
    neutral_prompt: str = "a medical image"
    random_prompts: int = 1
    random_length: int = 12
    max_slices: int = 3


@dataclass
class SegmentConfig:
    """Everything ``medkt segment`` / :func:`medkt.segment` needs (defaults: MedCLIP-SAMv2-like
    BiomedCLIP + SAM ViT-B; ``tiny-clip`` / ``tiny-sam`` run offline for tests).

    ``seed`` (when set) overrides ``m2ib.seed`` and ``prompts.seed``.  ``modality`` and
    ``window`` go to :func:`medkt.io.prepare_intensity` (e.g. ``ct`` with ``lung`` or
    ``"40,400"`` = level,width); ``plane``: display plane 3-D volumes are cut into
    (:func:`medkt.io.iter_slices`: ``axial``, ``coronal`` or ``sagittal``).  ``max_voxels``: size
    limit per input image, checked from headers (default ``medkt.io.checks.DEFAULT_MAX_VOXELS``).
    ``slices``: ``"A:B"`` limits 3-D volumes to display slices ``A .. B-1`` along ``plane``
    (``--slices``); ``air``: which slices count as all air and are skipped
    (:class:`~medkt.segmentation.cases.AirConfig`).
    """

    model: str = "biomedclip"
    weights: str | None = None
    prompt: str | None = None
    modality: str | None = None
    window: str | None = None
    seed: int | None = None
    plane: str = "axial"
    max_voxels: int | None = None
    slices: str | None = None
    air: AirConfig = field(default_factory=AirConfig)
    m2ib: M2IBConfig = field(default_factory=M2IBConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    sam: SamConfig = field(default_factory=SamConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)

    def validate(self) -> "SegmentConfig":
        self.m2ib.validate()
        self.postprocess.validate()
        self.prompts.validate()
        self.sam.validate()
        self.air.validate()
        check_slice_range(self.slices)
        if self.output.mask_format not in MASK_FORMATS:
            raise ConfigError(f"output.mask_format must be one of {', '.join(MASK_FORMATS)}, "
                              f"got '{self.output.mask_format}'.")
        if self.max_voxels is not None:
            from medkt.io.checks import resolve_max_voxels
            self.max_voxels = resolve_max_voxels(self.max_voxels)
        if self.seed is not None:
            self.m2ib.seed = int(self.seed)
            self.prompts.seed = int(self.seed)
        return self


def load_segment_config(source=None, overrides: list[str] | None = None, **fields) -> SegmentConfig:
    """Config from a YAML path / dict / ``None`` (defaults), dotted ``overrides``, then
    top-level keyword ``fields`` (``None`` values are ignored)."""
    from medkt.paths import config_file
    if isinstance(source, str) or hasattr(source, "__fspath__"):
        source = config_file("segment", source)
    cfg = load_config(SegmentConfig, source, overrides)
    for k, v in fields.items():
        if v is not None:
            if not hasattr(cfg, k):
                raise ConfigError(f"unknown segment option '{k}'.")
            setattr(cfg, k, v)
    return cfg.validate()


@dataclass
class SliceResult:
    """One 2-D image's results, all ``H×W``: ``saliency`` float32 in [0, 1], ``coarse`` and
    ``mask`` bool (``mask`` is all-zero when ``status == "skip"``); ``text_map`` the per-token
    text-side map when ``m2ib.text_map`` is on."""

    saliency: np.ndarray
    coarse: np.ndarray
    mask: np.ndarray
    prompts: Prompts
    status: str
    sam_scores: list[float] = field(default_factory=list)
    text_map: TextMap | None = None


class Segmenter:
    """Holds the CLIP-family model and the SAM model; segments batches of slices.

    ``model`` / ``sam_model``: pre-built models (else built from ``cfg.model`` /
    ``cfg.sam.model`` with :func:`medkt.models.create_model`).  ``finetuned``: Knowledge-Transfer
    weights (:class:`~medkt.segmentation.finetuned.FinetunedWeights`) applied to the
    CLIP-family model; a ``model`` passed in is copied first, never changed.
    """

    def __init__(self, cfg: SegmentConfig | None = None, *, device: str = "cpu", model=None, sam_model=None,
                 finetuned=None):
        from medkt.models import create_model
        from medkt.models.memory import trim_heap
        self.cfg = (cfg or SegmentConfig()).validate()
        self.device = device
        self.finetuned = finetuned
        if finetuned is not None:  # a mismatch of registered names is refused before building a large model
            from medkt.segmentation.finetuned import apply_finetuned, check_base_model
            check_base_model(finetuned, spec=None if model is not None else self.cfg.model)
        if model is None:
            model = create_model(self.cfg.model, weights=self.cfg.weights, device=device)
        elif finetuned is not None:
            import copy
            model = copy.deepcopy(model)
        self.model = apply_finetuned(model, finetuned) if finetuned is not None else model
        sam = sam_model if sam_model is not None else create_model(self.cfg.sam.model, weights=self.cfg.sam.weights,
                                                                   device=device)
        self.saliency = SaliencyEngine(self.model, self.cfg.m2ib)
        self.sam = SamSegmenter(sam, self.cfg.sam)
        self.timings: dict[str, float] = {}
        trim_heap()  # loading leaves freed state-dict blocks mapped (measured: 0.34 GiB for BiomedCLIP + SAM)

    @contextlib.contextmanager
    def _timer(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            if str(self.device).startswith("cuda"):  # charge queued GPU work to this stage
                import torch
                torch.cuda.synchronize()
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t

    def release_text_encoder(self, prompts: Sequence[str]) -> int:
        """Encode ``prompts`` (cached by the saliency engine), then free the text encoder's weights.

        A segmentation run needs one text embedding per prompt, not the tower that made it
        (BiomedCLIP: 0.41 GiB of 0.73).  The diagnostics' neutral and random prompts are added
        when ``diagnostics.enabled``.  Afterwards :meth:`segment_slices` works for these
        prompts only; another prompt raises :class:`~medkt.errors.CapabilityError`.  Does
        nothing with ``m2ib.text_map`` on (the text-side map runs the tower).  Call it only on
        a model this Segmenter loaded itself.  Returns the bytes freed.
        """
        from medkt.models.memory import trim_heap
        if self.cfg.m2ib.text_map:
            return 0
        prompts = list(prompts)
        d = self.cfg.diagnostics
        if d.enabled:
            from medkt.segmentation.diagnostics import alternative_prompts
            prompts += [t for _, t in alternative_prompts(d.neutral_prompt, d.random_prompts, d.random_length,
                                                          self.cfg.m2ib.seed)]
        for p in prompts:
            self.saliency.text_embedding(p)
        freed = self.model.release_text_encoder()
        trim_heap()
        return freed

    def describe(self) -> dict:
        out = {"model": self.model.describe(), "sam": self.sam.model.describe()}
        if self.finetuned is not None:
            out["finetuned"] = self.finetuned.as_record()
        return out

    def segment_slices(self, images: Sequence[np.ndarray], prompt: str,
                       names: Sequence[str] | None = None) -> list[SliceResult]:
        """Segment 2-D images (see module docstring) for one text ``prompt``."""
        from medkt.models.memory import trim_heap
        if not prompt or not str(prompt).strip():
            raise ConfigError("a text prompt is needed (--prompt TEXT).")
        images = [np.asarray(im) for im in images]
        names = list(names) if names is not None else [str(i) for i in range(len(images))]
        with self._timer("m2ib_s"):
            sal = self.saliency(images, prompt)
            trim_heap()  # M2IB's activations, freed, would stay mapped under SAM's (measured: 0.1 GiB)
        coarse, prompts = [], []
        with self._timer("postprocess_s"):
            for im, s, nm in zip(images, sal, names):
                c = postprocess(s.map, self.cfg.postprocess, image=im)
                coarse.append(c)
                prompts.append(make_prompts(c, self.cfg.prompts, name=nm))
        outs = self.sam.segment(images, prompts, timings=self.timings)
        trim_heap()
        results = []
        for s, c, p, o in zip(sal, coarse, prompts, outs):
            mask = o.mask if o.mask is not None else np.zeros(c.shape, bool)
            results.append(SliceResult(s.map, c, mask.astype(bool), p, o.status, o.scores, s.text))
        return results
