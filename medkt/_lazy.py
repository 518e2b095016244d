"""One lazy-export helper for every package ``__init__``.

Usage in a package ``__init__.py``::

    from medkt._lazy import lazy_exports
    _EXPORTS = {"Segmenter": "pipeline", "segment": "api"}      # name -> submodule (relative)
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

    if TYPE_CHECKING:  # static tools see the real names
        from medkt.segmentation.pipeline import Segmenter

A value may also be an absolute ``"package.module"`` path or a ``("package.module", "attr")``
pair (to export a name under another name).  Nothing is imported until a name is first used,
so importing a package stays cheap (no torch, no MONAI).
"""
from __future__ import annotations

import importlib
from typing import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str | tuple[str, str]]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """Return ``(__getattr__, __dir__, __all__)`` for ``package`` exporting ``exports`` lazily."""
    table = dict(exports)

    def _target(name: str) -> tuple[str, str]:
        spec = table[name]
        if isinstance(spec, tuple):
            return spec
        module = spec if spec.startswith("medkt") else f"{package}.{spec}"
        return module, name

    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = _target(name)
        return getattr(importlib.import_module(module), attr)

    names = sorted(table)

    def __dir__() -> list[str]:
        import sys
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__, names
