"""The world's tasks as typed items, each generated from its own seeded random stream.

One function per task turns (seed, split, index) into an item: a captioned image, a five-step
story, a Winoground pair, an MMVP pair, VQA / POPE questions, RAG species questions, a WebQA
item. Each samples until its content lands in the requested split (see `splits`), so train,
val and test never share an item and held-out colour-shape combinations stay in test.
Writing the items in the real datasets' formats is `formats`' job.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from sugar.world.language import (
    NUMBER_WORDS,
    POSITION_PHRASES,
    RELATION_PHRASES,
    article,
    noun_phrase,
    plural,
    relation_pairs,
    scene_captions,
    sentence,
)
from sugar.world.scene import (
    ALL_COMBOS,
    COLOURS,
    GRID,
    INVERSE_RELATION,
    SHAPES,
    SIZES,
    Cell,
    Combo,
    Scene,
    WorldObject,
    aligned_cells,
    cell_relation,
    move_object,
    place_object,
    restyle,
    sample_background,
    sample_scene,
)
from sugar.world.splits import MAX_TRIES, item_rng, split_of

COMPOSITIONAL_FRACTION = 0.5  # share of test items built around a held-out combination


@dataclass(frozen=True)
class WorldContext:
    """What every item generator needs: the seed, image size and held-out combinations."""

    seed: int
    image_size: int
    heldout: frozenset[Combo]

    @property
    def seen_combos(self) -> list[Combo]:
        """The colour-shapes that train and val may show."""
        return [c for c in ALL_COMBOS if c not in self.heldout]

    def pool(self, forced: Combo | None) -> list[Combo]:
        """Colour-shapes an item may draw: all of them around a forced held-out one, else seen ones."""
        return list(ALL_COMBOS) if forced is not None else self.seen_combos

    def draw_forced(self, rng: random.Random, split: str) -> Combo | None:
        """For about half of the test items, one held-out combination the item must show."""
        if split == "test" and self.heldout and rng.random() < COMPOSITIONAL_FRACTION:
            return rng.choice(sorted(self.heldout))
        return None

    def split_of(self, signature: str, combos: set[Combo]) -> str:
        return split_of(self.seed, signature, combos, set(self.heldout))


def _no_item(task: str, split: str, index: int) -> ValueError:
    return ValueError(
        f"could not sample a {task} item for split {split!r} (index {index}) in {MAX_TRIES} tries"
    )


# --------------------------------------------------------------------------- captions


@dataclass(frozen=True)
class CaptionItem:
    """One image with five captions (the COCO-style task, also the source of VQA and POPE)."""

    split: str
    index: int
    image: str  # path relative to the world directory
    scene: Scene
    captions: tuple[str, ...]
    compositional: bool  # shows a held-out colour-shape combination


def make_caption_item(ctx: WorldContext, split: str, index: int) -> CaptionItem:
    rng = item_rng(ctx.seed, "captions", split, index)
    forced = ctx.draw_forced(rng, split)  # decided once: retries must not change the odds
    for _ in range(MAX_TRIES):
        scene = sample_scene(rng, ctx.image_size, ctx.pool(forced), forced_combo=forced)
        if ctx.split_of(scene.signature(), scene.combos()) == split:
            return CaptionItem(
                split=split,
                index=index,
                image=f"images/cap_{split}_{index:06d}.png",
                scene=scene,
                captions=tuple(scene_captions(scene, rng)),
                compositional=bool(scene.combos() & ctx.heldout),
            )
    raise _no_item("captions", split, index)


# --------------------------------------------------------------------------- VQA and POPE

POPE_CATEGORIES: tuple[str, ...] = ("random", "popular", "adversarial")


@dataclass(frozen=True)
class VQAItem:
    """A LLaVA-style conversation about one image; POPE items carry category and label."""

    id: str
    split: str
    image: str
    turns: tuple[tuple[str, str], ...]  # (human, gpt) pairs; the first human turn gets <image>
    task: str  # "vqa" or "pope"
    category: str | None = None  # POPE negative sampling: random / popular / adversarial
    label: str | None = None  # POPE answer: "yes" / "no"
    combo: Combo | None = None  # POPE: the colour-shape asked about


def _count_answer(n: int, noun: str) -> str:
    if n == 0:
        return f"There are no {plural(noun)}."
    if n == 1:
        return f"There is one {noun}."
    return f"There are {NUMBER_WORDS[n]} {plural(noun)}."


def vqa_turns(scene: Scene, captions: tuple[str, ...], rng: random.Random) -> list[tuple[str, str]]:
    """Two to four question-answer turns, each answerable from the scene's ground truth."""
    objs = scene.objects
    shape_counts = Counter(o.shape for o in objs)
    colour_counts = Counter(o.colour for o in objs)
    qa: list[tuple[str, str]] = []
    n = len(objs)
    qa.append(("How many shapes are in the image?", _count_answer(n, "shape")))
    shape = rng.choice(SHAPES)
    qa.append((f"How many {plural(shape)} are there?", _count_answer(shape_counts[shape], shape)))
    unique_shape = [o for o in objs if shape_counts[o.shape] == 1]
    if unique_shape:
        o = rng.choice(unique_shape)
        qa.append((f"What colour is the {o.shape}?", sentence(f"the {o.shape} is {o.colour}")))
        qa.append((f"Is the {o.shape} small or large?", sentence(f"the {o.shape} is {o.size}")))
    unique_colour = [o for o in objs if colour_counts[o.colour] == 1]
    if unique_colour:
        o = rng.choice(unique_colour)
        qa.append((f"What shape is the {o.colour} object?", sentence(f"it is {article(o.shape)} {o.shape}")))
    pairs = relation_pairs(scene)
    if pairs:
        i, j, rel = rng.choice(pairs)
        a, b = objs[i], objs[j]
        na, nb = noun_phrase(a, definite=True), noun_phrase(b, definite=True)
        asked = rel if rng.random() < 0.5 else rng.choice([r for r in RELATION_PHRASES if r != rel])
        answer = "Yes" if asked == rel else f"No, {na} is {rel} {nb}"
        qa.append((sentence(f"is {na} {asked} {nb}?"), sentence(answer)))
        qa.append((f"Where is {na} relative to {nb}?", sentence(f"{na} is {rel} {nb}")))
    chosen = rng.sample(qa, min(len(qa), rng.randint(2, 3)))
    if rng.random() < 0.35:
        chosen.insert(rng.randint(0, len(chosen)), ("Describe the image briefly.", captions[0]))
    return chosen


