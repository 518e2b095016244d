"""Synthetic worlds: procedurally generated data and small shipped models on which Knowledge
Transfer and the zero-shot segmentation pipeline can be *measured*, offline, on a CPU.

* natural world — :mod:`~medkt.worlds.shapes` (rendering), :mod:`~medkt.worlds.concepts`
  (100 known + 5 novel named classes), :mod:`~medkt.worlds.captions`,
  :mod:`~medkt.worlds.natural` (datasets), model ``world-clip``;
* phantom world — :mod:`~medkt.worlds.phantoms` (CT / CXR / US / MRI with masks),
  :mod:`~medkt.worlds.phantom_text`, :mod:`~medkt.worlds.phantom_world`, models
  ``phantom-clip`` and ``phantom-sam``;
* training recipes — :mod:`~medkt.worlds.pretrain`, :mod:`~medkt.worlds.sam_train`
  (scripts in ``pipelines/worlds/``);
* experiments — :mod:`~medkt.worlds.evaluate`, :mod:`~medkt.worlds.experiments`,
  :mod:`~medkt.worlds.phantom_experiments`, :mod:`~medkt.worlds.demo` (``medkt demo``),
  :mod:`~medkt.worlds.report`.

Quick use::

    from medkt.worlds import NaturalExperiment, KTSettings, run_demo
    exp = NaturalExperiment.create(KTSettings(lrs=(3e-4,)))
    print(exp.baseline()["novel_desc_mean"], exp.run("gyroscope", 3e-4))

See docs/worlds.md.  Names are imported lazily (importing the package imports no torch).
"""
from __future__ import annotations

from medkt._lazy import lazy_exports

_LAZY = {
    "build_world": "concepts", "WorldSpec": "concepts", "World": "concepts", "WorldClass": "concepts",
    "render": "shapes", "render_phantom": "phantoms", "phantom_set": "phantoms",
    "NaturalExperiment": "experiments", "KTSettings": "experiments", "VARIANTS": "experiments",
    "VARIANT_NOTES": "experiments",
    "summarize_sweep": "experiments", "natural_zero_shot": "evaluate", "caption_diagnostic": "evaluate",
    "name_binding_index": "evaluate", "PhantomSettings": "phantom_experiments",
    "phantom_baseline": "phantom_experiments", "phantom_kt": "phantom_experiments",
    "DemoConfig": "demo", "run_demo": "demo",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
