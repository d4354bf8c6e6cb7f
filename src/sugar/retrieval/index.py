"""A FAISS inner-product index over L2-normalised embeddings (inner product = cosine), with ids.

Saved as a folder (index.faiss, ids.json, meta.json) written under a temporary name and renamed
into place, so an interrupted save never leaves a half-written index behind. Saving replaces an
earlier index or an empty folder, never a folder holding anything else.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class SearchResult:
    ids: list[list[str]]
    scores: np.ndarray  # (queries, k)
    indices: np.ndarray  # (queries, k) positions in the index


@dataclass
class VectorIndex:
    """Exact cosine search (`IndexFlatIP`): the collections here are small enough that exact
    search is fast, and exact results keep evaluation numbers free of ANN recall loss."""

    dim: int
    ids: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import faiss

        if self.dim < 1:
            raise ValueError(f"index dimension must be positive, got {self.dim}")
        self._index = faiss.IndexFlatIP(self.dim)

    @staticmethod
    def _as_matrix(vectors: torch.Tensor | np.ndarray, dim: int, what: str) -> np.ndarray:
        array = vectors.detach().cpu().float().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors, np.float32)
        if array.ndim != 2 or array.shape[1] != dim:
            raise ValueError(f"{what} must be (N, {dim}), got {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{what} contain NaN or inf")
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)

    @classmethod
    def build(cls, vectors: torch.Tensor | np.ndarray, ids: list[str], meta: dict[str, Any] | None = None) -> "VectorIndex":
        index = cls(dim=int(vectors.shape[1]), meta=dict(meta or {}))
        index.add(vectors, ids)
        return index

    def add(self, vectors: torch.Tensor | np.ndarray, ids: list[str]) -> None:
        matrix = self._as_matrix(vectors, self.dim, "vectors")
        if len(ids) != matrix.shape[0]:
            raise ValueError(f"got {matrix.shape[0]} vectors but {len(ids)} ids")
        clashes = set(ids) & set(self.ids) or (len(set(ids)) != len(ids) and {i for i in ids if ids.count(i) > 1})
        if clashes:
            raise ValueError(f"ids must be unique; repeated: {sorted(clashes)[:5]}")
        self._index.add(matrix)
        self.ids.extend(ids)

    def __len__(self) -> int:
        return self._index.ntotal

    def search(self, queries: torch.Tensor | np.ndarray, k: int) -> SearchResult:
        if len(self) == 0:
            raise ValueError("the index is empty")
        k = min(k, len(self))
        scores, indices = self._index.search(self._as_matrix(queries, self.dim, "queries"), k)
        return SearchResult([[self.ids[i] for i in row] for row in indices], scores, indices)

    def save(self, directory: str | Path) -> Path:
        import faiss

        from sugar.checks import is_index_dir

        directory = Path(directory)
        if directory.is_file() or (directory.is_dir() and any(directory.iterdir()) and not is_index_dir(directory)):
            raise FileExistsError(f"{directory} exists and is not a saved index; refusing to replace it")
        directory.parent.mkdir(parents=True, exist_ok=True)
        temporary = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir()
        faiss.write_index(self._index, str(temporary / "index.faiss"))
        (temporary / "ids.json").write_text(json.dumps(self.ids))
        (temporary / "meta.json").write_text(json.dumps({"dim": self.dim, **self.meta}, indent=2))
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        if directory.exists():
            os.replace(directory, old)
        os.replace(temporary, directory)
        shutil.rmtree(old, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "VectorIndex":
        import faiss

        directory = Path(directory)
        for name in ("index.faiss", "ids.json", "meta.json"):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory} is not a saved index: {name} is missing")
        try:
            meta = json.loads((directory / "meta.json").read_text())
            ids = json.loads((directory / "ids.json").read_text())
        except ValueError as error:
            raise ValueError(f"{directory}: meta.json or ids.json is not valid JSON ({error})") from None
        index = cls(dim=int(meta.pop("dim")), meta=meta)
        try:
            index._index = faiss.read_index(str(directory / "index.faiss"))
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
            raise ValueError(f"{directory / 'index.faiss'} is not a readable FAISS index ({reason})") from None
        index.ids = ids
        if len(index.ids) != index._index.ntotal or index._index.d != index.dim:
            raise ValueError(f"{directory}: ids.json ({len(index.ids)}) and index.faiss ({index._index.ntotal}) disagree")
        return index
