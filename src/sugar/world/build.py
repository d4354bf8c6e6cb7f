"""Building a world directory: plan every item, write the task files, render the images.

    sugar world --out data/world --seed 0 --scale default

The directory holds PNGs, one file per task and split in its real dataset's format,
`scenes.jsonl` (the exact ground truth of every image) and `world.json`, the manifest naming
every file with its task, split, format and count. Items are planned in this process (cheap)
and rendered by a pool of worker processes; rendering is a pure function of each scene, so the
bytes do not depend on the number of workers. Every file is written to a temporary name and
moved into place, and the manifest is written last: a directory with a matching manifest is
complete, and building it again with the same arguments only checks it and returns.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sugar.fileio import atomic_write_bytes
from sugar.world import formats
from sugar.world.clips import Clip, make_clip
from sugar.world.render import png_bytes, render_scene
from sugar.world.scene import COLOURS, RELATIONS, SHAPES, SIZES, Combo, Scene
from sugar.world.splits import SPLITS, heldout_combos
from sugar.world.tasks import (
    COMPOSITIONAL_FRACTION,
    MMVP_PATTERNS,
    MMVP_TYPES,
    POPE_CATEGORIES,
    WINOGROUND_SWAPS,
    CaptionItem,
    WorldContext,
    combo_popularity,
    make_caption_item,
    make_kb_docs,
    make_mmvp_pair,
    make_pope_items,
    make_rag_questions,
    make_species,
    make_story,
    make_vqa_item,
    make_webqa_item,
    make_winoground_item,
    webqa_positions,
)

MANIFEST_NAME = "world.json"
CLIP_ANNOTATIONS_FORMAT = "youcook2-annotations-json"
CLIP_GROUND_TRUTH_FORMAT = "sugar-clip-ground-truth-jsonl"
SCENES_NAME = "scenes.jsonl"
MANIFEST_FORMAT = "sugar-world"
# Bump whenever generation changes, so an old directory is rebuilt rather than reused.
GENERATOR_VERSION = 1
DEFAULT_IMAGE_SIZE = 128  # what the default vision tower (EfficientNet-Lite0) is fed


@dataclass(frozen=True)
class WorldScale:
    """How many items each task gets per split."""

    name: str
    captions: dict[str, int]
    stories: dict[str, int]
    winoground: dict[str, int]
    mmvp_pairs: dict[str, int]
    pope_images: dict[str, int]
    rag_questions_per_species: int
    webqa: dict[str, int]
    clips: dict[str, int] = field(default_factory=dict)
    clip_frames: tuple[int, int] = (8, 16)  # frames per clip, inclusive


SCALES: dict[str, WorldScale] = {
    "small": WorldScale(
        name="small",
        captions={"train": 120, "val": 20, "test": 40},
        stories={"train": 6, "val": 3, "test": 6},
        winoground={"train": 8, "val": 4, "test": 16},
        mmvp_pairs={"val": 5, "test": 10},
        pope_images={"train": 40, "val": 20, "test": 40},
        rag_questions_per_species=2,
        webqa={"train": 6, "val": 6, "test": 12},
        clips={"train": 8, "val": 4, "test": 8},
        clip_frames=(8, 12),
    ),
    "default": WorldScale(
        name="default",
        captions={"train": 12000, "val": 1000, "test": 1000},
        stories={"train": 600, "val": 100, "test": 200},
        winoground={"train": 600, "val": 100, "test": 400},
        mmvp_pairs={"val": 50, "test": 150},
        pope_images={"train": 3000, "val": 500, "test": 500},
        rag_questions_per_species=20,
        webqa={"train": 300, "val": 60, "test": 240},
        clips={"train": 300, "val": 60, "test": 100},
        clip_frames=(8, 16),
    ),
}

# What each task's files hold and how their image references resolve; copied into world.json.
TASK_LAYOUT: dict[str, str] = {
    "captions": (
        "captions/dataset_coco.json: Karpathy-split COCO JSON, 5 sentences per image, split per "
        "image; image file = <world>/<filepath>/<filename>."
    ),
    "stories": (
        "stories/<split>.jsonl: interleaved JSONL {id, segments:[{type:image,path}|{type:text,text}], "
        "meta}, 5 (image, sentence) steps; paths relative to <world>. stories/vist/<split>.json: VIST "
        "story-in-sequence JSON of the same stories; photo <id> is <world>/images/<id>.png (also in "
        "images[].url_o)."
    ),
    "story_retrieval": (
        "stories/retrieval_<split>.json: {candidates:[image paths], queries:[{story_id, segments, "
        "target}]}; a query is images 1-4 with sentences 1-5, target indexes candidates (the 5th image "
        "of every story of the split)."
    ),
    "winoground": (
        "winoground/<split>.jsonl: Winoground examples.jsonl records {id, image_0, image_1, caption_0, "
        "caption_1, tag, secondary_tag, num_main_preds, collapsed_tag} plus swap and compositional; "
        "image stem s is <world>/images/s.png; caption_i describes image_i, the two captions are "
        "permutations of the same words."
    ),
    "mmvp": (
        "mmvp/<split>/MMVP_VLM/Questions.csv (Question ID,Type,Statement; rows 2i+1 and 2i+2 are pair "
        "i; image <MMVP_VLM>/MLLM_VLM Images/<Type>/<Question ID>.png) and mmvp/<split>/MMVP/"
        "Questions.csv (Index,Question,Options,Correct Answer; image <MMVP>/MMVP Images/<Index>.png); "
        "the two images of a pair differ in exactly one pattern, listed per question id in "
        "mmvp/<split>/patterns.csv."
    ),
    "instruct": (
        "instruct/<split>.json: LLaVA conversation JSON [{id, image, conversations:[{from, value}], "
        "task}]; image relative to <world>; task 'vqa' or 'pope'; POPE records add category "
        "(random/popular/adversarial), label (yes/no) and object. Images are the caption task's images "
        "of the same split."
    ),
    "rag": (
        "rag/kb.jsonl: interleaved JSONL knowledge base, one picture + text per document, meta names "
        "the species; rag/questions_<split>.json: LLaVA conversation JSON with answer, gold_doc_ids, "
        "question_type and species. Species names and facts appear nowhere but in these files; each "
        "species is asked about in one split."
    ),
    "webqa": (
        "webqa/<split>.jsonl: interleaved JSONL, 6 (image, text) sources as 12 segments; meta holds "
        "question, answer, relevant_position (1-6, balanced) and question_type; the question's wording "
        "identifies the relevant source by its text, the answer needs that source's image."
    ),
    "clips": (
        "clips/youcookii_annotations_<split>.json: YouCook2 annotation JSON {database: {id: {subset "
        "(training/validation/testing), recipe_type, duration, video_url, fps, annotations: [{segment: "
        "[start, end], id, sentence}]}}}, segments in seconds; frame k of a clip is <world>/<video_url>/"
        "frame_<kkkk>.png and shows [k / fps, (k + 1) / fps), so a sentence over frames s..e has the "
        "segment [s, e + 1] at the world's 1 fps; the spans tile the clip. clips/ground_truth_<split>.jsonl: "
        "{id, split, compositional, fps, frames: [{path, scene}], sentences: [{text, event, frames: "
        "[first, last], before, after}]}, the scene of every frame (not in scenes.jsonl) and the object "
        "each sentence is about before and after its event."
    ),
    "ground_truth": (
        "scenes.jsonl: one line per image {path, task, split, scene:{image_size, background, "
        "objects:[{shape, colour, size, cell, centre, bbox, radius, rotation, rgb}]}}; pixel "
        "coordinates, y down."
    ),
}


@dataclass
class PlannedFile:
    """A task file's bytes and manifest entry, ready to be written."""

    path: str
    task: str
    split: str
    format: str
    count: int
    unit: str
    content: bytes

    def entry(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "task": self.task,
            "split": self.split,
            "format": self.format,
            "count": self.count,
            "unit": self.unit,
            "bytes": len(self.content),
            "sha256": hashlib.sha256(self.content).hexdigest(),
        }