def make_vqa_item(item: CaptionItem, seed: int) -> VQAItem:
    rng = item_rng(seed, "instruct", item.split, item.index)
    return VQAItem(
        id=f"vqa_{item.split}_{item.index:06d}",
        split=item.split,
        image=item.image,
        turns=tuple(vqa_turns(item.scene, item.captions, rng)),
        task="vqa",
    )


def combo_popularity(items: list[CaptionItem]) -> list[Combo]:
    """All combinations, most frequent first (images containing them), ties by name."""
    counts = Counter(c for item in items for c in item.scene.combos())
    return sorted(ALL_COMBOS, key=lambda c: (-counts[c], c))


def pope_question(combo: Combo) -> str:
    colour, shape = combo
    return f"Is there {article(colour)} {colour} {shape} in the image? Answer yes or no."


def make_pope_items(ctx: WorldContext, item: CaptionItem, popularity: list[Combo]) -> list[VQAItem]:
    """POPE's three settings for one image: the same yes-questions, differently drawn negatives.

    random: any absent combination; popular: the most frequent absent combinations in train;
    adversarial: absent combinations sharing a colour or a shape with a present object (our
    world's analogue of POPE's co-occurring objects: the binding mistakes a model makes).
    """
    rng = item_rng(ctx.seed, "pope", item.split, item.index)
    present = sorted(item.scene.combos())
    k = min(2, len(present))
    yes = rng.sample(present, k)
    # Negatives in train and val never name a held-out combination: that would leak it.
    pool = list(ALL_COMBOS) if item.split == "test" else ctx.seen_combos
    absent = [c for c in pool if c not in present]
    negatives: dict[str, list[Combo]] = {
        "random": rng.sample(absent, k),
        "popular": [c for c in popularity if c in absent][:k],
    }
    confusable = [c for c in absent if any(c[0] == p[0] or c[1] == p[1] for p in present)]
    negatives["adversarial"] = rng.sample(confusable, k) if len(confusable) >= k else rng.sample(absent, k)
    out: list[VQAItem] = []
    for category in POPE_CATEGORIES:
        questions = [(c, "yes") for c in yes] + [(c, "no") for c in negatives[category]]
        rng.shuffle(questions)
        for q, (combo, label) in enumerate(questions):
            out.append(
                VQAItem(
                    id=f"pope_{category}_{item.split}_{item.index:06d}_{q}",
                    split=item.split,
                    image=item.image,
                    turns=((pope_question(combo), label.capitalize()),),
                    task="pope",
                    category=category,
                    label=label,
                    combo=combo,
                )
            )
    return out


# --------------------------------------------------------------------------- stories

STORY_STEPS = 5
STORY_EVENTS: tuple[str, ...] = ("appear", "move", "recolour", "resize", "disappear")
_EVENT_WEIGHTS = (30, 30, 20, 12, 8)
_DIRECTIONS: dict[tuple[int, int], str] = {
    (0, -1): "to the left",
    (0, 1): "to the right",
    (-1, 0): "up",
    (1, 0): "down",
}


@dataclass(frozen=True)
class StoryStep:
    image: str
    scene: Scene
    text: str
    event: str  # "start" for the first step, else one of STORY_EVENTS


@dataclass(frozen=True)
class Story:
    """Five (image, sentence) steps in which objects appear, move, change colour or size."""

    split: str
    index: int
    story_id: str  # numeric string, as VIST story ids are
    steps: tuple[StoryStep, ...]
    compositional: bool

    @property
    def photo_ids(self) -> list[str]:
        return [f"{self.story_id}{k}" for k in range(len(self.steps))]


