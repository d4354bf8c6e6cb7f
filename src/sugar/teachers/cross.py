"""Cross-modal teachers: the part of a slice vector that compares an image with a text.

Two kinds:
- `LiTHeads`: projections fitted on top of the frozen experts (LiT: locked image and text
  towers, trained heads) with a symmetric InfoNCE. This is the offline default, since no CLIP
  weights ship in any package; `sugar.teachers.fit` trains it.
- `ClipTowers`: a `transformers` `CLIPModel` (`get_image_features` / `get_text_features`), the
  paper's cross-modal teacher for real runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from sugar.kernels import IMAGE, TEXT
from sugar.teachers.cache import Encoder
from sugar.teachers.encoders import (
    CLIP_MEAN,
    CLIP_STD,
    SliceEncoder,
    config_identity,
    fingerprint_of,
    hf_image_preprocess,
)


@dataclass(frozen=True)
class HeadConfig:
    """Shape of the LiT heads: `linear`, or `mlp` (Linear -> GELU -> Linear)."""

    image_dim: int
    text_dim: int
    dim: int = 256
    head: str = "linear"
    hidden: int = 512
    init_temperature: float = 0.07

    def __post_init__(self) -> None:
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp', got {self.head!r}")
        for name in ("image_dim", "text_dim", "dim", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.init_temperature < 1.0:
            raise ValueError(f"init_temperature must be in (0, 1), got {self.init_temperature}")


def _head(config: HeadConfig, in_dim: int) -> nn.Module:
    if config.head == "linear":
        return nn.Linear(in_dim, config.dim)
    return nn.Sequential(nn.Linear(in_dim, config.hidden), nn.GELU(), nn.Linear(config.hidden, config.dim))


class LiTHeads(nn.Module):
    """Image and text projections into one shared space, with a learnable CLIP temperature."""

    # logit scale is clamped at ln(100), as in CLIP, so training cannot collapse the softmax.
    MAX_LOGIT_SCALE = math.log(100.0)

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.image_head = _head(config, config.image_dim)
        self.text_head = _head(config, config.text_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

    def project_images(self, expert: Tensor) -> Tensor:
        return nn.functional.normalize(self.image_head(expert), dim=-1)

    def project_texts(self, expert: Tensor) -> Tensor:
        return nn.functional.normalize(self.text_head(expert), dim=-1)

    def scale(self) -> Tensor:
        return self.logit_scale.clamp(max=self.MAX_LOGIT_SCALE).exp()

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)


class ProjectedEncoder:
    """A cross-modal tower made of an expert (usually cached) and one LiT head: cheap on top of the cache."""

    def __init__(self, base: Encoder, heads: LiTHeads) -> None:
        self.base = base
        self.heads = heads
        self.modality = base.modality
        self.dim = heads.config.dim
        self._fingerprint: str | None = None

    def _project(self, expert: Tensor) -> Tensor:
        return (
            self.heads.project_images(expert) if self.modality == IMAGE else self.heads.project_texts(expert)
        )

    def identity(self) -> dict[str, Any]:
        side = "image" if self.modality == IMAGE else "text"
        return {"kind": f"lit-{side}", "base": self.base.fingerprint(), "heads": self.heads.config_dict()}

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint_of(self.identity(), [self.heads])
        return self._fingerprint

    def encode(
        self,
        items: Sequence[Any],
        batch_size: int | None = None,
        progress: bool | None = None,
        keys: Sequence[bytes] | None = None,
    ) -> Tensor:
        expert = self.base.encode(items, batch_size=batch_size, progress=progress, keys=keys)
        self.heads.eval()
        with torch.no_grad():
            return self._project(expert)


class ClipTowers:
    """A `transformers` CLIPModel split into its image and text towers (each a `SliceEncoder`)."""

    def __init__(
        self,
        source: str = "openai/clip-vit-large-patch14",
        batch_size: int = 32,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        from transformers import AutoTokenizer, CLIPModel

        self.source = str(source)
        self.model = CLIPModel.from_pretrained(source, dtype=dtype).eval().to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        size = int(self.model.config.vision_config.image_size)
        preprocess = hf_image_preprocess(self.source, size, CLIP_MEAN, CLIP_STD)
        self.image = ClipImageTower(self.model, preprocess, batch_size, device)
        self.text = ClipTextTower(self.model, self.tokenizer, batch_size, device)
        self.dim = int(self.model.config.projection_dim)


def _pooled(output: Any) -> Tensor:
    """transformers 5 returns a ModelOutput whose pooler_output is projected; older ones a tensor."""
    return output if isinstance(output, Tensor) else output.pooler_output


class ClipImageTower(SliceEncoder):
    modality = IMAGE

    def __init__(self, model: Any, preprocess: Any, batch_size: int, device: str) -> None:
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.device = device
        self.dim = int(model.config.projection_dim)

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "clip-image",
            "dim": self.dim,
            "config": config_identity(self.model.config.vision_config),
            "preprocess": asdict(self.preprocess),
        }

    def weight_modules(self) -> list[nn.Module]:
        return [self.model.vision_model, self.model.visual_projection]

    def _encode_batch(self, items: Sequence[Image.Image]) -> Tensor:
        pixels = self.preprocess(items).to(self.device, self.model.dtype)
        return _pooled(self.model.get_image_features(pixel_values=pixels))


class ClipTextTower(SliceEncoder):
    modality = TEXT

    def __init__(self, model: Any, tokenizer: Any, batch_size: int, device: str) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = device
        self.dim = int(model.config.projection_dim)
        self.max_length = int(model.config.text_config.max_position_embeddings)

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "clip-text",
            "dim": self.dim,
            "max_length": self.max_length,
            "config": config_identity(self.model.config.text_config),
            "vocab_size": len(self.tokenizer),
        }

    def weight_modules(self) -> list[nn.Module]:
        return [self.model.text_model, self.model.text_projection]

    def _order(self, items: Sequence[str]) -> list[int]:
        return sorted(range(len(items)), key=lambda i: len(items[i]))

    def _encode_batch(self, items: Sequence[str]) -> Tensor:
        batch = self.tokenizer(
            list(items), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        return _pooled(
            self.model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        )