@dataclass
class WorldPlan:
    """Everything a world directory will contain, before anything is written."""

    files: list[PlannedFile] = field(default_factory=list)
    images: list[tuple[str, str, str, Scene]] = field(default_factory=list)  # (path, task, split, scene)
    # clip frames are rendered like images but listed in clips/ground_truth_<split>.jsonl, not in
    # scenes.jsonl, so a world with clips keeps the scenes.jsonl of a world without them
    clip_frames: list[tuple[str, str, str, Scene]] = field(default_factory=list)

    def add_image(self, path: str, task: str, split: str, scene: Scene) -> None:
        self.images.append((path, task, split, scene))

    def add_json(self, path: str, task: str, split: str, fmt: str, count: int, unit: str, data: Any) -> None:
        content = json.dumps(data, ensure_ascii=False).encode()
        self.files.append(PlannedFile(path, task, split, fmt, count, unit, content))

    def add_jsonl(
        self, path: str, task: str, split: str, fmt: str, unit: str, records: list[dict[str, Any]]
    ) -> None:
        content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        self.files.append(PlannedFile(path, task, split, fmt, len(records), unit, content))

    def add_text(self, path: str, task: str, split: str, fmt: str, count: int, unit: str, text: str) -> None:
        self.files.append(PlannedFile(path, task, split, fmt, count, unit, text.encode()))