_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}


def _story_start(
    rng: random.Random, ctx: WorldContext, combos: list[Combo], forced: Combo | None
) -> tuple[Scene, str]:
    n = rng.choice((1, 2))
    picked = [forced] if forced is not None else []
    picked += rng.sample([c for c in combos if c not in picked], n - len(picked))
    cells: list[Cell] = list(aligned_cells(rng)) if n == 2 else [(rng.randrange(GRID), rng.randrange(GRID))]
    objs = [
        place_object(rng, s, c, rng.choice(SIZES), cell, ctx.image_size)
        for (c, s), cell in zip(picked, cells)
    ]
    scene = Scene(ctx.image_size, tuple(objs), sample_background(rng))
    if n == 1:
        o = objs[0]
        template = rng.choice(("{a} sits {pos}", "there is {a} {pos}", "the story begins with {a} {pos}"))
        return scene, sentence(template.format(a=noun_phrase(o), pos=POSITION_PHRASES[o.cell]))
    a, b = objs
    rel = cell_relation(a.cell, b.cell)
    assert rel is not None
    phrase = rng.choice(RELATION_PHRASES[rel])
    template = rng.choice(("{a} is {rel} {b}", "there is {a} {rel} {b}", "we see {a} {rel} {b}"))
    return scene, sentence(template.format(a=noun_phrase(a), rel=phrase, b=noun_phrase(b)))


def _story_event(
    rng: random.Random, ctx: WorldContext, scene: Scene, combos: list[Combo]
) -> tuple[Scene, str, str] | None:
    """Apply one random feasible event to `scene`: (new scene, sentence, event) or None."""
    event = rng.choices(STORY_EVENTS, weights=_EVENT_WEIGHTS)[0]
    objs = list(scene.objects)
    present = scene.combos()
    if event == "appear":
        if len(objs) >= 4:
            return None
        options = [
            (cell, k)
            for cell in scene.free_cells()
            for k, o in enumerate(objs)
            if cell_relation(cell, o.cell)
        ]
        new_combos = [c for c in combos if c not in present]
        if not options or not new_combos:
            return None
        cell, k = rng.choice(options)
        colour, shape = rng.choice(new_combos)
        new = place_object(rng, shape, colour, rng.choice(SIZES), cell, ctx.image_size)
        rel = cell_relation(cell, objs[k].cell)
        assert rel is not None
        phrase = rng.choice(RELATION_PHRASES[rel])
        ref = noun_phrase(objs[k], definite=True)
        template = rng.choice(("{a} appears {rel} {ref}", "then {a} appears {rel} {ref}"))
        text = template.format(a=noun_phrase(new), rel=phrase, ref=ref)
        return scene.with_objects(objs + [new]), sentence(text), event
    k = rng.randrange(len(objs))
    target = objs[k]
    the = noun_phrase(target, definite=True)
    if event == "move":
        moves = []
        for (dr, dc), words in _DIRECTIONS.items():
            cell = (target.cell[0] + dr, target.cell[1] + dc)
            if 0 <= cell[0] < GRID and 0 <= cell[1] < GRID and not scene.occupied(cell):
                moves.append((cell, words))
        if not moves:
            return None
        cell, words = rng.choice(moves)
        template = rng.choice(("{the} moves {dir}", "then {the} moves {dir}"))
        new_scene = scene.with_object(k, move_object(rng, target, cell, ctx.image_size))
        return new_scene, sentence(template.format(the=the, dir=words)), event
    if event == "recolour":
        colours = [c for c in COLOURS if (c, target.shape) in combos and (c, target.shape) not in present]
        if not colours:
            return None
        colour = rng.choice(colours)
        template = rng.choice(("{the} turns {colour}", "suddenly {the} turns {colour}"))
        new_scene = scene.with_object(k, restyle(rng, target, colour=colour))
        return new_scene, sentence(template.format(the=the, colour=colour)), event
    if event == "resize":
        size = "large" if target.size == "small" else "small"
        words = "grows larger" if size == "large" else "shrinks"
        new_scene = scene.with_object(k, restyle(rng, target, size=size))
        return new_scene, sentence(f"{the} {words}"), event
    if len(objs) < 2:  # disappear
        return None
    template = rng.choice(("{the} disappears", "then {the} vanishes"))
    return scene.with_objects(objs[:k] + objs[k + 1 :]), sentence(template.format(the=the)), event


def make_story(ctx: WorldContext, split: str, index: int) -> Story:
    rng = item_rng(ctx.seed, "stories", split, index)
    story_id = f"{_SPLIT_CODES[split]}{index:06d}"
    forced = ctx.draw_forced(rng, split)  # decided once: retries must not change the odds
    for _ in range(MAX_TRIES):
        combos = ctx.pool(forced)
        scene, text = _story_start(rng, ctx, combos, forced)
        scenes, texts, events = [scene], [text], ["start"]
        while len(scenes) < STORY_STEPS:
            step = _story_event(rng, ctx, scenes[-1], combos)
            if step is not None:
                scenes.append(step[0])
                texts.append(step[1])
                events.append(step[2])
        all_combos = set().union(*(s.combos() for s in scenes))
        signature = " > ".join(s.signature() for s in scenes)
        if ctx.split_of(signature, all_combos) == split:
            steps = tuple(
                StoryStep(image=f"images/{story_id}{k}.png", scene=s, text=t, event=e)
                for k, (s, t, e) in enumerate(zip(scenes, texts, events))
            )
            return Story(split, index, story_id, steps, bool(all_combos & ctx.heldout))
    raise _no_item("stories", split, index)


