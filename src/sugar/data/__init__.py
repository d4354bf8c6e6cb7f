"""The data layer: one document schema, strict loaders for the real dataset formats.

    from sugar.data import load_documents, load_coco_karpathy
    pairs = load_coco_karpathy("dataset_coco.json", "coco/images", split="test")
    docs = load_documents("stories.jsonl", format="interleaved", image_root="world/images")
    docs[0].slices()   # images and sentences, the units the teacher kernels align
    clips = load_youcook2("youcookii_annotations_trainval.json", "raw_videos", split="val")

Formats and what `image_root` means for each are in `sugar.data.loaders`.
"""

from sugar.data.errors import (
    DataFormatError,
    ImageLoadError,
    LoadReport,
    SkippedRecord,
    SkippedRecordsWarning,
)
from sugar.data.images import open_rgb, to_rgb
from sugar.data.loaders import (
    FORMATS,
    load_coco_karpathy,
    load_documents,
    load_interleaved,
    load_llava_conversations,
    load_mmc4,
    load_mmvp_vlm,
    load_vist_sis,
    load_winoground,
)
from sugar.data.schema import (
    IMAGE_TOKEN,
    CaptionedImage,
    Conversation,
    Document,
    ImageRef,
    MMVPItem,
    Segment,
    Slice,
    Story,
    WinogroundItem,
)
from sugar.data.text import sentence_spans, split_sentences
from sugar.data.video import (
    ClipRecord,
    ClipSegment,
    SampledFrames,
    VideoLoadError,
    load_msrvtt,
    load_youcook2,
    sample_frames,
    sample_indices,
    world_clip_annotations,
)

__all__ = [
    "FORMATS",
    "IMAGE_TOKEN",
    "CaptionedImage",
    "ClipRecord",
    "ClipSegment",
    "Conversation",
    "DataFormatError",
    "Document",
    "ImageLoadError",
    "ImageRef",
    "LoadReport",
    "MMVPItem",
    "SampledFrames",
    "Segment",
    "SkippedRecord",
    "SkippedRecordsWarning",
    "Slice",
    "Story",
    "VideoLoadError",
    "WinogroundItem",
    "load_coco_karpathy",
    "load_documents",
    "load_interleaved",
    "load_llava_conversations",
    "load_mmc4",
    "load_mmvp_vlm",
    "load_msrvtt",
    "load_vist_sis",
    "load_winoground",
    "load_youcook2",
    "open_rgb",
    "sample_frames",
    "sample_indices",
    "sentence_spans",
    "split_sentences",
    "to_rgb",
    "world_clip_annotations",
]
