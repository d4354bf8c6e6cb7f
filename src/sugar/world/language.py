"""Words for scenes: noun phrases, caption templates, story sentences, tokens.

Every sentence is built from the scene's ground truth, so it is true of its image. Captions
vary by template, word order, optional sizes and paraphrased relations, the way five COCO
annotators describe one photo differently. Colour and shape words are always adjacent
("red circle", never "red small circle"), so a colour-shape combination held out of training
can be searched for in any text as "<colour> <shape>".
"""

from __future__ import annotations

import random
import re
from collections import Counter

from sugar.world.scene import GRID, INVERSE_RELATION, Scene, WorldObject

NUMBER_WORDS: dict[int, str] = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left of": ("left of", "to the left of"),
    "right of": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below",),
}
POSITION_PHRASES: dict[tuple[int, int], str] = {
    (0, 0): "in the top left corner",
    (0, 1): "at the top",
    (0, 2): "in the top right corner",
    (1, 0): "on the left",
    (1, 1): "in the centre",
    (1, 2): "on the right",
    (2, 0): "in the bottom left corner",
    (2, 1): "at the bottom",
    (2, 2): "in the bottom right corner",
}
assert len(POSITION_PHRASES) == GRID * GRID

_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens without punctuation, as in the Karpathy COCO split files."""
    return _TOKEN.findall(text.lower())


def vist_text(text: str) -> str:
    """VIST's normalised story text: lower case, punctuation split off by spaces."""
    spaced = re.sub(r"([.,!?])", r" \1", text.lower())
    return " ".join(spaced.split())


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def sentence(text: str) -> str:
    """Capitalise the first letter and end with a full stop."""
    text = text.strip()
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def plural(shape: str) -> str:
    return shape + "s"


def noun_phrase(obj: WorldObject, *, with_size: bool = False, definite: bool = False) -> str:
    """ "a small red circle" / "the red circle"; colour and shape always adjacent."""
    words = ([obj.size] if with_size else []) + [obj.colour, obj.shape]
    head = "the" if definite else article(words[0])
    return " ".join([head] + words)


def group_phrase(objects: list[WorldObject], *, with_size: bool) -> str:
    """One colour-shape group: "a red circle" or "two red circles" (size only when shared)."""
    first = objects[0]
    if len(objects) == 1:
        return noun_phrase(first, with_size=with_size)
    sizes = {o.size for o in objects}
    words = [NUMBER_WORDS[len(objects)]]
    if with_size and len(sizes) == 1:
        words.append(first.size)
    words += [first.colour, plural(first.shape)]
    return " ".join(words)


def join_list(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def groups_of(scene: Scene) -> list[list[WorldObject]]:
    """Objects grouped by colour-shape, in reading order (top-to-bottom, left-to-right)."""
    ordered = sorted(scene.objects, key=lambda o: (o.cell[0], o.cell[1]))
    groups: dict[tuple[str, str], list[WorldObject]] = {}
    for obj in ordered:
        groups.setdefault(obj.combo, []).append(obj)
    return list(groups.values())


def relation_pairs(scene: Scene) -> list[tuple[int, int, str]]:
    """(i, j, relation) for every aligned pair of objects whose colour-shape is unique.

    Only unique objects can be named unambiguously ("the red circle"), so only they take part.
    """
    counts = Counter(o.combo for o in scene.objects)
    unique = [i for i, o in enumerate(scene.objects) if counts[o.combo] == 1]
    pairs = []
    for i in unique:
        for j in unique:
            if i < j:
                rel = scene.relation(i, j)
                if rel is not None:
                    pairs.append((i, j, rel))
    return pairs


def relation_clause(a: WorldObject, rel: str, b: WorldObject, rng: random.Random, *, with_size: bool) -> str:
    """ "a red circle is to the left of a blue square", in one of a few paraphrases."""
    phrase = rng.choice(RELATION_PHRASES[rel])
    na, nb = noun_phrase(a, with_size=with_size), noun_phrase(b, with_size=with_size)
    form = rng.randrange(3)
    if form == 0:
        return f"{na} {phrase} {nb}"
    if form == 1:
        return f"{na} is {phrase} {nb}"
    return f"there is {na} {phrase} {nb}"


def caption_candidates(scene: Scene, rng: random.Random) -> tuple[list[str], list[str]]:
    """(listing, relational) caption candidates, lower case without the final full stop.

    Listing captions mention every object; relational ones state one relation between two
    uniquely named objects (and in a two-object scene they too mention every object).
    """
    groups = groups_of(scene)
    total = len(scene.objects)
    listing_captions: list[str] = []
    for with_size in (False, True):
        order = list(groups)
        if rng.random() < 0.5:
            rng.shuffle(order)
        listing = join_list([group_phrase(g, with_size=with_size) for g in order])
        listing_captions.append(listing)
        verb = "is" if len(order[0]) == 1 else "are"  # agrees with the first noun phrase
        listing_captions.append(f"there {verb} {listing}")
        listing_captions.append(f"a picture of {listing}")
        listing_captions.append(f"an image with {listing}")
        backdrop = "plain" if scene.background.kind == "plain" else "patterned"
        listing_captions.append(f"{listing} on a {backdrop} background")
        if total > 1:
            listing_captions.append(f"{NUMBER_WORDS[total]} shapes: {listing}")
    if total == 1:
        obj = scene.objects[0]
        place = POSITION_PHRASES[obj.cell]
        listing_captions.append(f"{noun_phrase(obj)} {place}")
        listing_captions.append(f"{noun_phrase(obj, with_size=True)} {place}")
        listing_captions.append(f"a single {obj.colour} {obj.shape} {place}")
    relational: list[str] = []
    for i, j, rel in relation_pairs(scene):
        for with_size in (False, True):
            a, b, used = scene.objects[i], scene.objects[j], rel
            if rng.random() < 0.5:
                a, b, used = b, a, INVERSE_RELATION[rel]
            relational.append(relation_clause(a, used, b, rng, with_size=with_size))
    return listing_captions, relational


def scene_captions(scene: Scene, rng: random.Random, k: int = 5) -> list[str]:
    """`k` distinct captions of `scene`; the first always mentions every object.

    When the scene has a relation, the second caption states one; the rest are drawn from all
    templates, so the five captions of an image differ in wording, order and detail.
    """
    listing, relational = caption_candidates(scene, rng)
    listing = list(dict.fromkeys(sentence(c) for c in listing))
    relational = [c for c in dict.fromkeys(sentence(c) for c in relational) if c not in listing]
    chosen = [rng.choice(listing)]
    if relational:
        chosen.append(rng.choice(relational))
    rest = [c for c in listing + relational if c not in chosen]
    rng.shuffle(rest)
    chosen += rest[: max(0, k - len(chosen))]
    if len(chosen) < k:
        raise ValueError(f"scene {scene.signature()} yields only {len(chosen)} distinct captions, need {k}")
    return chosen
