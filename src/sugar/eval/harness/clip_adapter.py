"""A SugarModel as a CLIP-style encoder, for clip_benchmark's zero-shot retrieval evaluation.

clip_benchmark (`clip_benchmark.metrics.zeroshot_retrieval.evaluate(model, dataloader,
tokenizer, device, amp, recall_k_list)`) drives a model through three pieces, all given here:

- an image `transform` (PIL -> pixel tensor) used by the dataset, so the dataloader stacks images;
- a `tokenizer` (list of str -> integer tensor), called on every caption of a batch;
- `encode_image(pixels)` and `encode_text(tokens)`, whose outputs it L2-normalises and compares.

Each image and each caption is embedded as its own one-segment document, exactly as
`sugar.eval.benchmarks.ModelEncoder` embeds them for `evaluate_retrieval`: the pixels are the
model's own preprocessing and the token rows are the model's own processor output, so both paths
give the same vectors (up to batch-dependent float rounding).

Metric correspondence: clip_benchmark's `image_retrieval_recall@k` is text->image (sugar's
`t2i`), `text_retrieval_recall@k` is image->text (`i2t`). Both count a query as a hit when any of
its positives is among the top k, the same definition as `sugar.eval.metrics.recall_at_k`. They
differ only on exact ties: clip_benchmark takes `torch.topk`'s order, sugar counts a negative
tied with the best positive as ranked above it. Sugar's R@k is therefore never higher than
clip_benchmark's, and they are equal when no such tie sits at the k-th place.

`amp=True` (clip_benchmark's default) runs the encoders under `torch.autocast`, bfloat16 on CPU;
`clip_benchmark_retrieval` uses float32 so its numbers match `sugar eval`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from sugar.data import CaptionedImage
from sugar.models.processor import ProcessedBatch, SliceSpan
from sugar.models.vision import pixel_key

# Fills token rows after their end. Token ids are never negative, so a row's length is unambiguous
# (the model's pad id may also be a real token of some tokenizers).
TEXT_PAD = -1

CLIP_BENCHMARK_INSTALL = "pip install --no-deps clip_benchmark==1.6.2"


class SugarTextTokenizer:
    """Captions -> (B, T) token rows as the model's processor lays them out, padded with `TEXT_PAD`.

    A row stops at the token whose state is pooled (the end of its last sentence): attention is
    causal, so dropping what follows leaves the embedding unchanged.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, texts: str | Sequence[str]) -> Tensor:
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            raise ValueError("no texts to tokenize")
        batch = self.model.processor([[text] for text in items])
        ends = [spans[-1].end for spans in batch.slices]
        out = torch.full((len(items), max(ends)), TEXT_PAD, dtype=torch.long)
        for row, end in enumerate(ends):
            out[row, :end] = batch.input_ids[row, :end]
        return out


