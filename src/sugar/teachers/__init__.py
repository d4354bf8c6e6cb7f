"""The frozen teachers of the Triple Kernel: experts, the cross-modal teacher, the feature cache.

    from sugar.teachers import TeacherSuite
    suite = TeacherSuite.load("runs/demo/teachers")     # written by `sugar teachers fit`
    feats = suite.slice_features(["a red circle", img])  # read by suite.kernel (TripleKernel)

Names are imported on first use, so `sugar --help` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TeacherSuite": "sugar.teachers.suite",
    "FeatureCache": "sugar.teachers.cache",
    "CachedEncoder": "sugar.teachers.cache",
    "content_key": "sugar.teachers.cache",
    "SliceEncoder": "sugar.teachers.encoders",
    "EfficientNetLiteExpert": "sugar.teachers.encoders",
    "Dinov2Expert": "sugar.teachers.encoders",
    "HFTextExpert": "sugar.teachers.encoders",
    "ImagePreprocess": "sugar.teachers.encoders",
    "build_encoder": "sugar.teachers.encoders",
    "ToyImageExpert": "sugar.teachers.toy",
    "ToyTextExpert": "sugar.teachers.toy",
    "HeadConfig": "sugar.teachers.cross",
    "LiTHeads": "sugar.teachers.cross",
    "ClipTowers": "sugar.teachers.cross",
    "FitConfig": "sugar.teachers.fit",
    "PairSet": "sugar.teachers.fit",
    "fit_lit_heads": "sugar.teachers.fit",
    "fit_teachers": "sugar.teachers.fit",
    "retrieval_recall": "sugar.teachers.fit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sugar.teachers' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
