"""Concepts as data: a YAML file per concept set, and the captions built from them.

File format (``configs/concepts/*.yaml`` ships the paper's Tables 12-17)::

    name: rare
    concepts:
      - name: Moongate
        descriptions: ["A perfectly circular archway ..."]   # one or more
        short_description: "A perfectly circular ..."         # optional, ViLT's 40 tokens

Files are read with :func:`medkt.config.load_yaml` (size and alias-expansion bounds) and every
value is checked: names are strings of at most 100 characters, descriptions strings of at most
2000; lists or mappings where text belongs are refused with a :class:`~medkt.errors.ConfigError`.

Caption styles (``FinetuneConfig.caption``), a small registry:

* ``definition`` — "A <name> is <description>" with the description's first letter
  lowercased and the name lowercased (the paper's "A moongate is ...", §3.1.2);
* ``description`` — the description alone (the paper's "no name" ablation, §8.3);
* ``plural`` — "<name> are <description>" (the author's ``--pl`` option).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from medkt.config import load_yaml
from medkt.errors import ConfigError, UnknownNameError, look_up


#: Bounds on concept files (they hold a few kB of text; anything far larger is a damaged or hostile file).
MAX_NAME_CHARS = 100
MAX_DESCRIPTION_CHARS = 2000
MAX_DESCRIPTIONS = 1000
MAX_CONCEPTS = 10_000


def _text(value, what: str, max_chars: int, where: str | None = None) -> str:
    """``value`` as a stripped one-value string of at most ``max_chars`` characters.

    Raises:
        ConfigError: a list, mapping, number or boolean where text belongs, or a string that is too long.
    """
    if not isinstance(value, str):
        kind = {list: "a list", tuple: "a list", dict: "a mapping", bool: "a boolean"}.get(type(value),
                                                                                        type(value).__name__)
        raise ConfigError(f"{what} must be a string, got {kind} ({str(value)[:60]!r}).", path=where,
                          hint="write plain text (quote it, e.g. name: \"2001\"); nested lists or mappings are "
                               "not allowed")
    if len(value) > max_chars:
        raise ConfigError(f"{what} is {len(value):,} characters long; at most {max_chars:,} are allowed.", path=where,
                          hint="shorten it")
    return value.strip()


@dataclass(frozen=True)
class Concept:
    """A concept to learn: ``name``, one or more ``descriptions``, optional ``short_description``.

    ``name`` is a string of at most :data:`MAX_NAME_CHARS` characters; descriptions are strings of at
    most :data:`MAX_DESCRIPTION_CHARS` characters (at most :data:`MAX_DESCRIPTIONS` of them).
    """

    name: str
    descriptions: tuple[str, ...]
    short_description: str | None = None

    def __post_init__(self):
        name = _text(self.name, "a concept 'name'", MAX_NAME_CHARS)
        if not name:
            raise ConfigError("a concept needs a non-empty 'name'.")
        if "\n" in name:
            raise ConfigError(f"concept name {name[:40]!r} spans several lines.", hint="use a one-line name")
        raw = self.descriptions or ()
        if isinstance(raw, str) or not isinstance(raw, (list, tuple)):
            raw = (raw,)
        if len(raw) > MAX_DESCRIPTIONS:
            raise ConfigError(f"concept '{name}' has {len(raw):,} descriptions; at most {MAX_DESCRIPTIONS:,}.")
        descs = tuple(d for d in (_text(x, f"a description of concept '{name}'", MAX_DESCRIPTION_CHARS)
                                  for x in raw) if d)
        if not descs:
            raise ConfigError(f"concept '{self.name}' has no descriptions.",
                              hint="give 'descriptions: [\"...\"]' (or 'description: \"...\"')")
        short = self.short_description
        if short is not None:
            short = _text(short, f"the short_description of concept '{name}'", MAX_DESCRIPTION_CHARS) or None
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "descriptions", descs)
        object.__setattr__(self, "short_description", short)

    @property
    def slug(self) -> str:
        """File-system-safe name (``"Pleural Effusion"`` → ``"pleural-effusion"``)."""
        return slugify(self.name)

    def description(self, index: int = 0, short: bool = False) -> str:
        """Description ``index`` (cycled); ``short`` prefers ``short_description``."""
        if short and self.short_description:
            return self.short_description
        return self.descriptions[index % len(self.descriptions)]


def slugify(name: str) -> str:
    """File-system-safe name (``"Pleural Effusion"``, ``"pleural_effusion"`` → ``"pleural-effusion"``)."""
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-") or "concept"


@dataclass
class ConceptSet:
    """An ordered list of :class:`Concept` with a set name and its source."""

    name: str
    concepts: list[Concept] = field(default_factory=list)
    source: str = ""

    def __iter__(self):
        return iter(self.concepts)

    def __len__(self):
        return len(self.concepts)

    def __getitem__(self, i):
        return self.concepts[i]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    def get(self, name: str) -> Concept:
        for c in self.concepts:
            if c.name == name or c.name.lower() == name.lower() or c.slug == name:
                return c
        raise UnknownNameError("concept", name, self.names)

    def subset(self, names: Iterable[str]) -> "ConceptSet":
        return ConceptSet(self.name, [self.get(n) for n in names], self.source)


def concepts_dir() -> Path:
    from medkt.paths import config_dir
    return config_dir("concepts")


def list_concept_sets() -> list[str]:
    from medkt.paths import list_configs
    return list_configs("concepts")


def _concept_from(item, where: str) -> Concept:
    if isinstance(item, Concept):
        return item
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: each concept must be a mapping with 'name' and 'descriptions'.")
    unknown = set(item) - {"name", "descriptions", "description", "short_description"}
    if unknown:
        raise UnknownNameError(f"concept key in {where}", sorted(unknown)[0],
                               ["name", "descriptions", "description", "short_description"])
    descs = item.get("descriptions", item.get("description"))
    if isinstance(descs, str):
        descs = [descs]
    if descs is not None and not isinstance(descs, list):
        raise ConfigError(f"{where}: 'descriptions' of concept {str(item.get('name'))[:40]!r} must be a string or "
                          f"a list of strings, got {type(descs).__name__}.")
    try:
        return Concept(item.get("name", ""), tuple(descs or ()), item.get("short_description"))
    except ConfigError as e:
        if e.path is None:
            e.path = where
            e.args = (e.format(),)
        raise


def load_concepts(source) -> ConceptSet:
    """A :class:`ConceptSet` from a shipped name (``"rare"``), a YAML path, a dict, a list of
    dicts/Concepts, or an existing ConceptSet/Concept."""
    if isinstance(source, ConceptSet):
        return source
    if isinstance(source, Concept):
        return ConceptSet(source.name, [source])
    if isinstance(source, (list, tuple)):
        return ConceptSet("custom", [_concept_from(c, "concepts") for c in source])
    if isinstance(source, dict):
        data, where = source, "concepts"
    else:
        from medkt.paths import config_file
        path = config_file("concepts", source)
        data, where = load_yaml(path), str(path)
    items = data.get("concepts")
    if not isinstance(items, list) or not items:
        raise ConfigError("expected a non-empty 'concepts:' list.", path=where)
    if len(items) > MAX_CONCEPTS:
        raise ConfigError(f"{len(items):,} concepts; at most {MAX_CONCEPTS:,} are allowed in one file.", path=where)
    concepts = [_concept_from(c, where) for c in items]
    seen: set[str] = set()
    for c in concepts:
        if c.slug in seen:
            raise ConfigError(f"concept '{c.name}' appears twice.", path=where)
        seen.add(c.slug)
    name = data.get("name") or (Path(where).stem if where != "concepts" else "custom")
    name = _text(name, "the concept set 'name'", MAX_NAME_CHARS, where)
    source_text = _text(data.get("source") or "", "'source'", MAX_DESCRIPTION_CHARS, where)
    return ConceptSet(name, concepts, source_text)


# ---------------------------------------------------------------------- captions
def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text


def _class_prompt(name: str) -> str:
    from medkt.evaluation.prompts import class_prompt
    return class_prompt(name)


def _article(word: str) -> str:
    """"An" before a vowel letter ("An astrolabe is ..."), else "A" (the paper's "A <name> is")."""
    return "An" if word[:1].lower() in "aeiou" else "A"


CAPTION_STYLES: dict[str, Callable[[Concept, str], str]] = {
    "definition": lambda c, d: f"{_article(c.name)} {c.name.lower()} is {_lower_first(d)}",
    "description": lambda c, d: d,
    "plural": lambda c, d: f"{c.name.lower()} are {_lower_first(d)}",
    # the zero-shot class prompt itself (medkt.evaluation.prompts.class_prompt, the one definition
    # shared with zero-shot); carries no description (knowledge comes from the images)
    "name": lambda c, d: _class_prompt(c.name),
}


def caption(concept: Concept, style: str = "definition", index: int = 0, short: bool = False) -> str:
    """Fine-tuning caption of ``concept``'s image ``index`` in a named style.

    ``style`` may join styles with ``+`` (``definition+name``): image ``index`` then gets
    style ``index % n`` and description ``index // n`` (descriptions cycle), so the images of
    a concept alternate between the styles.
    """
    styles = style.split("+")
    for s in styles:
        look_up("caption style", s, CAPTION_STYLES)
    n = len(styles)
    fn = CAPTION_STYLES[styles[index % n]]
    return fn(concept, concept.description(index // n, short))


def inversion_text(concept: Concept, which: str = "description", index: int = 0) -> str:
    """The text whose embedding inversion targets: ``description``, ``short`` or ``definition``."""
    if which == "short":
        return concept.description(index, short=True)
    if which == "definition":
        return caption(concept, "definition", index)
    if which == "description":
        return concept.description(index)
    raise UnknownNameError("inversion caption", which, ["description", "short", "definition"])


# The 26 CoCa target-caption templates of paper §8.8 (a subset of OpenAI's ImageNet ensemble).
COCA_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "a bad photo of the {}.", "a cropped photo of the {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.",
    "a dark photo of the {}.", "a photo of my {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a photo of the {}.", "a good photo of the {}.",
    "a rendering of the {}.", "a photo of one {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "a low resolution photo of a {}.", "a photo of a large {}.",
    "itap of the {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
    "itap of a {}.", "a photo of the large {}.",
)


def per_image(concepts: Sequence[Concept], n_per: int) -> list[Concept]:
    """Concept of each image when ``n_per`` images are made per concept (concept-major order)."""
    return [c for c in concepts for _ in range(n_per)]
