"""Class prompts: one definition shared by zero-shot evaluation and fine-tuning captions.

A *template* is a string with one placeholder:

* ``{a}`` — the class name with its indefinite article: ``"a photo of {a}"`` gives
  "a photo of a gyroscope" and "a photo of an astrolabe";
* ``{}`` — the bare class name (``"a photo of a {}."``, the OpenAI style; kept working).

:func:`class_prompt` fills one template with one class name; it is the single definition
used by zero-shot classifiers and by the ``name`` fine-tuning caption style
(:data:`CLASS_PROMPT`, "a photo of {a}").  Names go through :func:`prompt_name` first:
``_`` reads as a space and title-case words are lowercased ("Moongate" → "moongate",
"Pleural_Effusion" → "pleural effusion"), acronyms are kept ("MRI").  A name that
already starts with an article ("a red circle", a description) keeps it under ``{a}``.

Named template sets (:data:`TEMPLATE_SETS`, resolved by :func:`resolve_templates`):

======================  ============================================================
``simple``              ``a photo of {a}`` — :data:`CLASS_PROMPT`, the ``name`` caption
``world``               ``a photo of {a}``, ``an image of {a}`` — what the world models
                        (``world-clip``) were pretrained with
``openai-imagenet``     CLIP's 80 ImageNet prompts, exactly as open_clip ships them
                        (``a bad photo of a {}.`` ...; no article agreement)
``openai-imagenet-a``   the same 80 with ``a {}`` written ``{a}`` (article-aware)
``openai-imagenet-7``   CLIP's 7-prompt subset (``simple_imagenet`` in open_clip)
``photo``               ``a photo of a {}.`` — medkt's former zero-shot default
``biomedclip``          ``this is a photo of {}`` (BiomedCLIP's model card)
``name``                ``{}`` — the name alone (a class "name" that is a whole prompt)
``cxr``, ``medical``    chest X-ray / generic medical phrasings
======================  ============================================================

The default set of a model (:func:`default_templates`) is the prompt its family was
trained or evaluated with: the model's ``default_templates`` attribute if set, else its
registry entry's ``options["templates"]``, else the family's (:data:`FAMILY_TEMPLATES`).
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

from medkt.errors import ConfigError

CLASS_PROMPT = "a photo of {a}"

# Acronyms read letter by letter start with a vowel sound for these letters ("an MRI", "an X-ray").
_VOWEL_SOUND_LETTERS = set("AEFHILMNORSX")
# Words whose first letter misleads the vowel rule (sound, not spelling).
_A_PREFIXES = ("uni", "use", "usu", "ure", "uro", "uti", "eu", "one", "once", "ewe")
_AN_PREFIXES = ("hour", "honest", "honor", "honour", "heir")
_ARTICLES = ("a ", "an ", "the ")


def prompt_name(name: str) -> str:
    """A class name as it appears in prompts: ``_`` → space, title-case words lowercased.

    ``"Moongate"`` → ``"moongate"``, ``"Pleural_Effusion"`` → ``"pleural effusion"``;
    words that are not plain title case keep their capitals (``"MRI"``, ``"X-ray"``).
    """
    words = str(name).replace("_", " ").split()
    return " ".join(w.lower() if w.istitle() else w for w in words)


def indefinite_article(phrase: str) -> str:
    """``"a"`` or ``"an"`` for ``phrase`` (by sound for common cases, else by first letter)."""
    word = phrase.strip().split(" ", 1)[0] if phrase.strip() else ""
    if not word:
        return "a"
    letters = re.sub(r"[^A-Za-z]", "", word.split("-", 1)[0])
    if len(letters) >= 2 and letters.isupper():  # an acronym, read letter by letter
        return "an" if letters[0] in _VOWEL_SOUND_LETTERS else "a"
    if len(letters) == 1 and "-" in word:  # "X-ray", "T-cell": the letter's name
        return "an" if letters.upper() in _VOWEL_SOUND_LETTERS else "a"
    low = word.lower()
    if low.startswith(_A_PREFIXES):
        return "a"
    if low.startswith(_AN_PREFIXES):
        return "an"
    return "an" if low[:1] in "aeiou" else "a"


def with_article(phrase: str) -> str:
    """``"gyroscope"`` → ``"a gyroscope"``; a phrase starting with an article is kept."""
    if phrase.lower().startswith(_ARTICLES):
        return phrase
    return f"{indefinite_article(phrase)} {phrase}"


def check_template(template: str) -> str:
    """``template`` if it has exactly one ``{a}`` or ``{}`` placeholder, else a ConfigError."""
    n = template.count("{a}") + template.count("{}")
    if n != 1 or re.search(r"\{(?!a\}|\})", template):
        raise ConfigError(f"prompt template '{template}' must contain exactly one placeholder, "
                          "'{a}' (name with article) or '{}' (bare name).",
                          hint=f"template sets: {', '.join(sorted(TEMPLATE_SETS))}")
    return template


def class_prompt(name: str, template: str = CLASS_PROMPT) -> str:
    """The prompt of class ``name`` under ``template`` (the one definition; see module doc)."""
    check_template(template)
    n = prompt_name(name)
    if "{a}" in template:
        return template.replace("{a}", with_article(n))
    return template.replace("{}", n)


def class_prompts(names: Sequence[str], templates: Sequence[str] = (CLASS_PROMPT,)) -> list[list[str]]:
    """Per class, its prompt under every template: ``[[t1(c1), t2(c1)], [t1(c2), ...], ...]``."""
    return [[class_prompt(n, t) for t in templates] for n in names]


# ---------------------------------------------------------------------- template sets
def _open_clip_set(attr: str) -> list[str]:
    from open_clip import zero_shot_metadata
    return [t("{}") for t in getattr(zero_shot_metadata, attr)]


def _article_aware(templates: list[str]) -> list[str]:
    return [re.sub(r"\ba \{\}", "{a}", t) for t in templates]


TEMPLATE_SETS: dict[str, Callable[[], list[str]]] = {
    "simple": lambda: [CLASS_PROMPT],
    "world": lambda: ["a photo of {a}", "an image of {a}"],
    "openai-imagenet": lambda: _open_clip_set("OPENAI_IMAGENET_TEMPLATES"),
    "openai-imagenet-a": lambda: _article_aware(_open_clip_set("OPENAI_IMAGENET_TEMPLATES")),
    "openai-imagenet-7": lambda: _open_clip_set("SIMPLE_IMAGENET_TEMPLATES"),
    "photo": lambda: ["a photo of a {}."],
    "biomedclip": lambda: ["this is a photo of {}"],
    "name": lambda: ["{}"],
    "cxr": lambda: ["a chest x-ray showing {}.", "a chest radiograph with {}.", "{} on a chest x-ray."],
    "medical": lambda: ["a medical image showing {}.", "an image of {}."],
}
# Former names (bench experiment configs use them).
ALIASES = {"openai_imagenet": "openai-imagenet", "simple_imagenet": "openai-imagenet-7"}

# Family → default template set (the prompts the family is trained / evaluated with).
FAMILY_TEMPLATES = {"open_clip": "openai-imagenet", "hf_clip": "openai-imagenet", "coca": "openai-imagenet",
                    "vilt": "simple", "medclip": "name"}
FALLBACK_TEMPLATES = "simple"


def resolve_templates(spec: str | Sequence[str]) -> list[str]:
    """Template set names and/or literal templates (with ``{a}`` or ``{}``) → templates, deduplicated."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        name = ALIASES.get(item, item)
        if name in TEMPLATE_SETS:
            out += TEMPLATE_SETS[name]()
        elif "{" in item:
            out.append(check_template(item))
        else:
            raise ConfigError(f"template '{item}' is neither a template set nor contains '{{a}}' or '{{}}'.",
                              hint=f"template sets: {', '.join(sorted(TEMPLATE_SETS))}")
    if not out:
        raise ConfigError("at least one prompt template is needed.")
    return list(dict.fromkeys(out))


