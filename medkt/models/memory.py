"""Process memory for long inference runs: free what a run no longer needs.

Two measured sources of resident memory that a ``medkt segment`` run does not need once its
models are loaded and its prompt is encoded (BiomedCLIP + SAM ViT-B surrogates, CPU, 1 thread):

* the heap left behind by loading: state dicts are read, copied into the parameters and
  freed, but glibc keeps the freed small blocks mapped.  ``malloc_trim`` returns them
  (2.22 → 1.88 GiB resident after loading both models);
* the text encoder: M2IB needs the prompt's embedding, not the tower (BiomedCLIP's PubMedBERT
  is 0.41 GiB of its 0.73 GiB).  See :meth:`VisionLanguageModel.release_text_encoder`.

And one source of *peak* memory: loading a checkpoint into a random-init model holds the
weights twice.  :func:`release_parameters` / :func:`adopt_state_dict` (SAM, MedSAM) and
:func:`open_clip_one_copy_loads` (open_clip models) hold them once.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
import threading
from pathlib import Path


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


# ------------------------------------------------------------- one copy of the weights at load
def release_parameters(module) -> dict | None:
    """Free ``module``'s (random-init) parameters before a checkpoint replaces them.

    Every parameter becomes a meta-device placeholder with the same shape, dtype and
    ``requires_grad``; buffers are kept.  :func:`adopt_state_dict` then makes the checkpoint's
    own tensors the parameters, so the weights are in memory once at load instead of twice
    (BiomedCLIP surrogate: 2.25 → 1.57 GiB peak resident while loading, docs/models.md).

    Returns ``{parameter name: dtype}`` for :func:`adopt_state_dict`, or None, changing
    nothing, when a parameter is off the CPU or shared by two modules (assigning would untie
    it).  After a failed load the module is unusable: its parameters are placeholders.
    """
    import torch
    params = list(module.named_parameters(remove_duplicate=False))
    if len({id(p) for _, p in params}) != len(params) or any(p.device.type != "cpu" for _, p in params):
        return None
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None:
                sub._parameters[name] = torch.nn.Parameter(torch.empty_like(p, device="meta"),
                                                           requires_grad=p.requires_grad)
    trim_heap()
    return {name: p.dtype for name, p in params}


def adopt_state_dict(module, state_dict: dict, dtypes: dict) -> None:
    """``module.load_state_dict(state_dict, strict=True, assign=True)`` after :func:`release_parameters`.

    A tensor whose dtype differs from its parameter's (an fp16 checkpoint for an fp32 model)
    is cast to the parameter's dtype, as a copying load would.
    """
    module.load_state_dict(state_dict, strict=True, assign=True)
    cast_to_recorded_dtypes(module, dtypes)


def cast_to_recorded_dtypes(module, dtypes: dict) -> None:
    """Cast every parameter back to the dtype :func:`release_parameters` recorded for it."""
    import torch
    for name, p in list(module.named_parameters()):
        if name in dtypes and p.dtype != dtypes[name]:
            owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
            leaf = name.rpartition(".")[2]
            owner._parameters[leaf] = torch.nn.Parameter(p.detach().to(dtypes[name]), requires_grad=p.requires_grad)


_OPEN_CLIP_LOCK = threading.RLock()


@contextlib.contextmanager
def open_clip_one_copy_loads():
    """While open_clip creates a model, load its full checkpoint with one copy in memory.

    open_clip builds the model (random init), reads the checkpoint and copies it into the
    parameters, so both copies are resident at once.  Within this context its
    ``load_checkpoint`` first releases the random init (:func:`release_parameters`) and the
    state dict's tensors become the parameters (``assign=True``); open_clip's own key
    conversions run unchanged.  Non-strict loads, big_vision ``.npz`` files and models the
    release declines load as before.  Contexts in several threads take turns (the wrapper is
    module-global).
    """
    try:
        import open_clip.factory as factory
    except ImportError:
        factory = None
    if getattr(factory, "load_checkpoint", None) is None:  # no open_clip, or one without the hook
        yield
        return

    def load_checkpoint(model, checkpoint_path, strict=True, *args, **kwargs):
        # big_vision .npz weights are copied into the parameters by open_clip itself: keep them
        in_place = strict and Path(str(checkpoint_path)).suffix not in (".npz", ".npy")
        dtypes = release_parameters(model) if in_place else None
        if dtypes is None:
            return original(model, checkpoint_path, strict, *args, **kwargs)
        model.load_state_dict = functools.partial(type(model).load_state_dict, model, assign=True)
        try:
            result = original(model, checkpoint_path, strict, *args, **kwargs)
        finally:
            del model.load_state_dict
        cast_to_recorded_dtypes(model, dtypes)
        return result

    with _OPEN_CLIP_LOCK:
        original = factory.load_checkpoint
        factory.load_checkpoint = load_checkpoint
        try:
            yield
        finally:
            factory.load_checkpoint = original