def _splits_of(counts: dict[str, int]) -> list[tuple[str, int]]:
    return [(s, counts[s]) for s in SPLITS if counts.get(s, 0) > 0]


Mapper = Callable[[Callable[..., Any], list[tuple[Any, ...]]], Iterator[Any]]


def serial_map(fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> Iterator[Any]:
    return (fn(*a) for a in args)


def plan_world(
    seed: int, scale: WorldScale, image_size: int, *, progress: bool = False, mapper: Mapper = serial_map
) -> tuple[WorldPlan, dict[str, Any]]:
    """Generate every item of every task; returns the plan and the manifest's world facts.

    `mapper(fn, argument tuples)` yields `fn(*args)` in order; a process pool's ordered map
    spreads item generation over cores without changing the result (items are independent).
    """
    ctx = WorldContext(seed=seed, image_size=image_size, heldout=frozenset(heldout_combos(seed)))
    plan = WorldPlan()
    total = (
        sum(scale.captions.values())
        + sum(scale.stories.values())
        + sum(scale.winoground.values())
        + sum(scale.mmvp_pairs.values())
        + sum(scale.webqa.values())
        + sum(scale.clips.values())
    )
    bar = tqdm(total=total, desc="planning world items", unit="item", disable=not progress)

    def generate(fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> Iterator[Any]:
        for result in mapper(fn, args):
            bar.update()
            yield result

    # 1. Captions (COCO Karpathy), the images the instruction data also uses.
    captions: dict[str, list[CaptionItem]] = {}
    for split, n in _splits_of(scale.captions):
        captions[split] = []
        for item in generate(make_caption_item, [(ctx, split, i) for i in range(n)]):
            captions[split].append(item)
            plan.add_image(item.image, "captions", split, item.scene)
    all_captions = [item for split in SPLITS for item in captions.get(split, [])]
    plan.add_json(
        "captions/dataset_coco.json",
        "captions",
        "all",
        "coco-karpathy-json",
        len(all_captions),
        "images",
        formats.coco_karpathy(all_captions),
    )

    # 2. Stories: interleaved JSONL, VIST SIS JSON, and the VIST-style retrieval task.
    for split, n in _splits_of(scale.stories):
        stories = []
        for story in generate(make_story, [(ctx, split, i) for i in range(n)]):
            stories.append(story)
            for step in story.steps:
                plan.add_image(step.image, "stories", split, step.scene)
        plan.add_jsonl(
            f"stories/{split}.jsonl",
            "stories",
            split,
            "sugar-interleaved-jsonl",
            "stories",
            [formats.story_record(s) for s in stories],
        )
        plan.add_json(
            f"stories/vist/{split}.json",
            "stories",
            split,
            "vist-sis-json",
            len(stories),
            "stories",
            formats.vist_sis(stories),
        )
        plan.add_json(
            f"stories/retrieval_{split}.json",
            "story_retrieval",
            split,
            "sugar-story-retrieval-json",
            len(stories),
            "queries",
            formats.story_retrieval(stories, split),
        )

    # 3. Winoground.
    for split, n in _splits_of(scale.winoground):
        items = []
        for item in generate(make_winoground_item, [(ctx, split, i) for i in range(n)]):
            items.append(item)
            plan.add_image(f"images/{item.image_0}.png", "winoground", split, item.scene_0)
            plan.add_image(f"images/{item.image_1}.png", "winoground", split, item.scene_1)
        plan.add_jsonl(
            f"winoground/{split}.jsonl",
            "winoground",
            split,
            "winoground-jsonl",
            "examples",
            [formats.winoground_record(item) for item in items],
        )

    # 4. MMVP pairs, in both MMVP-VLM (statements) and MMVP (two-choice question) layouts.
    for split, n in _splits_of(scale.mmvp_pairs):
        pairs = []
        base = f"mmvp/{split}"
        for pair in generate(make_mmvp_pair, [(ctx, split, i) for i in range(n)]):
            pairs.append(pair)
            for which, scene in ((0, pair.scene_0), (1, pair.scene_1)):
                plan.add_image(
                    f"{base}/{formats.MMVP_VLM_DIR}/{formats.mmvp_vlm_image(pair, which)}",
                    "mmvp",
                    split,
                    scene,
                )
                plan.add_image(
                    f"{base}/{formats.MMVP_DIR}/{formats.mmvp_image(pair, which)}", "mmvp", split, scene
                )
        plan.add_text(
            f"{base}/{formats.MMVP_VLM_DIR}/Questions.csv",
            "mmvp",
            split,
            "mmvp-vlm-csv",
            2 * n,
            "questions",
            formats.mmvp_vlm_csv(pairs),
        )
        plan.add_text(
            f"{base}/{formats.MMVP_DIR}/Questions.csv",
            "mmvp",
            split,
            "mmvp-csv",
            2 * n,
            "questions",
            formats.mmvp_csv(pairs),
        )
        plan.add_text(
            f"{base}/patterns.csv",
            "mmvp",
            split,
            "mmvp-patterns-csv",
            2 * n,
            "questions",
            formats.mmvp_patterns_csv(pairs),
        )

    # 5. Instructions: a VQA conversation per caption image, POPE questions on some of them.
    popularity = combo_popularity(captions.get("train", []))
    for split in SPLITS:
        if split not in captions:
            continue
        records = list(mapper(_vqa_record, [(item, seed) for item in captions[split]]))
        pope_items = captions[split][: scale.pope_images.get(split, 0)]
        for batch in mapper(_pope_records, [(ctx, item, popularity) for item in pope_items]):
            records += batch
        plan.add_json(
            f"instruct/{split}.json",
            "instruct",
            split,
            "llava-conversation-json",
            len(records),
            "conversations",
            records,
        )

    # 6. RAG: the knowledge base and questions per split.
    species = make_species(ctx)
    docs = make_kb_docs(ctx, species)
    for doc in docs:
        plan.add_image(doc.image, "rag", "kb", doc.scene)
    plan.add_jsonl(
        "rag/kb.jsonl",
        "rag",
        "kb",
        "sugar-interleaved-jsonl",
        "documents",
        [formats.kb_record(d) for d in docs],
    )
    for split in SPLITS:
        questions = make_rag_questions(ctx, split, species, docs, scale.rag_questions_per_species)
        for q in questions:
            plan.add_image(q.image, "rag", split, q.scene)
        plan.add_json(
            f"rag/questions_{split}.json",
            "rag",
            split,
            "llava-conversation-json",
            len(questions),
            "questions",
            [formats.rag_question_record(q) for q in questions],
        )

    # 7. WebQA-style multi-source items.
    for split, n in _splits_of(scale.webqa):
        items = []
        positions = webqa_positions(seed, split, n)
        for item in generate(make_webqa_item, [(ctx, split, i, positions[i]) for i in range(n)]):
            items.append(item)
            for source in item.sources:
                plan.add_image(source.image, "webqa", split, source.scene)
        plan.add_jsonl(
            f"webqa/{split}.jsonl",
            "webqa",
            split,
            "sugar-interleaved-jsonl",
            "items",
            [formats.webqa_record(item) for item in items],
        )

    # 8. Clips: narrated frame sequences (YouCook2 annotations, frame folders, per-frame ground truth).
    for split, n in _splits_of(scale.clips):
        clips: list[Clip] = []
        for clip in generate(make_clip, [(ctx, split, i, scale.clip_frames) for i in range(n)]):
            clips.append(clip)
            for path, scene in zip(clip.frame_paths, clip.frames):
                plan.clip_frames.append((path, "clips", split, scene))
        plan.add_json(
            f"clips/youcookii_annotations_{split}.json",
            "clips",
            split,
            CLIP_ANNOTATIONS_FORMAT,
            len(clips),
            "clips",
            formats.youcook2_annotations(clips),
        )
        plan.add_jsonl(
            f"clips/ground_truth_{split}.jsonl",
            "clips",
            split,
            CLIP_GROUND_TRUTH_FORMAT,
            "clips",
            [formats.clip_ground_truth_record(clip) for clip in clips],
        )
    bar.close()

    facts = {
        "vocabulary": {
            "shapes": list(SHAPES),
            "colours": list(COLOURS),
            "sizes": list(SIZES),
            "relations": list(RELATIONS),
        },
        "heldout_combos": [list(c) for c in sorted(ctx.heldout)],
        "species": [s.to_dict() for s in species],
        "mmvp_types": {p: MMVP_TYPES[p] for p in MMVP_PATTERNS},
        "winoground_swaps": list(WINOGROUND_SWAPS),
        "pope_categories": list(POPE_CATEGORIES),
        "popularity": [list(c) for c in popularity],
    }
    return plan, facts


def _write_atomic(path: Path, content: bytes) -> None:
    # World files are regenerated from the seed on demand: atomic, but no fsync per image.
    atomic_write_bytes(path, content, durable=False)


def _apply(call: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    """Worker: `fn(*args)` for one (fn, args) pair (Pool.imap passes a single argument)."""
    fn, args = call
    return fn(*args)


_last_render: list[tuple[Scene, bytes]] = []  # per process: a clip's resting frames repeat one scene


def _render_to(job: tuple[str, str, Scene]) -> tuple[str, dict[str, Any]]:
    """Worker: render one scene and write its PNG; returns its path and ground-truth dict."""
    root, path, scene = job
    if _last_render and _last_render[0][0] == scene:
        content = _last_render[0][1]
    else:
        content = png_bytes(render_scene(scene))
        _last_render[:] = [(scene, content)]
    _write_atomic(Path(root) / path, content)
    return path, scene.to_dict()


def _vqa_record(item: CaptionItem, seed: int) -> dict[str, Any]:
    return formats.vqa_record(make_vqa_item(item, seed))


def _pope_records(ctx: WorldContext, item: CaptionItem, popularity: list[Combo]) -> list[dict[str, Any]]:
    return [formats.vqa_record(q) for q in make_pope_items(ctx, item, popularity)]


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds and needs no importable __main__; fall back elsewhere.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def render_images(
    root: Path, images: list[tuple[str, str, str, Scene]], pool: Pool | None = None, progress: bool = False
) -> dict[str, dict[str, Any]]:
    """Render every planned image into `root` (in `pool` when given); returns path -> scene dict."""
    for directory in sorted({str(Path(p).parent) for p, _, _, _ in images}):
        (root / directory).mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), path, scene) for path, _, _, scene in images]
    bar = tqdm(total=len(jobs), desc="rendering world images", unit="img", disable=not progress)
    results = map(_render_to, jobs) if pool is None else pool.imap_unordered(_render_to, jobs, chunksize=64)
    scene_dicts = {}
    for path, scene_dict in results:
        scene_dicts[path] = scene_dict
        bar.update()
    bar.close()
    return scene_dicts


