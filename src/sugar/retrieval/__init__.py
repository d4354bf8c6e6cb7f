"""Vector search over the model's own embeddings, and retrieval-augmented generation with it."""

from sugar.retrieval.index import VectorIndex

__all__ = ["VectorIndex"]