# --------------------------------------------------------------------------- Winoground

WINOGROUND_SWAPS: tuple[str, ...] = ("colour", "shape", "size", "position")
# Winoground's own tags: "Object" when noun phrases swap, "Relation" when modifiers swap.
WINOGROUND_TAGS: dict[str, str] = {
    "colour": "Relation",
    "size": "Relation",
    "shape": "Object",
    "position": "Object",
}


@dataclass(frozen=True)
class WinogroundItem:
    """Two captions with the same words in a different order, and the two images they fit."""

    split: str
    id: int
    swap: str
    caption_0: str
    caption_1: str
    scene_0: Scene
    scene_1: Scene
    image_0: str  # file stem under images/, as in the real dataset
    image_1: str
    compositional: bool

    @property
    def tag(self) -> str:
        return WINOGROUND_TAGS[self.swap]


def _pair_scene(
    rng: random.Random, ctx: WorldContext, combos: list[Combo], forced: Combo | None, distinct_sizes: bool
) -> Scene:
    """Two aligned objects with different colours and different shapes."""
    while True:
        first = forced if forced is not None else rng.choice(combos)
        second = rng.choice(combos)
        if first[0] != second[0] and first[1] != second[1]:
            break
    order = [first, second]
    rng.shuffle(order)
    sizes = rng.sample(SIZES, 2) if distinct_sizes else [rng.choice(SIZES), rng.choice(SIZES)]
    cells = aligned_cells(rng)
    objs = tuple(
        place_object(rng, s, c, z, cell, ctx.image_size) for (c, s), z, cell in zip(order, sizes, cells)
    )
    return Scene(ctx.image_size, objs, sample_background(rng))


def _swap(scene: Scene, swap: str) -> Scene:
    a, b = scene.objects
    if swap == "colour":
        return scene.with_objects(
            [
                WorldObject(a.shape, b.colour, a.size, a.cell, a.centre, a.radius, a.rotation, b.rgb),
                WorldObject(b.shape, a.colour, b.size, b.cell, b.centre, b.radius, b.rotation, a.rgb),
            ]
        )
    if swap == "shape":
        return scene.with_objects(
            [
                WorldObject(b.shape, a.colour, a.size, a.cell, a.centre, a.radius, b.rotation, a.rgb),
                WorldObject(a.shape, b.colour, b.size, b.cell, b.centre, b.radius, a.rotation, b.rgb),
            ]
        )
    if swap == "size":
        return scene.with_objects(
            [
                WorldObject(a.shape, a.colour, b.size, a.cell, a.centre, b.radius, a.rotation, a.rgb),
                WorldObject(b.shape, b.colour, a.size, b.cell, b.centre, a.radius, b.rotation, b.rgb),
            ]
        )
    if swap == "position":
        return scene.with_objects(
            [
                WorldObject(a.shape, a.colour, a.size, b.cell, b.centre, a.radius, a.rotation, a.rgb),
                WorldObject(b.shape, b.colour, b.size, a.cell, a.centre, b.radius, b.rotation, b.rgb),
            ]
        )
    raise ValueError(f"swap must be one of {list(WINOGROUND_SWAPS)}, got {swap!r}")


def _wino_caption(scene: Scene, first: int, template: str, phrase: str, with_size: bool) -> str:
    a, b = scene.objects[first], scene.objects[1 - first]
    return template.format(
        a=noun_phrase(a, with_size=with_size), rel=phrase, b=noun_phrase(b, with_size=with_size)
    )


def make_winoground_item(ctx: WorldContext, split: str, index: int) -> WinogroundItem:
    rng = item_rng(ctx.seed, "winoground", split, index)
    swap = WINOGROUND_SWAPS[index % len(WINOGROUND_SWAPS)]
    forced = ctx.draw_forced(rng, split)  # decided once: retries must not change the odds
    for _ in range(MAX_TRIES):
        combos = ctx.pool(forced)
        scene_0 = _pair_scene(rng, ctx, combos, forced, distinct_sizes=swap == "size")
        scene_1 = _swap(scene_0, swap)
        with_size = swap == "size" or rng.random() < 0.3
        rel = scene_0.relation(0, 1)
        assert rel is not None
        phrase = rng.choice(RELATION_PHRASES[rel])
        template = rng.choice(("{a} {rel} {b}", "{a} is {rel} {b}", "there is {a} {rel} {b}"))

        # After a position swap the second object stands where the first stood.
        first_1 = 1 if swap == "position" else 0
        caption_0 = _wino_caption(scene_0, 0, template, phrase, with_size)
        caption_1 = _wino_caption(scene_1, first_1, template, phrase, with_size)
        combos_used = scene_0.combos() | scene_1.combos()
        signature = " <> ".join(sorted((scene_0.signature(), scene_1.signature())))
        if ctx.split_of(signature, combos_used) == split:
            stem = f"wino_{split}_{index:05d}"
            return WinogroundItem(
                split=split,
                id=index,
                swap=swap,
                caption_0=caption_0,
                caption_1=caption_1,
                scene_0=scene_0,
                scene_1=scene_1,
                image_0=f"{stem}_0",
                image_1=f"{stem}_1",
                compositional=bool(combos_used & ctx.heldout),
            )
    raise _no_item("winoground", split, index)