class SugarImageTransform:
    """PIL image -> (3, H, W) float32 pixels, the model's own preprocessing (so a dataloader can stack them)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, image: Image.Image) -> Tensor:
        pixels = self.model.processor.image_transform([image])[0]
        return torch.from_numpy(pixels.copy())


class SugarCLIPEncoder:
    """A SugarModel behind the CLIP interface clip_benchmark calls: `encode_image`, `encode_text`."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.tokenizer = SugarTextTokenizer(model)
        self.transform = SugarImageTransform(model)
        self._image_layout: ProcessedBatch | None = None

    @property
    def embedding_dim(self) -> int:
        return int(self.model.embedding_dim)

    def eval(self) -> SugarCLIPEncoder:
        self.model.eval()
        return self

    def encode_image(self, images: Tensor | Sequence[Image.Image]) -> Tensor:
        """(B, d) L2-normalised embeddings of one-image documents.

        `images`: pixels from `transform`, stacked to (B, 3, H, W), or a list of PIL images.
        """
        if not isinstance(images, Tensor):
            pictures = list(images)
            if not pictures:
                raise ValueError("no images to encode")
            return self._embed(self.model.processor([[picture] for picture in pictures]))
        if images.dim() != 4:
            raise ValueError(f"images: expected pixels of shape (B, 3, H, W), got {tuple(images.shape)}")
        layout = self._one_image_layout()
        count = int(images.shape[0])
        # The token layout of a one-image document does not depend on the pixels; the slices carry
        # positions only (pooling reads positions, never a slice's content).
        batch = ProcessedBatch(
            input_ids=layout.input_ids.expand(count, -1).clone(),
            attention_mask=layout.attention_mask.expand(count, -1).clone(),
            labels=None,
            image_mask=layout.image_mask.expand(count, -1).clone(),
            pixel_values=images,
            image_keys=[pixel_key(row.detach().cpu().numpy()) for row in images],
            slices=[list(layout.slices[0]) for _ in range(count)],
            truncated=[False] * count,
        )
        return self._embed(batch)

    def encode_text(self, tokens: Tensor) -> Tensor:
        """(B, d) L2-normalised embeddings of one-caption documents from `tokenizer`'s rows."""
        if tokens.dim() != 2 or tokens.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
            raise ValueError(
                f"tokens: expected an integer (B, T) tensor from SugarTextTokenizer, got {tokens.dtype} "
                f"{tuple(tokens.shape)}"
            )
        tokens = tokens.cpu().long()
        real = tokens != TEXT_PAD
        lengths = real.sum(1)
        positions = torch.arange(tokens.shape[1]).unsqueeze(0)
        if bool((lengths == 0).any()) or not torch.equal(real, positions < lengths.unsqueeze(1)):
            raise ValueError(f"tokens: every row must be non-empty and right-padded with TEXT_PAD ({TEXT_PAD})")
        first = 1 if self.model.config.add_bos else 0
        slices = []
        for row, length in enumerate(lengths.tolist()):
            start = min(first, length - 1)
            content = self.model.tokenizer.decode(tokens[row, start:length].tolist())
            slices.append([SliceSpan("text", start, length, content, 0)])
        batch = ProcessedBatch(
            input_ids=tokens.masked_fill(~real, int(self.model.tokenizer.pad_token_id)),
            attention_mask=real.long(),
            labels=None,
            image_mask=torch.zeros_like(real),
            pixel_values=None,
            image_keys=[],
            slices=slices,
            truncated=[False] * len(slices),
        )
        return self._embed(batch)

    def _one_image_layout(self) -> ProcessedBatch:
        if self._image_layout is None:
            self._image_layout = self.model.processor([[Image.new("RGB", (8, 8))]])
        return self._image_layout

    def _embed(self, batch: ProcessedBatch) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                output = self.model(batch.to(self.model.device))
        finally:
            self.model.train(was_training)
        assert output.embeddings is not None
        return output.embeddings


class CaptionRetrievalDataset(Dataset[tuple[Tensor, list[str]]]):
    """(pixels, captions) per image, the item layout of clip_benchmark's retrieval datasets."""

    def __init__(self, records: Sequence[CaptionedImage], transform: SugarImageTransform) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, list[str]]:
        record = self.records[index]
        return self.transform(record.image.load()), list(record.captions)


def image_captions_collate(batch: Sequence[tuple[Tensor, list[str]]]) -> tuple[Tensor, tuple[list[str], ...]]:
    """Stacked pixels and the caption lists as they are: clip_benchmark's `image_captions_collate_fn`
    (`clip_benchmark.datasets.builder` imports torchvision, so it is restated here)."""
    images, captions = zip(*batch)
    return default_collate(list(images)), tuple(captions)


def recall_from_clip_benchmark(metrics: Mapping[str, float], ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """clip_benchmark's metric names -> sugar's `{"t2i": {"r@k": ...}, "i2t": {...}}`."""
    return {
        "t2i": {f"r@{k}": float(metrics[f"image_retrieval_recall@{k}"]) for k in ks},
        "i2t": {f"r@{k}": float(metrics[f"text_retrieval_recall@{k}"]) for k in ks},
    }


def clip_benchmark_retrieval(
    model: Any,
    records: Sequence[CaptionedImage],
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 16,
    amp: bool = False,
) -> dict[str, dict[str, float]]:
    """Text->image and image->text R@k of `model` on `records`, computed by clip_benchmark itself."""
    try:
        from clip_benchmark.metrics import zeroshot_retrieval
    except ImportError as error:
        raise ImportError(
            f"clip_benchmark is not installed ({error}); install it with `{CLIP_BENCHMARK_INSTALL}`"
        ) from error
    if not records:
        raise ValueError("no records to evaluate")
    if max(ks) > len(records):
        raise ValueError(f"recall@{max(ks)} needs at least {max(ks)} images, got {len(records)}")
    encoder = SugarCLIPEncoder(model)
    loader = DataLoader(
        CaptionRetrievalDataset(records, encoder.transform),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=image_captions_collate,
    )
    metrics = zeroshot_retrieval.evaluate(
        encoder, loader, encoder.tokenizer, model.device.type, amp=amp, recall_k_list=list(ks)
    )
    return recall_from_clip_benchmark(metrics, ks)
