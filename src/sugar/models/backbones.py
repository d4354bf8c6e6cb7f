"""Backbone adapters: one small interface over "vision tower -> projector -> causal LM".

`SugarModel` only ever calls the methods of `Backbone`: embed tokens, turn images into
LM-width visual tokens, run the decoder (final norm included, LM head excluded) with an optional
KV cache, and apply the LM head. Two adapters implement it:

- `CompositeBackbone`: a vision tower of ours (pretrained EfficientNet-Lite0, or a small random
  patch embedding for tests) -> MLP projector -> any HF causal LM (a random Llama, SmolLM2, ...);
- `LlavaBackbone`: an HF `LlavaForConditionalGeneration` (its CLIP tower, projector and LM).

Each adapter also says which weights it reloads from its source (`is_sourced`) and which the
configuration freezes (`is_frozen`): the frozen, sourced ones are not written by
`save_pretrained`, so a LoRA checkpoint of a 7B model holds only the adapters, projector and head.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sugar.models.config import SugarConfig
from sugar.models.language import (
    build_random_lm,
    build_word_tokenizer,
    ensure_pad_token,
    image_placeholder_id,
    load_hf_lm,
    load_smollm2,
)
from sugar.models.precision import autocast
from sugar.models.processor import ImageTransform
from sugar.models.vision import FeatureCache, SquareImageTransform, build_vision_tower

TOWER_CHUNK = 64  # images per tower call: bounds activation memory on a cache miss storm
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def mlp(in_dim: int, hidden: list[int], out_dim: int, activation: str = "gelu") -> nn.Sequential:
    """Linear layers of widths in_dim -> hidden... -> out_dim with `activation` between them."""
    acts: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, int(size)), acts[activation]()]
        width = int(size)
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def inject_lora(module: nn.Module, config: SugarConfig) -> None:
    """Add LoRA adapters (peft) to the `lora_targets` linear layers inside `module`, in place."""
    from peft import LoraConfig, inject_adapter_in_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
    )
    inject_adapter_in_model(lora, module)
    if not any("lora_" in name for name, _ in module.named_parameters()):
        raise ValueError(f"lora_targets {config.lora_targets} matched no linear layer of the language model")


class Backbone(nn.Module, ABC):
    """What SugarModel needs from an architecture; see the module docstring."""

    tokenizer: PreTrainedTokenizerBase
    tokens_per_image: int
    hidden_size: int
    image_token_id: int

    def __init__(self, config: SugarConfig) -> None:
        super().__init__()
        self.config = config
        self.feature_cache = FeatureCache(config.vision_cache_size, config.vision_cache_dir)
        self._cache_namespace: str | None = None

    # A picklable callable, PIL images -> (N, 3, H, W) float32 pixels in the tower's input format:
    # the processor holds it, so DataLoader workers never copy the model.
    image_transform: ImageTransform

    # --- the architecture-specific part -------------------------------------------------------
    @abstractmethod
    def vision_tower(self) -> nn.Module: ...

    @abstractmethod
    def tower_features(self, pixel_values: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, tokens_per_image, C): the tower output the projector reads."""

    @abstractmethod
    def project(self, features: Tensor) -> Tensor:
        """(N, P, C) -> (N, P, hidden_size) visual tokens in the LM's embedding space."""

    @abstractmethod
    def projector_module(self) -> nn.Module:
        """The vision-to-LM projector (what the align stage trains alone)."""

    @abstractmethod
    def embed_tokens(self, input_ids: Tensor) -> Tensor: ...

    @abstractmethod
    def decoder(self) -> nn.Module:
        """The LM without its head (an HF base model: final norm applied to its output)."""

    @abstractmethod
    def lm_head(self) -> nn.Module: ...

    @abstractmethod
    def is_sourced(self, name: str) -> bool:
        """True when parameter/buffer `name` is reloaded from the pretrained source by the constructor."""

    @abstractmethod
    def is_frozen(self, name: str) -> bool:
        """True when the configuration freezes parameter `name` (the tower; the LM base under LoRA)."""

    @abstractmethod
    def language_model(self) -> nn.Module:
        """The module LoRA adapters are injected into (the LM, not the vision tower)."""

    def enable_lora(self, config: SugarConfig) -> None:
        """Inject LoRA per `config` (lora_r > 0) into the LM of an already built backbone and refreeze."""
        self.config = config
        inject_lora(self.language_model(), config)
        self.apply_freezing()

    @property
    def tower_is_frozen(self) -> bool:
        return all(not p.requires_grad for p in self.vision_tower().parameters())

    # --- shared logic ---------------------------------------------------------------------------
    def apply_freezing(self) -> None:
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(not self.is_frozen(name))

    def frozen_eval_modules(self) -> Iterator[nn.Module]:
        """Modules kept in eval mode during training (frozen tower: BatchNorm statistics, no dropout)."""
        if self.tower_is_frozen:
            yield self.vision_tower()

    def decode(
        self, inputs_embeds: Tensor, attention_mask: Tensor | None = None, cache: Any = None, use_cache: bool = False
    ) -> tuple[Tensor, Any]:
        """Final-layer hidden states (after the final norm) and the KV cache."""
        with self.autocast(inputs_embeds):
            output = self.decoder()(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, cache=cache, use_cache=use_cache
            )
        return output.last_hidden_state, getattr(output, "cache", None)

    def logits(self, hidden: Tensor) -> Tensor:
        with self.autocast(hidden):
            return self.lm_head()(hidden)

    def autocast(self, reference: Tensor) -> AbstractContextManager[object]:
        """bf16 autocast for the LM per `config.autocast` (the head and the losses stay float32)."""
        return autocast(self.config.autocast, reference.device, self.lm_head().weight.dtype)

    @property
    def cache_namespace(self) -> str:
        """Tower identity + a fingerprint of its weights: features cached for one tower never serve another."""
        if self._cache_namespace is None:
            tower = self.vision_tower()
            first = next(tower.parameters())
            digest = hashlib.sha1(f"{type(tower).__name__}/{first.dtype}/{self.tokens_per_image}".encode())
            for _, parameter in list(tower.named_parameters())[:4]:
                digest.update(parameter.detach().float().cpu().numpy().tobytes())
            self._cache_namespace = digest.hexdigest()[:16]
        return self._cache_namespace

    def reset_feature_cache(self) -> None:
        """Forget cached tower outputs (call after the tower's weights change)."""
        self.feature_cache.clear()
        self._cache_namespace = None

    def _run_tower(self, pixel_values: Tensor) -> Tensor:
        tower_dtype = next(self.vision_tower().parameters()).dtype
        chunks = [
            self.tower_features(pixel_values[i : i + TOWER_CHUNK].to(tower_dtype))
            for i in range(0, pixel_values.shape[0], TOWER_CHUNK)
        ]
        return torch.cat(chunks)

    def image_embeddings(self, pixel_values: Tensor, keys: list[str]) -> Tensor:
        """(N, 3, H, W) -> (N, P, hidden_size); a frozen tower's outputs come from the cache when seen before."""
        if not self.tower_is_frozen:
            return self.project(self._run_tower(pixel_values))
        if not self.feature_cache.enabled or len(keys) != pixel_values.shape[0]:
            with torch.no_grad():
                features = self._run_tower(pixel_values)
            return self.project(features)
        namespace = self.cache_namespace
        found: list[Tensor | None] = [self.feature_cache.get(f"{namespace}/{key}") for key in keys]
        missing = [i for i, item in enumerate(found) if item is None]
        if missing:
            with torch.no_grad():
                computed = self._run_tower(pixel_values[missing])
            for position, features in zip(missing, computed):
                self.feature_cache.put(f"{namespace}/{keys[position]}", features)
                found[position] = features.detach().to("cpu")
        features = torch.stack([item for item in found if item is not None]).to(pixel_values.device)
        return self.project(features)


