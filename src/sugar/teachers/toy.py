"""Toy experts: tiny, deterministic, weight-free stand-ins for the real ones.

They let fast tests (here and in training code) build a whole `TeacherSuite` in milliseconds
and without any weight package: the image expert reads a coarse colour grid, the text expert
a hashed bag of words and word pairs, each through a fixed random projection seeded by `seed`.
They carry real signal about the procedural world (colours, positions, words), so a LiT fit on
them learns something, but they are not models of anything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from sugar.data.images import to_rgb
from sugar.kernels import IMAGE, TEXT
from sugar.teachers.encoders import SliceEncoder


def _projection(in_dim: int, out_dim: int, seed: int) -> nn.Linear:
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(in_dim, out_dim, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out_dim, in_dim, generator=generator) / in_dim**0.5)
    return layer.requires_grad_(False)


class ToyImageExpert(SliceEncoder):
    """Mean colour of each cell of a grid x grid partition, centred, randomly projected."""

    modality = IMAGE

    def __init__(
        self, dim: int = 32, grid: int = 4, seed: int = 0, batch_size: int = 256, device: str = "cpu"
    ) -> None:
        super().__init__()
        self.dim, self.grid, self.seed, self.batch_size = dim, grid, seed, batch_size
        self.projection = _projection(3 * grid * grid, dim, seed)
        self.batches = 0  # calls of the model, for tests of the cache

    def spec(self) -> dict[str, Any]:
        return {"kind": "toy-image", "dim": self.dim, "grid": self.grid, "seed": self.seed}

    def identity(self) -> dict[str, Any]:
        return self.spec()

    def weight_modules(self) -> list[nn.Module]:
        return [self.projection]

    def _encode_batch(self, items: Sequence[Image.Image]) -> Tensor:
        self.batches += 1
        cells = [
            np.asarray(to_rgb(image).resize((self.grid, self.grid), Image.Resampling.BOX), dtype=np.float32)
            for image in items
        ]
        pixels = torch.from_numpy(np.stack(cells)).reshape(len(items), -1) / 127.5 - 1.0
        return self.projection(pixels)


class ToyTextExpert(SliceEncoder):
    """Counts of hashed lower-cased words and adjacent word pairs, randomly projected."""

    modality = TEXT

    def __init__(
        self, dim: int = 32, buckets: int = 512, seed: int = 0, batch_size: int = 256, device: str = "cpu"
    ) -> None:
        super().__init__()
        self.dim, self.buckets, self.seed, self.batch_size = dim, buckets, seed, batch_size
        self.projection = _projection(buckets, dim, seed + 1)
        self.batches = 0

    def spec(self) -> dict[str, Any]:
        return {"kind": "toy-text", "dim": self.dim, "buckets": self.buckets, "seed": self.seed}

    def identity(self) -> dict[str, Any]:
        return self.spec()

    def weight_modules(self) -> list[nn.Module]:
        return [self.projection]

    def _bucket(self, token: str) -> int:
        return int.from_bytes(hashlib.sha256(token.encode("utf-8")).digest()[:4], "little") % self.buckets

    def _encode_batch(self, items: Sequence[str]) -> Tensor:
        self.batches += 1
        counts = torch.zeros(len(items), self.buckets)
        for row, text in enumerate(items):
            words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
            for token in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                counts[row, self._bucket(token)] += 1.0
        # A constant column keeps the empty string (all-zero counts) off the zero vector.
        return self.projection(counts) + 1e-3 * self.projection.weight.sum(dim=1)
