"""Adapters that let external evaluation harnesses drive a SugarModel.

- `clip_adapter`: a CLIP-style encoder (`encode_image` / `encode_text`, a tokenizer, an image
  transform) and a caption dataset, for clip_benchmark's zero-shot retrieval evaluation.
- `lmms_adapter`: an lmms-eval model class (`generate_until`, `loglikelihood`). It subclasses
  lmms-eval's base class, so it is imported on its own (`sugar.eval.harness.lmms_adapter`) and
  needs lmms-eval installed; this package imports without either harness.
"""

from sugar.eval.harness.clip_adapter import (
    TEXT_PAD,
    CaptionRetrievalDataset,
    SugarCLIPEncoder,
    SugarImageTransform,
    SugarTextTokenizer,
    clip_benchmark_retrieval,
    image_captions_collate,
    recall_from_clip_benchmark,
)

__all__ = [
    "TEXT_PAD",
    "CaptionRetrievalDataset",
    "SugarCLIPEncoder",
    "SugarImageTransform",
    "SugarTextTokenizer",
    "clip_benchmark_retrieval",
    "image_captions_collate",
    "recall_from_clip_benchmark",
]