class CompositeBackbone(Backbone):
    """Our vision tower -> MLP projector -> an HF causal LM (random Llama, SmolLM2, or a local folder)."""

    def __init__(self, config: SugarConfig, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(config)
        ensure_pad_token(tokenizer)
        self.tokenizer = tokenizer
        self.tower = build_vision_tower(config.vision_tower, config.image_size, config.patch_size, config.patch_dim)
        self.hidden_size = int(lm.config.hidden_size)
        projector_hidden = config.projector_hidden if config.projector_hidden is not None else [self.hidden_size]
        # LayerNorm first: EfficientNet features are post-activation (all positive, channel scales
        # far apart). Without it, the demo's align stage ended at caption loss 3.18 and the base
        # model built on it wrote one caption for every val image; with it, 2.89 after the same
        # 100 steps, and captions follow the image.
        self.projector = nn.Sequential(
            nn.LayerNorm(self.tower.feature_dim), *mlp(self.tower.feature_dim, list(projector_hidden), self.hidden_size)
        )
        if config.lora_r > 0:
            inject_lora(lm, config)
        self.lm = lm
        self.tokens_per_image = int(self.tower.tokens_per_image)
        self.image_token_id = image_placeholder_id(tokenizer)
        self.image_transform = SquareImageTransform(config.image_size)
        self.apply_freezing()
        self.tower.eval()

    @classmethod
    def build(
        cls,
        config: SugarConfig,
        tokenizer_corpus: list[str] | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> CompositeBackbone:
        dtype = DTYPES[config.dtype]
        if config.lm == "random":
            if tokenizer is None:
                if tokenizer_corpus is None:
                    raise ValueError(
                        "lm='random' trains its own word-level tokenizer: pass tokenizer_corpus (a list of texts) "
                        "or a tokenizer"
                    )
                tokenizer = build_word_tokenizer(
                    tokenizer_corpus, lowercase=config.lowercase, min_frequency=config.min_word_frequency
                )
            lm = build_random_lm(config.lm_config, tokenizer, config.seed).to(dtype)
        else:
            lm, own_tokenizer = load_smollm2(dtype) if config.lm == "smollm2" else load_hf_lm(config.lm, dtype)
            tokenizer = tokenizer if tokenizer is not None else own_tokenizer
        return cls(config, lm, tokenizer).to(dtype)

    def vision_tower(self) -> nn.Module:
        return self.tower

    def tower_features(self, pixel_values: Tensor) -> Tensor:
        return self.tower(pixel_values)

    def project(self, features: Tensor) -> Tensor:
        dtype = self.projector[0].weight.dtype
        return self.projector(features.to(dtype))

    def projector_module(self) -> nn.Module:
        return self.projector

    def language_model(self) -> nn.Module:
        return self.lm

    def embed_tokens(self, input_ids: Tensor) -> Tensor:
        return self.lm.get_input_embeddings()(input_ids)

    def decoder(self) -> nn.Module:
        return self.lm.get_decoder()

    def lm_head(self) -> nn.Module:
        return self.lm.get_output_embeddings()

    def is_sourced(self, name: str) -> bool:
        if name.startswith("tower."):
            return self.config.vision_tower == "efficientnet-lite0"
        if name.startswith("lm."):
            return self.config.lm != "random" and not self.config.save_lm_base
        return False

    def is_frozen(self, name: str) -> bool:
        if name.startswith("tower."):
            return True
        if name.startswith("lm."):
            if self.config.lora_r > 0:
                return "lora_" not in name
            return not self.config.train_lm
        return False


class HFImageTransform:
    """An HF image processor (e.g. CLIPImageProcessor) as an `ImageTransform`."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        output = self.image_processor(images=images, return_tensors="np")
        return np.asarray(output["pixel_values"], dtype=np.float32)


class LlavaBackbone(Backbone):
    """An HF `LlavaForConditionalGeneration` behind the Backbone interface.

    Visual tokens are the projected CLIP features of `vision_feature_layer` (CLS dropped under the
    "default" strategy), one placeholder `<image>` token each, exactly as the HF model lays them out.
    """

    def __init__(self, config: SugarConfig, llava: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 image_processor: Any) -> None:
        super().__init__(config)
        ensure_pad_token(tokenizer)
        self.tokenizer = tokenizer
        self.image_transform = HFImageTransform(image_processor)
        if config.lora_r > 0:
            inject_lora(llava.model.language_model, config)
        self.llava = llava
        llava_config = llava.config
        vision = llava_config.vision_config
        self.hidden_size = int(llava_config.text_config.hidden_size)
        self.feature_layer = llava_config.vision_feature_layer
        self.select_strategy = llava_config.vision_feature_select_strategy
        patches = (int(vision.image_size) // int(vision.patch_size)) ** 2
        self.tokens_per_image = patches + (1 if self.select_strategy == "full" else 0)
        self.image_token_id = int(llava_config.image_token_id)
        self.apply_freezing()
        if self.tower_is_frozen:
            self.vision_tower().eval()

    @classmethod
    def build(cls, config: SugarConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> LlavaBackbone:
        from transformers import AutoImageProcessor, AutoTokenizer, LlavaForConditionalGeneration

        source = config.llava_source
        assert source is not None
        llava = LlavaForConditionalGeneration.from_pretrained(source, dtype=DTYPES[config.dtype])
        tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(source)
        image_processor = AutoImageProcessor.from_pretrained(source)
        return cls(config, llava, tokenizer, image_processor)

    def vision_tower(self) -> nn.Module:
        return self.llava.model.vision_tower

    def tower_features(self, pixel_values: Tensor) -> Tensor:
        output = self.vision_tower()(pixel_values, output_hidden_states=True, return_dict=True)
        layers = [self.feature_layer] if isinstance(self.feature_layer, int) else list(self.feature_layer)
        selected = [output.hidden_states[layer] for layer in layers]
        if self.select_strategy == "default":
            selected = [states[:, 1:] for states in selected]
        return torch.cat(selected, dim=-1)

    def project(self, features: Tensor) -> Tensor:
        projector = self.llava.model.multi_modal_projector
        return projector(features.to(projector.linear_1.weight.dtype))

    def projector_module(self) -> nn.Module:
        return self.llava.model.multi_modal_projector

    def language_model(self) -> nn.Module:
        return self.llava.model.language_model

    def embed_tokens(self, input_ids: Tensor) -> Tensor:
        return self.llava.get_input_embeddings()(input_ids)

    def decoder(self) -> nn.Module:
        return self.llava.model.language_model

    def lm_head(self) -> nn.Module:
        return self.llava.lm_head

    def is_sourced(self, name: str) -> bool:
        if name.startswith(("llava.model.language_model.", "llava.lm_head.")) and self.config.save_lm_base:
            return False
        return name.startswith("llava.")

    def is_frozen(self, name: str) -> bool:
        if name.startswith("llava.model.vision_tower."):
            return self.config.freeze_vision_tower
        if name.startswith("llava.model.multi_modal_projector."):
            return False
        if name.startswith(("llava.model.language_model.", "llava.lm_head.")):
            if self.config.lora_r > 0:
                return "lora_" not in name
            return not self.config.train_lm
        return False


def build_backbone(
    config: SugarConfig,
    tokenizer_corpus: list[str] | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> Backbone:
    if config.backend == "llava":
        return LlavaBackbone.build(config, tokenizer)
    return CompositeBackbone.build(config, tokenizer_corpus, tokenizer)
