"""Building world directories: determinism, idempotence, splits, and every task file's format."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sugar.cli import main as cli_main
from sugar.world import build_world, load_manifest, load_scenes, render_scene
from sugar.world.build import SCALES, WorldManifest
from sugar.world.language import tokens
from sugar.world.scene import Scene, cell_relation
from sugar.world.tasks import MMVP_TYPES, WINOGROUND_TAGS


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world") / "w"
    build_world(root, seed=0, scale="small", progress=False)
    return root


@pytest.fixture(scope="module")
def manifest(world: Path) -> WorldManifest:
    return load_manifest(world)


@pytest.fixture(scope="module")
def scenes(world: Path) -> dict[str, Scene]:
    return {path: record.scene for path, record in load_scenes(world).items()}


def read_json(manifest: WorldManifest, task: str, split: str | None, fmt: str) -> dict:
    return json.loads(manifest.path(task, split, fmt).read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_whatever_the_process(world: Path, tmp_path: Path) -> None:
    """Another interpreter (other hash seed), one worker instead of a pool: the same bytes."""
    again = tmp_path / "again"
    code = (
        "from sugar.world import build_world; "
        f"build_world({str(again)!r}, seed=0, scale='small', progress=False, workers=1)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert tree_digest(again) == tree_digest(world)


def test_different_seed_gives_a_different_world(world: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    build_world(other, seed=1, scale="small", progress=False)
    a, b = tree_digest(world), tree_digest(other)
    assert a["captions/dataset_coco.json"] != b["captions/dataset_coco.json"]
    shared_images = [p for p in a if p.endswith(".png") and p in b]
    assert sum(a[p] != b[p] for p in shared_images) > 0.9 * len(shared_images)
    assert load_manifest(other).seed == 1


def test_rerun_is_fast_and_touches_nothing(world: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in world.rglob("*") if p.is_file()}
    start = time.perf_counter()
    assert build_world(world, seed=0, scale="small", progress=False) == world / "world.json"
    assert time.perf_counter() - start < 2.0
    assert {p: p.stat().st_mtime_ns for p in world.rglob("*") if p.is_file()} == before


def test_damaged_world_is_repaired_and_stale_files_removed(world: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(world, copy)
    expected = tree_digest(world)
    (copy / "images" / "cap_train_000003.png").unlink()
    (copy / "winoground" / "test.jsonl").write_text("tampered\n")
    # A file an earlier build listed but this one does not make: removed by the rebuild.
    stale = {
        "path": "images/cap_train_999999.png",
        "task": "captions",
        "split": "train",
        "scene": json.loads((copy / "scenes.jsonl").read_text().splitlines()[0])["scene"],
    }
    with open(copy / "scenes.jsonl", "a") as handle:
        handle.write(json.dumps(stale) + "\n")
    shutil.copy(copy / "images" / "cap_train_000000.png", copy / stale["path"])
    build_world(copy, seed=0, scale="small", progress=False)
    assert tree_digest(copy) == expected


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale must be one of"):
        build_world(tmp_path / "x", scale="huge")
    with pytest.raises(FileNotFoundError, match="no world manifest"):
        load_manifest(tmp_path)


def test_cli_builds_and_reports(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["world", "--out", str(world), "--seed", "0", "--scale", "small", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "coco-karpathy-json" in out and "world.json" in out


# --------------------------------------------------------------------------- manifest


def test_manifest_names_every_file_with_its_count(
    world: Path, manifest: WorldManifest, scenes: dict[str, Scene]
) -> None:
    on_disk = {str(p.relative_to(world)) for p in world.rglob("*") if p.is_file()}
    pngs = {p for p in on_disk if p.endswith(".png")}
    # clip frames have their ground truth in clips/ground_truth_<split>.jsonl, not in scenes.jsonl
    frames = {
        frame["path"]
        for f in manifest.files
        if f.format == "sugar-clip-ground-truth-jsonl"
        for record in read_jsonl(world / f.path)
        for frame in record["frames"]
    }
    assert frames and manifest.data["num_clip_frames"] == len(frames)
    assert manifest.num_images == len(pngs - frames) == len(scenes)
    assert set(scenes) == pngs - frames
    assert on_disk == pngs | {f.path for f in manifest.files} | {"world.json"}
    for f in manifest.files:
        data = (world / f.path).read_bytes()
        assert len(data) == f.bytes and hashlib.sha256(data).hexdigest() == f.sha256
        if f.format == "coco-karpathy-json":
            count = len(json.loads(data)["images"])
        elif f.format in ("vist-sis-json",):
            count = len({a[0]["story_id"] for a in json.loads(data)["annotations"]})
        elif f.format == "sugar-story-retrieval-json":
            count = len(json.loads(data)["queries"])
        elif f.format == "llava-conversation-json":
            count = len(json.loads(data))
        elif f.format == "youcook2-annotations-json":
            count = len(json.loads(data)["database"])
        elif f.format.endswith("jsonl"):
            count = len(data.decode().splitlines())
        elif f.format.endswith("csv"):
            count = len(data.decode().splitlines()) - 1
        else:
            raise AssertionError(f"unknown format {f.format}")
        assert count == f.count, f.path
    scale = SCALES["small"]
    assert manifest.find("captions").count == sum(scale.captions.values())
    assert manifest.find("winoground", "test").count == scale.winoground["test"]
    assert manifest.find("mmvp", "test", "mmvp-vlm-csv").count == 2 * scale.mmvp_pairs["test"]
    assert len(manifest.species) == 30
    assert manifest.data["image_size"] == 128 and manifest.data["scale"] == "small"


def test_images_render_from_their_recorded_scene(world: Path, scenes: dict[str, Scene]) -> None:
    for path in sorted(scenes)[::40]:
        pixels = np.asarray(Image.open(world / path).convert("RGB"))
        assert np.array_equal(pixels, np.asarray(render_scene(scenes[path]))), path


# --------------------------------------------------------------------------- splits


def heldout_pattern(manifest: WorldManifest) -> re.Pattern[str]:
    alternatives = "|".join(f"{c} {s}" for c, s in manifest.heldout_combos)
    return re.compile(rf"\b(?:{alternatives})s?\b", re.IGNORECASE)


def split_texts(manifest: WorldManifest, split: str) -> list[str]:
    """Every piece of text the world shows a model in `split`."""
    texts: list[str] = []
    coco = read_json(manifest, "captions", None, "coco-karpathy-json")
    texts += [s["raw"] for im in coco["images"] if im["split"] == split for s in im["sentences"]]
    for task, fmt in (("stories", "sugar-interleaved-jsonl"), ("webqa", "sugar-interleaved-jsonl")):
        for record in read_jsonl(manifest.path(task, split, fmt)):
            texts += [s["text"] for s in record["segments"] if s["type"] == "text"]
            texts += [str(v) for v in record["meta"].values()]
    texts += [json.dumps(r) for r in read_jsonl(manifest.path("winoground", split))]
    for task in ("instruct", "rag"):
        for record in json.loads(manifest.path(task, split, "llava-conversation-json").read_text()):
            texts += [turn["value"] for turn in record["conversations"]]
    texts += [json.dumps(json.loads(manifest.path("stories", split, "vist-sis-json").read_text()))]
    return texts


def test_heldout_combos_never_reach_train_or_val(world: Path, manifest: WorldManifest) -> None:
    held = set(manifest.heldout_combos)
    pattern = heldout_pattern(manifest)
    records = load_scenes(world)
    for path, record in records.items():
        if record.split in ("train", "val"):
            assert not (record.scene.combos() & held), path
    for split in ("train", "val"):
        for text in split_texts(manifest, split):
            assert not pattern.search(text), text
    test_text = " ".join(split_texts(manifest, "test"))
    assert len({m.group(0).lower().rstrip("s") for m in pattern.finditer(test_text)}) >= 3
    for task in ("captions", "winoground"):  # about half of the test items, by design
        test_images = [r for r in records.values() if r.split == "test" and r.task == task]
        compositional = [r for r in test_images if r.scene.combos() & held]
        assert 0.25 < len(compositional) / len(test_images) < 0.75, task
    webqa = read_jsonl(manifest.path("webqa", "test"))
    assert 0.25 < sum(item["meta"]["compositional"] for item in webqa) / len(webqa) < 0.75


def test_val_and_test_items_differ_from_train(manifest: WorldManifest, scenes: dict[str, Scene]) -> None:
    coco = read_json(manifest, "captions", None, "coco-karpathy-json")
    by_split: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for im in coco["images"]:
        by_split[im["split"]].add(scenes[f"{im['filepath']}/{im['filename']}"].signature())
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    stories = {
        split: {
            " > ".join(scenes[s["path"]].signature() for s in r["segments"] if s["type"] == "image")
            for r in read_jsonl(manifest.path("stories", split, "sugar-interleaved-jsonl"))
        }
        for split in ("train", "val", "test")
    }
    assert not (stories["train"] & stories["val"]) and not (stories["train"] & stories["test"])
    wino = {
        split: {
            tuple(
                sorted(
                    (
                        scenes[f"images/{r['image_0']}.png"].signature(),
                        scenes[f"images/{r['image_1']}.png"].signature(),
                    )
                )
            )
            for r in read_jsonl(manifest.path("winoground", split))
        }
        for split in ("train", "val", "test")
    }
    assert not (wino["train"] & wino["val"]) and not (wino["train"] & wino["test"])


# --------------------------------------------------------------------------- tasks


def test_coco_karpathy_file(world: Path, manifest: WorldManifest) -> None:
    coco = read_json(manifest, "captions", None, "coco-karpathy-json")
    assert coco["dataset"] == "coco"
    sentids = []
    for imgid, im in enumerate(coco["images"]):
        assert set(im) == {"filepath", "filename", "split", "imgid", "cocoid", "sentids", "sentences"}
        assert im["imgid"] == imgid and im["split"] in ("train", "val", "test")
        assert (world / im["filepath"] / im["filename"]).is_file()
        assert len(im["sentences"]) == 5 and im["sentids"] == [s["sentid"] for s in im["sentences"]]
        for s in im["sentences"]:
            assert s["imgid"] == imgid and s["tokens"] == tokens(s["raw"])
        sentids += im["sentids"]
    assert sentids == list(range(len(sentids)))
    splits = Counter(im["split"] for im in coco["images"])
    assert splits == Counter(SCALES["small"].captions)


def test_stories_vist_and_retrieval(world: Path, manifest: WorldManifest, scenes: dict[str, Scene]) -> None:
    for split in ("train", "val", "test"):
        stories = read_jsonl(manifest.path("stories", split, "sugar-interleaved-jsonl"))
        assert len(stories) == SCALES["small"].stories[split]
        for story in stories:
            kinds = [s["type"] for s in story["segments"]]
            assert kinds == ["image", "text"] * 5
            steps = [scenes[s["path"]] for s in story["segments"] if s["type"] == "image"]
            for event, before, after in zip(story["meta"]["events"][1:], steps, steps[1:]):
                check_story_event(event, before, after)
        vist = json.loads(manifest.path("stories", split, "vist-sis-json").read_text())
        assert {"images", "annotations", "albums"} <= set(vist)
        image_ids = {im["id"] for im in vist["images"]}
        by_story: dict[str, list[dict]] = {}
        for annotation in vist["annotations"]:
            assert isinstance(annotation, list) and len(annotation) == 1
            storylet = annotation[0]
            assert storylet["photo_flickr_id"] in image_ids
            assert (world / "images" / f"{storylet['photo_flickr_id']}.png").is_file()
            assert storylet["text"] == storylet["text"].lower()
            by_story.setdefault(storylet["story_id"], []).append(storylet)
        assert len(by_story) == len(stories)
        for story, storylets in zip(stories, by_story.values()):
            assert [s["worker_arranged_photo_order"] for s in storylets] == [0, 1, 2, 3, 4]
            assert [s["original_text"] for s in storylets] == [
                s["text"] for s in story["segments"] if s["type"] == "text"
            ]
        retrieval = json.loads(manifest.path("story_retrieval", split).read_text())
        assert retrieval["candidates"] == [s["segments"][-2]["path"] for s in stories]
        for k, query in enumerate(retrieval["queries"]):
            assert query["target"] == k
            assert [s["type"] for s in query["segments"]] == ["image", "text"] * 4 + ["text"]
            assert retrieval["candidates"][k] not in [s.get("path") for s in query["segments"]]


def check_story_event(event: str, before: Scene, after: Scene) -> None:
    """Consecutive story scenes differ exactly as the event says."""
    a = {o.combo: o for o in before.objects}
    b = {o.combo: o for o in after.objects}
    if event == "appear":
        assert set(a) < set(b) and len(b) == len(a) + 1
        assert all(a[c].cell == b[c].cell for c in a)
    elif event == "disappear":
        assert set(b) < set(a) and len(a) == len(b) + 1
    elif event == "move":
        assert set(a) == set(b)
        assert sum(a[c].cell != b[c].cell for c in a) == 1
    elif event == "resize":
        assert set(a) == set(b)
        assert sum(a[c].size != b[c].size for c in a) == 1
    elif event == "recolour":
        assert len(set(a) - set(b)) == 1 and len(set(b) - set(a)) == 1
        (old,), (new,) = set(a) - set(b), set(b) - set(a)
        assert old[1] == new[1] and a[old].cell == b[new].cell
    else:
        raise AssertionError(f"unknown event {event}")


def scene_diff(s0: Scene, s1: Scene) -> set[str]:
    """Which attributes differ between two scenes with objects in corresponding order."""
    if len(s0.objects) != len(s1.objects):
        return {"count"}
    diff = set()
    for a, b in zip(s0.objects, s1.objects):
        for name in ("colour", "shape", "size", "cell"):
            if getattr(a, name) != getattr(b, name):
                diff.add(name)
    return diff


def test_winoground_pairs(manifest: WorldManifest, scenes: dict[str, Scene]) -> None:
    for split in ("train", "val", "test"):
        records = read_jsonl(manifest.path("winoground", split))
        assert len(records) == SCALES["small"].winoground[split]
        for r in records:
            assert {"id", "caption_0", "caption_1", "image_0", "image_1", "tag"} <= set(r)
            assert r["caption_0"] != r["caption_1"]
            assert sorted(tokens(r["caption_0"])) == sorted(tokens(r["caption_1"]))
            assert r["tag"] == WINOGROUND_TAGS[r["swap"]]
            s0, s1 = scenes[f"images/{r['image_0']}.png"], scenes[f"images/{r['image_1']}.png"]
            expected = {"colour": {"colour"}, "shape": {"shape"}, "size": {"size"}, "position": {"cell"}}[
                r["swap"]
            ]
            assert scene_diff(s0, s1) == expected
            for caption, scene, other in ((r["caption_0"], s0, s1), (r["caption_1"], s1, s0)):
                assert caption_holds(caption, scene) and not caption_holds(caption, other), (caption, r)


RELATION = re.compile(
    r"(?:a|an) (?:(small|large) )?(\w+) (\w+) (?:is )?(?:to the )?(left of|right of|above|below) "
    r"(?:a|an) (?:(small|large) )?(\w+) (\w+)"
)


def caption_holds(caption: str, scene: Scene) -> bool:
    m = RELATION.search(caption)
    assert m, caption
    size_a, colour_a, shape_a, rel, size_b, colour_b, shape_b = m.groups()
    for a in scene.objects:
        for b in scene.objects:
            if (
                (a.colour, a.shape, b.colour, b.shape) == (colour_a, shape_a, colour_b, shape_b)
                and (size_a is None or a.size == size_a)
                and (size_b is None or b.size == size_b)
                and cell_relation(a.cell, b.cell) == rel
            ):
                return True
    return False


def test_mmvp_pairs_differ_in_exactly_their_pattern(
    world: Path, manifest: WorldManifest, scenes: dict[str, Scene]
) -> None:
    for split, n in SCALES["small"].mmvp_pairs.items():
        vlm_csv = manifest.path("mmvp", split, "mmvp-vlm-csv")
        with open(vlm_csv, newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows[0] == ["Question ID", "Type", "Statement"]
        rows = rows[1:]
        assert len(rows) == 2 * n
        with open(manifest.path("mmvp", split, "mmvp-patterns-csv"), newline="") as handle:
            patterns = {int(r["Question ID"]): r["Pattern"] for r in csv.DictReader(handle)}
        with open(manifest.path("mmvp", split, "mmvp-csv"), newline="") as handle:
            mllm = list(csv.DictReader(handle))
        assert list(mllm[0]) == ["Index", "Question", "Options", "Correct Answer"]
        assert Counter(patterns.values()) == Counter(dict.fromkeys(MMVP_TYPES, 2 * n // 5))
        base = vlm_csv.parent
        for k in range(0, len(rows), 2):
            (q0, type0, st0), (q1, type1, st1) = rows[k], rows[k + 1]
            assert (int(q0), int(q1)) == (k + 1, k + 2) and type0 == type1
            pattern = patterns[int(q0)]
            assert type0 == MMVP_TYPES[pattern] and st0 != st1
            path0 = base / "MLLM_VLM Images" / type0 / f"{q0}.png"
            path1 = base / "MLLM_VLM Images" / type1 / f"{q1}.png"
            s0 = scenes[str(path0.relative_to(world))]
            s1 = scenes[str(path1.relative_to(world))]
            expected = {
                "colour": {"colour"},
                "shape": {"shape"},
                "size": {"size"},
                "relation": {"cell"},
                "count": {"count"},
            }
            assert scene_diff(s0, s1) == expected[pattern], (pattern, s0.signature(), s1.signature())
            if pattern == "count":
                c0, c1 = Counter(o.combo for o in s0.objects), Counter(o.combo for o in s1.objects)
                assert sum(((c0 - c1) + (c1 - c0)).values()) == 1
            a, b = mllm[k], mllm[k + 1]
            assert a["Question"] == b["Question"] and a["Options"] == b["Options"]
            assert {a["Correct Answer"], b["Correct Answer"]} == {"(a)", "(b)"}
            mmvp_image = base.parent / "MMVP" / "MMVP Images" / f"{a['Index']}.png"
            assert (
                world / "mmvp" / split / "MMVP" / "MMVP Images" / f"{q0}.png"
            ).read_bytes() == path0.read_bytes()
            assert mmvp_image.is_file()


def test_instruct_and_pope(world: Path, manifest: WorldManifest, scenes: dict[str, Scene]) -> None:
    popularity = [tuple(c) for c in manifest.data["popularity"]]
    held = set(manifest.heldout_combos)
    for split in ("train", "val", "test"):
        records = json.loads(manifest.path("instruct", split).read_text())
        vqa = [r for r in records if r["task"] == "vqa"]
        pope = [r for r in records if r["task"] == "pope"]
        assert len(vqa) == SCALES["small"].captions[split]
        for r in records:
            turns = r["conversations"]
            assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
            assert turns[0]["value"].startswith("<image>\n")
            assert sum("<image>" in t["value"] for t in turns) == 1
            assert (world / r["image"]).is_file()
        by_category = Counter((r["category"], r["label"]) for r in pope)
        for category in ("random", "popular", "adversarial"):
            assert by_category[(category, "yes")] == by_category[(category, "no")] > 0
        for r in pope:
            colour, shape = r["object"].split()
            present = scenes[r["image"]].combos()
            assert (r["label"] == "yes") == ((colour, shape) in present)
            assert r["conversations"][1]["value"].lower() == r["label"]
            if r["label"] == "no" and r["category"] == "adversarial":
                assert any(colour == c or shape == s for c, s in present)
            if r["label"] == "no" and r["category"] == "popular":
                absent = [c for c in popularity if c not in present and (split == "test" or c not in held)]
                assert (colour, shape) in absent[:2]


def test_rag_species_facts_live_only_in_the_kb(world: Path, manifest: WorldManifest) -> None:
    species = manifest.species
    names = {s["name"].lower() for s in species}
    assert len(names) == 30
    vocabulary = set()
    for f in manifest.files:
        if f.task in ("rag", "ground_truth"):
            continue
        vocabulary |= set(tokens((world / f.path).read_text()))
    assert not (names & vocabulary)
    kb = {r["id"]: r for r in read_jsonl(manifest.path("rag", "kb"))}
    assert len(kb) == 60
    asked: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        questions = json.loads(manifest.path("rag", split).read_text())
        assert len(questions) == SCALES["small"].rag_questions_per_species * sum(
            s["split"] == split for s in species
        )
        for q in questions:
            asked.setdefault(split, set()).add(q["species"]["name"])
            assert q["gold_doc_ids"] and all(d in kb for d in q["gold_doc_ids"])
            for doc_id in q["gold_doc_ids"]:
                assert q["answer"] in kb[doc_id]["segments"][1]["text"]
                assert kb[doc_id]["meta"]["species"] == q["species"]["name"]
    assert not (asked["train"] & asked["val"]) and not (asked["train"] & asked["test"])
    held_names = {s["name"] for s in species if (s["colour"], s["shape"]) in set(manifest.heldout_combos)}
    assert held_names <= asked["test"]


WEBQA_QUESTION = re.compile(
    r"In the picture where (?:a|an) (\w+)(?: object)? is (left of|right of|above|below) "
    r"(?:a|an) (\w+)(?: object)?, what (colour|shape) is the (\w+)"
)


def test_webqa_items(manifest: WorldManifest, scenes: dict[str, Scene]) -> None:
    for split, n in SCALES["small"].webqa.items():
        items = read_jsonl(manifest.path("webqa", split))
        assert len(items) == n
        positions = Counter(item["meta"]["relevant_position"] for item in items)
        assert max(positions.values()) - min(positions.values()) <= 1 and set(positions) <= set(range(1, 7))
        for item in items:
            segments = item["segments"]
            assert [s["type"] for s in segments] == ["image", "text"] * 6
            meta = item["meta"]
            m = WEBQA_QUESTION.match(meta["question"])
            assert m, meta["question"]
            first, rel, second, asked, key = m.groups()
            matching = []
            for position in range(1, 7):
                scene = scenes[segments[2 * position - 2]["path"]]
                attr = (lambda o: o.shape) if asked == "colour" else (lambda o: o.colour)
                for a in scene.objects:
                    for b in scene.objects:
                        if attr(a) == first and attr(b) == second and cell_relation(a.cell, b.cell) == rel:
                            matching.append(position)
            assert matching == [meta["relevant_position"]], meta
            relevant = scenes[segments[2 * meta["relevant_position"] - 2]["path"]]
            target = [o for o in relevant.objects if (o.shape if asked == "colour" else o.colour) == key]
            assert len(target) == 1
            assert meta["answer"] == (target[0].colour if asked == "colour" else target[0].shape)
