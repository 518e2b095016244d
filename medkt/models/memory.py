"""Process memory for long inference runs: free what a run no longer needs.

Two measured sources of resident memory that a ``medkt segment`` run does not need once its
models are loaded and its prompt is encoded (BiomedCLIP + SAM ViT-B surrogates, CPU, 1 thread):

* the heap left behind by loading: state dicts are read, copied into the parameters and
  freed, but glibc keeps the freed small blocks mapped.  ``malloc_trim`` returns them
  (2.22 → 1.88 GiB resident after loading both models);
* the text encoder: M2IB needs the prompt's embedding, not the tower (BiomedCLIP's PubMedBERT
  is 0.41 GiB of its 0.73 GiB).  See :meth:`VisionLanguageModel.release_text_encoder`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once; None off Linux or on a libc without it (musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def trim_heap() -> bool:
    """Return freed heap memory to the OS (glibc ``malloc_trim(0)``); False where unavailable.

    Only changes the process's resident size, never a value: safe to call at any time (called
    per batch of slices, so the library lookup is done once).
    """
    fn = _malloc_trim()
    return bool(fn(0)) if fn is not None else False