def scene_index(
    images: list[tuple[str, str, str, Scene]], scene_dicts: dict[str, dict[str, Any]]
) -> PlannedFile:
    """scenes.jsonl: the ground truth of every image, in planning order."""
    lines = [
        json.dumps({"path": path, "task": task, "split": split, "scene": scene_dicts[path]}) + "\n"
        for path, task, split, _ in images
    ]
    content = "".join(lines).encode()
    return PlannedFile(
        SCENES_NAME, "ground_truth", "all", "sugar-scenes-jsonl", len(lines), "images", content
    )


def _config(seed: int, scale: str, image_size: int) -> dict[str, Any]:
    return {"seed": seed, "scale": scale, "image_size": image_size, "generator_version": GENERATOR_VERSION}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def world_is_complete(root: Path, config: dict[str, Any]) -> bool:
    """True when `root` holds a manifest for `config` and every file it names, unchanged."""
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("config") != config:
        return False
    for entry in manifest.get("files", []):
        path = root / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            return False
    return all((root / p).is_file() for p in _image_paths(root) + _clip_frame_paths(root, manifest))


def _image_paths(root: Path) -> list[str]:
    """Image paths listed in `root`'s scenes.jsonl (empty when there is none)."""
    scenes = root / SCENES_NAME
    if not scenes.is_file():
        return []
    paths = []
    with open(scenes) as handle:
        for line in handle:
            if line.strip():
                paths.append(json.loads(line)["path"])
    return paths


