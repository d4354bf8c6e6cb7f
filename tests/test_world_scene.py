"""Scenes, rendering and captions of the procedural world, checked against their own pixels."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from skimage.measure import label

from sugar.world import (
    ALL_COMBOS,
    COLOURS,
    PALETTE,
    SHAPES,
    Scene,
    render_scene,
    sample_scene,
    scene_captions,
)
from sugar.world.scene import GRID, WorldObject, cell_relation, place_object
from sugar.world.splits import bucket, heldout_combos, item_rng, split_of

PALETTE_ARRAY = np.array([PALETTE[c] for c in COLOURS], dtype=np.int32)
SATURATION_MIN = 70  # object fills have max-min channel spread > 100, backgrounds < 40


def object_pixels(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of saturated pixels, index into COLOURS of the nearest palette colour per pixel)."""
    pixels = image.astype(np.int32)
    saturated = (pixels.max(axis=2) - pixels.min(axis=2)) > SATURATION_MIN
    distance = ((pixels[:, :, None, :] - PALETTE_ARRAY[None, None, :, :]) ** 2).sum(axis=3)
    return saturated, distance.argmin(axis=2)


def recover(scene: Scene, image: np.ndarray) -> list[tuple[str, float, float, int]]:
    """Per ground-truth object: (majority colour, centroid x, centroid y, area) read from pixels."""
    saturated, nearest = object_pixels(image)
    out = []
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.bbox
        box = np.zeros_like(saturated)
        box[max(0, int(y0) - 1) : int(y1) + 2, max(0, int(x0) - 1) : int(x1) + 2] = True
        mask = saturated & box
        colours = nearest[mask]
        majority = COLOURS[int(np.bincount(colours, minlength=len(COLOURS)).argmax())]
        ys, xs = np.nonzero(mask)
        out.append((majority, float(xs.mean()), float(ys.mean()), int(mask.sum())))
    return out


def sampled_scenes(count: int, seed: int = 7) -> list[Scene]:
    rng = random.Random(seed)
    return [sample_scene(rng, 128, list(ALL_COMBOS)) for _ in range(count)]


def test_ground_truth_matches_pixels() -> None:
    """Colours, centres, sizes, object count and left/right order all read back from the image."""
    for scene in sampled_scenes(60):
        image = np.asarray(render_scene(scene))
        assert image.shape == (128, 128, 3)
        saturated, _ = object_pixels(image)
        components = label(saturated, connectivity=2).max()
        assert components == len(scene.objects), scene.signature()
        found = recover(scene, image)
        assert sum(area for *_, area in found) == saturated.sum(), "stray object-coloured pixels"
        for obj, (colour, x, y, area) in zip(scene.objects, found):
            assert colour == obj.colour
            assert abs(x - obj.centre[0]) < 1.5 and abs(y - obj.centre[1]) < 1.5
            assert (area > 230) == (obj.size == "large"), (obj, area)
        for i, a in enumerate(scene.objects):
            for j, b in enumerate(scene.objects):
                rel = cell_relation(a.cell, b.cell)
                if rel == "left of":
                    assert found[i][1] < found[j][1] - 20
                if rel == "above":
                    assert found[i][2] < found[j][2] - 20


def test_render_is_a_pure_function_of_the_scene() -> None:
    scene = sampled_scenes(1, seed=3)[0]
    first = np.asarray(render_scene(scene))
    assert np.array_equal(first, np.asarray(render_scene(Scene.from_dict(scene.to_dict()))))
    bigger = render_scene(scene, 256)
    assert bigger.size == (256, 256)


def test_backgrounds_vary_and_stay_unsaturated() -> None:
    kinds = set()
    for scene in sampled_scenes(80, seed=11):
        kinds.add(scene.background.kind)
        empty = Scene(
            scene.image_size,
            (place_object(random.Random(0), "circle", "red", "small", (0, 0), 128),),
            scene.background,
        )
        image = np.asarray(render_scene(empty)).astype(np.int32)
        spread = image.max(axis=2) - image.min(axis=2)
        assert (spread > SATURATION_MIN).sum() == (object_pixels(image.astype(np.uint8))[0]).sum()
        assert spread[64:, 64:].max() < 40  # the quadrant without the object is pure background
    assert kinds == {"plain", "gradient", "stripes", "checks", "blotches"}