# --------------------------------------------------------------------------- MMVP

MMVP_PATTERNS: tuple[str, ...] = ("colour", "count", "relation", "size", "shape")
# The "Type" column of MMVP-VLM's Questions.csv (and its image folder names); the first four
# are MMVP's own category names, size has none there and gets its own.
MMVP_TYPES: dict[str, str] = {
    "colour": "Color and Appearance",
    "count": "Quantity and Count",
    "relation": "Positional and Relational Context",
    "shape": "Structural Characteristics",
    "size": "Size and Scale",
}


@dataclass(frozen=True)
class MMVPPair:
    """Two images that differ in exactly one visual pattern, one question, two statements."""

    split: str
    index: int
    pattern: str
    scene_0: Scene
    scene_1: Scene
    statement_0: str
    statement_1: str
    question: str
    options: tuple[str, str]
    answers: tuple[int, int]  # index into options of the right answer for image 0 and image 1
    compositional: bool

    @property
    def type(self) -> str:
        return MMVP_TYPES[self.pattern]

    @property
    def question_ids(self) -> tuple[int, int]:
        """MMVP-VLM question ids: consecutive rows 2i+1, 2i+2 form pair i."""
        return (2 * self.index + 1, 2 * self.index + 2)


def _describe(scene: Scene, first: int, *, with_size: bool, counting: bool) -> str:
    """A statement naming every object, object `first` first; relation for an aligned pair.

    With `counting` (or repeated objects) objects are counted per colour-shape instead.
    """
    objs = scene.objects
    counts = Counter(o.combo for o in objs)
    lead = objs[first]
    if counting or counts[lead.combo] > 1 or len(objs) > 2:
        groups: dict[Combo, list[WorldObject]] = {lead.combo: []}
        for o in objs:
            groups.setdefault(o.combo, []).append(o)
        parts = []
        for combo, members in groups.items():
            colour, shape = combo
            parts.append(
                f"{NUMBER_WORDS[len(members)]} {colour} {plural(shape) if len(members) > 1 else shape}"
            )
        return " and ".join(parts)
    if len(objs) == 1:
        return noun_phrase(lead, with_size=with_size)
    other = objs[1 - first]
    rel = cell_relation(lead.cell, other.cell)
    if rel is None:
        return f"{noun_phrase(lead, with_size=with_size)} and {noun_phrase(other, with_size=with_size)}"
    return f"{noun_phrase(lead, with_size=with_size)} {rel} {noun_phrase(other, with_size=with_size)}"


