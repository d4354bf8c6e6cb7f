"""World clips: deterministic, written in YouCook2's format, spans that match the rendered frames,
held-out combinations kept to test, and every file of the other tasks unchanged by their arrival."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sugar.world import build_world, load_manifest
from sugar.world.build import SCALES, WorldManifest, plan_world, world_is_complete
from sugar.world.clips import CLIP_EVENTS, MIN_SPAN, SLIDE_FRAMES, make_clip
from sugar.world.splits import heldout_combos
from sugar.world.tasks import WorldContext

# sha256 over the sorted (path, sha256) manifest entries of every task but clips, for the small
# world of seed 0, as built before clips existed. If generation of those tasks changes on
# purpose, bump GENERATOR_VERSION and update this digest.
SMALL_SEED0_OTHER_TASKS = "f1a73f5541fb4b2f512fb6608eb0e308605956d7843596a8e1ad1facb3265720"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips-world") / "w"
    build_world(root, seed=0, scale="small", progress=False)
    return root


@pytest.fixture(scope="module")
def manifest(world: Path) -> WorldManifest:
    return load_manifest(world)


def ground_truth(manifest: WorldManifest, split: str) -> list[dict[str, Any]]:
    path = manifest.path("clips", split, "sugar-clip-ground-truth-jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def pixels(world: Path, path: str) -> np.ndarray:
    return np.asarray(Image.open(world / path).convert("RGB"))


def at(image: np.ndarray, obj: dict[str, Any]) -> tuple[int, ...]:
    x, y = obj["centre"]
    return tuple(int(v) for v in image[int(y), int(x)])


def mask(image: np.ndarray, rgb: list[int]) -> np.ndarray:
    return np.all(image == np.asarray(rgb, dtype=np.uint8), axis=-1)


def centroid(image: np.ndarray, rgb: list[int], box: tuple[int, int, int, int]) -> tuple[float, float]:
    x0, y0, x1, y1 = box
    ys, xs = np.nonzero(mask(image, rgb)[y0:y1, x0:x1])
    assert len(xs), "the object is not in the frame"
    return float(xs.mean() + x0), float(ys.mean() + y0)


def box_of(*objects: dict[str, Any], pad: int = 2) -> tuple[int, int, int, int]:
    boxes = [o["bbox"] for o in objects]
    return (
        max(0, int(min(b[0] for b in boxes)) - pad),
        max(0, int(min(b[1] for b in boxes)) - pad),
        int(max(b[2] for b in boxes)) + pad + 1,
        int(max(b[3] for b in boxes)) + pad + 1,
    )


# --------------------------------------------------------------------------- generation


def test_clips_are_deterministic_and_their_spans_tile_the_frames() -> None:
    ctx = WorldContext(seed=3, image_size=128, heldout=frozenset(heldout_combos(3)))
    for split in ("train", "val", "test"):
        for index in range(12):
            clip = make_clip(ctx, split, index, (8, 16))
            assert clip == make_clip(ctx, split, index, (8, 16))
            assert 8 <= len(clip.frames) <= 16 and 2 <= len(clip.sentences) <= 5
            assert clip.sentences[0].event == "start" and clip.sentences[0].start == 0
            assert all(s.event in CLIP_EVENTS for s in clip.sentences[1:])
            assert clip.sentences[-1].end == len(clip.frames) - 1
            for a, b in zip(clip.sentences, clip.sentences[1:]):
                assert b.start == a.end + 1
            assert all(s.end - s.start + 1 >= MIN_SPAN for s in clip.sentences)
    assert make_clip(ctx, "test", 0) != make_clip(ctx, "test", 1)
    with pytest.raises(ValueError, match="frame_range"):
        make_clip(ctx, "test", 0, (3, 8))


def test_adding_clips_leaves_every_other_file_unchanged(manifest: WorldManifest) -> None:
    with_clips, _ = plan_world(0, SCALES["small"], 128)
    without, _ = plan_world(0, replace(SCALES["small"], clips={}), 128)
    assert not without.clip_frames and with_clips.clip_frames
    assert with_clips.images == without.images  # same scenes, so the same PNGs and scenes.jsonl
    others = {f.path: f.content for f in with_clips.files if f.task != "clips"}
    assert others == {f.path: f.content for f in without.files}
    # and against the world as it was built before clips were added
    entries = sorted((f.path, f.sha256) for f in manifest.files if f.task != "clips")
    assert hashlib.sha256(json.dumps(entries).encode()).hexdigest() == SMALL_SEED0_OTHER_TASKS


# --------------------------------------------------------------------------- files


def test_youcook2_annotations_agree_with_the_ground_truth(world: Path, manifest: WorldManifest) -> None:
    subsets = {"train": "training", "val": "validation", "test": "testing"}
    for split, count in SCALES["small"].clips.items():
        annotations = json.loads(manifest.path("clips", split, "youcook2-annotations-json").read_text())
        records = ground_truth(manifest, split)
        assert len(annotations["database"]) == len(records) == count
        for record in records:
            entry = annotations["database"][record["id"]]
            assert entry["subset"] == subsets[split] and entry["fps"] == 1.0
            assert entry["duration"] == len(record["frames"])
            assert [a["sentence"] for a in entry["annotations"]] == [s["text"] for s in record["sentences"]]
            assert [a["segment"] for a in entry["annotations"]] == [
                [s["frames"][0], s["frames"][1] + 1] for s in record["sentences"]
            ]
            folder = world / entry["video_url"]
            names = sorted(p.name for p in folder.iterdir())
            assert names == [f"frame_{k:04d}.png" for k in range(len(record["frames"]))]
            assert [f["path"] for f in record["frames"]] == [f"{entry['video_url']}/{n}" for n in names]


def test_heldout_combos_stay_in_test_clips(manifest: WorldManifest) -> None:
    held = {tuple(c) for c in manifest.heldout_combos}
    pattern = re.compile("|".join(f"{c} {s}" for c, s in held))
    for split in ("train", "val"):
        for record in ground_truth(manifest, split):
            for frame in record["frames"]:
                assert not {(o["colour"], o["shape"]) for o in frame["scene"]["objects"]} & held
            assert not any(pattern.search(s["text"].lower()) for s in record["sentences"])
    assert any(record["compositional"] for record in ground_truth(manifest, "test"))


def test_a_missing_frame_makes_the_world_incomplete_and_a_rebuild_restores_it(tmp_path: Path) -> None:
    root = tmp_path / "w"
    build_world(root, seed=0, scale="small", progress=False)
    config = json.loads((root / "world.json").read_text())["config"]
    frame = root / "clips" / "val" / "clip_val_00000" / "frame_0003.png"
    original = frame.read_bytes()
    frame.unlink()
    assert not world_is_complete(root, config)
    build_world(root, seed=0, scale="small", progress=False)
    assert frame.read_bytes() == original and world_is_complete(root, config)


# --------------------------------------------------------------------------- spans against pixels


def test_spans_match_the_rendered_frames(world: Path, manifest: WorldManifest) -> None:
    """Each sentence's subject, read back from the PNGs: where and how it is before its span starts
    and during it, as the sentence says."""
    directions = {"to the left": (-1, 0), "to the right": (1, 0), "up": (0, -1), "down": (0, 1)}
    seen: set[str] = set()
    for split in ("train", "val", "test"):
        for record in ground_truth(manifest, split):
            frames = [pixels(world, f["path"]) for f in record["frames"]]
            for sentence in record["sentences"]:
                event, (start, end) = sentence["event"], sentence["frames"]
                before, after, text = sentence["before"], sentence["after"], sentence["text"].lower()
                seen.add(event)
                subject = before if before is not None else after  # named as it was
                assert f"{subject['colour']} {subject['shape']}" in text
                if after is not None:  # once its event is over the subject is where the ground truth says
                    assert at(frames[end], after) == tuple(after["rgb"]), (record["id"], text)
                if before is not None:  # and it was as before until the span began
                    assert at(frames[start - 1], before) == tuple(before["rgb"]), (record["id"], text)
                if event == "start":
                    assert start == 0
                elif event == "appear":
                    assert not mask(frames[start - 1], after["rgb"])[box_slices(after)].any()
                    assert all(at(frames[k], after) == tuple(after["rgb"]) for k in range(start, end + 1))
                elif event == "disappear":
                    assert all(not mask(frames[k], before["rgb"])[box_slices(before)].any() for k in range(start, end + 1))
                elif event == "recolour":
                    assert after["colour"] in text and after["colour"] != before["colour"]
                    assert all(at(frames[k], after) == tuple(after["rgb"]) for k in range(start, end + 1))
                elif event == "resize":
                    box = box_slices(before, after)
                    area_before = mask(frames[start - 1], before["rgb"])[box].sum()
                    area_after = mask(frames[start], after["rgb"])[box].sum()
                    grows = "grows larger" in text
                    assert grows == (after["size"] == "large") and (area_after > area_before) == grows
                elif event == "move":
                    (dx, dy), = [d for words, d in directions.items() if text.rstrip(".").endswith(words)]
                    (x0, y0), (x1, y1) = before["centre"], after["centre"]
                    assert dx * (x1 - x0) > 0 or dy * (y1 - y0) > 0
                    region = box_of(before, after)
                    path = [centroid(frames[k], after["rgb"], region) for k in range(start - 1, min(end, start + SLIDE_FRAMES - 1) + 1)]
                    distances = [np.hypot(x - x1, y - y1) for x, y in path]
                    assert all(a > b for a, b in zip(distances, distances[1:])), (record["id"], text, distances)
                    assert np.hypot(path[0][0] - x0, path[0][1] - y0) < 2.0 and distances[-1] < 2.0
                    if end > start + SLIDE_FRAMES - 1:  # then it rests
                        assert at(frames[end], after) == at(frames[start + SLIDE_FRAMES - 1], after)
    assert seen >= {"start", "appear", "move", "recolour"}


def box_slices(*objects: dict[str, Any]) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box_of(*objects)
    return slice(y0, y1), slice(x0, x1)
