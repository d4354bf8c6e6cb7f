"""`SugarConfig`: every choice that shapes a Sugar model, saved next to its weights as JSON.

One flat dataclass so presets, YAML files and command-line overrides all address fields by the
same names (`head_dim=64`, `lora_r=16`). `lm_config` is merged, not replaced, by an override, so
`from_preset("tiny", lm_config={"num_hidden_layers": 2})` keeps the preset's other LM sizes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Backend = Literal["composite", "llava"]
ImagePooling = Literal["mean", "last"]
TextUnit = Literal["sentence", "segment"]

CONFIG_NAME = "sugar_config.json"

# The tiny language model the demo trains from scratch: ~3.4M parameters plus its embeddings.
TINY_LM_CONFIG: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "attention_dropout": 0.0,
}


@dataclass
class SugarConfig:
    """Architecture and input-format settings of a `SugarModel` (see `PRESETS` for the defaults in use)."""

    preset: str = "tiny"
    backend: Backend = "composite"

    # Composite backend: vision tower -> MLP projector -> causal LM.
    vision_tower: str = "efficientnet-lite0"  # "efficientnet-lite0" (pretrained, from its package) | "patch"
    image_size: int = 128  # square input side in pixels; EfficientNet gives (image_size / 32)^2 visual tokens
    patch_size: int = 32  # "patch" tower only: pixels per visual token side
    patch_dim: int = 64  # "patch" tower only: feature channels
    projector_hidden: list[int] | None = None  # MLP hidden widths; None: one layer as wide as the LM
    # "random" (LlamaForCausalLM from lm_config) | "smollm2" | a causal-LM folder or hub id.
    # The llava backend takes its LM from llava_source and records lm="llava".
    lm: str = "random"
    lm_config: dict[str, Any] = field(default_factory=lambda: dict(TINY_LM_CONFIG))

    # LLaVA backend: a LlavaForConditionalGeneration folder or hub id.
    llava_source: str | None = None
    freeze_vision_tower: bool = True

    # Tokenizer and document layout.
    lowercase: bool = True  # word-level tokenizer only
    min_word_frequency: int = 1  # word-level tokenizer only; rarer words become <unk>
    add_bos: bool = True
    segment_separator: str = " "  # prepended to every segment's text except the first segment's
    max_length: int = 512

    # Retrieval head and pooling (method.md section 3).
    head_hidden: list[int] | None = None  # MLP hidden widths; None: one layer as wide as the LM
    head_dim: int = 128
    head_activation: str = "gelu"
    image_pooling: ImagePooling = "mean"
    text_unit: TextUnit = "sentence"

    # Language-model fine-tuning: LoRA when lora_r > 0, else the whole LM when train_lm.
    lora_r: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    train_lm: bool = True
    # Write a pretrained LM's frozen base weights into checkpoints anyway: set by enable_lora when
    # LoRA is added to an LM that was fine-tuned in full, whose weights no longer match the source.
    save_lm_base: bool = False

    # Runtime: the frozen tower's feature cache and numerics.
    vision_cache_size: int = 20000  # images kept in memory (0 disables the cache)
    vision_cache_dir: str | None = None
    dtype: str = "float32"
    # bf16 autocast around the LM: "auto" where the device computes bf16 natively (sugar.models.precision)
    autocast: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that holds an unusable value."""
        choices: dict[str, tuple[str, ...]] = {
            "backend": ("composite", "llava"),
            "image_pooling": ("mean", "last"),
            "text_unit": ("sentence", "segment"),
            "dtype": ("float32", "bfloat16", "float16"),
            "head_activation": ("gelu", "relu", "silu", "tanh"),
            "autocast": ("auto", "bfloat16", "off"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"SugarConfig.{name} must be one of {allowed}, got {value!r}")
        if self.backend == "composite" and self.vision_tower not in ("efficientnet-lite0", "patch"):
            raise ValueError(
                f"SugarConfig.vision_tower must be 'efficientnet-lite0' or 'patch', got {self.vision_tower!r}"
            )
        if self.backend == "llava" and not self.llava_source:
            raise ValueError("SugarConfig.llava_source must name a LLaVA folder or hub id when backend='llava'")
        positive = ("image_size", "patch_size", "patch_dim", "head_dim", "max_length")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"SugarConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.vision_tower == "efficientnet-lite0" and self.image_size % 32:
            raise ValueError(f"SugarConfig.image_size must be a multiple of 32 for EfficientNet, got {self.image_size}")
        if self.vision_tower == "patch" and self.image_size % self.patch_size:
            raise ValueError(
                f"SugarConfig.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        for name in ("head_hidden", "projector_hidden"):
            sizes = getattr(self, name)
            if sizes is not None and any(int(size) <= 0 for size in sizes):
                raise ValueError(f"SugarConfig.{name} must hold positive layer sizes, got {sizes!r}")
        if self.lora_r < 0:
            raise ValueError(f"SugarConfig.lora_r must be >= 0 (0 turns LoRA off), got {self.lora_r}")
        if self.lora_r > 0 and not self.lora_targets:
            raise ValueError("SugarConfig.lora_targets must name at least one module when lora_r > 0")
        if self.vision_cache_size < 0:
            raise ValueError(f"SugarConfig.vision_cache_size must be >= 0, got {self.vision_cache_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SugarConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SugarConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**copy.deepcopy(values))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> SugarConfig:
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}: not a saved Sugar model folder")
        return cls.from_dict(json.loads(path.read_text()))

    def replace(self, **overrides: Any) -> SugarConfig:
        """A copy with `overrides` applied; `lm_config` is merged key by key."""
        values = self.to_dict()
        for name, value in overrides.items():
            if name not in values:
                raise ValueError(f"unknown SugarConfig field {name!r}; known fields: {sorted(values)}")
            if name == "lm_config" and value is not None:
                values[name] = {**values[name], **value}
            else:
                values[name] = value
        return SugarConfig.from_dict(values)


PRESETS: dict[str, dict[str, Any]] = {
    # Trained from scratch by the demo on 2 CPU cores: a word-level tokenizer fitted to the corpus,
    # a 4-layer 256-wide Llama, the frozen pretrained EfficientNet-Lite0 (16 visual tokens at 128 px).
    "tiny": {},
    # SmolLM2-135M-Instruct from its package with LoRA on q/v; its own BPE tokenizer (no <bos> in
    # its plain-text format).
    "smol": {
        "lm": "smollm2",
        "lm_config": {},
        "head_dim": 256,
        "lora_r": 16,
        "lora_alpha": 32.0,
        "add_bos": False,
        "max_length": 1024,
    },
    # LLaVA-1.5-7B on GPUs, following the paper's recipe (method.md section 9): LoRA r=128,
    # alpha=256 on Wq/Wv, a trained projector, a frozen CLIP tower; bf16.
    "llava-1.5-7b": {
        "backend": "llava",
        "llava_source": "llava-hf/llava-1.5-7b-hf",
        "lm": "llava",
        "lm_config": {},
        "head_dim": 1024,
        "lora_r": 128,
        "lora_alpha": 256.0,
        "segment_separator": "\n",
        "max_length": 2048,
        "vision_cache_size": 0,
        "dtype": "bfloat16",
    },
}


def preset_config(name: str, **overrides: Any) -> SugarConfig:
    """The named preset with `overrides` applied (the preset's own values first)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {sorted(PRESETS)}")
    values = SugarConfig().to_dict()
    values.update(copy.deepcopy(PRESETS[name]))  # a preset's lm_config replaces the tiny one
    values["preset"] = name
    return SugarConfig.from_dict(values).replace(**overrides)
