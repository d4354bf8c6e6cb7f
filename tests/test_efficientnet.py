"""The shared pretrained EfficientNet-Lite0: folding batch norm into the convolutions keeps its outputs."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch")

from sugar.efficientnet import load_efficientnet_lite0  # noqa: E402


def test_folded_network_matches_the_original() -> None:
    original = load_efficientnet_lite0(128, fold_batch_norm=False)
    folded = load_efficientnet_lite0(128)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in original.modules())
    assert not any(p.requires_grad for p in folded.parameters())
    pixels = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected, got = original.extract_features(pixels), folded.extract_features(pixels)
    assert got.shape == (3, 1280, 4, 4)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
