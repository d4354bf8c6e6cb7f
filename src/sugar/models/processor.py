"""Documents -> token rows: where every slice lands, which tokens carry labels, the image pixels.

Layout of one row (the generation prompt format is the same, without the end-of-sequence token):

    [<bos>] segment_0 segment_1 ... segment_{n-1} [<eos>]

- an image segment becomes `tokens_per_image` placeholder tokens, replaced by the projected
  visual features inside the model;
- a text segment is tokenized on its own, with `segment_separator` prepended unless it is the
  first segment; its sentences (method.md section 2, `sugar.data.sentence_spans`) are located in
  the tokens through the tokenizer's character offsets;
- `<eos>` is appended when labels are requested, and labelled when the last segment is a target,
  so a trained model learns where its answer stops.

Slices follow `sugar.data.Document.slices(text_unit)` one to one, so the teacher's slice sequence
and the model's slice spans index the same units. Rows are right-padded.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from sugar.data.schema import Document, ImageRef
from sugar.data.text import sentence_spans
from sugar.models.vision import pixel_key

IGNORE_INDEX = -100
ImageTransform = Callable[[list[Image.Image]], np.ndarray]
DocumentLike = Sequence["str | Image.Image | ImageRef"] | Document


@dataclass(frozen=True)
class SliceSpan:
    """One slice of a processed document: its tokens [start, end) in the row and what it shows."""

    modality: Literal["image", "text"]
    start: int
    end: int  # exclusive
    content: str | Image.Image  # the sentence (or whole text segment), or the image
    segment: int  # index of the document segment it comes from

    def __len__(self) -> int:
        return self.end - self.start


@dataclass
class ProcessedBatch:
    """Model-ready tensors for a list of documents, plus the slice map the losses need."""

    input_ids: Tensor  # (B, T) right-padded
    attention_mask: Tensor  # (B, T) 1 on real tokens
    labels: Tensor | None  # (B, T) token ids on target tokens, -100 elsewhere; None when no targets
    image_mask: Tensor  # (B, T) True at visual-token positions
    pixel_values: Tensor | None  # (num_images, 3, H, W) in row-major order of image_mask; None if no image
    image_keys: list[str]  # content hash of each image's pixels (the frozen tower's cache key)
    slices: list[list[SliceSpan]]  # per document, in order
    truncated: list[bool] = field(default_factory=list)  # per document: slices dropped by max_length

    def to(self, device: torch.device | str) -> ProcessedBatch:
        def move(value: Tensor | None) -> Tensor | None:
            return None if value is None else value.to(device, non_blocking=True)

        return replace(
            self,
            input_ids=move(self.input_ids),
            attention_mask=move(self.attention_mask),
            labels=move(self.labels),
            image_mask=move(self.image_mask),
            pixel_values=move(self.pixel_values),
        )

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_images(self) -> int:
        return len(self.image_keys)

    @property
    def num_label_tokens(self) -> int:
        """Tokens that contribute to the generative loss (after the next-token shift)."""
        if self.labels is None:
            return 0
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


@dataclass
class _Row:
    ids: list[int]
    labels: list[int]
    image: list[bool]
    slices: list[SliceSpan]
    images: list[Image.Image]
    truncated: bool


def document_segments(document: Any, index: int, load_images: bool = True) -> list[Any]:
    """The segments of one document as str / PIL images; errors name `documents[index][i]`.

    `load_images=False` only validates: `ImageRef` segments stay unopened.
    """
    if isinstance(document, Document):
        items: Sequence[Any] = document.segments
    elif isinstance(document, (list, tuple)):
        items = document
    elif isinstance(document, (str, Image.Image, ImageRef)):
        raise TypeError(
            f"documents[{index}]: expected a document (a list of str / PIL.Image segments), got a single "
            f"{type(document).__name__}; wrap it in a list, e.g. [[text]] for one document with one segment"
        )
    else:
        raise TypeError(
            f"documents[{index}]: expected a document (a list of str / PIL.Image segments or a "
            f"sugar.data.Document), got {type(document).__name__}"
        )
    if len(items) == 0:
        raise ValueError(f"documents[{index}] is empty: a document needs at least one text or image segment")
    segments: list[str | Image.Image] = []
    for position, item in enumerate(items):
        if isinstance(item, str):
            if not item.strip():
                raise ValueError(f"documents[{index}][{position}]: expected a non-empty text, got {item!r}")
            segments.append(item)
        elif isinstance(item, Image.Image):
            segments.append(item)
        elif isinstance(item, ImageRef):
            segments.append(item.load() if load_images else item)
        else:
            raise TypeError(
                f"documents[{index}][{position}]: expected str (text) or PIL.Image.Image (image), "
                f"got {type(item).__name__}"
            )
    return segments


class SugarProcessor:
    """Turns documents into a `ProcessedBatch` for one tokenizer and one vision tower."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_transform: ImageTransform,
        tokens_per_image: int,
        image_token_id: int,
        *,
        add_bos: bool = True,
        segment_separator: str = " ",
        text_unit: Literal["sentence", "segment"] = "sentence",
        max_length: int = 512,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(
                f"the tokenizer must be a fast (Rust) tokenizer: slices are located through its character "
                f"offsets; got {type(tokenizer).__name__}"
            )
        if text_unit not in ("sentence", "segment"):
            raise ValueError(f"text_unit must be 'sentence' or 'segment', got {text_unit!r}")
        if add_bos and tokenizer.bos_token_id is None:
            raise ValueError("add_bos=True but the tokenizer has no bos token")
        self.tokenizer = tokenizer
        self.image_transform = image_transform
        self.tokens_per_image = tokens_per_image
        self.image_token_id = image_token_id
        self.add_bos = add_bos
        self.segment_separator = segment_separator
        self.text_unit = text_unit
        self.max_length = max_length

    def __call__(
        self,
        documents: Sequence[DocumentLike],
        targets: Sequence[Sequence[int]] | None = None,
        max_length: int | None = None,
        add_eos: bool | None = None,
    ) -> ProcessedBatch:
        """Tokenize `documents`; `targets[d]` lists the segment indices of document d that get labels.

        `add_eos` defaults to True exactly when targets are given (training rows end in <eos>;
        encode and generate rows do not).
        """
        if isinstance(documents, (str, Image.Image, Document)) or not isinstance(documents, Sequence):
            raise TypeError(
                f"documents: expected a list of documents, got {type(documents).__name__}; "
                "pass one document as [document]"
            )
        if len(documents) == 0:
            raise ValueError("documents is empty: expected at least one document")
        if targets is not None and len(targets) != len(documents):
            raise ValueError(f"targets: expected one entry per document ({len(documents)}), got {len(targets)}")
        limit = self.max_length if max_length is None else max_length
        with_eos = (targets is not None) if add_eos is None else add_eos
        rows = []
        for index, document in enumerate(documents):
            segments = document_segments(document, index)
            wanted = self._target_set(targets[index], segments, index) if targets is not None else set()
            rows.append(self._encode(segments, wanted, index, limit, with_eos))
        dropped = sum(row.truncated for row in rows)
        if dropped:
            warnings.warn(
                f"{dropped} of {len(rows)} documents were longer than max_length={limit} tokens; "
                "their trailing slices were dropped (see ProcessedBatch.truncated)",
                stacklevel=2,
            )
        return self._collate(rows, with_labels=targets is not None)

    @staticmethod
    def _target_set(target: Sequence[int], segments: list[str | Image.Image], index: int) -> set[int]:
        if isinstance(target, (str, bytes)) or not isinstance(target, (Sequence, set, frozenset)):
            raise TypeError(f"targets[{index}]: expected a list of segment indices, got {type(target).__name__}")
        chosen = set()
        for raw in target:
            if isinstance(raw, bool) or not isinstance(raw, (int, np.integer)):
                raise TypeError(f"targets[{index}]: segment indices must be ints, got {raw!r}")
            position = int(raw)
            if not -len(segments) <= position < len(segments):
                raise IndexError(
                    f"targets[{index}]: segment index {position} out of range for a document of {len(segments)} segments"
                )
            position %= len(segments)
            if not isinstance(segments[position], str):
                raise ValueError(
                    f"targets[{index}]: segment {position} is an image; only text segments can be generation targets"
                )
            chosen.add(position)
        return chosen

    def _text_spans(self, text: str) -> list[tuple[int, int]]:
        if self.text_unit == "segment":
            start = len(text) - len(text.lstrip())
            return [(start, len(text.rstrip()))]
        return sentence_spans(text)

    def _encode(
        self, segments: list[str | Image.Image], targets: set[int], index: int, limit: int, with_eos: bool
    ) -> _Row:
        ids: list[int] = []
        labels: list[int] = []
        image: list[bool] = []
        slices: list[SliceSpan] = []
        images: list[Image.Image] = []
        if self.add_bos:
            ids.append(int(self.tokenizer.bos_token_id))
            labels.append(IGNORE_INDEX)
            image.append(False)
        for position, segment in enumerate(segments):
            if isinstance(segment, Image.Image):
                start = len(ids)
                ids.extend([self.image_token_id] * self.tokens_per_image)
                labels.extend([IGNORE_INDEX] * self.tokens_per_image)
                image.extend([True] * self.tokens_per_image)
                slices.append(SliceSpan("image", start, len(ids), segment, position))
                images.append(segment)
                continue
            prefix = self.segment_separator if position > 0 else ""
            encoded = self.tokenizer(prefix + segment, add_special_tokens=False, return_offsets_mapping=True)
            token_ids = list(encoded["input_ids"])
            if not token_ids:
                raise ValueError(f"documents[{index}][{position}]: the text produced no tokens: {segment!r}")
            start = len(ids)
            ids.extend(token_ids)
            labels.extend(token_ids if position in targets else [IGNORE_INDEX] * len(token_ids))
            image.extend([False] * len(token_ids))
            slices.extend(self._locate(segment, prefix, encoded["offset_mapping"], start, position, index))
        truncated = False
        room = limit - (1 if with_eos else 0)
        if len(ids) > room:
            kept = [span for span in slices if span.end <= room]
            if not kept:
                raise ValueError(
                    f"documents[{index}]: its first slice needs {slices[0].end} tokens but max_length is {limit}"
                )
            cut = kept[-1].end
            ids, labels, image = ids[:cut], labels[:cut], image[:cut]
            images = images[: sum(span.modality == "image" for span in kept)]
            slices = kept
            truncated = True
        if with_eos:
            if self.tokenizer.eos_token_id is None:
                raise ValueError("the tokenizer has no eos token to end training rows with")
            eos = int(self.tokenizer.eos_token_id)
            ids.append(eos)
            labels.append(eos if (len(segments) - 1) in targets and not truncated else IGNORE_INDEX)
            image.append(False)
        return _Row(ids, labels, image, slices, images, truncated)

    def _locate(
        self,
        text: str,
        prefix: str,
        offsets: Sequence[tuple[int, int]],
        row_start: int,
        segment: int,
        index: int,
    ) -> list[SliceSpan]:
        """Token span of each sentence: a token belongs to the first sentence that ends after it starts.

        Whitespace-only tokens between sentences thus lead the next sentence, and each span ends on
        the last token overlapping its sentence's characters (the token whose state is pooled).
        """
        spans = [(start + len(prefix), end + len(prefix)) for start, end in self._text_spans(text)]
        ends = [end for _, end in spans]
        first: list[int | None] = [None] * len(spans)
        last: list[int | None] = [None] * len(spans)
        for token, (char_start, _) in enumerate(offsets):
            sentence = bisect.bisect_right(ends, char_start)
            if sentence == len(spans):
                continue  # trailing whitespace after the last sentence: in no slice
            if first[sentence] is None:
                first[sentence] = token
            last[sentence] = token
        result = []
        for number, (start, end) in enumerate(spans):
            if first[number] is None or last[number] is None:
                raise ValueError(
                    f"documents[{index}][{segment}]: sentence {number} ({text[start - len(prefix):end - len(prefix)]!r}) "
                    "got no tokens of its own; use text_unit='segment' for this tokenizer"
                )
            content = text[start - len(prefix) : end - len(prefix)]
            result.append(SliceSpan("text", row_start + first[number], row_start + last[number] + 1, content, segment))
        return result

    def _collate(self, rows: list[_Row], with_labels: bool) -> ProcessedBatch:
        width = max(len(row.ids) for row in rows)
        pad = int(self.tokenizer.pad_token_id)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        image_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for b, row in enumerate(rows):
            n = len(row.ids)
            input_ids[b, :n] = torch.tensor(row.ids, dtype=torch.long)
            attention_mask[b, :n] = 1
            labels[b, :n] = torch.tensor(row.labels, dtype=torch.long)
            image_mask[b, :n] = torch.tensor(row.image, dtype=torch.bool)
        all_images = [image for row in rows for image in row.images]
        pixel_values = None
        keys: list[str] = []
        if all_images:
            pixels = self.image_transform(all_images)
            keys = [pixel_key(array) for array in pixels]
            pixel_values = torch.from_numpy(np.ascontiguousarray(pixels))
        return ProcessedBatch(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels if with_labels else None,
            image_mask=image_mask,
            pixel_values=pixel_values,
            image_keys=keys,
            slices=[row.slices for row in rows],
            truncated=[row.truncated for row in rows],
        )
