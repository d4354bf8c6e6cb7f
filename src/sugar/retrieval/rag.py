"""Retrieval-augmented generation with one model: it embeds the query, retrieves from its own
index, and reads the retrieved documents as interleaved context (method.md section 8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from sugar.retrieval.index import VectorIndex

DocumentItem = str | Image.Image


def retrieve(model: Any, query: Sequence[DocumentItem], index: VectorIndex, k: int) -> tuple[list[str], list[float]]:
    vector = model.encode([list(query)], batch_size=1, show_progress=False)
    result = index.search(vector, k)
    return result.ids[0], [float(s) for s in result.scores[0]]


def augmented_prompt(
    query: Sequence[DocumentItem], retrieved: Sequence[Sequence[DocumentItem]]
) -> list[DocumentItem]:
    """Retrieved documents first (most relevant last, nearest the question), then the query."""
    prompt: list[DocumentItem] = []
    for document in reversed(list(retrieved)):
        prompt.extend(document)
    prompt.extend(query)
    return prompt


def generate_with_retrieval(
    model: Any,
    query: Sequence[DocumentItem],
    index: VectorIndex,
    documents: Mapping[str, Sequence[DocumentItem]],
    k: int = 1,
    max_new_tokens: int = 32,
) -> tuple[str, list[str]]:
    """Answer `query` with the k documents the model itself retrieves; returns (answer, ids)."""
    ids, _ = retrieve(model, query, index, k)
    missing = [i for i in ids if i not in documents]
    if missing:
        raise KeyError(f"index returned ids not in the document store: {missing[:5]}")
    answer = model.generate(augmented_prompt(query, [documents[i] for i in ids]), max_new_tokens=max_new_tokens)
    return answer, ids