def _clip_frame_paths(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Frame paths listed in the clip ground-truth files that `manifest` names (none before clips)."""
    paths = []
    for entry in manifest.get("files", []):
        if entry.get("format") == CLIP_GROUND_TRUTH_FORMAT and (root / entry["path"]).is_file():
            with open(root / entry["path"]) as handle:
                for line in handle:
                    if line.strip():
                        paths += [frame["path"] for frame in json.loads(line)["frames"]]
    return paths


def _previous_paths(root: Path) -> set[str]:
    """Files a previous build of `root` wrote (from its manifest and scenes.jsonl), if any."""
    manifest_path = root / MANIFEST_NAME
    paths: set[str] = set()
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") == MANIFEST_FORMAT:
            paths.update(e["path"] for e in manifest.get("files", []))
            paths.update(_image_paths(root))
            paths.update(_clip_frame_paths(root, manifest))
    except (OSError, json.JSONDecodeError, KeyError):
        pass
    return paths


def build_world(
    out_dir: str | Path,
    seed: int = 0,
    scale: str = "small",
    image_size: int = DEFAULT_IMAGE_SIZE,
    *,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Build (or verify) the world in `out_dir`; returns the path of its `world.json`.

    Same arguments give byte-identical files. When `out_dir` already holds a complete world
    built with the same arguments, nothing is rewritten (unless `force`). Files of a previous
    build with other arguments that the new one does not contain are removed.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    root = Path(out_dir)
    config = _config(seed, scale, image_size)
    if not force and world_is_complete(root, config):
        return root / MANIFEST_NAME
    root.mkdir(parents=True, exist_ok=True)
    previous = _previous_paths(root)
    (root / MANIFEST_NAME).unlink(missing_ok=True)  # the directory is incomplete until the end

    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    pool = _mp_context().Pool(n_workers) if n_workers > 1 else None
    try:
        mapper: Mapper = serial_map
        if pool is not None:
            mapper = lambda fn, args: pool.imap(  # noqa: E731
                _apply, [(fn, a) for a in args], chunksize=max(1, min(256, len(args) // (4 * n_workers)))
            )
        plan, facts = plan_world(seed, SCALES[scale], image_size, progress=progress, mapper=mapper)
        paths = [p for p, _, _, _ in plan.images + plan.clip_frames]
        if len(set(paths)) != len(paths):
            raise RuntimeError("two planned images share a path; the world generator has a bug")
        scene_dicts = render_images(root, plan.images + plan.clip_frames, pool, progress)
        plan.files.append(scene_index(plan.images, scene_dicts))
        for planned in plan.files:
            _write_atomic(root / planned.path, planned.content)
    except BaseException:
        if pool is not None:
            pool.terminate()  # an error or Ctrl-C: do not wait for the remaining work
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    current = set(paths) | {f.path for f in plan.files}
    for stale in sorted(previous - current):
        (root / stale).unlink(missing_ok=True)

    manifest = {
        "format": MANIFEST_FORMAT,
        "config": config,
        "seed": seed,
        "scale": scale,
        "image_size": image_size,
        "num_images": len(plan.images),
        "images_index": SCENES_NAME,
        "num_clip_frames": len(plan.clip_frames),
        "splits": {
            "rule": (
                "an item's split is a hash of its content (train 80% / val 10% / test 10%); items "
                "showing a held-out colour-shape combination are test items; train and val never show one"
            ),
            "compositional_test_fraction": COMPOSITIONAL_FRACTION,
        },
        **facts,
        "tasks": TASK_LAYOUT,
        "files": [f.entry() for f in plan.files],
    }
    _write_atomic(root / MANIFEST_NAME, (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode())
    return root / MANIFEST_NAME


@dataclass(frozen=True)
class ManifestFile:
    path: str
    task: str
    split: str
    format: str
    count: int
    unit: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class WorldManifest:
    """A parsed `world.json`: where each task's file is, and the world's facts."""

    root: Path
    seed: int
    scale: str
    image_size: int
    num_images: int
    heldout_combos: tuple[Combo, ...]
    species: tuple[dict[str, str], ...]
    files: tuple[ManifestFile, ...]
    data: dict[str, Any]

    def find(self, task: str, split: str | None = None, format: str | None = None) -> ManifestFile:
        """The one file of `task` (and `split`, `format` when given); ValueError otherwise."""
        hits = [
            f
            for f in self.files
            if f.task == task
            and (split is None or f.split == split)
            and (format is None or f.format == format)
        ]
        if len(hits) != 1:
            wanted = f"task={task!r} split={split!r} format={format!r}"
            have = sorted({(f.task, f.split, f.format) for f in self.files})
            where = self.root / MANIFEST_NAME
            raise ValueError(f"{where}: expected one file for {wanted}, found {len(hits)}; files: {have}")
        return hits[0]

    def path(self, task: str, split: str | None = None, format: str | None = None) -> Path:
        return self.root / self.find(task, split, format).path


def load_manifest(world_dir: str | Path) -> WorldManifest:
    """Read `<world_dir>/world.json`; raises ValueError naming the file and the missing field."""
    root = Path(world_dir)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no world manifest at {path}; build one with `sugar world --out {root}`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: field 'format' must be {MANIFEST_FORMAT!r}, got {data.get('format')!r}")
    try:
        files = tuple(
            ManifestFile(
                e["path"],
                e["task"],
                e["split"],
                e["format"],
                int(e["count"]),
                e["unit"],
                int(e["bytes"]),
                e["sha256"],
            )
            for e in data["files"]
        )
        return WorldManifest(
            root=root,
            seed=int(data["seed"]),
            scale=str(data["scale"]),
            image_size=int(data["image_size"]),
            num_images=int(data["num_images"]),
            heldout_combos=tuple((c[0], c[1]) for c in data["heldout_combos"]),
            species=tuple(data["species"]),
            files=files,
            data=data,
        )
    except KeyError as error:
        raise ValueError(f"{path}: missing field {error.args[0]!r}") from None


@dataclass(frozen=True)
class SceneRecord:
    path: str
    task: str
    split: str
    scene: Scene


def load_scenes(world_dir: str | Path) -> dict[str, SceneRecord]:
    """Ground truth of every image of a world, keyed by its path relative to the world dir."""
    path = Path(world_dir) / SCENES_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no scene index at {path}")
    out: dict[str, SceneRecord] = {}
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                out[data["path"]] = SceneRecord(
                    data["path"], data["task"], data["split"], Scene.from_dict(data["scene"])
                )
            except (json.JSONDecodeError, KeyError, ValueError) as error:
                raise ValueError(f"{path}:{number}: bad scene record: {error}") from error
    return out


def timed_build(out_dir: str | Path, **kwargs: Any) -> tuple[Path, float]:
    """`build_world` and its wall time in seconds (the CLI reports it)."""
    start = time.perf_counter()
    manifest = build_world(out_dir, **kwargs)
    return manifest, time.perf_counter() - start
