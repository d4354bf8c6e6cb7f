"""The slice-feature cache: teachers run once per distinct slice, ever.

Keys are content hashes: sha256 of the UTF-8 text, or of the decoded RGB pixels plus the image
size, so the same picture loaded twice (or from two files) hits. Each encoder gets its own
folder named by its fingerprint (weights + preprocessing), so features of two different
teachers never mix.

On disk a folder holds `encoder.json` (what the encoder is) and shards
`shard-<random>.safetensors` with two tensors, `keys` (N, 32) uint8 and `features` (N, dim)
float32. Every file is written to a hidden temporary name, synced and then `os.replace`d, so
a reader never sees half a file, and several processes (DDP ranks) can share one folder: each
writes its own shards and picks up the others' on its next miss. An in-memory table sits on top.

A shard that cannot be read (truncated or damaged by something outside this module) is moved
aside to `<name>.corrupt` with a warning naming it; its slices are recomputed on demand. A
folder whose `encoder.json` names another encoder raises an error instead, since that is a
configuration mistake, not damage.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sugar.data.images import to_rgb
from sugar.fileio import atomic_write_bytes

KEY_BYTES = 32
SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".safetensors"
# Misses counted from which a progress bar is shown when the caller leaves it to us.
PROGRESS_FROM = 1024
# A reader that finds more shards than this merges the small ones, keeping opens cheap.
MAX_SHARDS = 64
MERGE_BELOW = 8192


class Encoder(Protocol):
    """What the cache and the suite need from an encoder (see `sugar.teachers.encoders`)."""

    modality: int
    dim: int

    def identity(self) -> dict[str, Any]: ...

    def fingerprint(self) -> str: ...

    def encode(
        self,
        items: Sequence[Any],
        batch_size: int | None = None,
        progress: bool | None = None,
        keys: Sequence[bytes] | None = None,
    ) -> Tensor: ...


def content_key(item: str | Image.Image) -> bytes:
    """32-byte sha256 of a slice's content: UTF-8 text, or RGB pixels with the image size."""
    if isinstance(item, str):
        return hashlib.sha256(b"text\0" + item.encode("utf-8")).digest()
    if isinstance(item, Image.Image):
        rgb = to_rgb(item)
        digest = hashlib.sha256(f"image\0{rgb.width}x{rgb.height}\0".encode())
        digest.update(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)).data)
        return digest.digest()
    raise TypeError(f"a slice is a str or a PIL image, got {type(item).__name__}")


class FeatureCache:
    """Features by content key for one encoder: a dict in memory over an optional shard folder."""

    def __init__(
        self, directory: str | os.PathLike[str] | None, dim: int, description: dict[str, Any]
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.dim = dim
        self.description = description
        self._rows: dict[bytes, Tensor] = {}
        self._loaded: set[str] = set()
        self._shard_rows: dict[str, int] = {}  # rows of each shard file present on disk
        if self.directory is not None:
            self._claim_directory()
            self.refresh()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: bytes) -> bool:
        return key in self._rows

    def _claim_directory(self) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = self.directory / "encoder.json"
        if marker.exists():
            try:
                found = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"feature cache: {marker} is not valid JSON ({error}); delete the folder"
                ) from error
            if (
                found.get("fingerprint") != self.description.get("fingerprint")
                or found.get("dim") != self.dim
            ):
                raise ValueError(
                    f"feature cache: {marker} describes another encoder (fingerprint "
                    f"{found.get('fingerprint')!r}, dim {found.get('dim')!r}); expected fingerprint "
                    f"{self.description.get('fingerprint')!r}, dim {self.dim}"
                )
            return
        payload = dict(self.description, dim=self.dim)
        atomic_write_bytes(marker, json.dumps(payload, indent=2, sort_keys=True).encode("utf-8"))

    def _shard_names(self) -> list[str]:
        assert self.directory is not None
        return sorted(
            name
            for name in os.listdir(self.directory)
            if name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX)
        )

    def _read_shard(self, path: Path) -> tuple[Tensor, Tensor] | None:
        """(keys, features) of one shard; None if it vanished (merged by another process)."""
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
            keys, features = tensors["keys"], tensors["features"]
            if keys.dtype != torch.uint8 or keys.dim() != 2 or keys.shape[1] != KEY_BYTES:
                raise ValueError(
                    f"'keys' must be uint8 (N, {KEY_BYTES}), got {keys.dtype} {tuple(keys.shape)}"
                )
            if features.dtype != torch.float32 or tuple(features.shape) != (keys.shape[0], self.dim):
                raise ValueError(
                    f"'features' must be float32 ({keys.shape[0]}, {self.dim}), "
                    f"got {features.dtype} {tuple(features.shape)}"
                )
            if not torch.isfinite(features).all():
                raise ValueError("'features' holds non-finite values")
        except FileNotFoundError:
            return None
        except Exception as error:  # any decoding failure means the file is damaged
            self._quarantine(path, error)
            return None
        return keys, features

    def _quarantine(self, path: Path, error: Exception) -> None:
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return
        warnings.warn(
            f"feature cache: {path} is unreadable ({error}); moved it to {aside.name} and will "
            "recompute its slices",
            RuntimeWarning,
            stacklevel=3,
        )

    def refresh(self) -> None:
        """Load shards written since the last look (by this or another process)."""
        if self.directory is None:
            return
        for name in self._shard_names():
            if name in self._loaded:
                continue
            shard = self._read_shard(self.directory / name)
            self._loaded.add(name)
            if shard is None:
                continue
            keys, features = shard
            self._shard_rows[name] = keys.shape[0]
            for index, key in enumerate(keys.numpy()):
                self._rows.setdefault(key.tobytes(), features[index])
        if len(self._shard_rows) > MAX_SHARDS:
            self.compact()

    def compact(self) -> None:
        """Merge the small shards into one: written first, then the merged ones removed.

        Only shards under MERGE_BELOW rows are merged, so the big shards of a bulk
        precomputation are never rewritten.
        """
        if self.directory is None:
            return
        small = sorted(name for name, rows in self._shard_rows.items() if rows < MERGE_BELOW)
        parts = []
        for name in small:
            shard = self._read_shard(self.directory / name)
            if shard is None:  # merged away by another process, or quarantined
                self._shard_rows.pop(name, None)
            else:
                parts.append((name, shard))
        if len(parts) < 2:
            return
        keys = torch.cat([shard[0] for _, shard in parts])
        features = torch.cat([shard[1] for _, shard in parts])
        self._write_shard([bytes(row) for row in keys.numpy()], features)
        for name, _ in parts:
            try:
                (self.directory / name).unlink()
            except FileNotFoundError:
                pass
            self._shard_rows.pop(name, None)

    def _write_shard(self, keys: list[bytes], features: Tensor) -> str:
        from safetensors.torch import save

        assert self.directory is not None
        name = f"{SHARD_PREFIX}{uuid.uuid4().hex}{SHARD_SUFFIX}"
        key_tensor = torch.from_numpy(
            np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES).copy()
        )
        data = save({"keys": key_tensor, "features": features.float().contiguous()})
        atomic_write_bytes(self.directory / name, data)
        self._loaded.add(name)
        self._shard_rows[name] = len(keys)
        return name

    def get(self, keys: Sequence[bytes]) -> list[Tensor | None]:
        return [self._rows.get(key) for key in keys]

    def put(self, keys: Sequence[bytes], features: Tensor) -> None:
        """Store new rows in memory and, with a folder, as one new shard."""
        if len(keys) != features.shape[0] or features.shape[1:] != (self.dim,):
            raise ValueError(
                f"put: {len(keys)} keys need features of shape ({len(keys)}, {self.dim}), "
                f"got {tuple(features.shape)}"
            )
        if not keys:
            return
        features = features.detach().float().cpu().contiguous()
        for index, key in enumerate(keys):
            if len(key) != KEY_BYTES:
                raise ValueError(f"cache keys are {KEY_BYTES}-byte digests, got {len(key)} bytes")
            self._rows[key] = features[index]
        if self.directory is not None:
            self._write_shard(list(keys), features)
            if len(self._shard_rows) > MAX_SHARDS:
                self.compact()


