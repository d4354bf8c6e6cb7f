"""`TeacherSuite`: the three frozen teachers behind the Triple Kernel (method.md section 4).

    suite = TeacherSuite.load("runs/demo/teachers")          # written by `sugar teachers fit`
    feats = suite.slice_features(["a red circle", image])    # (N, expert_dim + cross_dim)
    K = gak_matrix(x, lengths, kernel=suite.kernel, x_modality=..., delta=...)

A slice vector is [same-modality expert part, zero-padded to `expert_dim` | cross-modal part],
each part L2-normalised (`TripleKernel.pack`): image slices carry the image expert, text slices
the text expert, and both carry the cross-modal embedding. Every encoder sits behind the
slice-feature cache, so a slice is encoded once per teacher, across runs and processes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from sugar.kernels import IMAGE, TEXT, SquaredEuclidean, TripleKernel
from sugar.teachers.cache import CachedEncoder, Encoder, atomic_write_bytes, content_key
from sugar.teachers.cross import ClipTowers, HeadConfig, LiTHeads, ProjectedEncoder
from sugar.teachers.encoders import SliceEncoder, build_encoder

SUITE_FILE = "suite.json"
HEADS_FILE = "lit_heads.safetensors"
FORMAT = "sugar-teachers"
FORMAT_VERSION = 1
DEFAULT_CACHE = "feature-cache"  # folder inside a saved suite used when no cache_dir is given

Slice = str | Image.Image


def _as_slice(item: Any, index: int) -> Slice:
    """A str or PIL image; a `sugar.data.ImageRef` is decoded."""
    if isinstance(item, (str, Image.Image)):
        return item
    from sugar.data import ImageRef

    if isinstance(item, ImageRef):
        return item.load()
    raise TypeError(f"slice {index}: expected a str, a PIL image or an ImageRef, got {type(item).__name__}")


class TeacherSuite:
    """Image expert + text expert + cross-modal teacher (fitted LiT heads or CLIP), all frozen and cached.

    Experts may be passed already wrapped in a `CachedEncoder` (then `cache_dir` does not apply
    to them), so a caller that has just filled a cache hands it over instead of rereading it.
    """

    def __init__(
        self,
        image_expert: Encoder,
        text_expert: Encoder,
        cross: LiTHeads | ClipTowers,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if image_expert.modality != IMAGE or text_expert.modality != TEXT:
            raise ValueError("TeacherSuite needs an image expert (modality 0) and a text expert (modality 1)")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cross = cross
        self.image_expert = _cached(image_expert, self.cache_dir)
        self.text_expert = _cached(text_expert, self.cache_dir)
        self.raw_image_expert = self.image_expert.encoder
        self.raw_text_expert = self.text_expert.encoder
        if isinstance(cross, LiTHeads):
            if (cross.config.image_dim, cross.config.text_dim) != (image_expert.dim, text_expert.dim):
                raise ValueError(
                    f"LiT heads expect expert widths ({cross.config.image_dim}, {cross.config.text_dim}), "
                    f"the experts give ({image_expert.dim}, {text_expert.dim})"
                )
            cross.eval().requires_grad_(False)
            self.cross_image: Encoder = ProjectedEncoder(self.image_expert, cross)
            self.cross_text: Encoder = ProjectedEncoder(self.text_expert, cross)
        elif isinstance(cross, ClipTowers):
            self.cross_image = CachedEncoder(cross.image, self.cache_dir)
            self.cross_text = CachedEncoder(cross.text, self.cache_dir)
        else:
            raise TypeError(f"cross must be LiTHeads or ClipTowers, got {type(cross).__name__}")
        self.expert_dim = max(image_expert.dim, text_expert.dim)
        self.cross_dim = self.cross_image.dim
        self.dim = self.expert_dim + self.cross_dim
        self._kernel = TripleKernel(self.expert_dim)

    # --- kernels -----------------------------------------------------------------------------

    @property
    def kernel(self) -> TripleKernel:
        """The Triple Kernel that reads `slice_features`."""
        return self._kernel

    @property
    def cross_modal_kernel(self) -> SquaredEuclidean:
        """The kernel of the cross-modal-only ablation (reads `cross_modal_features`)."""
        return SquaredEuclidean()

    def fingerprint(self) -> str:
        parts = [
            e.fingerprint() for e in (self.image_expert, self.text_expert, self.cross_image, self.cross_text)
        ]
        return hashlib.sha256("/".join(parts).encode()).hexdigest()

    # --- features ----------------------------------------------------------------------------

    @staticmethod
    def modality_ids(slices: Sequence[Any]) -> Tensor:
        """(N,) long: 0 for images, 1 for texts (`sugar.kernels.IMAGE` / `TEXT`)."""
        return torch.tensor([TEXT if isinstance(s, str) else IMAGE for s in slices], dtype=torch.long)

    def _split(self, slices: Sequence[Any]) -> tuple[list[Slice], list[bytes], list[int], list[int]]:
        items = [_as_slice(item, index) for index, item in enumerate(slices)]
        keys = [content_key(item) for item in items]
        images = [i for i, item in enumerate(items) if not isinstance(item, str)]
        texts = [i for i, item in enumerate(items) if isinstance(item, str)]
        return items, keys, images, texts

    def _encode(
        self, encoder: Encoder, items: list[Slice], keys: list[bytes], rows: list[int], **kw: Any
    ) -> Tensor:
        return encoder.encode([items[i] for i in rows], keys=[keys[i] for i in rows], **kw)

    def slice_features(
        self, slices: Sequence[Any], batch_size: int | None = None, progress: bool | None = None
    ) -> Tensor:
        """(N, expert_dim + cross_dim) Triple-Kernel slice vectors, in input order."""
        items, keys, images, texts = self._split(slices)
        out = torch.zeros(len(items), self.dim)
        kw = {"batch_size": batch_size, "progress": progress}
        for rows, expert, cross in (
            (images, self.image_expert, self.cross_image),
            (texts, self.text_expert, self.cross_text),
        ):
            if rows:
                packed = self._kernel.pack(
                    self._encode(expert, items, keys, rows, **kw),
                    self._encode(cross, items, keys, rows, **kw),
                )
                out[torch.tensor(rows)] = packed
        return out

    def cross_modal_features(
        self, slices: Sequence[Any], batch_size: int | None = None, progress: bool | None = None
    ) -> Tensor:
        """(N, cross_dim) cross-modal part only, for the ablation without the experts."""
        items, keys, images, texts = self._split(slices)
        out = torch.zeros(len(items), self.cross_dim)
        kw = {"batch_size": batch_size, "progress": progress}
        for rows, cross in ((images, self.cross_image), (texts, self.cross_text)):
            if rows:
                out[torch.tensor(rows)] = self._encode(cross, items, keys, rows, **kw)
        return out

    def document_features(
        self, documents: Sequence[Sequence[Any]], cross_modal_only: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Padded (B, L, D) slice vectors, (B,) lengths and (B, L) modality ids for `gak_matrix`."""
        flat = [item for document in documents for item in document]
        features = self.cross_modal_features(flat) if cross_modal_only else self.slice_features(flat)
        modality = self.modality_ids(flat)
        lengths = torch.tensor([len(document) for document in documents], dtype=torch.long)
        longest = int(lengths.max()) if len(documents) else 0
        padded = torch.zeros(len(documents), longest, features.shape[1])
        padded_modality = torch.zeros(len(documents), longest, dtype=torch.long)
        start = 0
        for index, length in enumerate(lengths.tolist()):
            padded[index, :length] = features[start : start + length]
            padded_modality[index, :length] = modality[start : start + length]
            start += length
        return padded, lengths, padded_modality

    def encode_images(
        self, images: Sequence[Any], batch_size: int | None = None, progress: bool | None = None
    ) -> Tensor:
        """(N, cross_dim) images in the cross-modal space: the CLIP-style retrieval baseline."""
        items = [_as_slice(item, index) for index, item in enumerate(images)]
        if any(isinstance(item, str) for item in items):
            raise TypeError("encode_images takes images; use encode_texts for strings")
        return self.cross_image.encode(items, batch_size=batch_size, progress=progress)

    def encode_texts(
        self, texts: Sequence[str], batch_size: int | None = None, progress: bool | None = None
    ) -> Tensor:
        """(N, cross_dim) texts in the cross-modal space."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"encode_texts: item {index} is {type(text).__name__}, expected str")
        return self.cross_text.encode(list(texts), batch_size=batch_size, progress=progress)

    # --- save / load -------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """suite.json (+ lit_heads.safetensors): rebuilds offline with `TeacherSuite.load`."""
        from safetensors.torch import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(self.cross, LiTHeads):
            state = {
                name: tensor.detach().cpu().contiguous() for name, tensor in self.cross.state_dict().items()
            }
            atomic_write_bytes(directory / HEADS_FILE, save(state))
            cross: dict[str, Any] = {"kind": "lit", "heads": self.cross.config_dict(), "weights": HEADS_FILE}
        else:
            cross = {"kind": "clip", "source": self.cross.source}
        payload = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "image_expert": _saved_spec(self.raw_image_expert),
            "text_expert": _saved_spec(self.raw_text_expert),
            "cross": cross,
            "expert_dim": self.expert_dim,
            "cross_dim": self.cross_dim,
        }
        atomic_write_bytes(directory / SUITE_FILE, json.dumps(payload, indent=2).encode("utf-8"))
        return directory

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE,
        device: str = "cpu",
        image_expert: Encoder | None = None,
        text_expert: Encoder | None = None,
    ) -> TeacherSuite:
        """Rebuild a saved suite. `cache_dir` relative paths are inside `directory`; None keeps
        features in memory only. Experts can be passed in (needed for ones without a spec)."""
        directory = Path(directory)
        path = directory / SUITE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: expected a folder written by `sugar teachers fit`")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path}: field 'format' must be {FORMAT!r}")
        if payload.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: field 'version' is {payload.get('version')!r}, this code reads {FORMAT_VERSION}"
            )
        for field in ("image_expert", "text_expert", "cross"):
            if not isinstance(payload.get(field), dict):
                raise ValueError(f"{path}: field {field!r} must be an object")
        image = image_expert or _rebuild(payload["image_expert"], path, "image_expert", device)
        text = text_expert or _rebuild(payload["text_expert"], path, "text_expert", device)
        cross_spec = payload["cross"]
        cross: LiTHeads | ClipTowers
        if cross_spec.get("kind") == "lit":
            for field, expert in (("image_expert", image), ("text_expert", text)):
                saved = payload[field].get("fingerprint")
                if saved != expert.fingerprint():
                    raise ValueError(
                        f"{path}: the {field.replace('_', ' ')} differs from the one the LiT heads were "
                        f"fitted on (fingerprint {saved!r}, now {expert.fingerprint()!r}); refit the teachers"
                    )
            cross = _load_heads(directory, cross_spec, path)
        elif cross_spec.get("kind") == "clip":
            if not isinstance(cross_spec.get("source"), str):
                raise ValueError(f"{path}: field 'cross.source' must be a string (a CLIP folder or hub id)")
            cross = ClipTowers(cross_spec["source"], device=device)
        else:
            raise ValueError(
                f"{path}: field 'cross.kind' must be 'lit' or 'clip', got {cross_spec.get('kind')!r}"
            )
        if cache_dir is not None:
            cache_dir = directory / cache_dir
        return cls(image, text, cross, cache_dir=cache_dir)


def _cached(encoder: Encoder, cache_dir: Path | None) -> CachedEncoder:
    """`encoder` behind the cache; an encoder that already is cached is used as it is."""
    return encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder, cache_dir)


def _saved_spec(encoder: Encoder) -> dict[str, Any]:
    """How to rebuild an expert (None for one without a spec), what it was, and its fingerprint."""
    spec = encoder.spec() if isinstance(encoder, SliceEncoder) else None
    return {
        "spec": spec,
        "identity": encoder.identity(),
        "fingerprint": encoder.fingerprint(),
        "dim": encoder.dim,
    }


def _rebuild(saved: dict[str, Any], path: Path, field: str, device: str) -> SliceEncoder:
    spec = saved.get("spec")
    if spec is None:
        raise ValueError(
            f"{path}: field '{field}.spec' is null (an encoder that cannot be rebuilt from JSON); "
            f"pass it as TeacherSuite.load(..., {field}=...)"
        )
    try:
        encoder = build_encoder(spec, device=device)
    except ValueError as error:
        raise ValueError(f"{path}: field '{field}.spec': {error}") from error
    if encoder.dim != saved.get("dim"):
        raise ValueError(
            f"{path}: field '{field}.dim' is {saved.get('dim')!r}, the rebuilt expert gives {encoder.dim}"
        )
    return encoder


def _load_heads(directory: Path, spec: dict[str, Any], path: Path) -> LiTHeads:
    from safetensors.torch import load_file

    try:
        config = HeadConfig(**spec["heads"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: field 'cross.heads' is not a valid head config ({error})") from error
    weights = directory / str(spec.get("weights", HEADS_FILE))
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: the LiT head weights named in {path}")
    heads = LiTHeads(config)
    try:
        heads.load_state_dict(load_file(str(weights)))
    except Exception as error:
        raise ValueError(f"{weights}: cannot load the LiT head weights ({error})") from error
    return heads