def _mmvp_variant(
    rng: random.Random, ctx: WorldContext, pattern: str, combos: list[Combo], forced: Combo | None
) -> tuple[Scene, Scene, int, str, tuple[str, str]] | None:
    """(scene 0, scene 1, index of the changed object, question, (value 0, value 1)) or None."""
    if pattern == "count":
        combo = forced if forced is not None else rng.choice(combos)
        k = rng.randint(1, 3)
        others = [c for c in combos if c != combo]
        extra = [rng.choice(others)] if rng.random() < 0.5 else []
        cells = rng.sample([(r, c) for r in range(GRID) for c in range(GRID)], k + len(extra) + 1)
        members = [combo] * k + extra
        objs = [
            place_object(rng, s, c, rng.choice(SIZES), cell, ctx.image_size)
            for (c, s), cell in zip(members, cells)
        ]
        scene_0 = Scene(ctx.image_size, tuple(objs), sample_background(rng))
        if k >= 2 and rng.random() < 0.5:
            scene_1 = scene_0.with_objects(objs[1:])
            k1 = k - 1
        else:
            new = place_object(rng, combo[1], combo[0], rng.choice(SIZES), cells[-1], ctx.image_size)
            scene_1 = scene_0.with_objects(objs + [new])
            k1 = k + 1
        question = f"How many {combo[0]} {plural(combo[1])} are there?"
        return scene_0, scene_1, 0, question, (NUMBER_WORDS[k], NUMBER_WORDS[k1])
    n = 2 if pattern == "relation" else rng.choice((1, 2))
    scene_0 = sample_scene(rng, ctx.image_size, combos, n_objects=n, forced_combo=forced, groups=False)
    if pattern == "relation" and scene_0.relation(0, 1) is None:
        return None
    t = rng.randrange(n)
    target = scene_0.objects[t]
    if pattern == "relation":
        other = scene_0.objects[1 - t]
        moved = [None, None]
        moved[t] = WorldObject(
            target.shape,
            target.colour,
            target.size,
            other.cell,
            other.centre,
            target.radius,
            target.rotation,
            target.rgb,
        )
        moved[1 - t] = WorldObject(
            other.shape,
            other.colour,
            other.size,
            target.cell,
            target.centre,
            other.radius,
            other.rotation,
            other.rgb,
        )
        scene_1 = scene_0.with_objects(moved)  # type: ignore[arg-type]
        rel_0 = cell_relation(target.cell, other.cell)
        assert rel_0 is not None
        words = ("left", "right") if rel_0 in ("left of", "right of") else ("above", "below")
        value_0 = rel_0.replace(" of", "")
        value_1 = words[1] if value_0 == words[0] else words[0]
        the_target, the_other = noun_phrase(target, definite=True), noun_phrase(other, definite=True)
        if words[0] == "left":
            question = f"Is {the_target} to the left or to the right of {the_other}?"
        else:
            question = f"Is {the_target} above or below {the_other}?"
        return scene_0, scene_1, t, question, (value_0, value_1)
    present = scene_0.combos()
    if pattern == "colour":
        if sum(o.shape == target.shape for o in scene_0.objects) > 1:
            return None
        colours = [
            c
            for c in COLOURS
            if c != target.colour and (c, target.shape) in combos and (c, target.shape) not in present
        ]
        if not colours:
            return None
        colour = rng.choice(colours)
        scene_1 = scene_0.with_object(t, restyle(rng, target, colour=colour))
        return scene_0, scene_1, t, f"What colour is the {target.shape}?", (target.colour, colour)
    if pattern == "size":
        size = "large" if target.size == "small" else "small"
        scene_1 = scene_0.with_object(t, restyle(rng, target, size=size))
        question = f"Is {noun_phrase(target, definite=True)} small or large?"
        return scene_0, scene_1, t, question, (target.size, size)
    if pattern == "shape":
        if sum(o.colour == target.colour for o in scene_0.objects) > 1:
            return None
        shapes = [
            s
            for s in SHAPES
            if s != target.shape and (target.colour, s) in combos and (target.colour, s) not in present
        ]
        if not shapes:
            return None
        shape = rng.choice(shapes)
        scene_1 = scene_0.with_object(t, restyle(rng, target, shape=shape))
        return scene_0, scene_1, t, f"What shape is the {target.colour} object?", (target.shape, shape)
    raise ValueError(f"MMVP pattern must be one of {list(MMVP_PATTERNS)}, got {pattern!r}")


def make_mmvp_pair(ctx: WorldContext, split: str, index: int) -> MMVPPair:
    rng = item_rng(ctx.seed, "mmvp", split, index)
    pattern = MMVP_PATTERNS[index % len(MMVP_PATTERNS)]
    forced = ctx.draw_forced(rng, split)  # decided once: retries must not change the odds
    for _ in range(MAX_TRIES):
        combos = ctx.pool(forced)
        variant = _mmvp_variant(rng, ctx, pattern, combos, forced)
        if variant is None:
            continue
        scene_0, scene_1, t, question, values = variant
        used = scene_0.combos() | scene_1.combos()
        signature = f"{pattern}: " + " <> ".join(sorted((scene_0.signature(), scene_1.signature())))
        if ctx.split_of(signature, used) != split:
            continue
        with_size = pattern == "size"
        options = [values[0], values[1]]
        rng.shuffle(options)
        return MMVPPair(
            split=split,
            index=index,
            pattern=pattern,
            scene_0=scene_0,
            scene_1=scene_1,
            statement_0=_describe(scene_0, t, with_size=with_size, counting=pattern == "count"),
            statement_1=_describe(scene_1, t, with_size=with_size, counting=pattern == "count"),
            question=question,
            options=(options[0], options[1]),
            answers=(options.index(values[0]), options.index(values[1])),
            compositional=bool(used & ctx.heldout),
        )
    raise _no_item("mmvp", split, index)


# --------------------------------------------------------------------------- RAG

_NAME_HEADS = (
    "zor",
    "quil",
    "bram",
    "vex",
    "lum",
    "tor",
    "mir",
    "kel",
    "drav",
    "sarn",
    "pell",
    "wix",
    "fen",
    "grun",
    "yav",
    "trel",
    "nim",
    "caz",
    "obr",
    "ulm",
)
_NAME_MIDS = ("", "a", "i", "o", "u", "e")
_NAME_TAILS = ("bel", "ith", "ara", "ok", "une", "isk", "ova", "em", "ash", "ire", "ulo", "ant")
_HABITAT_ADJ = ("Misty", "Copper", "Silent", "Amber", "Hollow", "Windy", "Salted", "Sunken")
_HABITAT_PLACES = ("Fens", "Dunes", "Caves", "Reefs", "Terraces", "Marshes", "Gorges", "Meadows")
_DIET_ADJ = ("glowing", "salted", "frozen", "bitter", "sticky", "dusty", "tiny", "soft")
_DIET_FOODS = ("moss", "pebbles", "berries", "lichen", "beetles", "reeds", "spores", "seeds")


