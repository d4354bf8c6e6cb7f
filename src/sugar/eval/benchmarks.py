"""Benchmarks over loaded records: each takes an encoder or a model and returns standard metrics.

An *encoder* is anything with `encode_documents(documents) -> (N, d)` L2-normalised vectors,
where a document is a list of texts and PIL images: a SugarModel (through `ModelEncoder`) or the
cross-modal teacher (the CLIP-style baseline, through `TeacherEncoder`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from sugar.data import CaptionedImage, Conversation, ImageRef, WinogroundItem
from sugar.eval.metrics import binary_scores, exact_match, recall_at_k, winoground_scores, yes_no

DocumentItem = str | Image.Image


class Encoder(Protocol):
    def encode_documents(self, documents: list[list[DocumentItem]]) -> Tensor: ...


class ModelEncoder:
    """A SugarModel as an encoder: each document is embedded as one sequence (method.md sec. 8)."""

    def __init__(self, model: Any, batch_size: int = 32, show_progress: bool = False) -> None:
        self.model = model
        self.batch_size = batch_size
        self.show_progress = show_progress

    def encode_documents(self, documents: list[list[DocumentItem]]) -> Tensor:
        return self.model.encode(documents, batch_size=self.batch_size, show_progress=self.show_progress)


class TeacherEncoder:
    """The cross-modal teacher as a CLIP-style encoder. A document with several segments is the
    normalised mean of its segments' embeddings: the usual way to feed interleaved input to CLIP."""

    def __init__(self, suite: Any) -> None:
        self.suite = suite

    def encode_documents(self, documents: list[list[DocumentItem]]) -> Tensor:
        flat: list[DocumentItem] = [item for document in documents for item in document]
        image_positions = [i for i, item in enumerate(flat) if isinstance(item, Image.Image)]
        text_positions = [i for i, item in enumerate(flat) if isinstance(item, str)]
        vectors: list[Tensor | None] = [None] * len(flat)
        if image_positions:
            for i, v in zip(image_positions, self.suite.encode_images([flat[i] for i in image_positions])):
                vectors[i] = v
        if text_positions:
            for i, v in zip(text_positions, self.suite.encode_texts([flat[i] for i in text_positions])):
                vectors[i] = v
        out, start = [], 0
        for document in documents:
            stacked = torch.stack([vectors[i] for i in range(start, start + len(document))])  # type: ignore[misc]
            out.append(torch.nn.functional.normalize(stacked.mean(0), dim=0))
            start += len(document)
        return torch.stack(out)


def _load(image: ImageRef) -> Image.Image:
    return image.load()


def evaluate_retrieval(encoder: Encoder, records: Sequence[CaptionedImage], ks: Sequence[int] = (1, 5, 10)) -> dict[str, dict[str, float]]:
    """Text->image and image->text recall@k over a caption set (COCO protocol: every caption is
    a query for its image; every image is a query with all its captions as positives)."""
    captions = [caption for record in records for caption in record.captions]
    owner = [index for index, record in enumerate(records) for _ in record.captions]
    text_vectors = encoder.encode_documents([[c] for c in captions])
    image_vectors = encoder.encode_documents([[_load(r.image)] for r in records])
    similarity = text_vectors @ image_vectors.T
    captions_of: dict[int, list[int]] = defaultdict(list)
    for caption_index, image_index in enumerate(owner):
        captions_of[image_index].append(caption_index)
    return {
        "t2i": recall_at_k(similarity, [[o] for o in owner], ks),
        "i2t": recall_at_k(similarity.T, [captions_of[i] for i in range(len(records))], ks),
    }


def evaluate_winoground(encoder: Encoder, items: Sequence[WinogroundItem]) -> dict[str, Any]:
    """Winoground text / image / group scores from embedding similarity, overall and per tag."""
    captions = encoder.encode_documents([[c] for item in items for c in (item.caption_0, item.caption_1)])
    images = encoder.encode_documents([[_load(i)] for item in items for i in (item.image_0, item.image_1)])
    captions = captions.view(len(items), 2, -1)
    images = images.view(len(items), 2, -1)
    similarity = torch.einsum("ncd,nid->nci", captions, images)
    result: dict[str, Any] = winoground_scores(similarity)
    by_tag: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_tag[item.tag].append(index)
    result["by_tag"] = {tag: winoground_scores(similarity[idx]) for tag, idx in sorted(by_tag.items())}
    return result


def question_and_answer(conversation: Conversation) -> tuple[list[DocumentItem], str]:
    """The first question (with the image in place of `<image>`) and its reference answer."""
    if len(conversation.turns) < 2:
        raise ValueError(f"conversation {conversation.id} has no answer turn")
    question = conversation.turns[0][1]
    before, token, after = question.partition("<image>")
    prompt: list[DocumentItem] = []
    if before.strip():
        prompt.append(before.strip())
    if token and conversation.image is not None:
        prompt.append(_load(conversation.image))
    if after.strip():
        prompt.append(after.strip())
    return prompt, conversation.turns[1][1]


def evaluate_qa(
    model: Any, conversations: Sequence[Conversation], max_new_tokens: int = 16, show_progress: bool = False
) -> dict[str, Any]:
    """Normalised exact-match accuracy of generated answers; POPE-style yes/no questions (those
    with a `pope` category in their metadata) are also scored per negative type."""
    correct = 0
    pope: dict[str, tuple[list[str | None], list[str]]] = defaultdict(lambda: ([], []))
    for conversation in tqdm(conversations, desc="qa", disable=not show_progress):
        prompt, answer = question_and_answer(conversation)
        prediction = model.generate(prompt, max_new_tokens=max_new_tokens)
        correct += exact_match(prediction, answer)
        category = str(conversation.meta.get("category", ""))
        if category.startswith("pope"):
            kind = category.split("-", 1)[1] if "-" in category else "all"
            pope[kind][0].append(yes_no(prediction))
            pope[kind][1].append(yes_no(answer) or answer)
    result: dict[str, Any] = {"accuracy": correct / max(len(conversations), 1), "count": len(conversations)}
    if pope:
        result["pope"] = {kind: binary_scores(p, l) for kind, (p, l) in sorted(pope.items())}
    return result
