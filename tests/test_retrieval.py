"""The vector index: exact search, ids, atomic save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sugar.retrieval import VectorIndex


def test_search_returns_the_nearest_by_cosine(tmp_path: Path) -> None:
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    index = VectorIndex.build(vectors, ["a", "b", "c"], meta={"model": "x"})
    result = index.search(torch.tensor([[0.1, 1.0], [3.0, 0.0]]), k=2)
    assert result.ids == [["b", "c"], ["a", "c"]]
    assert result.scores[1, 0] == pytest.approx(1.0)
    saved = index.save(tmp_path / "index")
    loaded = VectorIndex.load(saved)
    assert loaded.ids == ["a", "b", "c"] and loaded.meta == {"model": "x"}
    np.testing.assert_allclose(loaded.search(torch.tensor([[0.1, 1.0]]), k=3).scores, index.search(torch.tensor([[0.1, 1.0]]), k=3).scores)
    assert not list(tmp_path.glob(".*tmp*"))


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="ids must be unique"):
        VectorIndex.build(torch.eye(2), ["a", "a"])
    with pytest.raises(ValueError, match=r"vectors must be \(N, 2\)"):
        VectorIndex(dim=2).add(torch.zeros(3), ["a"])
    with pytest.raises(ValueError, match="NaN"):
        VectorIndex.build(torch.tensor([[float("nan"), 1.0]]), ["a"])
    with pytest.raises(FileNotFoundError, match="index.faiss is missing"):
        VectorIndex.load(Path("/nonexistent-index"))
