"""Scenes of the procedural world: the typed ground truth behind every image.

A scene is one to four coloured shapes placed in the cells of a 3x3 grid, each with a little
position jitter, rotation and colour noise, over a light (optionally textured) background.
Objects never overlap, and a spatial relation exists only between two objects of the same row
(left of / right of) or the same column (above / below); so every relation a caption states is
true in the pixels, and a relation is never stated for a diagonal pair where it would be vague.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES: tuple[str, ...] = ("small", "large")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
INVERSE_RELATION: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}
BACKGROUND_KINDS: tuple[str, ...] = ("plain", "gradient", "stripes", "checks", "blotches")

# Saturated fills far from each other and from the light, low-saturation backgrounds, so the
# colour of an object can be read back from its pixels (the ground-truth tests do exactly that).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "green": (34, 160, 60),
    "blue": (37, 84, 220),
    "yellow": (238, 200, 30),
    "purple": (138, 56, 184),
    "orange": (245, 130, 20),
}
COLOUR_JITTER = 10  # max per-channel deviation of an object's fill from its palette colour

GRID = 3  # the scene is a GRID x GRID board of cells; one object at most per cell
# Radius as a fraction of the image side. The widest shape reaches 1.3 radii from its centre;
# with the jitter below, objects in neighbouring cells stay at least ~1 px apart.
RADIUS_FRACTION: dict[str, float] = {"small": 0.055, "large": 0.1}
JITTER_FRACTION = 0.09  # max centre offset from the cell centre, as a fraction of the cell side
MAX_ROTATION = 12.0  # degrees; circles are drawn unrotated

Combo = tuple[str, str]  # (colour, shape): the unit held out of training and named by species
Cell = tuple[int, int]  # (row, column), row 0 at the top

ALL_COMBOS: tuple[Combo, ...] = tuple((c, s) for c in COLOURS for s in SHAPES)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


@dataclass(frozen=True)
class WorldObject:
    """One shape in a scene, in pixel coordinates of the scene's image size (x right, y down)."""

    shape: str
    colour: str
    size: str
    cell: Cell
    centre: tuple[float, float]
    radius: float
    rotation: float = 0.0
    rgb: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("colour", self.colour, COLOURS)
        _check_choice("size", self.size, SIZES)
        row, col = self.cell
        if not (0 <= row < GRID and 0 <= col < GRID):
            raise ValueError(f"cell must be (row, col) with both in [0, {GRID}), got {self.cell}")
        if self.radius <= 0:
            raise ValueError(f"radius must be positive, got {self.radius}")

    @property
    def combo(self) -> Combo:
        return (self.colour, self.shape)

    def outline(self) -> list[tuple[float, float]] | None:
        """Polygon vertices in pixels, or None for a circle (drawn as an ellipse)."""
        return shape_outline(self.shape, self.centre, self.radius, self.rotation)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Tight box (x0, y0, x1, y1) around the drawn shape."""
        x, y = self.centre
        points = self.outline()
        if points is None:
            return (x - self.radius, y - self.radius, x + self.radius, y + self.radius)
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        return (min(xs), min(ys), max(xs), max(ys))

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "cell": list(self.cell),
            "centre": [round(self.centre[0], 2), round(self.centre[1], 2)],
            "bbox": [round(v, 2) for v in self.bbox],
            "radius": round(self.radius, 3),
            "rotation": round(self.rotation, 2),
            "rgb": list(self.rgb),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldObject:
        try:
            return cls(
                shape=str(data["shape"]),
                colour=str(data["colour"]),
                size=str(data["size"]),
                cell=(int(data["cell"][0]), int(data["cell"][1])),
                centre=(float(data["centre"][0]), float(data["centre"][1])),
                radius=float(data["radius"]),
                rotation=float(data.get("rotation", 0.0)),
                rgb=(int(data["rgb"][0]), int(data["rgb"][1]), int(data["rgb"][2])),
            )
        except KeyError as error:
            raise ValueError(f"scene object is missing field {error.args[0]!r}: {data}") from None


@dataclass(frozen=True)
class Background:
    """A light, low-saturation backdrop; `seed` fixes its texture so rendering is a pure function."""

    kind: str
    rgb: tuple[int, int, int]
    seed: int

    def __post_init__(self) -> None:
        _check_choice("background kind", self.kind, BACKGROUND_KINDS)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rgb": list(self.rgb), "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Background:
        return cls(kind=str(data["kind"]), rgb=tuple(int(v) for v in data["rgb"]), seed=int(data["seed"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Scene:
    """The exact ground truth of one image: its size, objects and background."""

    image_size: int
    objects: tuple[WorldObject, ...]
    background: Background
    _cells: frozenset[Cell] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= GRID * GRID:
            raise ValueError(f"a scene holds 1 to {GRID * GRID} objects, got {len(self.objects)}")
        cells = [o.cell for o in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"two objects share a grid cell: {cells}")
        object.__setattr__(self, "_cells", frozenset(cells))

    def combos(self) -> set[Combo]:
        return {o.combo for o in self.objects}

    def occupied(self, cell: Cell) -> bool:
        return cell in self._cells

    def free_cells(self) -> list[Cell]:
        return [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in self._cells]

    def relation(self, i: int, j: int) -> str | None:
        """How object i stands to object j ("left of", ...), or None for a diagonal pair."""
        return cell_relation(self.objects[i].cell, self.objects[j].cell)

    def signature(self) -> str:
        """Canonical content of the scene (what captions can say), ignoring jitter and texture.

        Two scenes with the same signature are the same scene for the purpose of splits.
        """
        parts = sorted(f"{o.colour}-{o.shape}-{o.size}@{o.cell[0]}{o.cell[1]}" for o in self.objects)
        return ",".join(parts)

    def with_object(self, index: int, new: WorldObject) -> Scene:
        objects = list(self.objects)
        objects[index] = new
        return replace(self, objects=tuple(objects))

    def with_objects(self, objects: list[WorldObject]) -> Scene:
        return replace(self, objects=tuple(objects))

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "background": self.background.to_dict(),
            "objects": [o.to_dict() for o in self.objects],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        for key in ("image_size", "background", "objects"):
            if key not in data:
                raise ValueError(f"scene is missing field {key!r}")
        return cls(
            image_size=int(data["image_size"]),
            objects=tuple(WorldObject.from_dict(o) for o in data["objects"]),
            background=Background.from_dict(data["background"]),
        )


def cell_relation(a: Cell, b: Cell) -> str | None:
    """Relation of the object in cell a to the one in cell b; None unless they share a row/column."""
    if a == b:
        return None
    if a[0] == b[0]:
        return "left of" if a[1] < b[1] else "right of"
    if a[1] == b[1]:
        return "above" if a[0] < b[0] else "below"
    return None


def shape_outline(
    shape: str, centre: tuple[float, float], radius: float, rotation: float
) -> list[tuple[float, float]] | None:
    """Vertices of a shape drawn around `centre`; sizes chosen so all shapes have similar area."""
    x, y = centre
    if shape == "circle":
        return None
    if shape == "square":
        reach, angles = radius * 0.86 * math.sqrt(2.0), [45.0, 135.0, 225.0, 315.0]
        radii = [reach] * 4
    elif shape == "triangle":
        reach = radius * 1.3
        angles, radii = [-90.0, 30.0, 150.0], [reach] * 3
    elif shape == "star":
        reach = radius * 1.3
        angles = [-90.0 + 36.0 * k for k in range(10)]
        radii = [reach if k % 2 == 0 else reach * 0.45 for k in range(10)]
    elif shape == "hexagon":
        reach = radius * 1.1
        angles, radii = [60.0 * k for k in range(6)], [reach] * 6
    else:
        raise ValueError(f"shape must be one of {list(SHAPES)}, got {shape!r}")
    points = []
    for angle, r in zip(angles, radii):
        theta = math.radians(angle + rotation)
        points.append((x + r * math.cos(theta), y + r * math.sin(theta)))
    return points


def cell_centre(cell: Cell, image_size: int) -> tuple[float, float]:
    side = image_size / GRID
    return ((cell[1] + 0.5) * side, (cell[0] + 0.5) * side)


def jittered_fill(rng: random.Random, colour: str) -> tuple[int, int, int]:
    """The palette colour with up to COLOUR_JITTER of uniform noise per channel."""
    span = 2 * COLOUR_JITTER + 1
    r, g, b = (min(255, max(0, v + int(rng.random() * span) - COLOUR_JITTER)) for v in PALETTE[colour])
    return (r, g, b)


def place_object(
    rng: random.Random, shape: str, colour: str, size: str, cell: Cell, image_size: int
) -> WorldObject:
    """A new object in `cell` with fresh jitter, rotation and fill-colour noise."""
    cx, cy = cell_centre(cell, image_size)
    jitter = JITTER_FRACTION * image_size / GRID
    rgb = jittered_fill(rng, colour)
    return WorldObject(
        shape=shape,
        colour=colour,
        size=size,
        cell=cell,
        centre=(round(cx + rng.uniform(-jitter, jitter), 2), round(cy + rng.uniform(-jitter, jitter), 2)),
        radius=RADIUS_FRACTION[size] * image_size,
        rotation=0.0 if shape == "circle" else round(rng.uniform(-MAX_ROTATION, MAX_ROTATION), 2),
        rgb=rgb,  # type: ignore[arg-type]
    )


def restyle(rng: random.Random, obj: WorldObject, **changes: str) -> WorldObject:
    """`obj` with new shape/colour/size but the same place; a new colour gets a new fill."""
    new = replace(obj, **changes)
    if "size" in changes:
        new = replace(new, radius=RADIUS_FRACTION[new.size] * obj.radius / RADIUS_FRACTION[obj.size])
    if "colour" in changes and changes["colour"] != obj.colour:
        new = replace(new, rgb=jittered_fill(rng, new.colour))
    if "shape" in changes and new.shape == "circle":
        new = replace(new, rotation=0.0)
    elif "shape" in changes and obj.shape == "circle":
        new = replace(new, rotation=round(rng.uniform(-MAX_ROTATION, MAX_ROTATION), 2))
    return new


def move_object(rng: random.Random, obj: WorldObject, cell: Cell, image_size: int) -> WorldObject:
    """`obj` moved to another cell (fresh jitter), everything else unchanged."""
    moved = place_object(rng, obj.shape, obj.colour, obj.size, cell, image_size)
    return replace(obj, cell=cell, centre=moved.centre)


def sample_background(rng: random.Random) -> Background:
    """Light grey with a faint tint; a quarter plain, the rest with a faint texture."""
    grey = 212 + int(rng.random() * 34)
    rgb = tuple(min(255, grey + int(rng.random() * 13) - 6) for _ in range(3))
    kind = "plain" if rng.random() < 0.25 else rng.choice(BACKGROUND_KINDS[1:])
    return Background(kind=kind, rgb=rgb, seed=rng.getrandbits(32))  # type: ignore[arg-type]


def aligned_cells(rng: random.Random) -> tuple[Cell, Cell]:
    """Two distinct cells in one row or one column, in random order."""
    line = rng.randrange(GRID)
    a, b = rng.sample(range(GRID), 2)
    if rng.random() < 0.5:
        return (line, a), (line, b)
    return (a, line), (b, line)


def sample_scene(
    rng: random.Random,
    image_size: int,
    combos: list[Combo],
    *,
    n_objects: int | None = None,
    forced_combo: Combo | None = None,
    groups: bool = True,
) -> Scene:
    """A random scene whose objects use only `combos` (plus `forced_combo`, placed first).

    Object counts 1-4; two-object scenes are usually aligned (so they carry a relation); with
    `groups`, a scene may repeat one colour-shape two or three times (for counting captions).
    Otherwise every colour-shape appears once, so "the red circle" names one object.
    """
    if not combos:
        raise ValueError("combos must not be empty")
    n = n_objects if n_objects is not None else rng.choices((1, 2, 3, 4), weights=(15, 40, 25, 20))[0]
    if not 1 <= n <= 4:
        raise ValueError(f"n_objects must be in 1..4, got {n}")
    if n == 2 and rng.random() < 0.8:
        cells = list(aligned_cells(rng))
    else:
        cells = rng.sample([(r, c) for r in range(GRID) for c in range(GRID)], n)
    group = 1
    if groups and n >= 2 and rng.random() < 0.3:
        group = rng.randint(2, min(3, n))
    pool = [c for c in combos if c != forced_combo]
    distinct = n - group + 1
    picked: list[Combo] = []
    if forced_combo is not None:
        picked.append(forced_combo)
    picked += rng.sample(pool, distinct - len(picked))
    chosen = [picked[0]] * group + picked[1:]
    rng.shuffle(cells)
    objects = [
        place_object(rng, shape, colour, rng.choice(SIZES), cell, image_size)
        for (colour, shape), cell in zip(chosen, cells)
    ]
    return Scene(image_size=image_size, objects=tuple(objects), background=sample_background(rng))
