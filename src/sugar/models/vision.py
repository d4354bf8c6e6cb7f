"""Vision towers for the composite backend, their image preprocessing, and the frozen-feature cache.

The tower is frozen (method.md: only the projector, the LM and the head train), so its output for
an image never changes: `FeatureCache` keeps it, keyed by a hash of the preprocessed pixels and the
tower's identity, in memory (bounded, least recently used first out) and optionally on disk, so
later epochs skip the tower. Preprocessing is PIL + numpy (torchvision does not run beside the
project's torch build).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from sugar.data.images import to_rgb


class SquareImageTransform:
    """Centre-crop to a square, resize to `size`, scale to [-1, 1]: EfficientNet-Lite's input format."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        out = np.empty((len(images), 3, self.size, self.size), dtype=np.float32)
        for index, image in enumerate(images):
            rgb = to_rgb(image)
            width, height = rgb.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            if (width, height) != (side, side):
                rgb = rgb.crop((left, top, left + side, top + side))
            if side != self.size:
                rgb = rgb.resize((self.size, self.size), Image.Resampling.BICUBIC)
            pixels = np.asarray(rgb, dtype=np.float32)
            out[index] = pixels.transpose(2, 0, 1) / 127.5 - 1.0
        return out


def pixel_key(pixels: np.ndarray) -> str:
    """Content key of one preprocessed image: equal pixels give equal features from one tower."""
    digest = hashlib.sha1(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Frozen-tower outputs by image key: a bounded in-memory LRU, plus an optional folder of .npy files.

    Disk entries are written to a temporary file and renamed, so a killed run never leaves a
    truncated entry that a later run would trust.
    """

    def __init__(self, max_items: int, directory: str | Path | None = None) -> None:
        self.max_items = max_items
        self.directory = Path(directory) if directory else None
        self._items: OrderedDict[str, Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_items > 0 or self.directory is not None

    def __len__(self) -> int:
        return len(self._items)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        name = hashlib.sha1(key.encode()).hexdigest()
        return self.directory / name[:2] / f"{name}.npy"

    def get(self, key: str) -> Tensor | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return item
        if self.directory is not None:
            path = self._path(key)
            if path.is_file():
                item = torch.from_numpy(np.load(path))
                self._remember(key, item)
                self.hits += 1
                return item
        self.misses += 1
        return None

    def put(self, key: str, value: Tensor) -> None:
        value = value.detach().to("cpu").contiguous()
        self._remember(key, value)
        if self.directory is not None:
            path = self._path(key)
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
                try:
                    with os.fdopen(handle, "wb") as stream:
                        np.save(stream, value.numpy())
                    os.replace(tmp, path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise

    def _remember(self, key: str, value: Tensor) -> None:
        if self.max_items <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class EfficientNetTower(nn.Module):
    """Pretrained EfficientNet-Lite0 (from its package, offline): (N, 3, S, S) -> (N, (S/32)^2, 1280)."""

    feature_dim = 1280

    def __init__(self, image_size: int) -> None:
        super().__init__()
        from sugar.efficientnet import load_efficientnet_lite0

        net = load_efficientnet_lite0(image_size)
        net._fc = nn.Identity()  # classifier unused: features come from extract_features
        self.net = net
        self.grid = image_size // 32
        self.tokens_per_image = self.grid * self.grid
        self.identity = f"efficientnet-lite0@{image_size}"

    def forward(self, pixel_values: Tensor) -> Tensor:
        features = self.net.extract_features(pixel_values)  # (N, 1280, S/32, S/32)
        return features.flatten(2).transpose(1, 2)


class PatchTower(nn.Module):
    """A small frozen random patch embedding: for unit tests and installs without the weight packages."""

    def __init__(self, image_size: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.feature_dim = dim
        self.tokens_per_image = (image_size // patch_size) ** 2
        self.identity = f"patch{patch_size}x{dim}@{image_size}"

    def forward(self, pixel_values: Tensor) -> Tensor:
        return torch.tanh(self.conv(pixel_values)).flatten(2).transpose(1, 2)


def build_vision_tower(name: str, image_size: int, patch_size: int, patch_dim: int) -> nn.Module:
    if name == "efficientnet-lite0":
        return EfficientNetTower(image_size)
    if name == "patch":
        return PatchTower(image_size, patch_size, patch_dim)
    raise ValueError(f"unknown vision_tower {name!r}; expected 'efficientnet-lite0' or 'patch'")
