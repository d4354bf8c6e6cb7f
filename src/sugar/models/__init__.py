"""The Sugar model: vision tower -> projector -> causal LM, plus a retrieval head.

    from sugar.models import SugarModel
    model = SugarModel.from_preset("tiny", tokenizer_corpus=texts)   # or from_pretrained(folder)
    batch = model.processor(documents, targets=[[1], ...])            # documents: lists of str / PIL images
    out = model(batch, cut_points=[[0, 2], ...])                      # out.loss, out.embeddings
    vectors = model.encode(documents)                                 # (N, head_dim), L2-normalised
    text = model.generate([image, "Question: what colour is the circle?"])
"""

from sugar.models.backbones import Backbone, CompositeBackbone, LlavaBackbone, build_backbone
from sugar.models.config import PRESETS, SugarConfig, preset_config
from sugar.models.language import build_word_tokenizer, smollm2_checkpoint
from sugar.models.modeling import RetrievalHead, SugarModel, SugarOutput
from sugar.models.processor import IGNORE_INDEX, ProcessedBatch, SliceSpan, SugarProcessor
from sugar.models.vision import FeatureCache

__all__ = [
    "IGNORE_INDEX",
    "PRESETS",
    "Backbone",
    "CompositeBackbone",
    "FeatureCache",
    "LlavaBackbone",
    "ProcessedBatch",
    "RetrievalHead",
    "SliceSpan",
    "SugarConfig",
    "SugarModel",
    "SugarOutput",
    "SugarProcessor",
    "build_backbone",
    "build_word_tokenizer",
    "preset_config",
    "smollm2_checkpoint",
]
