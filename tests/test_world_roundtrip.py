"""World -> files -> `sugar.data` loaders: every task file reads back with the real-format loaders.

Where `image_root` points differs per format, as for the real datasets: the world directory for
COCO (filepath/filename), LLaVA and the interleaved JSONL (paths relative to it); `images/` for
VIST and Winoground (ids and stems name files there); `MLLM_VLM Images/` for MMVP-VLM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sugar.data import (
    load_coco_karpathy,
    load_documents,
    load_interleaved,
    load_llava_conversations,
    load_mmvp_vlm,
    load_vist_sis,
    load_winoground,
)
from sugar.world import build_world, load_manifest, load_scenes
from sugar.world.build import SCALES, WorldManifest

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("roundtrip") / "w"
    build_world(root, seed=3, scale="small", progress=False)
    return root


@pytest.fixture(scope="module")
def manifest(world: Path) -> WorldManifest:
    return load_manifest(world)


def test_coco_karpathy_round_trip(world: Path, manifest: WorldManifest) -> None:
    path = manifest.path("captions", format="coco-karpathy-json")
    everything = load_coco_karpathy(path, world, verify_images=True)
    assert len(everything) == manifest.find("captions").count
    raw = json.loads(path.read_text())["images"]
    for record, entry in zip(everything, raw):
        assert record.captions == [s["raw"] for s in entry["sentences"]]
        assert record.image.path == world / entry["filepath"] / entry["filename"]
        assert record.image.load().size == (128, 128)
    for split in SPLITS:
        assert len(load_coco_karpathy(path, world, split=split)) == SCALES["small"].captions[split]


def test_vist_and_interleaved_stories_round_trip(world: Path, manifest: WorldManifest) -> None:
    for split in SPLITS:
        stories = load_vist_sis(manifest.path("stories", split, "vist-sis-json"), world / "images")
        documents = load_interleaved(manifest.path("stories", split, "sugar-interleaved-jsonl"), world)
        assert len(stories) == len(documents) == SCALES["small"].stories[split]
        for story, document in zip(stories, documents):
            assert len(story.steps) == 5
            assert [text for _, text in story.steps] == document.texts
            assert [image.path for image, _ in story.steps] == [image.path for image in document.images]
            assert document.meta["story_id"] == story.id


def test_winoground_round_trip(world: Path, manifest: WorldManifest) -> None:
    for split in SPLITS:
        items = load_winoground(manifest.path("winoground", split), world / "images", verify_images=True)
        assert len(items) == SCALES["small"].winoground[split]
        assert all(item.meta["swap"] in ("colour", "shape", "size", "position") for item in items)
        assert len(
            load_documents(manifest.path("winoground", split), "winoground", world / "images")
        ) == 2 * len(items)


def test_mmvp_vlm_round_trip(manifest: WorldManifest) -> None:
    for split, pairs in SCALES["small"].mmvp_pairs.items():
        csv_path = manifest.path("mmvp", split, "mmvp-vlm-csv")
        items = load_mmvp_vlm(csv_path, csv_path.parent / "MLLM_VLM Images", verify_images=True)
        assert len(items) == pairs
        assert {item.type for item in items} == set(manifest.data["mmvp_types"].values())
        assert all(item.statement_0 != item.statement_1 for item in items)


def test_llava_round_trip(world: Path, manifest: WorldManifest) -> None:
    scenes = load_scenes(world)
    for split in SPLITS:
        conversations = load_llava_conversations(manifest.path("instruct", split), world)
        assert len(conversations) == manifest.find("instruct", split).count
        pope = [c for c in conversations if c.meta["task"] == "pope"]
        assert pope and all(c.meta["category"] in ("random", "popular", "adversarial") for c in pope)
        for c in conversations[:: max(1, len(conversations) // 20)]:
            assert c.image is not None and str(c.image.path.relative_to(world)) in scenes
        questions = load_llava_conversations(manifest.path("rag", split, "llava-conversation-json"), world)
        assert all(q.meta["gold_doc_ids"] and q.meta["answer"] for q in questions)


def test_interleaved_kb_and_webqa_round_trip(world: Path, manifest: WorldManifest) -> None:
    kb = load_interleaved(manifest.path("rag", "kb"), world, verify_images=True)
    assert len(kb) == 60 and all(len(doc.images) == 1 and len(doc.texts) == 1 for doc in kb)
    for split in SPLITS:
        items = load_interleaved(manifest.path("webqa", split), world)
        assert len(items) == SCALES["small"].webqa[split]
        for item in items:
            assert len(item.images) == 6 and len(item.texts) == 6
            assert 1 <= item.meta["relevant_position"] <= 6
            assert item.slices()  # the teacher's slice sequence can be formed
