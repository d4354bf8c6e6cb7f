"""The tiny model every unit test builds: a random patch tower and a 2-layer, 32-wide Llama
(well under 100k parameters), so model tests take milliseconds a step."""

from __future__ import annotations

from typing import Any


def tiny_model_config(max_length: int = 64) -> dict[str, Any]:
    """SugarModel overrides for the tiny test model; `max_length` also sizes the positions."""
    return {
        "vision_tower": "patch",
        "image_size": 32,
        "patch_size": 8,
        "patch_dim": 16,
        "projector_hidden": [32],
        "head_hidden": [32],
        "head_dim": 16,
        "max_length": max_length,
        # exact float32 arithmetic, so tests can compare runs tightly (bf16 is tested on its own)
        "autocast": "off",
        "lm_config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": max(128, max_length),
        },
    }
