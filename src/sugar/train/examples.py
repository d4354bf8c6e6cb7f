"""Turning the world's task files (read with the real-format loaders) into training examples.

captions: one example per image (COCO Karpathy JSON), alternating image->caption and
caption->image forms; stories: the interleaved document, loss on every sentence; vqa: the LLaVA
conversation as a document, loss on the answers only.
"""

from __future__ import annotations

from pathlib import Path

from sugar.data import Conversation, ImageRef, load_coco_karpathy, load_interleaved, load_llava_conversations
from sugar.train.mixture import Segment, TrainingExample, caption_examples

IMAGE_TOKEN = "<image>"
KINDS = ("captions", "stories", "vqa")


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


def load_world_examples(world: Path, split: str, kinds: list[str]) -> dict[str, list[TrainingExample]]:
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown training data kind(s) {sorted(unknown)}; known: {list(KINDS)}")
    if not (world / "world.json").is_file():
        raise FileNotFoundError(f"{world} is not a built world (no world.json): run `sugar world --out {world}`")
    pools: dict[str, list[TrainingExample]] = {}
    if "captions" in kinds:
        records = load_coco_karpathy(world / "captions" / "dataset_coco.json", world, split=split)
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
    return pools


def tokenizer_corpus(world: Path) -> list[str]:
    """Every text a model trained on this world must be able to read or write: the training
    split's captions, stories, instructions, plus the RAG knowledge base (retrieved at test time)."""
    texts: list[str] = []
    for kind, examples in load_world_examples(world, "train", list(KINDS)).items():
        for example in examples:
            for segments, _ in example.alternates or ((example.segments, example.targets),):
                texts.extend(s for s in segments if isinstance(s, str))
    kb = world / "rag" / "kb.jsonl"
    if kb.is_file():
        texts.extend(t for d in load_interleaved(kb, world) for t in d.texts)
    questions = world / "rag" / "questions_train.json"
    if questions.is_file():
        texts.extend(text for c in load_llava_conversations(questions, world) for _, text in c.turns)
    return [t.replace(IMAGE_TOKEN, " ") for t in texts]
