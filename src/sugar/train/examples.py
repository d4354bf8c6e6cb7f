"""Turning the world's task files (read with the real-format loaders) into training examples.

captions: one example per image (COCO Karpathy JSON), alternating image->caption and
caption->image forms; stories: the interleaved document, loss on every sentence; vqa: the LLaVA
conversation as a document, loss on the answers only; rag: a knowledge-base question after its
gold document, laid out as retrieval-augmented generation lays it out, loss on the answer;
rag_pairs: a knowledge-base question as retrieval sees it (image and question) and its gold document,
a matched pair for L_d (no generative loss: neither view has an answer to learn);
webqa: six image-text sources then a question about one of them, loss on the answer;
clips: a clip's frames (CLIP_TRAIN_FRAMES of them, spread evenly) and its narration's sentences as
two views of one item, a matched pair for L_d as `sugar eval --bench clips` encodes them (no
generative loss).
"""

from __future__ import annotations

from pathlib import Path

from sugar.data import (
    ClipRecord,
    Conversation,
    Document,
    ImageRef,
    load_coco_karpathy,
    load_interleaved,
    load_llava_conversations,
    load_youcook2,
    world_clip_annotations,
)
from sugar.train.config import MIX_KINDS
from sugar.train.mixture import Segment, TrainingExample, caption_examples

IMAGE_TOKEN = "<image>"
KINDS = MIX_KINDS
# Frames of a training clip: 8 visual-token runs and a narration stay well inside max_length 256
# with the default tower's 16 tokens per image.
CLIP_TRAIN_FRAMES = 8


def _path_of(image: ImageRef) -> Segment:
    return image.path if image.path is not None else image.load()


def conversation_example(conversation: Conversation) -> TrainingExample:
    """Human turns are context (the image in place of `<image>`); gpt turns carry the loss."""
    segments: list[Segment] = []
    targets: list[int] = []
    for role, text in conversation.turns:
        if role == "gpt":
            targets.append(len(segments))
            segments.append(text)
            continue
        before, token, after = text.partition(IMAGE_TOKEN)
        if before.strip():
            segments.append(before.strip())
        if token and conversation.image is not None:
            segments.append(_path_of(conversation.image))
        if after.strip():
            segments.append(after.strip())
    return TrainingExample(tuple(segments), tuple(targets), "vqa", conversation.id)


def _document_segments(document: Document) -> list[Segment]:
    return [_path_of(s) if isinstance(s, ImageRef) else s for s in document.segments]


def rag_example(question: Conversation, knowledge_base: dict[str, Document]) -> TrainingExample:
    """The question answered with its first gold document in context (`augmented_prompt`'s layout
    for one retrieved document), so the model learns to read what it retrieves."""
    gold = question.meta.get("gold_doc_ids")
    if not isinstance(gold, list) or not gold or gold[0] not in knowledge_base:
        raise ValueError(f"RAG question {question.id}: 'gold_doc_ids' must name a knowledge-base document, got {gold!r}")
    asked = conversation_example(question)
    context = _document_segments(knowledge_base[gold[0]])
    targets = tuple(len(context) + t for t in asked.targets)
    return TrainingExample((*context, *asked.segments), targets, "rag", question.id)


def rag_pair_example(question: Conversation, knowledge_base: dict[str, Document]) -> TrainingExample:
    """The question as retrieval encodes it (everything before the answer: `evaluate_rag`'s query)
    and each gold document, as (query, document) view pairs."""
    gold = question.meta.get("gold_doc_ids")
    if not isinstance(gold, list) or not gold or any(g not in knowledge_base for g in gold):
        raise ValueError(f"RAG question {question.id}: 'gold_doc_ids' must name knowledge-base documents, got {gold!r}")
    asked = conversation_example(question)
    if not asked.targets:
        raise ValueError(f"RAG question {question.id} has no answer turn")
    query = asked.segments[: asked.targets[0]]
    views: list[tuple[tuple[Segment, ...], tuple[int, ...]]] = []
    for document_id in gold:
        views.extend([(tuple(query), ()), (tuple(_document_segments(knowledge_base[document_id])), ())])
    return TrainingExample(views[0][0], (), "rag_pairs", question.id, tuple(views))


