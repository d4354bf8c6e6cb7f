"""World clips: short animated scenes narrated sentence by sentence, each sentence with its frames.

A clip is a run of frames (8-16 at the default scale, one frame per second) and a narration of
2-5 sentences. The first sentence describes the opening scene; each later one narrates one
event: an object appears, moves to a neighbouring cell (sliding there over up to
`SLIDE_FRAMES` frames), changes colour or size, or vanishes. An event starts on the first frame
of its sentence's span, and a span runs until the frame before the next event, so the spans
tile the clip and every frame shows the state its sentence describes (or the way to it).
That exact span is the ground truth temporal grounding is scored against.

Each clip draws from its own random stream, `item_rng(seed, "clips", split, index)`, so adding
clips to a world leaves every other task's items, and so their files, unchanged. Held-out
colour-shape combinations are handled as for stories: about half of the test clips are built
around one, and no train or val clip shows one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from sugar.world.language import POSITION_PHRASES, RELATION_PHRASES, noun_phrase, sentence
from sugar.world.scene import (
    COLOURS,
    GRID,
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
)
from sugar.world.splits import MAX_TRIES, item_rng
from sugar.world.tasks import WorldContext

CLIP_EVENTS: tuple[str, ...] = ("appear", "move", "recolour", "resize", "disappear")
_EVENT_WEIGHTS = (25, 35, 20, 12, 8)
SLIDE_FRAMES = 3  # a move is drawn over at most this many frames, then the object rests
MIN_SPAN = 2  # frames per sentence, at least
SENTENCES = (2, 5)  # sentences per clip, inclusive
FPS = 1.0  # the world's frames are one second apart: segments in seconds = frame indices
_DIRECTIONS: dict[tuple[int, int], str] = {
    (0, -1): "to the left",
    (0, 1): "to the right",
    (-1, 0): "up",
    (1, 0): "down",
}


@dataclass(frozen=True)
class ClipSentence:
    """One sentence of a narration and the frames it describes, [start, end] inclusive.

    `before` is the object the sentence is about as it was before the event (None for the
    opening sentence and for an appearance), `after` as it is once the event is over (None when
    it vanishes); the tests read both back from the rendered frames.
    """

    text: str
    event: str  # "start" or one of CLIP_EVENTS
    start: int
    end: int
    before: WorldObject | None
    after: WorldObject | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "event": self.event,
            "frames": [self.start, self.end],
            "before": None if self.before is None else self.before.to_dict(),
            "after": None if self.after is None else self.after.to_dict(),
        }


@dataclass(frozen=True)
class Clip:
    """A narrated animation: one scene per frame and sentences whose spans tile the frames."""

    split: str
    index: int
    clip_id: str
    frames: tuple[Scene, ...]
    sentences: tuple[ClipSentence, ...]
    compositional: bool

    def frame_path(self, k: int) -> str:
        """Where frame k lives in the world directory (frame folders a user's videos fit too)."""
        return f"{clip_folder(self.split, self.clip_id)}/frame_{k:04d}.png"

    @property
    def frame_paths(self) -> list[str]:
        return [self.frame_path(k) for k in range(len(self.frames))]


def clip_folder(split: str, clip_id: str) -> str:
    return f"clips/{split}/{clip_id}"


@dataclass(frozen=True)
class _Event:
    kind: str
    scene: Scene  # the state once the event is over
    text: str
    before: WorldObject | None
    after: WorldObject | None


def _opening(rng: random.Random, ctx: WorldContext, combos: list[Combo], forced: Combo | None) -> _Event:
    """One or two objects and the sentence that introduces them."""
    n = rng.choice((1, 2))
    picked = [forced] if forced is not None else []
    picked += rng.sample([c for c in combos if c not in picked], n - len(picked))
    rng.shuffle(picked)
    cells: list[Cell] = list(aligned_cells(rng)) if n == 2 else [(rng.randrange(GRID), rng.randrange(GRID))]
    objs = [
        place_object(rng, s, c, rng.choice(SIZES), cell, ctx.image_size) for (c, s), cell in zip(picked, cells)
    ]
    scene = Scene(ctx.image_size, tuple(objs), sample_background(rng))
    first = objs[0]
    if n == 1:
        template = rng.choice(("{a} sits {pos}", "we see {a} {pos}", "there is {a} {pos}"))
        text = template.format(a=noun_phrase(first), pos=POSITION_PHRASES[first.cell])
    else:
        rel = cell_relation(first.cell, objs[1].cell)
        assert rel is not None
        template = rng.choice(("{a} is {rel} {b}", "there is {a} {rel} {b}", "we see {a} {rel} {b}"))
        text = template.format(a=noun_phrase(first), rel=rng.choice(RELATION_PHRASES[rel]), b=noun_phrase(objs[1]))
    return _Event("start", scene, sentence(text), None, first)


def _event(rng: random.Random, ctx: WorldContext, scene: Scene, combos: list[Combo]) -> _Event | None:
    """One random event that `scene` allows, or None (the caller draws again).

    Colour-shape combinations stay unique within a clip, so "the red circle" names one object.
    The words are the stories' own, so a tokenizer fitted to the other tasks reads narrations.
    """
    kind = rng.choices(CLIP_EVENTS, weights=_EVENT_WEIGHTS)[0]
    objs = list(scene.objects)
    present = scene.combos()
    if kind == "appear":
        options = [(cell, k) for cell in scene.free_cells() for k, o in enumerate(objs) if cell_relation(cell, o.cell)]
        new_combos = [c for c in combos if c not in present]
        if len(objs) >= 4 or not options or not new_combos:
            return None
        cell, k = rng.choice(options)
        colour, shape = rng.choice(new_combos)
        new = place_object(rng, shape, colour, rng.choice(SIZES), cell, ctx.image_size)
        rel = cell_relation(cell, objs[k].cell)
        assert rel is not None
        template = rng.choice(("{a} appears {rel} {ref}", "then {a} appears {rel} {ref}"))
        text = template.format(a=noun_phrase(new), rel=rng.choice(RELATION_PHRASES[rel]), ref=noun_phrase(objs[k], definite=True))
        return _Event(kind, scene.with_objects(objs + [new]), sentence(text), None, new)
    k = rng.randrange(len(objs))
    target = objs[k]
    the = noun_phrase(target, definite=True)
    if kind == "move":
        moves = []
        for (dr, dc), words in _DIRECTIONS.items():
            cell = (target.cell[0] + dr, target.cell[1] + dc)
            if 0 <= cell[0] < GRID and 0 <= cell[1] < GRID and not scene.occupied(cell):
                moves.append((cell, words))
        if not moves:
            return None
        cell, words = rng.choice(moves)
        moved = move_object(rng, target, cell, ctx.image_size)
        template = rng.choice(("{the} moves {dir}", "then {the} moves {dir}"))
        return _Event(kind, scene.with_object(k, moved), sentence(template.format(the=the, dir=words)), target, moved)
    if kind == "recolour":
        colours = [c for c in COLOURS if (c, target.shape) in combos and (c, target.shape) not in present]
        if not colours:
            return None
        colour = rng.choice(colours)
        changed = restyle(rng, target, colour=colour)
        template = rng.choice(("{the} turns {colour}", "suddenly {the} turns {colour}"))
        text = sentence(template.format(the=the, colour=colour))
        return _Event(kind, scene.with_object(k, changed), text, target, changed)
    if kind == "resize":
        size = "large" if target.size == "small" else "small"
        changed = restyle(rng, target, size=size)
        words = "grows larger" if size == "large" else "shrinks"
        return _Event(kind, scene.with_object(k, changed), sentence(f"{the} {words}"), target, changed)
    if len(objs) < 2:  # disappear: a clip never goes empty
        return None
    template = rng.choice(("{the} disappears", "then {the} vanishes"))
    return _Event(kind, scene.with_objects(objs[:k] + objs[k + 1 :]), sentence(template.format(the=the)), target, None)


def _span_lengths(rng: random.Random, frames: int, sentences: int) -> list[int]:
    """`frames` split into `sentences` runs of at least MIN_SPAN frames each.

    Spare frames go to sentences drawn with uneven weights, so runs differ in length and cutting
    a clip into equal parts (the grounding baseline that knows only the order) is often wrong.
    """
    lengths = [MIN_SPAN] * sentences
    weights = [rng.uniform(0.1, 1.0) ** 2 for _ in range(sentences)]
    for _ in range(frames - MIN_SPAN * sentences):
        lengths[rng.choices(range(sentences), weights=weights)[0]] += 1
    return lengths


def _slide(after: Scene, event: _Event, steps: int) -> list[Scene]:
    """`steps` frames of the moving object on its straight way from its old centre to its new one.

    Neighbouring cells only: the path never crosses another object's cell.
    """
    assert event.before is not None and event.after is not None
    k = list(after.objects).index(event.after)
    (x0, y0), (x1, y1) = event.before.centre, event.after.centre
    frames = []
    for step in range(1, steps + 1):
        t = step / steps
        centre = (round(x0 + (x1 - x0) * t, 2), round(y0 + (y1 - y0) * t, 2))
        frames.append(after.with_object(k, replace(event.after, centre=centre)))
    return frames


def make_clip(ctx: WorldContext, split: str, index: int, frame_range: tuple[int, int] = (8, 16)) -> Clip:
    """Clip `index` of `split`: its frames' scenes and its narration with exact spans."""
    low, high = frame_range
    if not MIN_SPAN * SENTENCES[0] <= low <= high:
        raise ValueError(f"frame_range must be (low, high) with {MIN_SPAN * SENTENCES[0]} <= low <= high, got {frame_range}")
    rng = item_rng(ctx.seed, "clips", split, index)
    forced = ctx.draw_forced(rng, split)  # decided once: retries must not change the odds
    for _ in range(MAX_TRIES):
        combos = ctx.pool(forced)
        count = rng.randint(SENTENCES[0], min(SENTENCES[1], high // MIN_SPAN))
        n_frames = rng.randint(max(low, MIN_SPAN * count), high)
        events = [_opening(rng, ctx, combos, forced)]
        for _ in range(50 * count):
            if len(events) == count:
                break
            event = _event(rng, ctx, events[-1].scene, combos)
            if event is not None:
                events.append(event)
        if len(events) < count:
            continue
        states = [e.scene for e in events]
        used = set().union(*(s.combos() for s in states))
        if ctx.split_of("clip: " + " > ".join(s.signature() for s in states), used) != split:
            continue
        frames: list[Scene] = []
        sentences: list[ClipSentence] = []
        for event, length in zip(events, _span_lengths(rng, n_frames, count)):
            start = len(frames)
            run = [event.scene] * length
            if event.kind == "move":
                steps = min(SLIDE_FRAMES, length)
                run[:steps] = _slide(event.scene, event, steps)
            frames += run
            sentences.append(ClipSentence(event.text, event.kind, start, start + length - 1, event.before, event.after))
        clip_id = f"clip_{split}_{index:05d}"
        return Clip(split, index, clip_id, tuple(frames), tuple(sentences), bool(used & ctx.heldout))
    raise ValueError(f"could not sample a clips item for split {split!r} (index {index}) in {MAX_TRIES} tries")
