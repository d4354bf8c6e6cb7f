"""`SugarModel`: one multimodal LLM that generates and embeds (method.md sections 2, 3, 8).

One forward pass over a batch of documents gives both losses' inputs:

- the generative next-token cross-entropy over the label tokens, and
- one retrieval embedding r per cut point: the final-layer hidden state (after the final norm,
  before the LM head) pooled over slice t -- the last token of a text slice, the mean over an
  image's visual tokens (or its last one, `image_pooling="last"`) -- through the retrieval-head
  MLP, L2-normalised. Attention is causal, so the embedding of the prefix ending at slice t sees
  exactly that prefix; K cut points of one document cost one forward pass.

Generation prompt format: the document as laid out by `SugarProcessor` ([<bos>] then its
segments, text segments after the first prefixed by `segment_separator`), and the model
continues it greedily until <eos>. Training rows for captioning or VQA are the same layout with
the answer as a target segment followed by <eos>, so `generate(document)` continues a document
exactly the way training taught it to.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import ModelOutput

from sugar.checks import check_finite_parameters, read_weights
from sugar.models.backbones import Backbone, build_backbone, mlp
from sugar.models.config import SugarConfig, preset_config
from sugar.models.processor import (
    IGNORE_INDEX,
    DocumentLike,
    ProcessedBatch,
    SliceSpan,
    SugarProcessor,
    document_segments,
)

WEIGHTS_NAME = "model.safetensors"
# Fields that may differ when reloading a saved model: where things live, runtime caches, and
# the image pooling (it reads different hidden states but changes no weight).
RELOAD_OVERRIDES = frozenset(
    {"vision_cache_size", "vision_cache_dir", "max_length", "llava_source", "lm", "dtype", "image_pooling", "autocast"}
)


@dataclass
class SugarOutput(ModelOutput):
    """What one forward pass returns."""

    loss: Tensor | None = None  # generative CE averaged over label tokens; None without labels
    embeddings: Tensor | None = None  # (num_cuts, head_dim) L2-normalised r, in batch order
    cut_index: list[tuple[int, int]] | None = None  # (document, slice) of each embedding row
    label_tokens: int | None = None  # label tokens behind `loss` (for token-weighted accumulation)
    hidden_states: Tensor | None = None  # (B, T, hidden) final-layer states, when asked for


class RetrievalHead(nn.Module):
    """MLP from pooled LM hidden states to the retrieval space; runs in float32 whatever the LM dtype."""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int, activation: str) -> None:
        super().__init__()
        self.mlp = mlp(in_dim, hidden, out_dim, activation)

    def project(self, pooled: Tensor) -> Tensor:
        """Unnormalised head output."""
        return self.mlp(pooled.to(self.mlp[0].weight.dtype))

    def forward(self, pooled: Tensor) -> Tensor:
        return F.normalize(self.project(pooled).float(), dim=-1)


def _pooling_plan(
    slices: list[list[SliceSpan]],
    cut_points: Sequence[Sequence[int]] | None,
    width: int,
    image_pooling: str,
) -> tuple[list[int], list[int], list[float], list[tuple[int, int]]]:
    """Flat token positions, their output row, their weight, and (document, slice) per output row."""
    if cut_points is not None and len(cut_points) != len(slices):
        raise ValueError(f"cut_points: expected one list per document ({len(slices)}), got {len(cut_points)}")
    positions: list[int] = []
    owners: list[int] = []
    weights: list[float] = []
    index: list[tuple[int, int]] = []
    for document, spans in enumerate(slices):
        if cut_points is None:
            cuts: Sequence[int] = [len(spans) - 1]
        else:
            cuts = cut_points[document]
            if isinstance(cuts, (str, bytes)) or not isinstance(cuts, Sequence):
                raise TypeError(
                    f"cut_points[{document}]: expected a list of slice indices, got {type(cuts).__name__}"
                )
        for raw in cuts:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise TypeError(f"cut_points[{document}]: slice indices must be ints, got {raw!r}")
            if not -len(spans) <= raw < len(spans):
                raise IndexError(
                    f"cut_points[{document}]: slice index {raw} out of range; document {document} has "
                    f"{len(spans)} slices (after any max_length truncation)"
                )
            t = raw % len(spans)
            span = spans[t]
            row = len(index)
            if span.modality == "image" and image_pooling == "mean":
                tokens = list(range(span.start, span.end))
            else:
                tokens = [span.end - 1]
            positions.extend(document * width + token for token in tokens)
            owners.extend([row] * len(tokens))
            weights.extend([1.0 / len(tokens)] * len(tokens))
            index.append((document, t))
    return positions, owners, weights, index


class SugarModel(nn.Module):
    """Vision tower -> projector -> causal LM, plus a retrieval head: `encode`s and `generate`s."""

    def __init__(self, config: SugarConfig, backbone: Backbone) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        hidden = config.head_hidden if config.head_hidden is not None else [backbone.hidden_size]
        self.head = RetrievalHead(backbone.hidden_size, list(hidden), config.head_dim, config.head_activation)
        self.processor = SugarProcessor(
            backbone.tokenizer,
            backbone.image_transform,
            backbone.tokens_per_image,
            backbone.image_token_id,
            add_bos=config.add_bos,
            segment_separator=config.segment_separator,
            text_unit=config.text_unit,
            max_length=config.max_length,
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        config: SugarConfig,
        tokenizer_corpus: Sequence[str] | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> SugarModel:
        """Build from a config: pretrained parts from their sources, new parts seeded by `config.seed`."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            backbone = build_backbone(config, list(tokenizer_corpus) if tokenizer_corpus is not None else None, tokenizer)
            model = cls(config, backbone)
        return model

    @classmethod
    def from_preset(
        cls,
        name: str = "tiny",
        tokenizer_corpus: Sequence[str] | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        **overrides: Any,
    ) -> SugarModel:
        """A preset ("tiny", "smol", "llava-1.5-7b") with SugarConfig field overrides.

        "tiny" fits its word-level tokenizer to `tokenizer_corpus` (every text the model will see).
        """
        return cls.from_config(preset_config(name, **overrides), tokenizer_corpus, tokenizer)

    @classmethod
    def from_llava(cls, path_or_hub_id: str | os.PathLike[str], **overrides: Any) -> SugarModel:
        """Wrap an HF LlavaForConditionalGeneration checkpoint (a local folder, or a hub id with internet)."""
        return cls.from_config(preset_config("llava-1.5-7b", llava_source=os.fspath(path_or_hub_id), **overrides))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], **overrides: Any) -> SugarModel:
        """Load a folder written by `save_pretrained` (offline; sources named in its config must be present)."""
        path = Path(directory)
        if not path.is_dir():
            raise FileNotFoundError(f"no saved Sugar model at {path}: not a folder")
        refused = sorted(set(overrides) - RELOAD_OVERRIDES)
        if refused:
            raise ValueError(
                f"from_pretrained cannot override architecture fields {refused}; allowed: {sorted(RELOAD_OVERRIDES)}"
            )
        # a cache folder is where one run kept features, not part of the model: never inherit it
        config = SugarConfig.load(path).replace(**{"vision_cache_dir": None, **overrides})
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: cannot load the tokenizer ({str(error).strip().splitlines()[0]})") from None
        model = cls.from_config(config, tokenizer=tokenizer)
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"no {WEIGHTS_NAME} in {path}")
        state = read_weights(weights)
        try:
            missing, unexpected = nn.Module.load_state_dict(model, state, strict=False)
        except RuntimeError as error:  # shapes in the file disagree with sugar_config.json
            detail = " ".join(str(error).split())[:300]
            raise ValueError(f"{weights} does not match {path / 'sugar_config.json'}: {detail}") from None
        check_finite_parameters(model.named_parameters(), weights)
        if unexpected:
            raise ValueError(f"{weights} holds weights this configuration has no place for: {unexpected[:10]}")
        not_restored = sorted(set(missing) - model._unsaved_keys())
        if not_restored:
            raise ValueError(f"{weights} lacks weights the model needs: {not_restored[:10]}")
        model.backbone.reset_feature_cache()
        return model

    # ------------------------------------------------------------------ saving
    def _unsaved_keys(self) -> set[str]:
        """State keys not written: frozen weights reloaded from their source, and tied duplicates."""
        skipped = set()
        seen: set[tuple[int, tuple[int, ...]]] = set()
        for key, value in self.state_dict(keep_vars=True).items():
            if key.startswith("backbone."):
                name = key[len("backbone.") :]
                if self.backbone.is_sourced(name) and self.backbone.is_frozen(name):
                    skipped.add(key)
                    continue
            identity = (value.data_ptr(), tuple(value.shape))
            if value.numel() and identity in seen:
                skipped.add(key)
            seen.add(identity)
        return skipped

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write config, tokenizer and weights (safetensors) to a staging folder, then rename it into place."""
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        skipped = self._unsaved_keys()
        state = {
            key: value.detach().to("cpu").contiguous()
            for key, value in self.state_dict().items()
            if key not in skipped
        }
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        old: Path | None = None
        try:
            save_file(state, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
            self.config.replace(vision_cache_dir=None).save(staging)  # a runtime cache, not the model
            self.tokenizer.save_pretrained(staging)
            if target.exists():
                old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(target, old)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return target

    # ------------------------------------------------------------------ modules and parameters
    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.backbone.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def embedding_dim(self) -> int:
        return self.config.head_dim

    def generative_parameters(self) -> list[nn.Parameter]:
        """Trainable weights of the generative path: projector, LM or its LoRA adapters (and an unfrozen tower)."""
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def retrieval_parameters(self) -> list[nn.Parameter]:
        """Trainable weights used only by the retrieval embeddings: the head MLP."""
        return [p for p in self.head.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        tower = self.backbone.vision_tower()
        tower_ids = {id(p) for p in tower.parameters()}
        head_ids = {id(p) for p in self.head.parameters()}
        counts = {"total": 0, "trainable": 0, "vision_tower": 0, "head": 0, "rest": 0}
        for p in self.parameters():
            counts["total"] += p.numel()
            counts["trainable"] += p.numel() if p.requires_grad else 0
            part = "vision_tower" if id(p) in tower_ids else "head" if id(p) in head_ids else "rest"
            counts[part] += p.numel()
        return counts

    def enable_lora(
        self, r: int = 16, alpha: float = 32.0, dropout: float = 0.0, targets: Sequence[str] | None = None
    ) -> SugarModel:
        """Add LoRA adapters to the LM (peft) and freeze its base weights; the config records it.

        A no-op when the same LoRA is already on (e.g. a preset with LoRA, or a reloaded LoRA model).
        """
        wanted_targets = list(targets) if targets is not None else list(self.config.lora_targets)
        if self.config.lora_r > 0:
            same = (self.config.lora_r, float(self.config.lora_alpha), list(self.config.lora_targets)) == (
                r, float(alpha), wanted_targets
            )
            if same:
                return self
            raise ValueError(
                f"LoRA is already enabled (r={self.config.lora_r}, alpha={self.config.lora_alpha}, "
                f"targets={self.config.lora_targets}); cannot switch to r={r}, alpha={alpha}, targets={wanted_targets}"
            )
        if r <= 0:
            raise ValueError(f"enable_lora: r must be positive, got {r}")
        # A pretrained LM that trained in full no longer matches its source: keep its base in checkpoints.
        keep_base = self.config.save_lm_base or (self.config.train_lm and self.config.lm != "random")
        config = self.config.replace(
            lora_r=r, lora_alpha=float(alpha), lora_dropout=dropout, lora_targets=wanted_targets, save_lm_base=keep_base
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.backbone.enable_lora(config)
        self.config = config
        return self

    def gradient_checkpointing_enable(self) -> None:
        """Recompute LM activations in the backward pass (long sequences, large LMs on GPUs).

        Non-reentrant checkpointing, so LoRA adapters get gradients even when a text-only batch
        gives the LM inputs that do not require grad.
        """
        module = self.backbone.llava if hasattr(self.backbone, "llava") else self.backbone.language_model()
        module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    def train(self, mode: bool = True) -> SugarModel:
        """As nn.Module.train, but a frozen tower stays in eval mode (fixed BatchNorm statistics)."""
        super().train(mode)
        for module in self.backbone.frozen_eval_modules():
            module.eval()
        return self

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """As nn.Module.load_state_dict; also drops cached tower features, which may be stale now."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.backbone.reset_feature_cache()
        return result

    # ------------------------------------------------------------------ forward
    def input_embeddings(self, batch: ProcessedBatch) -> Tensor:
        """Token embeddings with each image's projected visual tokens written at its placeholder positions."""
        embeds = self.backbone.embed_tokens(batch.input_ids)
        if batch.num_images:
            if batch.pixel_values is None:
                raise ValueError("ProcessedBatch has image_keys but no pixel_values")
            visual = self.backbone.image_embeddings(batch.pixel_values, batch.image_keys)
            slots = int(batch.image_mask.sum())
            if slots != visual.shape[0] * visual.shape[1]:
                raise ValueError(
                    f"ProcessedBatch.image_mask marks {slots} positions but {visual.shape[0]} images give "
                    f"{visual.shape[0] * visual.shape[1]} visual tokens"
                )
            embeds = embeds.masked_scatter(batch.image_mask.unsqueeze(-1), visual.to(embeds.dtype))
        return embeds

    def hidden_states(self, batch: ProcessedBatch) -> Tensor:
        """(B, T, hidden) final-layer states, after the final norm, before the LM head."""
        hidden, _ = self.backbone.decode(self.input_embeddings(batch), batch.attention_mask)
        return hidden

    def pool(
        self, hidden: Tensor, slices: list[list[SliceSpan]], cut_points: Sequence[Sequence[int]] | None = None
    ) -> tuple[Tensor, list[tuple[int, int]]]:
        """(num_cuts, hidden) slice-pooled states for the cut points (method.md section 3)."""
        batch, width, size = hidden.shape
        positions, owners, weights, index = _pooling_plan(slices, cut_points, width, self.config.image_pooling)
        pooled = hidden.new_zeros((len(index), size), dtype=torch.float32)
        if positions:
            flat = hidden.reshape(batch * width, size)
            picked = flat[torch.tensor(positions, device=hidden.device)].float()
            scale = torch.tensor(weights, device=hidden.device, dtype=torch.float32).unsqueeze(1)
            pooled = pooled.index_add(0, torch.tensor(owners, device=hidden.device), picked * scale)
        return pooled, index

    def generative_loss(self, hidden: Tensor, labels: Tensor) -> tuple[Tensor, int]:
        """Mean next-token cross-entropy over label tokens; logits only where a label exists."""
        targets = labels[:, 1:]
        chosen = targets != IGNORE_INDEX
        count = int(chosen.sum())
        if count == 0:  # keep the head in the graph so distributed training sees every parameter used
            return self.backbone.logits(hidden[:, :1]).sum() * 0.0, 0
        logits = self.backbone.logits(hidden[:, :-1][chosen]).float()
        return F.cross_entropy(logits, targets[chosen]), count

    def forward(
        self,
        batch: ProcessedBatch,
        cut_points: Sequence[Sequence[int]] | None = None,
        return_embeddings: bool = True,
        output_hidden_states: bool = False,
    ) -> SugarOutput:
        """Generative loss (when `batch.labels`) and one embedding per cut point from one pass.

        `cut_points[d]` lists slice indices of document d (negative counts from the end); the
        prefix ending at each gives one row of `embeddings`. None: the last slice of each document.
        """
        hidden = self.hidden_states(batch)
        loss, count = (None, 0) if batch.labels is None else self.generative_loss(hidden, batch.labels)
        embeddings, index = None, None
        if return_embeddings:
            pooled, index = self.pool(hidden, batch.slices, cut_points)
            embeddings = self.head(pooled)
        return SugarOutput(
            loss=loss,
            embeddings=embeddings,
            cut_index=index,
            label_tokens=count,
            hidden_states=hidden if output_hidden_states else None,
        )

    # ------------------------------------------------------------------ inference
    def _length_hint(self, segments: list[Any]) -> int:
        return sum(self.backbone.tokens_per_image if not isinstance(s, str) else len(s.split()) + 1 for s in segments)

    @torch.no_grad()
    def encode(
        self,
        documents: Sequence[DocumentLike],
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> Tensor:
        """(N, head_dim) L2-normalised embeddings of whole documents (the prefix ending at the last slice).

        Documents are batched by similar length; results come back in input order on the CPU.
        `show_progress=None` shows a bar when there are more than four batches.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
            raise TypeError(f"documents: expected a list of documents, got {type(documents).__name__}")
        hints = [self._length_hint(document_segments(doc, i, load_images=False)) for i, doc in enumerate(documents)]
        result = torch.empty((len(documents), self.config.head_dim), dtype=torch.float32)
        if not documents:
            return result
        order = sorted(range(len(documents)), key=lambda i: hints[i])
        show = len(documents) > 4 * batch_size if show_progress is None else show_progress
        was_training = self.training
        self.eval()
        try:
            with tqdm(total=len(documents), desc="encode", unit="doc", disable=not show) as bar:
                for start in range(0, len(order), batch_size):
                    chosen = order[start : start + batch_size]
                    batch = self.processor([documents[i] for i in chosen]).to(self.device)
                    output = self(batch)
                    assert output.embeddings is not None
                    result[chosen] = output.embeddings.float().cpu()
                    bar.update(len(chosen))
        finally:
            self.train(was_training)
        return result

    def _stop_ids(self) -> set[int]:
        stops = set()
        if self.tokenizer.eos_token_id is not None:
            stops.add(int(self.tokenizer.eos_token_id))
        return stops

    @torch.no_grad()
    def generate(self, document: DocumentLike, max_new_tokens: int = 32) -> str:
        """Greedy continuation of `document` (see the module docstring for the prompt format), KV-cached."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        was_training = self.training
        self.eval()
        try:
            batch = self.processor([document], add_eos=False).to(self.device)
            stops = self._stop_ids()
            hidden, cache = self.backbone.decode(self.input_embeddings(batch), use_cache=True)
            generated: list[int] = []
            for _ in range(max_new_tokens):
                token = int(self.backbone.logits(hidden[:, -1]).argmax(-1)[0])
                if token in stops:
                    break
                generated.append(token)
                step = self.backbone.embed_tokens(torch.tensor([[token]], device=self.device))
                hidden, cache = self.backbone.decode(step, cache=cache, use_cache=True)
        finally:
            self.train(was_training)
        return self.tokenizer.decode(generated, skip_special_tokens=True).strip()

    @torch.no_grad()
    def target_logprobs(
        self, documents: Sequence[DocumentLike], targets: Sequence[Sequence[int]], batch_size: int = 32
    ) -> Tensor:
        """(N,) summed log-probability of each document's target segments (and final <eos>): scores
        candidate answers for multiple-choice evaluation without sampling."""
        result = torch.empty(len(documents), dtype=torch.float32)
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(documents), batch_size):
                stop = min(start + batch_size, len(documents))
                batch = self.processor(documents[start:stop], targets=targets[start:stop]).to(self.device)
                assert batch.labels is not None
                hidden = self.hidden_states(batch)
                logits = self.backbone.logits(hidden[:, :-1]).float()
                labels = batch.labels[:, 1:]
                mask = labels != IGNORE_INDEX
                picked = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                result[start:stop] = (picked * mask).sum(-1).cpu()
        finally:
            self.train(was_training)
        return result