class CachedEncoder:
    """An encoder behind a `FeatureCache`: only slices never seen before reach the model.

    `computed` counts the slices actually encoded, so callers (and tests) can check reuse.
    """

    def __init__(
        self, encoder: Encoder, cache_root: str | os.PathLike[str] | None = None, flush_every: int = 4096
    ) -> None:
        self.encoder = encoder
        self.flush_every = flush_every
        self.modality = encoder.modality
        self.dim = encoder.dim
        identity = encoder.identity()
        fingerprint = encoder.fingerprint()
        directory = None
        if cache_root is not None:
            directory = Path(cache_root) / f"{identity.get('kind', 'encoder')}-{fingerprint[:32]}"
        self.cache = FeatureCache(directory, self.dim, {"fingerprint": fingerprint, "identity": identity})
        self.computed = 0

    def identity(self) -> dict[str, Any]:
        return self.encoder.identity()

    def fingerprint(self) -> str:
        return self.encoder.fingerprint()

    def encode(
        self,
        items: Sequence[Any],
        batch_size: int | None = None,
        progress: bool | None = None,
        keys: Sequence[bytes] | None = None,
    ) -> Tensor:
        """Cached rows where present; the misses (each distinct slice once) encoded in batches."""
        if keys is None:
            keys = [content_key(item) for item in items]
        elif len(keys) != len(items):
            raise ValueError(f"encode: got {len(keys)} keys for {len(items)} items")
        rows = self.cache.get(keys)
        if any(row is None for row in rows):
            self.cache.refresh()  # another process may have written them meanwhile
            rows = self.cache.get(keys)
        first_miss: dict[bytes, int] = {}
        for index, (key, row) in enumerate(zip(keys, rows, strict=True)):
            if row is None and key not in first_miss:
                first_miss[key] = index
        if first_miss:
            from tqdm.auto import tqdm

            missing = list(first_miss.items())
            show = len(missing) >= PROGRESS_FROM if progress is None else progress
            name = type(self.encoder).__name__
            with tqdm(total=len(missing), desc=name, unit="slice", disable=not show, leave=False) as bar:
                # Stored chunk by chunk, so an interrupted run keeps what it computed.
                for start in range(0, len(missing), self.flush_every):
                    chunk = missing[start : start + self.flush_every]
                    features = self.encoder.encode(
                        [items[i] for _, i in chunk], batch_size=batch_size, progress=False
                    )
                    self.cache.put([key for key, _ in chunk], features)
                    self.computed += len(chunk)
                    bar.update(len(chunk))
            rows = self.cache.get(keys)
        if not rows:
            return torch.empty(0, self.dim)
        return torch.stack(rows)  # type: ignore[arg-type]