def default_template_set(model) -> str | list[str]:
    """The template set a model was trained with (a set name, or a list of templates).

    Order: ``model.default_templates`` → registry ``options["templates"]`` of
    ``model.name`` → :data:`FAMILY_TEMPLATES` of ``model.family`` → ``simple``.
    """
    own = getattr(model, "default_templates", None)
    if own:
        return own
    from medkt.errors import UnknownNameError
    from medkt.models.registry import get_spec
    try:
        spec = get_spec(str(getattr(model, "name", "")))
    except UnknownNameError:  # an in-memory model: fall through to its family
        spec = None
    if spec is not None and spec.options.get("templates"):
        return spec.options["templates"]
    return FAMILY_TEMPLATES.get(getattr(model, "family", ""), FALLBACK_TEMPLATES)


def describe_templates(spec: str | Sequence[str]) -> str:
    """Short human-readable form: ``world (2 templates)`` or the literal template(s)."""
    if isinstance(spec, str):
        spec = [spec]
    names = [s for s in spec if ALIASES.get(s, s) in TEMPLATE_SETS]
    n = len(resolve_templates(spec))
    if names and len(names) == len(spec):
        return f"{'+'.join(names)} ({n} template{'s' if n != 1 else ''})"
    return "; ".join(f"'{s}'" for s in spec)


def templates_for(model, templates: str | Sequence[str] | None = None) -> tuple[str, list[str]]:
    """``(label, templates)``: the given ones, or the model's default (:func:`default_template_set`)."""
    spec = templates if templates else default_template_set(model)
    return describe_templates(spec), resolve_templates(spec)
