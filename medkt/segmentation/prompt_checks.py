"""Checks on the text prompt of ``medkt segment``.

* :func:`check_prompt` — before any model loads: a missing, non-text or whitespace-only prompt is
  refused with a :class:`~medkt.errors.ConfigError`.
* :func:`check_prompt_length` — once the model is built: a prompt longer than the model's text
  context (77 tokens for CLIP, 256 for BiomedCLIP...) is truncated by the tokenizer; this is
  logged and recorded in run.json (``warnings``, ``prompt_truncated``).
"""
from __future__ import annotations

from medkt.errors import ConfigError


def check_prompt(prompt) -> None:
    """Refuse a missing, non-text or whitespace-only prompt before any model loads."""
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        what = "no text prompt given." if not prompt else "the text prompt is empty (only whitespace)."
        raise ConfigError(what, hint="pass --prompt TEXT (or prompt: in the config)")
    if not isinstance(prompt, str):
        raise ConfigError(f"the text prompt must be a string, not {type(prompt).__name__}.",
                          hint="pass --prompt TEXT (or prompt: in the config)")


def prompt_token_count(model, prompt: str) -> tuple[int, int] | None:
    """``(tokens, limit)``: how many tokens ``prompt`` needs with ``model``'s tokenizer (special
    tokens included) and the model's text context; ``None`` when the model does not say."""
    tok = getattr(model, "tokenizer", None)
    limit = getattr(model, "context_length", None) or getattr(model, "max_length", None)
    if tok is None or not limit:
        return None
    try:
        hf = getattr(tok, "tokenizer", tok)  # open_clip's HFTokenizer wraps a transformers tokenizer
        if hasattr(hf, "model_max_length") and callable(hf):
            n = len(hf(prompt, truncation=False)["input_ids"])
        elif hasattr(tok, "encode"):  # open_clip SimpleTokenizer: + start and end tokens
            n = len(tok.encode(prompt)) + 2
        else:
            return None
    except Exception:  # noqa: BLE001 - a count we cannot make is no reason to fail the run
        return None
    return int(n), int(limit)


def check_prompt_length(model, prompt: str, record, counted: tuple[int, int] | None = None) -> None:
    """Warn (log and run.json ``warnings``) when the prompt is cut to the model's text context.

    ``counted``: ``prompt_token_count(model, prompt)`` made elsewhere (e.g. in a Ray worker that
    holds the model; ``model`` is then only used for its name)."""
    counted = counted if counted is not None else prompt_token_count(model, prompt)
    if counted is None:
        return
    n, limit = counted
    if n > limit:
        record.warn(f"the prompt has {n} tokens but model '{getattr(model, 'name', '?')}' reads only "
                    f"{limit} (its text context): it was truncated, the rest of the prompt is ignored "
                    f"(prompt starts: {prompt[:60]!r}).")
        record.extra["prompt_truncated"] = {"tokens": n, "context_length": limit}