def webqa_example(item: Document) -> TrainingExample:
    question, answer = item.meta.get("question"), item.meta.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        raise ValueError(f"WebQA item {item.id}: meta needs 'question' and 'answer' strings")
    segments = [*_document_segments(item), question, answer]
    return TrainingExample(tuple(segments), (len(segments) - 1,), "webqa", item.id)


def clip_pair_example(clip: ClipRecord, frames: int = CLIP_TRAIN_FRAMES, stride: int = 1) -> TrainingExample:
    """The clip's sampled frames and its narration (one text segment per sentence), as two views."""
    sampled = clip.frames(num_frames=frames, stride=stride)
    images: tuple[Segment, ...] = tuple(_path_of(image) for image in sampled.images)
    views = ((images, ()), (tuple(clip.sentences), ()))
    return TrainingExample(images, (), "clips", clip.id, views)


def load_world_examples(
    world: Path,
    split: str,
    kinds: list[str],
    max_caption_images: int | None = None,
    clip_frames: int = CLIP_TRAIN_FRAMES,
) -> dict[str, list[TrainingExample]]:
    """The training pools by kind. `max_caption_images` keeps the first N caption images in file
    order: the same images `sugar teachers fit --max-train-images N` reads, whose teacher features
    are then already cached. `clip_frames`: frames per clip (spread evenly over it)."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown training data kind(s) {sorted(unknown)}; known: {list(KINDS)}")
    if not (world / "world.json").is_file():
        raise FileNotFoundError(f"{world} is not a built world (no world.json): run `sugar world --out {world}`")
    pools: dict[str, list[TrainingExample]] = {}
    if "captions" in kinds:
        records = load_coco_karpathy(world / "captions" / "dataset_coco.json", world, split=split)
        if max_caption_images is not None:
            records = records[:max_caption_images]
        pools["captions"] = caption_examples([(_path_of(r.image), r.captions, r.image_id) for r in records])
    if "stories" in kinds:
        stories = []
        for document in load_interleaved(world / "stories" / f"{split}.jsonl", world):
            segments = tuple(_path_of(s) if isinstance(s, ImageRef) else s for s in document.segments)
            targets = tuple(i for i, s in enumerate(segments) if isinstance(s, str))
            stories.append(TrainingExample(segments, targets, "stories", document.id))
        pools["stories"] = stories
    if "vqa" in kinds:
        conversations = load_llava_conversations(world / "instruct" / f"{split}.json", world)
        pools["vqa"] = [conversation_example(c) for c in conversations]
    if "rag" in kinds or "rag_pairs" in kinds:
        knowledge_base = {d.id: d for d in load_interleaved(world / "rag" / "kb.jsonl", world)}
        questions = load_llava_conversations(world / "rag" / f"questions_{split}.json", world)
        if "rag" in kinds:
            pools["rag"] = [rag_example(q, knowledge_base) for q in questions]
        if "rag_pairs" in kinds:
            pools["rag_pairs"] = [rag_pair_example(q, knowledge_base) for q in questions]
    if "webqa" in kinds:
        pools["webqa"] = [webqa_example(item) for item in load_interleaved(world / "webqa" / f"{split}.jsonl", world)]
    if "clips" in kinds:
        annotations = world_clip_annotations(world, split, "the clips mix kind", "set mix.clips=0")
        clips = load_youcook2(annotations, world / "clips" / split, split=split)
        pools["clips"] = [clip_pair_example(clip, clip_frames) for clip in clips]
    return pools


def tokenizer_corpus(world: Path) -> list[str]:
    """Every text a model trained on this world must be able to read or write: the training
    split's captions, stories, instructions, plus the RAG knowledge base (retrieved at test time).

    Clip narrations use the stories' words and stay out, so a world's tokenizer is the same with
    or without clips (and worlds built before clips still have one)."""
    texts: list[str] = []
    for examples in load_world_examples(world, "train", [k for k in KINDS if k != "clips"]).values():
        for example in examples:
            for segments, _ in example.alternates or ((example.segments, example.targets),):
                texts.extend(s for s in segments if isinstance(s, str))
    kb = world / "rag" / "kb.jsonl"
    if kb.is_file():  # every document may be retrieved at test time, not only the training ones
        texts.extend(t for d in load_interleaved(kb, world) for t in d.texts)
    return [t.replace(IMAGE_TOKEN, " ") for t in texts]
