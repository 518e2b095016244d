"""Named classes of the natural world: ~100 known names and 5 novel (rare-word) concepts.

* **Known classes** bind a common English word (one BPE token each) to a composition.
  Their names appear in the pretraining text, both alone (``a photo of a lemon``) and in
  definitions (``a lemon is a yellow circle``).  Half of the classes only ever get a
  *partial* definition (``a lemon is a circle``), so the name carries information the
  rest of the caption lacks; the text encoder then learns to read names (see
  docs/worlds.md, "lessons").
* **Novel concepts** bind a real rare word (Moongate / Tonometer / Gyroscope analogues)
  to a composition whose parts occur in pretraining but which is itself held out of
  every pretraining image; the names' BPE tokens never occur in the pretraining text
  (checked by :func:`check_world`).

Everything here is a pure function of :class:`WorldSpec` (seeded).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from medkt.worlds.shapes import COLOURS, CONTAINERS, RELATIONS, SHAPES, Composition, Obj, article

KNOWN_NAMES = (
    "apple anchor arrow badge banana barrel basket bell berry blanket boat bottle bowl bread bridge "
    "brush bucket cabin cactus cake camera candle candy canoe carpet castle chair cheese clock cloud "
    "coin comet cookie crown cup desk dragon drum eagle engine feather fence flower forest fountain "
    "garden glove guitar hammer harbor helmet honey island jacket jewel kettle ladder lamp leaf lemon "
    "lion magnet mango medal melon mirror mountain needle olive onion orchid palace panda parrot peach "
    "pencil pepper piano pillow planet pocket pumpkin rabbit rocket saddle shield shoe spider spoon sun "
    "tiger tomato tower turtle umbrella violin wagon wallet window wolf zebra cotton garlic pebble hat "
    "tulip").split()

EXTRA_NAMES = (
    "acorn album alley altar angel ankle apron arch arena atlas attic award axe bacon badger bag bakery balcony "
    "ballet balloon bamboo band bank barn basin bat beach beacon beak bean bear beard bed bee beet belt bench bike "
    "bird blade blender blossom board bolt bone book boot bouquet bow box bracelet branch brick bride broom bubble "
    "bulb bull bunny bus bush butter button cabbage cable camel canal cane cannon canyon cap captain car card carrot "
    "cart cat cave cedar cello chain chalk cherry chess chick chimney chin cigar circus city clam claw cliff clown "
    "coat cobra cocoa coconut collar comb copper coral cord corn cottage couch cow crab crane crate crayon creek "
    "cricket crow cube cushion dagger daisy dancer deer dentist diary dice dinner dish doctor dog doll dolphin donkey "
    "door dove drawer dress drill duck dune dust eel egg elbow elephant elk fairy falcon farm fern ferry fig film "
    "finger fire fish flag flame flute foam fog fork fox frog fruit fudge gallery garage gate gear ghost giant gift "
    "ginger giraffe glass globe goat gold golf goose gown grape grass guard gull gym hair hall harp hawk hay heart "
    "hedge hill hippo hive hook horn horse hotel house ice ink iron ivy jam jar jeans jelly jet judge jug juice kayak "
    "key king kiss kitchen kitten knee knife knot koala lace lake lamb lantern laptop lava lawn lid lily lime lizard "
    "llama lobster lock log lotus mail mall map maple marble market mask mat meadow meat mill mint mole monkey moon "
    "moose moth motor mouse mud mug mule mushroom nail napkin nest net nose nut oak ocean office orbit otter owl ox "
    "oyster paddle page paint pan paper park pasta path paw pea pear pearl pen penguin pie pig pillar pilot pin pine "
    "pipe pirate pizza plane plate plum pond pony pool poppy port pot potato prince puppy purse queen quilt rack "
    "radio raft rail rain ram rat raven reef rice river road robe robin rock roof room rope rose ruby rug sack sail "
    "salad salt sand satin scarf school sea seal seed shark sheep shell ship shirt shop shore silk silver sink skate "
    "skirt skull sky sled slide snail snake sock sofa soup spade spice sponge spruce squid stable stage stamp steak "
    "stool stove straw stream street string sugar suit swan sword table tail tank tea teapot tent thread throne tile "
    "toast toe tooth torch towel toy tractor train tray tree truck trumpet tuna tunnel van vase vest village vine "
    "wall wand watch wave whale wheat wheel whip wig willow wind wing wire wool worm yacht yarn yoke").split()

# Novel concepts: rare words never seen in pretraining text, held-out compositions.
NOVEL = (
    ("moongate", Composition(Obj("ring", "white"))),
    ("theodolite", Composition(Obj("star", "purple"))),
    ("tonometer", Composition(Obj("triangle", "cyan"), "above", Obj("bar", "red"))),
    ("gyroscope", Composition(Obj("cross", "yellow"), "inside", Obj("circle", "blue"))),
    ("zoetrope", Composition(Obj("diamond", "green"), "next to", Obj("square", "pink"))),
)


@dataclass(frozen=True)
class WorldClass:
    """A class of the synthetic world: ``name`` bound to ``composition``; ``partial`` = only partial
    definitions in pretraining.  (Not :class:`medkt.transfer.Concept`, what KT learns:
    :func:`medkt.worlds.experiments.transfer_concept` turns a novel WorldClass into one.)"""

    name: str
    composition: Composition
    novel: bool = False
    partial: bool = False
    aliases: tuple = ()  # extra names used in pretraining captions (synonyms)

    @property
    def description(self) -> str:
        """Full description with article: ``a yellow cross inside a blue circle``."""
        return article(self.composition.describe())

    @property
    def kt_caption(self) -> str:
        """The fine-tuning caption of the paper's recipe: ``A <name> is <description>``."""
        return f"{article(self.name).capitalize()} is {self.description}"


