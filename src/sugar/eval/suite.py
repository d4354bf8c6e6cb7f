"""The benchmark suite: read a built world's task files (or a real dataset's), run the benchmarks
of `sugar.eval.benchmarks`, and write one JSON per benchmark, `results.md` and pictures.

    from sugar.eval.suite import run_benchmarks, write_results
    results = run_benchmarks("runs/demo/sugar/model", "runs/demo/world", "all", teachers_dir="runs/demo/teachers")
    write_results(results, "runs/demo/eval-suite")

Answers are generated greedily in batches (`generate_batch`). Only qa answers a deterministic,
evenly spread subset by default (`DEFAULT_LIMITS`); every result records the limit it ran under.
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sugar.data import DataFormatError, ImageRef, Story, world_clip_annotations
from sugar.fileio import atomic_write_text

BENCHES: tuple[str, ...] = ("retrieval", "interleaved", "winoground", "mmvp", "qa", "captions", "rag", "webqa", "clips")
# Items per benchmark when no limit is given (None: every item). Only qa is cut by default: the
# default world's test split has 1000 VQA and 1702 POPE questions per negative type, and 500 of
# each keep `all` within a few minutes on two CPU cores for the tiny model (`--limit 0`: all).
DEFAULT_LIMITS: dict[str, int | None] = {
    "retrieval": None,
    "interleaved": None,
    "winoground": None,
    "mmvp": None,
    "qa": 500,  # VQA questions, and POPE questions per negative type
    "captions": 200,  # images captioned (each scored against its five references)
    "rag": None,  # questions answered per row (retrieval hit@k always uses every question)
    "webqa": None,  # items, balanced over the positions of the relevant source
    "clips": None,  # clips (each with its narration)
}
# Frames sampled per clip unless asked otherwise: all of a world clip (8-16), a spread of a real video.
DEFAULT_CLIP_FRAMES = 16
# Longest answers the references need, in tokens of the tiny model's tokenizer, plus margin.
MAX_NEW_TOKENS: dict[str, int] = {"vqa": 28, "pope": 6, "rag": 12, "webqa": 8, "captions": 32}
DATA_BENCHES: dict[str, str] = {
    "retrieval": "a COCO / Flickr30k Karpathy JSON (dataset_coco.json); --image-root holds its filepath folders",
    "winoground": "a Winoground examples.jsonl; --image-root holds the images (default: <file folder>/images)",
    "interleaved": "a VIST story-in-sequence JSON; --image-root holds <photo id>.jpg (default: the file's folder)",
    "mmvp": "a folder holding MMVP_VLM/ (Questions.csv, 'MLLM_VLM Images/') and/or MMVP/ (Questions.csv, 'MMVP Images/')",
    "captions": "a COCO / Flickr30k Karpathy JSON (dataset_coco.json); --image-root holds its filepath folders",
    "clips": (
        "a YouCook2 annotation JSON (timed sentences: retrieval and grounding) or an MSR-VTT videodatainfo JSON "
        "(captions: retrieval); --image-root holds each clip's video file or frame folder (default: the file's folder)"
    ),
}
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")


# ----------------------------------------------------------------------------- reading task files


def _world_file(world: Path, relative: str, bench: str) -> Path:
    """A task file of a built world; a clear error names the file and what to run."""
    if not (world / "world.json").is_file():
        raise FileNotFoundError(f"{world} is not a built world (no world.json): build one with `sugar world --out {world}`")
    path = world / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the {bench} benchmark reads it from a built world. Check --split (this task "
            f"may not have that split) or rebuild the world with `sugar world --out {world}`"
        )
    return path


def _find_image(directory: Path, stem: str, what: str) -> ImageRef:
    for extension in IMAGE_EXTENSIONS:
        candidate = directory / f"{stem}{extension}"
        if candidate.is_file():
            return ImageRef(candidate)
    raise FileNotFoundError(f"{what}: no image {directory / stem}{{{','.join(IMAGE_EXTENSIONS)}}}")


def load_story_retrieval(path: Path, image_root: Path) -> tuple[list[ImageRef], list[Any]]:
    """A world's stories/retrieval_<split>.json -> (candidate images, queries)."""
    from sugar.eval.benchmarks import InterleavedQuery

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), list) or not isinstance(data.get("queries"), list):
        raise DataFormatError(f"{path}: expected an object with 'candidates' and 'queries' lists")
    candidates = []
    for index, candidate in enumerate(data["candidates"]):
        if not isinstance(candidate, str) or not (image_root / candidate).is_file():
            raise DataFormatError(f"{path}: candidates[{index}] must name an image file under {image_root}, got {candidate!r}")
        candidates.append(ImageRef(image_root / candidate))
    queries = []
    for index, raw in enumerate(data["queries"]):
        where = f"{path}: queries[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("segments"), list) or not isinstance(raw.get("target"), int):
            raise DataFormatError(f"{where}: expected {{story_id, segments: [...], target: int}}")
        segments: list[str | ImageRef] = []
        for number, segment in enumerate(raw["segments"]):
            if isinstance(segment, dict) and segment.get("type") == "text" and isinstance(segment.get("text"), str):
                segments.append(segment["text"])
            elif isinstance(segment, dict) and segment.get("type") == "image" and isinstance(segment.get("path"), str):
                segments.append(ImageRef(image_root / segment["path"]))
            else:
                raise DataFormatError(f"{where}.segments[{number}]: expected {{type: text, text}} or {{type: image, path}}")
        queries.append(InterleavedQuery(str(raw.get("story_id", index)), tuple(segments), raw["target"]))
    return candidates, queries