@dataclass(frozen=True)
class Species:
    """An invented creature for each colour-shape; its name and facts live only in the KB."""

    colour: str
    shape: str
    name: str
    habitat: str
    diet: str
    split: str  # the question split that asks about it

    @property
    def combo(self) -> Combo:
        return (self.colour, self.shape)

    def to_dict(self) -> dict[str, str]:
        return {
            "colour": self.colour,
            "shape": self.shape,
            "name": self.name,
            "habitat": self.habitat,
            "diet": self.diet,
            "split": self.split,
        }


def make_species(ctx: WorldContext, val_count: int = 4, extra_test_count: int = 2) -> list[Species]:
    """One species per colour-shape, in ALL_COMBOS order.

    Questions about a species are asked in one split only, so a model cannot learn a test
    species' name from training questions: held-out combinations' species are test species.
    """
    rng = item_rng(ctx.seed, "species")
    names: list[str] = []
    while len(names) < len(ALL_COMBOS):
        name = (rng.choice(_NAME_HEADS) + rng.choice(_NAME_MIDS) + rng.choice(_NAME_TAILS)).capitalize()
        if name not in names:
            names.append(name)
    habitats = [f"the {a} {p}" for a in _HABITAT_ADJ for p in _HABITAT_PLACES]
    diets = [f"{a} {f}" for a in _DIET_ADJ for f in _DIET_FOODS]
    habitats = rng.sample(habitats, len(ALL_COMBOS))
    diets = rng.sample(diets, len(ALL_COMBOS))
    seen = [c for c in ALL_COMBOS if c not in ctx.heldout]
    rng.shuffle(seen)
    split_by_combo = dict.fromkeys(ctx.heldout, "test")
    split_by_combo.update(dict.fromkeys(seen[:val_count], "val"))
    split_by_combo.update(dict.fromkeys(seen[val_count : val_count + extra_test_count], "test"))
    split_by_combo.update(dict.fromkeys(seen[val_count + extra_test_count :], "train"))
    return [
        Species(
            colour=c, shape=s, name=names[i], habitat=habitats[i], diet=diets[i], split=split_by_combo[(c, s)]
        )
        for i, (c, s) in enumerate(ALL_COMBOS)
    ]


@dataclass(frozen=True)
class KBDoc:
    """A knowledge-base document: a picture of a species and a text about it."""

    id: str
    species: Species
    image: str
    scene: Scene
    text: str
    facts: tuple[str, ...]  # which question types it answers: "name", "habitat", "diet"


def _single_object_scene(rng: random.Random, ctx: WorldContext, combo: Combo) -> Scene:
    cell = (rng.randrange(GRID), rng.randrange(GRID))
    obj = place_object(rng, combo[1], combo[0], rng.choice(SIZES), cell, ctx.image_size)
    return Scene(ctx.image_size, (obj,), sample_background(rng))


def make_kb_docs(ctx: WorldContext, species: list[Species]) -> list[KBDoc]:
    """Two documents per species: one gives its name and habitat, the other its diet."""
    docs = []
    for i, sp in enumerate(species):
        rng = item_rng(ctx.seed, "kb", i)
        what = f"{article(sp.colour)} {sp.colour} {sp.shape}"
        texts = (
            (
                f"This is {article(sp.name.lower())} {sp.name}. "
                f"The {sp.name} is {what} that lives in {sp.habitat}.",
                ("name", "habitat"),
            ),
            (f"The {sp.name} feeds on {sp.diet}. Every {sp.name} looks like {what}.", ("name", "diet")),
        )
        for j, (text, facts) in enumerate(texts):
            doc_id = f"kb_{2 * i + j:04d}"
            docs.append(
                KBDoc(
                    doc_id, sp, f"images/{doc_id}.png", _single_object_scene(rng, ctx, sp.combo), text, facts
                )
            )
    return docs


@dataclass(frozen=True)
class RAGQuestion:
    """A question about the species in a new picture; only the KB holds the answer."""

    id: str
    split: str
    image: str
    scene: Scene
    question_type: str  # "name", "habitat" or "diet"
    question: str
    reply: str
    answer: str
    gold_doc_ids: tuple[str, ...]
    species: Species


RAG_QUESTION_TYPES: tuple[str, ...] = ("name", "habitat", "diet")