@dataclass(frozen=True)
class WorldSpec:
    """Parameters of the natural world (defaults = the shipped ``world-clip``)."""

    seed: int = 0
    n_single: int = 40
    n_pair: int = 60
    image_size: int = 32
    known_names: tuple = field(default_factory=lambda: tuple(KNOWN_NAMES[:100]))
    novel: tuple = NOVEL
    names_per_class: int = 1  # >1: each known class also gets synonyms from EXTRA_NAMES
    partial_fraction: float = 0.5  # share of known classes that only get partial definitions
    p_named: float = 0.5  # share of known-class captions that use the name
    p_definition: float = 0.5  # share of those that are definitions ("a lemon is ...")
    strong_partial: bool = False  # partial pair definitions leave out a whole object


@dataclass(frozen=True)
class World:
    """The resolved world: concepts and the compositions excluded from pretraining."""

    spec: WorldSpec
    known: tuple[WorldClass, ...]
    novel: tuple[WorldClass, ...]

    @property
    def concepts(self) -> tuple[WorldClass, ...]:
        return self.known + self.novel

    def concept(self, name: str) -> WorldClass:
        for c in self.concepts:
            if c.name == name:
                return c
        from medkt.errors import UnknownNameError
        raise UnknownNameError("world concept", name, [c.name for c in self.concepts])

    @property
    def held_out_keys(self) -> frozenset:
        return frozenset(c.composition.key() for c in self.novel)

    @property
    def held_out_objects(self) -> frozenset:
        """Objects that are themselves novel single-object concepts (never rendered in pretraining)."""
        return frozenset(c.composition.a for c in self.novel if not c.composition.is_pair)

    def allowed_in_pretraining(self, comp: Composition) -> bool:
        if comp.key() in self.held_out_keys:
            return False
        return not any(o in self.held_out_objects for o in comp.objects())

    def known_by_key(self) -> dict[str, WorldClass]:
        return {c.composition.key(): c for c in self.known}


def _random_pair(rng: np.random.Generator) -> Composition:
    rel = RELATIONS[rng.integers(len(RELATIONS))]
    colours = list(COLOURS)
    ca, cb = rng.choice(len(colours), size=2, replace=False)
    sa = SHAPES[rng.integers(len(SHAPES))]
    sb = CONTAINERS[rng.integers(len(CONTAINERS))] if rel == "inside" else SHAPES[rng.integers(len(SHAPES))]
    return Composition(Obj(sa, colours[ca]), rel, Obj(sb, colours[cb]))


def random_composition(rng: np.random.Generator, p_pair: float = 0.6) -> Composition:
    """A uniformly drawn single object or pair (no filtering)."""
    if rng.random() < p_pair:
        return _random_pair(rng)
    return Composition(Obj(SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))]))


@lru_cache(maxsize=8)
def build_world(spec: WorldSpec = WorldSpec()) -> World:
    """Resolve ``spec`` into concepts (deterministic in ``spec.seed``)."""
    rng = np.random.default_rng(spec.seed)
    novel = tuple(WorldClass(n, c, novel=True) for n, c in spec.novel)
    held_keys = {c.composition.key() for c in novel}
    held_objs = {c.composition.a for c in novel if not c.composition.is_pair}
    singles = [Composition(o) for o in (Obj(s, c) for s in SHAPES for c in COLOURS)
               if o not in held_objs]
    order = rng.permutation(len(singles))
    comps = [singles[i] for i in order[:spec.n_single]]
    keys = {c.key() for c in comps}
    while len(comps) < spec.n_single + spec.n_pair:
        p = _random_pair(rng)
        if p.key() in keys or p.key() in held_keys or any(o in held_objs for o in p.objects()):
            continue
        # keep novel pairs clearly apart from known pairs: not the same objects in any relation
        if any({o for o in p.objects()} == {o for o in n.composition.objects()} for n in novel):
            continue
        keys.add(p.key())
        comps.append(p)
    names = list(spec.known_names)
    if len(names) < len(comps):
        raise ValueError(f"need {len(comps)} known names, got {len(names)}")
    name_order = rng.permutation(len(names))[:len(comps)]
    partial = rng.permutation(len(comps)) < int(round(len(comps) * spec.partial_fraction))
    k = spec.names_per_class - 1
    extra = [EXTRA_NAMES[i] for i in rng.permutation(len(EXTRA_NAMES))[:k * len(comps)]] if k > 0 else []
    known = tuple(WorldClass(names[j], comp, partial=bool(partial[i]), aliases=tuple(extra[i * k:(i + 1) * k]))
                  for i, (j, comp) in enumerate(zip(name_order, comps)))
    return World(spec, known, novel)