def story_queries(stories: Sequence[Story]) -> tuple[list[ImageRef], list[Any]]:
    """VIST stories -> (last images as the candidate pool, one query per story: every image but
    the last and every sentence, interleaved in story order)."""
    from sugar.eval.benchmarks import InterleavedQuery

    candidates: list[ImageRef] = []
    queries = []
    for story in stories:
        if len(story.steps) < 2:
            raise DataFormatError(f"story {story.id}: needs at least two (image, sentence) steps, has {len(story.steps)}")
        segments: list[str | ImageRef] = []
        for image, text in story.steps[:-1]:
            segments += [image, text]
        segments.append(story.steps[-1][1])
        queries.append(InterleavedQuery(story.id, tuple(segments), len(candidates)))
        candidates.append(story.steps[-1][0])
    return candidates, queries


def load_mmvp_patterns(path: Path) -> dict[str, str]:
    """The world's mmvp/<split>/patterns.csv: question id -> visual pattern."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"Question ID", "Pattern"} <= set(reader.fieldnames):
            raise DataFormatError(f"{path}: expected a CSV with 'Question ID' and 'Pattern' columns")
        return {row["Question ID"]: row["Pattern"] for row in reader}


def load_mmvp_questions(path: Path, image_dir: Path, patterns: dict[str, str] | None = None) -> list[Any]:
    """MMVP's Questions.csv (Index, Question, Options, Correct Answer), image `<image_dir>/<Index>.<ext>`."""
    from sugar.eval.benchmarks import MMVPQuestion, parse_choice, parse_options

    columns = ("Index", "Question", "Options", "Correct Answer")
    questions = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
            raise DataFormatError(f"{path}:1: expected the columns {', '.join(columns)}, got {reader.fieldnames}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            try:
                options = parse_options(row["Options"])
                answer = parse_choice(row["Correct Answer"], len(options))
            except ValueError as error:
                raise DataFormatError(f"{where}: {error}") from None
            index = row["Index"].strip()
            questions.append(
                MMVPQuestion(
                    id=index,
                    image=_find_image(image_dir, index, where),
                    question=row["Question"].strip(),
                    options_text=row["Options"].strip(),
                    options=options,
                    answer=answer,
                    pattern=(patterns or {}).get(index, "all"),
                )
            )
    if not questions or len(questions) % 2:
        raise DataFormatError(f"{path}: {len(questions)} questions; MMVP rows come in consecutive pairs")
    return questions


# ----------------------------------------------------------------------------- subsets


def resolve_limit(bench: str, limit: int | None) -> int | None:
    """None: the bench's default; 0 or less: every item; else at most `limit` items."""
    if limit is None:
        return DEFAULT_LIMITS[bench]
    return None if limit <= 0 else limit


def balanced(items: Sequence[Any], key: Callable[[Any], Any], limit: int | None) -> list[Any]:
    """At most `limit` items, as even as possible over the values of `key`, each group spread."""
    from sugar.eval.benchmarks import spread

    if limit is None or limit >= len(items):
        return list(items)
    groups: dict[Any, list[Any]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    names = sorted(groups)
    share, extra = divmod(limit, len(names))
    chosen: list[Any] = []
    for k, name in enumerate(names):
        chosen += spread(groups[name], share + (1 if k < extra else 0))
    return chosen


# ----------------------------------------------------------------------------- running


@dataclass
class _Context:
    model: Any
    teacher: Any | None  # TeacherSuite
    world: Path | None
    split: str
    limit: int | None  # already resolved for the bench being run
    data: Path | None
    image_root: Path | None
    batch_size: int
    progress: bool
    clip_frames: int | None = DEFAULT_CLIP_FRAMES
    frame_stride: int = 1

    def need_world(self, bench: str) -> Path:
        if self.world is None:
            raise ValueError(f"the {bench} benchmark needs a world (--world DIR; build one with `sugar world --out DIR`)")
        return self.world

    def encoders(self) -> dict[str, Any]:
        """The model, and the CLIP-style teacher when one is given (the embedding baselines)."""
        from sugar.eval.benchmarks import ModelEncoder, TeacherEncoder

        found: dict[str, Any] = {"model": ModelEncoder(self.model, batch_size=self.batch_size)}
        if self.teacher is not None:
            found["teacher"] = TeacherEncoder(self.teacher)
        return found


def _with_teacher(ctx: _Context, run: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    encoders = ctx.encoders()
    result = run(encoders["model"])
    if "teacher" in encoders:
        result["teacher"] = run(encoders["teacher"])
    return result


def _captioned_images(ctx: _Context, bench: str) -> tuple[Path, list[Any]]:
    """The split's captioned images (a spread subset of `ctx.limit`) from --data or the world."""
    from sugar.data import load_coco_karpathy
    from sugar.eval.benchmarks import spread

    if ctx.data is not None:
        path, root = ctx.data, ctx.image_root or ctx.data.parent
    else:
        world = ctx.need_world(bench)
        path, root = _world_file(world, "captions/dataset_coco.json", bench), world
    return path, spread(load_coco_karpathy(path, root, split=ctx.split), ctx.limit)


def _bench_retrieval(ctx: _Context) -> dict[str, Any]:
    from sugar.eval.benchmarks import evaluate_retrieval

    path, records = _captioned_images(ctx, "retrieval")
    result = _with_teacher(ctx, lambda encoder: evaluate_retrieval(encoder, records))
    captions = sum(len(r.captions) for r in records)
    return {"source": str(path), "images": len(records), "captions": captions, **result}


def _bench_interleaved(ctx: _Context) -> dict[str, Any]:
    from sugar.eval.benchmarks import evaluate_interleaved_retrieval, spread

    if ctx.data is not None:
        from sugar.data import load_vist_sis

        path = ctx.data
        candidates, queries = story_queries(load_vist_sis(path, ctx.image_root or path.parent))
    else:
        world = ctx.need_world("interleaved")
        path = _world_file(world, f"stories/retrieval_{ctx.split}.json", "interleaved")
        candidates, queries = load_story_retrieval(path, world)
    if ctx.limit is not None and ctx.limit < len(queries):
        # a subset of stories: the pool is their last images, as for a smaller test split
        queries = spread(queries, ctx.limit)
        pool = sorted({q.target for q in queries})
        position = {old: new for new, old in enumerate(pool)}
        candidates = [candidates[i] for i in pool]
        queries = [type(q)(q.id, q.segments, position[q.target]) for q in queries]
    result = _with_teacher(
        ctx, lambda encoder: evaluate_interleaved_retrieval(encoder, candidates, queries, show_progress=ctx.progress)
    )
    return {"source": str(path), **result}


def _bench_winoground(ctx: _Context) -> dict[str, Any]:
    from sugar.data import load_winoground
    from sugar.eval.benchmarks import evaluate_winoground, spread

    if ctx.data is not None:
        path, root = ctx.data, ctx.image_root or ctx.data.parent / "images"
    else:
        world = ctx.need_world("winoground")
        path, root = _world_file(world, f"winoground/{ctx.split}.jsonl", "winoground"), world / "images"
    items = spread(load_winoground(path, root), ctx.limit)
    result = _with_teacher(ctx, lambda encoder: evaluate_winoground(encoder, items))
    return {"source": str(path), "items": len(items), **result}


def _bench_mmvp(ctx: _Context) -> dict[str, Any]:
    from sugar.data import load_mmvp_vlm
    from sugar.eval.benchmarks import evaluate_mmvp_choices, evaluate_mmvp_vlm, spread

    if ctx.data is not None:
        base = ctx.data
        if not base.is_dir():
            raise FileNotFoundError(f"--data for mmvp must be a folder ({DATA_BENCHES['mmvp']}), got {base}")
    else:
        world = ctx.need_world("mmvp")
        base = _world_file(world, f"mmvp/{ctx.split}/MMVP_VLM/Questions.csv", "mmvp").parent.parent
    patterns = load_mmvp_patterns(base / "patterns.csv") if (base / "patterns.csv").is_file() else None
    result: dict[str, Any] = {"source": str(base)}
    vlm_csv, mllm_csv = base / "MMVP_VLM" / "Questions.csv", base / "MMVP" / "Questions.csv"
    if not vlm_csv.is_file() and not mllm_csv.is_file():
        raise FileNotFoundError(f"{base}: neither {vlm_csv} nor {mllm_csv} exists")
    if vlm_csv.is_file():
        items = spread(load_mmvp_vlm(vlm_csv, base / "MMVP_VLM" / "MLLM_VLM Images"), ctx.limit)
        encoders = ctx.encoders()
        result["embedding"] = evaluate_mmvp_vlm(encoders["model"], items, patterns, show_progress=ctx.progress)
        if "teacher" in encoders:
            result["teacher"] = {"embedding": evaluate_mmvp_vlm(encoders["teacher"], items, patterns)}
    if mllm_csv.is_file():
        questions = load_mmvp_questions(mllm_csv, base / "MMVP" / "MMVP Images", patterns)
        pairs = spread(list(range(len(questions) // 2)), ctx.limit)
        questions = [questions[2 * p + k] for p in pairs for k in (0, 1)]
        result["generation"] = evaluate_mmvp_choices(ctx.model, questions, ctx.batch_size, ctx.progress)
    return result


def _bench_qa(ctx: _Context) -> dict[str, Any]:
    from sugar.data import load_llava_conversations
    from sugar.eval.benchmarks import evaluate_pope, evaluate_qa, pope_category, spread

    world = ctx.need_world("qa")
    path = _world_file(world, f"instruct/{ctx.split}.json", "qa")
    conversations = load_llava_conversations(path, world)
    vqa = spread([c for c in conversations if pope_category(c) is None], ctx.limit)
    by_kind: dict[str, list[Any]] = defaultdict(list)
    for conversation in conversations:
        kind = pope_category(conversation)
        if kind is not None:
            by_kind[kind].append(conversation)
    pope = [c for kind in sorted(by_kind) for c in spread(by_kind[kind], ctx.limit)]
    result: dict[str, Any] = {"source": str(path)}
    if vqa:
        vqa_result = evaluate_qa(
            ctx.model, vqa, max_new_tokens=MAX_NEW_TOKENS["vqa"], show_progress=ctx.progress, batch_size=ctx.batch_size
        )
        result["vqa"] = {"accuracy": vqa_result["accuracy"], "count": vqa_result["count"]}
    if pope:
        result["pope"] = evaluate_pope(
            ctx.model, pope, max_new_tokens=MAX_NEW_TOKENS["pope"], show_progress=ctx.progress, batch_size=ctx.batch_size
        )
    result["metric"] = "VQA: normalised exact match of the first answer; POPE: first yes/no word of the reply"
    return result


def _bench_captions(ctx: _Context) -> dict[str, Any]:
    """Captioning as the model was taught it (a caption document is the image, then its caption):
    greedy continuations of the image alone, scored by corpus BLEU-4 and CIDEr-D against the
    image's reference captions."""
    from sugar.eval.benchmarks import generate_batch
    from sugar.eval.caption_metrics import cider_d, corpus_bleu

    path, records = _captioned_images(ctx, "captions")
    if not records:
        raise ValueError(f"{path}: no images in split {ctx.split!r} to caption")
    prompts = [[record.image.load()] for record in records]
    captions = generate_batch(
        ctx.model, prompts, MAX_NEW_TOKENS["captions"], ctx.batch_size, ctx.progress, "captions"
    )
    captions = [caption.strip().split("\n")[0] for caption in captions]  # one sentence-line per image
    references = [record.captions for record in records]
    bleu = corpus_bleu(captions, references)
    cider, _ = cider_d(captions, references)
    return {
        "source": str(path),
        "images": len(records),
        "bleu": {f"bleu{n + 1}": value for n, value in enumerate(bleu)},
        "bleu4": bleu[3],
        "cider": cider,
        "examples": [{"image": str(r.image.path), "caption": c, "reference": r.captions[0]} for r, c in zip(records[:5], captions)],
        "metric": "corpus BLEU-4 and CIDEr-D (COCO caption toolkit definitions) against every reference caption",
    }


def _bench_rag(ctx: _Context) -> dict[str, Any]:
    from sugar.data import load_interleaved, load_llava_conversations
    from sugar.eval.benchmarks import TeacherEncoder, evaluate_rag

    world = ctx.need_world("rag")
    kb_path = _world_file(world, "rag/kb.jsonl", "rag")
    questions_path = _world_file(world, f"rag/questions_{ctx.split}.json", "rag")
    external = {"teacher": TeacherEncoder(ctx.teacher)} if ctx.teacher is not None else {}
    result = evaluate_rag(
        ctx.model,
        load_llava_conversations(questions_path, world),
        load_interleaved(kb_path, world),
        external=external,
        ks=(1, 3),
        generate_count=ctx.limit,
        max_new_tokens=MAX_NEW_TOKENS["rag"],
        batch_size=ctx.batch_size,
        show_progress=ctx.progress,
    )
    if ctx.teacher is None:
        result["note"] = "no teachers given: the external-retriever (teacher) rows need --teachers"
    return {"source": str(questions_path), **result}


def _bench_webqa(ctx: _Context) -> dict[str, Any]:
    from sugar.data import load_interleaved
    from sugar.eval.benchmarks import evaluate_webqa, webqa_fields

    world = ctx.need_world("webqa")
    path = _world_file(world, f"webqa/{ctx.split}.jsonl", "webqa")
    items = balanced(load_interleaved(path, world), lambda item: webqa_fields(item)[2], ctx.limit)
    result = evaluate_webqa(
        ctx.model, items, max_new_tokens=MAX_NEW_TOKENS["webqa"], show_progress=ctx.progress, batch_size=ctx.batch_size
    )
    result["metric"] = "keyword accuracy: the answer word appears in the reply (WebQA's colour / shape scoring)"
    return {"source": str(path), **result}


def _bench_clips(ctx: _Context) -> dict[str, Any]:
    """Text <-> video retrieval and temporal grounding (`sugar.eval.clips`)."""
    from sugar.data import load_msrvtt, load_youcook2
    from sugar.data._io import read_json
    from sugar.eval.benchmarks import spread
    from sugar.eval.clips import clip_items, model_features, run_clips, teacher_features

    if ctx.data is not None:
        path, root = ctx.data, ctx.image_root or ctx.data.parent
        top = read_json(path)
        narrated = isinstance(top, dict) and "database" in top
        records = (load_youcook2 if narrated else load_msrvtt)(path, root, split=ctx.split)
    else:
        world = ctx.need_world("clips")
        path = world_clip_annotations(world, ctx.split, "the clips benchmark", "leave clips out of --bench")
        narrated = True
        records = load_youcook2(path, world / "clips" / ctx.split, split=ctx.split)
    items = clip_items(spread(records, ctx.limit), ctx.clip_frames, ctx.frame_stride, narrated=narrated)
    batch = max(1, min(ctx.batch_size, 8))  # a clip document is a few hundred tokens
    teacher = (lambda: teacher_features(ctx.teacher, items)) if ctx.teacher is not None else None
    result = run_clips(items, lambda: model_features(ctx.model, items, batch), teacher)
    result["sampling"] = {"clip_frames": ctx.clip_frames, "frame_stride": ctx.frame_stride}
    result["format"] = "youcook2" if narrated else "msrvtt"
    return {"source": str(path), **result}


RUNNERS: dict[str, Callable[[_Context], dict[str, Any]]] = {
    "retrieval": _bench_retrieval,
    "interleaved": _bench_interleaved,
    "winoground": _bench_winoground,
    "mmvp": _bench_mmvp,
    "qa": _bench_qa,
    "captions": _bench_captions,
    "rag": _bench_rag,
    "webqa": _bench_webqa,
    "clips": _bench_clips,
}


def expand_benches(benches: str | Sequence[str]) -> list[str]:
    """'all', one name, a comma-separated list or a list of names -> names in suite order."""
    names = [benches] if isinstance(benches, str) else list(benches)
    wanted: set[str] = set()
    for name in names:
        for part in str(name).split(","):
            part = part.strip()
            if part == "all":
                wanted.update(BENCHES)
            elif part in BENCHES:
                wanted.add(part)
            elif part:
                raise ValueError(f"unknown benchmark {part!r}; choose from {', '.join(BENCHES)} or all")
    if not wanted:
        raise ValueError(f"no benchmark named; choose from {', '.join(BENCHES)} or all")
    return [name for name in BENCHES if name in wanted]


def load_model(model: Any, device: str | None = None) -> Any:
    """A SugarModel from a saved folder (or the model itself), in eval mode on `device`."""
    if isinstance(model, (str, Path)):
        from sugar.models import SugarModel

        model = SugarModel.from_pretrained(model)
    if device is not None:
        model = model.to(device)
    model.eval()
    return model


def run_benchmarks(
    model_dir_or_model: Any,
    world_dir: str | Path | None,
    benches: str | Sequence[str],
    split: str = "test",
    teachers_dir: Any = None,
    limit: int | None = None,
    *,
    limits: dict[str, int | None] | None = None,
    data: str | Path | None = None,
    image_root: str | Path | None = None,
    batch_size: int = 32,
    device: str | None = None,
    show_progress: bool = False,
    clip_frames: int | None = DEFAULT_CLIP_FRAMES,
    frame_stride: int = 1,
) -> dict[str, dict[str, Any]]:
    """Run benchmarks on one model; returns {bench: result dict}.

    `teachers_dir` (a `sugar teachers fit` folder or a loaded TeacherSuite) adds the CLIP-style
    teacher as a baseline encoder (key "teacher") and as RAG's external retriever. `limit`:
    None = `DEFAULT_LIMITS`, 0 = every item, N = at most N items per benchmark (per POPE type).
    `limits` sets it per benchmark (same meaning), over `limit`.
    `data` runs one of the `DATA_BENCHES` on a real dataset file instead of the world.
    `clip_frames` / `frame_stride`: the clips benchmark samples that many frames (None: all) of
    every `frame_stride`-th frame of each clip.
    """
    names = expand_benches(benches)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    data_path = Path(data) if data is not None else None
    if data_path is not None:
        if len(names) != 1 or names[0] not in DATA_BENCHES:
            raise ValueError(f"--data runs exactly one of {', '.join(DATA_BENCHES)}; got benches {names}")
        if not data_path.exists():
            raise FileNotFoundError(f"{data_path} not found (expected {DATA_BENCHES[names[0]]})")
    world = Path(world_dir) if world_dir is not None else None
    if world is not None and not (world / "world.json").is_file():
        raise FileNotFoundError(f"{world} is not a built world (no world.json): build one with `sugar world --out {world}`")
    if (clip_frames is not None and clip_frames < 1) or frame_stride < 1:
        raise ValueError(f"clip_frames must be >= 1 or None and frame_stride >= 1, got {clip_frames} and {frame_stride}")
    if "clips" in names and data_path is None and world is not None:
        # before any model loads: an old world fails here, not after the other benchmarks
        world_clip_annotations(world, split, "the clips benchmark", "leave clips out of --bench")
    teacher = teachers_dir
    if isinstance(teachers_dir, (str, Path)):
        from sugar.teachers import TeacherSuite

        teacher = TeacherSuite.load(teachers_dir, device=device or "cpu")
    model = load_model(model_dir_or_model, device)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        resolved = resolve_limit(name, (limits or {}).get(name, limit))
        ctx = _Context(
            model=model,
            teacher=teacher,
            world=world,
            split=split,
            limit=resolved,
            data=data_path,
            image_root=Path(image_root) if image_root is not None else None,
            batch_size=batch_size,
            progress=show_progress,
            clip_frames=clip_frames,
            frame_stride=frame_stride,
        )
        started = time.perf_counter()
        result = RUNNERS[name](ctx)
        results[name] = {
            "bench": name,
            "split": split,
            "limit": {"value": resolved, "default": (limits or {}).get(name, limit) is None, "rule": _limit_rule(name, resolved)},
            **result,
            "seconds": round(time.perf_counter() - started, 1),
        }
    return results


def _limit_rule(bench: str, resolved: int | None) -> str:
    if resolved is None:
        return "every item"
    what = {
        "qa": "VQA questions and POPE questions per negative type",
        "rag": "questions answered per row (hit@k over every question)",
        "webqa": "items, balanced over relevant positions",
        "interleaved": "stories (the candidate pool is their last images)",
        "mmvp": "pairs",
        "retrieval": "images",
        "captions": "images",
        "winoground": "items",
        "clips": "clips",
    }[bench]
    return f"at most {resolved} {what}, evenly spread through the file"


# ----------------------------------------------------------------------------- writing


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "-"


def _recall_cells(metrics: dict[str, Any] | None, ks: Sequence[int] = (1, 5, 10)) -> list[str]:
    return [_pct((metrics or {}).get(f"r@{k}")) for k in ks]


def _encoders_of(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = [("model", result)]
    if isinstance(result.get("teacher"), dict):
        rows.append(("teacher (CLIP-style)", result["teacher"]))
    return rows


def _markdown_retrieval(result: dict[str, Any]) -> list[str]:
    lines = [
        f"{result['images']} images, {result['captions']} captions (COCO protocol).",
        "",
        "| encoder | T->I R@1 | T->I R@5 | T->I R@10 | I->T R@1 | I->T R@5 | I->T R@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in _encoders_of(result):
        lines.append(f"| {name} | " + " | ".join(_recall_cells(r.get("t2i")) + _recall_cells(r.get("i2t"))) + " |")
    return lines


def _markdown_interleaved(result: dict[str, Any]) -> list[str]:
    labels = {
        "captions_and_images": "5 captions + 4 images",
        "captions_only": "5 captions",
        "last_caption": "last caption only",
    }
    lines = [
        f"{result['queries']} stories, candidate pool of {result['candidates']} fifth images (VIST protocol).",
        "",
        "| encoder | query | R@1 | R@5 | R@10 |",
        "|---|---|---|---|---|",
    ]
    for name, r in _encoders_of(result):
        for key, label in labels.items():
            if key in r:
                lines.append(f"| {name} | {label} | " + " | ".join(_recall_cells(r[key])) + " |")
    return lines


def _markdown_winoground(result: dict[str, Any]) -> list[str]:
    lines = [f"{result['items']} items.", "", "| encoder | text | image | group |", "|---|---|---|---|"]
    for name, r in _encoders_of(result):
        lines.append(f"| {name} | {_pct(r.get('text'))} | {_pct(r.get('image'))} | {_pct(r.get('group'))} |")
    return lines


def _markdown_mmvp(result: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, dict[str, Any]]] = []
    if "embedding" in result:
        rows.append(("model: embeddings (statement -> image)", result["embedding"]))
        rows.append(("model: embeddings (image -> statement)", result["embedding"]["image_to_statement"]))
    if "generation" in result:
        rows.append(("model: two-choice question (likelihood)", result["generation"]))
    if isinstance(result.get("teacher"), dict) and "embedding" in result["teacher"]:
        rows.append(("teacher: embeddings (statement -> image)", result["teacher"]["embedding"]))
    patterns: list[str] = []
    for _, r in rows:
        patterns += [p for p in r["per_pattern"] if p not in patterns]
    lines = [
        "Pair accuracy per visual pattern (a pair counts when both its halves are right); average = mean over patterns.",
        "",
        "| method | " + " | ".join(patterns) + " | average |",
        "|---|" + "---|" * (len(patterns) + 1),
    ]
    for label, r in rows:
        cells = [_pct(r["per_pattern"].get(p)) for p in patterns]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_pct(r['average'])} |")
    if "generation" in result:
        lines += ["", f"Questions answered one by one (likelihood): {_pct(result['generation']['question_accuracy'])}."]
    return lines


def _markdown_qa(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if "vqa" in result:
        lines += [f"VQA exact match: {_pct(result['vqa']['accuracy'])} ({result['vqa']['count']} questions).", ""]
    if "pope" in result:
        lines += [
            "| POPE type | accuracy | precision | recall | F1 | yes ratio | questions |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, r in result["pope"].items():
            cells = [_pct(r[k]) for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")]
            lines.append(f"| {kind} | " + " | ".join(cells) + f" | {r['count']} |")
    return lines


def _markdown_rag(result: dict[str, Any]) -> list[str]:
    ks = result["ks"]
    lines = [
        f"{result['questions']} questions over a knowledge base of {result['knowledge_base']} documents; "
        f"answers generated for {result['answered']}.",
        "",
        "| retriever | " + " | ".join(f"hit@{k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for name, r in result["retrieval"].items():
        lines.append(f"| {name} | " + " | ".join(_pct(r[f'hit@{k}']) for k in ks) + " |")
    lines += ["", "| context | exact match | contains the answer |", "|---|---|---|"]
    for row, r in result["rows"].items():
        lines.append(f"| {row} | {_pct(r['exact_match'])} | {_pct(r['contains_answer'])} |")
    if "note" in result:
        lines += ["", result["note"]]
    return lines


def _markdown_captions(result: dict[str, Any]) -> list[str]:
    lines = [
        f"{result['images']} images; {result['metric']}.",
        "",
        "| BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | CIDEr-D |",
        "|---|---|---|---|---|",
        "| " + " | ".join(_pct(result["bleu"][f"bleu{n}"]) for n in range(1, 5)) + f" | {100 * result['cider']:.1f} |",
        "",
        "BLEU in %, CIDEr-D x 100. First captions:",
        "",
    ]
    lines += [f"- `{e['caption']}` (reference: {e['reference']})" for e in result["examples"]]
    return lines


def _markdown_webqa(result: dict[str, Any]) -> list[str]:
    positions = list(result["by_position"])
    return [
        f"{result['items']} items; accuracy = the answer word appears in the reply (exact match beside it).",
        "",
        "| metric | " + " | ".join(f"pos {p}" for p in positions) + " | all |",
        "|---|" + "---|" * (len(positions) + 1),
        "| accuracy | " + " | ".join(_pct(result["by_position"][p]) for p in positions) + f" | {_pct(result['accuracy'])} |",
        "| exact match | " + " | ".join(_pct(result["exact_by_position"][p]) for p in positions) + f" | {_pct(result['exact_match'])} |",
        "| items | " + " | ".join(str(result["count_by_position"][p]) for p in positions) + f" | {result['items']} |",
        *(
            [
                "",
                f"Spread (best minus worst position) {_pct(result['position_spread'])}; a truly flat curve at this "
                f"accuracy and these items per position spreads by {_pct(result['flat_spread'])} from sampling alone, "
                "so only a spread well above that is a position bias.",
            ]
            if "flat_spread" in result
            else []
        ),
    ]


def _markdown_clips(result: dict[str, Any]) -> list[str]:
    sampling = result["sampling"]
    frames = "all frames" if sampling["clip_frames"] is None else f"up to {sampling['clip_frames']} frames"
    lines = [
        f"{result['clips']} clips, {result['frames']} frames ({frames} per clip, every {sampling['frame_stride']}. frame); "
        "a clip is its frames as image slices, a narration its sentences as text slices. Grounding: the frame each "
        "sentence aligns to most lies in its gold span (accuracy), and the IoU of the frames aligned to it most with "
        "the gold frames. Localisation (no alignment, no order): each sentence alone picks the nearest frame alone.",
        "",
        "| encoder | T->V R@1 | T->V R@5 | T->V R@10 | V->T R@1 | V->T R@5 | V->T R@10 | grounding acc | mean IoU | localisation |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    chance = None
    for name, r in _encoders_of(result):
        grounding = r.get("grounding") or {}
        localisation = r.get("localisation") or {}
        chance = localisation.get("chance", chance)
        cells = _recall_cells(r.get("t2v")) + _recall_cells(r.get("v2t"))
        cells += [_pct(grounding.get("accuracy")), _pct(grounding.get("mean_iou")), _pct(localisation.get("accuracy"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "uniform_grounding" in result:
        u = result["uniform_grounding"]
        lines.append(
            "| equal split (order only) | - | - | - | - | - | - | "
            + f"{_pct(u['accuracy'])} | {_pct(u['mean_iou'])} | {_pct(chance)} (chance) |"
        )
        lines += ["", f"Grounding over {u['sentences']} sentences ({u['skipped_sentences']} without a sampled frame left out)."]
    return lines


MARKDOWN: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "retrieval": ("Image-text retrieval", _markdown_retrieval),
    "interleaved": ("Interleaved retrieval (VIST protocol)", _markdown_interleaved),
    "winoground": ("Winoground (embedding similarity)", _markdown_winoground),
    "mmvp": ("MMVP per visual pattern", _markdown_mmvp),
    "qa": ("Question answering and POPE", _markdown_qa),
    "captions": ("Captioning (BLEU-4, CIDEr-D)", _markdown_captions),
    "rag": ("Knowledge-base QA with retrieval (RAG)", _markdown_rag),
    "webqa": ("WebQA-style multi-source QA by position of the relevant source", _markdown_webqa),
    "clips": ("Clips: text-video retrieval and temporal grounding", _markdown_clips),
}


def make_pictures(results: dict[str, dict[str, Any]], out: Path) -> dict[str, str]:
    """MMVP per-pattern bars, the WebQA position curve and one clip's alignment; returns bench -> file name."""
    from sugar.eval.plots import plot_pattern_bars, plot_position_curve

    pictures: dict[str, str] = {}
    mmvp = results.get("mmvp")
    if mmvp is not None:
        series: dict[str, dict[str, float]] = {}
        if "embedding" in mmvp:
            series["model: embeddings"] = mmvp["embedding"]["per_pattern"]
        if "generation" in mmvp:
            series["model: two-choice (likelihood)"] = mmvp["generation"]["per_pattern"]
        if isinstance(mmvp.get("teacher"), dict) and "embedding" in mmvp["teacher"]:
            series["teacher: embeddings"] = mmvp["teacher"]["embedding"]["per_pattern"]
        if series:
            plot_pattern_bars(series, out / "mmvp_patterns.png")
            pictures["mmvp"] = "mmvp_patterns.png"
    webqa = results.get("webqa")
    if webqa is not None:
        positions = sorted(int(p) for p in webqa["by_position"])
        if positions == list(range(1, len(positions) + 1)):
            curves = {
                "keyword accuracy": [webqa["by_position"][str(p)] for p in positions],
                "exact match": [webqa["exact_by_position"][str(p)] for p in positions],
            }
            plot_position_curve(curves, out / "webqa_position.png")
            pictures["webqa"] = "webqa_position.png"
    example = (results.get("clips") or {}).get("example")
    if example is not None:
        from PIL import Image

        from sugar.eval.pictures import plot_clip_alignment

        frames: list[Any] = []
        for k, frame in enumerate(example["frames"]):
            frames.append(Image.open(frame).convert("RGB") if frame is not None and Path(frame).is_file() else f"frame {k + 1}")
        spans = [tuple(s) if s is not None else None for s in example["spans"]]
        plot_clip_alignment(
            example["alignment"], frames, example["sentences"], spans, out / "clip_alignment.png",
            title=f"clip {example['id']}: expected alignment of its frames with its narration",
        )
        pictures["clips"] = "clip_alignment.png"
    return pictures


def results_markdown(results: dict[str, dict[str, Any]], pictures: dict[str, str], command: str | None = None) -> str:
    lines = ["# Benchmark results", ""]
    if command:
        lines += ["Made with:", "", "```", command, "```", ""]
    lines += ["All numbers in percent. One JSON per benchmark beside this file holds every number.", ""]
    for name, result in results.items():
        title, table = MARKDOWN[name]
        lines += [f"## {title}", "", f"Split `{result['split']}`; {result['limit']['rule']}; {result['seconds']} s.", ""]
        lines += table(result)
        if name in pictures:
            lines += ["", f"![{title}]({pictures[name]})"]
        lines.append("")
    return "\n".join(lines)


def write_results(results: dict[str, dict[str, Any]], out: str | Path, command: str | None = None) -> Path:
    """<out>/<bench>.json for each benchmark, the pictures and <out>/results.md; returns results.md."""
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        atomic_write_text(directory / f"{name}.json", json.dumps(result, indent=2) + "\n")
    pictures = make_pictures(results, directory)
    path = directory / "results.md"
    atomic_write_text(path, results_markdown(results, pictures, command))
    return path