def make_rag_questions(
    ctx: WorldContext, split: str, species: list[Species], docs: list[KBDoc], per_species: int
) -> list[RAGQuestion]:
    questions = []
    for sp in [s for s in species if s.split == split]:
        for q in range(per_species):
            rng = item_rng(ctx.seed, "rag", split, sp.colour, sp.shape, q)
            qtype = RAG_QUESTION_TYPES[q % len(RAG_QUESTION_TYPES)]
            if qtype == "name":
                question, reply, answer = (
                    "What is this creature called?",
                    f"It is called {article(sp.name.lower())} {sp.name}.",
                    sp.name,
                )
            elif qtype == "habitat":
                question, reply, answer = (
                    "Where does this creature live?",
                    f"It lives in {sp.habitat}.",
                    sp.habitat,
                )
            else:
                question, reply, answer = "What does this creature eat?", f"It feeds on {sp.diet}.", sp.diet
            gold = tuple(d.id for d in docs if d.species == sp and qtype in d.facts)
            qid = f"rag_{split}_{len(questions):05d}"
            questions.append(
                RAGQuestion(
                    qid,
                    split,
                    f"images/{qid}.png",
                    _single_object_scene(rng, ctx, sp.combo),
                    qtype,
                    question,
                    reply,
                    answer,
                    gold,
                    sp,
                )
            )
    return questions


# --------------------------------------------------------------------------- WebQA

WEBQA_SOURCES = 6


@dataclass(frozen=True)
class WebQASource:
    image: str
    scene: Scene
    text: str


@dataclass(frozen=True)
class WebQAItem:
    """Six image-text sources; the question needs the image of the one its text points to."""

    split: str
    index: int
    id: str
    sources: tuple[WebQASource, ...]
    question: str
    answer: str
    relevant_position: int  # 1-based
    question_type: str  # "colour" (texts name shapes) or "shape" (texts name colours)
    compositional: bool = False


def webqa_positions(seed: int, split: str, count: int) -> list[int]:
    """Relevant positions 1..6, as balanced as `count` allows, in a seeded order."""
    positions = [(i % WEBQA_SOURCES) + 1 for i in range(count)]
    item_rng(seed, "webqa", split, "positions").shuffle(positions)
    return positions


def _webqa_key(scene: Scene, qtype: str) -> tuple[str, str, str]:
    """What a source's text says, canonicalised (left-to-right / top-to-bottom)."""
    a, b = scene.objects
    rel = cell_relation(a.cell, b.cell)
    assert rel is not None
    if rel in ("right of", "below"):
        a, b, rel = b, a, INVERSE_RELATION[rel]
    attr = (lambda o: o.shape) if qtype == "colour" else (lambda o: o.colour)
    return (attr(a), rel, attr(b))


def _webqa_words(scene: Scene, first: int, qtype: str) -> tuple[str, str, str]:
    a, b = scene.objects[first], scene.objects[1 - first]
    rel = cell_relation(a.cell, b.cell)
    assert rel is not None
    if qtype == "colour":
        return f"a {a.shape}", rel, f"a {b.shape}"
    return f"{article(a.colour)} {a.colour} object", rel, f"{article(b.colour)} {b.colour} object"


def make_webqa_item(ctx: WorldContext, split: str, index: int, relevant_position: int) -> WebQAItem:
    if not 1 <= relevant_position <= WEBQA_SOURCES:
        raise ValueError(f"relevant_position must be in 1..{WEBQA_SOURCES}, got {relevant_position}")
    rng = item_rng(ctx.seed, "webqa", split, index)
    qtype = ("colour", "shape")[index % 2]
    forced = ctx.draw_forced(rng, split)  # decided once: retries must not change the odds
    for _ in range(MAX_TRIES):
        combos = ctx.pool(forced)
        scenes = [_pair_scene(rng, ctx, combos, forced, distinct_sizes=False)]
        keys = {_webqa_key(scenes[0], qtype)}
        while len(scenes) < WEBQA_SOURCES:
            candidate = _pair_scene(rng, ctx, ctx.seen_combos, None, distinct_sizes=False)
            key = _webqa_key(candidate, qtype)
            if key not in keys:
                keys.add(key)
                scenes.append(candidate)
        used = set().union(*(s.combos() for s in scenes))
        signature = f"{qtype}: " + " | ".join(s.signature() for s in scenes)
        if ctx.split_of(signature, used) != split:
            continue
        relevant = scenes[0]
        order = scenes[1:]
        rng.shuffle(order)
        order.insert(relevant_position - 1, relevant)
        item_id = f"webqa_{split}_{index:05d}"
        sources = []
        for k, scene in enumerate(order, start=1):
            a, rel, b = _webqa_words(scene, rng.randrange(2), qtype)
            text = sentence(f"{a} {rng.choice(RELATION_PHRASES[rel])} {b}")
            sources.append(WebQASource(f"images/{item_id}_{k}.png", scene, text))
        first = rng.randrange(2)
        a, rel, b = _webqa_words(relevant, first, qtype)
        asked = relevant.objects[rng.randrange(2)]
        if qtype == "colour":
            question = f"In the picture where {a} is {rel} {b}, what colour is the {asked.shape}?"
            answer = asked.colour
        else:
            question = f"In the picture where {a} is {rel} {b}, what shape is the {asked.colour} object?"
            answer = asked.shape
        return WebQAItem(
            split=split,
            index=index,
            id=item_id,
            sources=tuple(sources),
            question=question,
            answer=answer,
            relevant_position=relevant_position,
            question_type=qtype,
            compositional=bool(used & ctx.heldout),
        )
    raise _no_item("webqa", split, index)