def test_scene_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="shape"):
        WorldObject("pentagon", "red", "small", (0, 0), (10.0, 10.0), 5.0)
    with pytest.raises(ValueError, match="cell"):
        WorldObject("circle", "red", "small", (GRID, 0), (10.0, 10.0), 5.0)
    obj = place_object(random.Random(0), "circle", "red", "small", (0, 0), 128)
    scene = sampled_scenes(1)[0]
    with pytest.raises(ValueError, match="share a grid cell"):
        Scene(128, (obj, obj), scene.background)
    with pytest.raises(ValueError, match="objects"):
        Scene.from_dict({"image_size": 128, "background": scene.background.to_dict()})


def test_scene_round_trips_through_dict() -> None:
    for scene in sampled_scenes(20):
        again = Scene.from_dict(scene.to_dict())
        assert again.signature() == scene.signature()
        assert np.array_equal(np.asarray(render_scene(again)), np.asarray(render_scene(scene)))


COMBO = re.compile(r"\b(" + "|".join(COLOURS) + r") (" + "|".join(SHAPES) + r")s?\b")
RELATION = re.compile(
    r"(?:a|an|the) (?:small |large )?(\w+) (\w+) (?:is )?(?:to the |on the )?(left of|right of|above|below) "
    r"(?:a|an|the) (?:small |large )?(\w+) (\w+)"
)


def test_captions_are_true_of_their_scene() -> None:
    """Every colour-shape a caption names is in the scene, every stated relation holds."""
    for k, scene in enumerate(sampled_scenes(300, seed=5)):
        captions = scene_captions(scene, item_rng(0, "test-captions", k))
        assert len(captions) == 5 and len(set(captions)) == 5
        present = scene.combos()
        named_in_first = {(m.group(1), m.group(2)) for m in COMBO.finditer(captions[0].lower())}
        assert named_in_first == present, (captions[0], present)  # the first caption names all
        for caption in captions:
            text = caption.lower()
            for match in COMBO.finditer(text):
                assert (match.group(1), match.group(2)) in present, (caption, scene.signature())
            for match in RELATION.finditer(text):
                a = [o for o in scene.objects if (o.colour, o.shape) == (match.group(1), match.group(2))]
                b = [o for o in scene.objects if (o.colour, o.shape) == (match.group(4), match.group(5))]
                assert len(a) == 1 and len(b) == 1, caption
                assert cell_relation(a[0].cell, b[0].cell) == match.group(3), (caption, scene.signature())


def test_heldout_combos_keep_every_word_in_training() -> None:
    for seed in range(5):
        held = heldout_combos(seed)
        assert len(held) == 4
        assert len({c for c, _ in held}) == 4 and len({s for _, s in held}) == 4
        seen = [c for c in ALL_COMBOS if c not in held]
        assert {c for c, _ in seen} == set(COLOURS) and {s for _, s in seen} == set(SHAPES)
    assert heldout_combos(0) == heldout_combos(0)
    assert any(heldout_combos(0) != heldout_combos(s) for s in range(1, 5))


def test_split_assignment_is_by_content() -> None:
    held = set(heldout_combos(0))
    counts = {"train": 0, "val": 0, "test": 0}
    for k in range(3000):
        counts[bucket(0, f"scene-{k}")] += 1
    assert 0.75 < counts["train"] / 3000 < 0.85 and counts["val"] > 200 and counts["test"] > 200
    some_held = next(iter(held))
    assert split_of(0, "anything", {some_held}, held) == "test"
    assert item_rng(0, "a", 1).random() == item_rng(0, "a", 1).random()
    assert item_rng(0, "a", 1).random() != item_rng(1, "a", 1).random()
