"""Vector search over the model's own embeddings, and retrieval-augmented generation with it."""

from __future__ import annotations

from typing import Any

__all__ = ["VectorIndex", "generate_with_retrieval"]


def __getattr__(name: str) -> Any:
    # imported on first use, so `sugar --help` does not pay for torch and faiss
    if name == "VectorIndex":
        from sugar.retrieval.index import VectorIndex

        return VectorIndex
    if name == "generate_with_retrieval":
        from sugar.retrieval.rag import generate_with_retrieval

        return generate_with_retrieval
    raise AttributeError(f"module 'sugar.retrieval' has no attribute {name!r}")
