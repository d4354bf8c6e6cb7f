"""The LLaVA adapter on a tiny random LlavaForConditionalGeneration saved to a local folder (offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from sugar.models import SugarModel, build_word_tokenizer

CORPUS = ["USER: what is in the picture? ASSISTANT: a red circle.", "A blue square is left of a star. It is big."]
# float32 throughout (autocast off), so the layout can be compared with HF exactly
HEAD = {"head_hidden": [32], "head_dim": 16, "dtype": "float32", "autocast": "off", "max_length": 64}


def image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LLaVA checkpoint laid out like llava-hf/llava-1.5-7b-hf: model, tokenizer, image processor."""
    folder = tmp_path_factory.mktemp("tiny-llava")
    tokenizer = build_word_tokenizer(CORPUS)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_index=image_token,
        image_seq_length=16,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_llava_layout_matches_hf(llava_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = SugarModel.from_llava(llava_dir, lora_r=0, **HEAD).eval()
    assert model.backbone.tokens_per_image == 16  # (32 / 8)^2 patches, CLS dropped
    docs = [[image(0), "what is in the picture?"], ["a red circle.", image(1), "It is big."]]
    batch = model.processor(docs)
    assert int((batch.input_ids == model.backbone.image_token_id).sum()) == 2 * 16
    llava = model.backbone.llava
    with torch.no_grad():
        ours = model.hidden_states(batch)
        theirs = llava.model(
            input_ids=batch.input_ids, pixel_values=batch.pixel_values, attention_mask=batch.attention_mask
        ).last_hidden_state
    real = batch.attention_mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)


def test_llava_encodes_pools_and_generates(llava_dir: Path) -> None:
    model = SugarModel.from_llava(llava_dir, lora_r=4, lora_alpha=8.0, **HEAD).eval()
    docs = [[image(0), "what is in the picture?"], ["a red circle.", image(1)]]
    vectors = model.encode(docs)
    assert vectors.shape == (2, 16)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(2))
    batch = model.processor(docs)
    with torch.no_grad():
        out = model(batch, cut_points=[[0], [1]], output_hidden_states=True)
    span = batch.slices[1][1]
    assert span.modality == "image"
    expected = model.head(out.hidden_states[1, span.start : span.end].mean(0, keepdim=True))
    torch.testing.assert_close(out.embeddings[1:], expected, atol=1e-6, rtol=1e-5)
    text = model.generate([image(2), "USER: what is in the picture? ASSISTANT:"], max_new_tokens=4)
    assert isinstance(text, str)


def test_llava_training_step_and_round_trip(llava_dir: Path, tmp_path: Path) -> None:
    model = SugarModel.from_llava(llava_dir, lora_r=4, lora_alpha=8.0, **HEAD).train()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert all(
        name.startswith(("head.", "backbone.llava.model.multi_modal_projector.")) or "lora_" in name
        for name in trainable
    )
    assert any("language_model" in name and "lora_" in name for name in trainable)
    assert not any("vision_tower" in name for name in trainable)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(
        [{"params": model.generative_parameters()}, {"params": model.retrieval_parameters(), "lr": 1e-2}], lr=1e-2
    )
    docs = [[image(0), "what is in the picture?", "a red circle."], [image(1), "A blue square is left of a star."]]
    batch = model.processor(docs, targets=[[2], [1]])
    out = model(batch, cut_points=[[0, 2], [0, 1]])
    assert out.loss is not None and torch.isfinite(out.loss)
    similarity = out.embeddings @ out.embeddings.T
    (out.loss + (similarity - torch.eye(4)).pow(2).mean()).backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert any("lora_" in name for name in changed)
    assert any("multi_modal_projector" in name for name in changed)
    assert any(name.startswith("head.") for name in changed)
    assert not any("vision_tower" in name or ("language_model" in name and "lora_" not in name) for name in changed)

    model.eval()
    saved = model.save_pretrained(tmp_path / "sugar-llava")
    stored = set(__import__("safetensors.torch", fromlist=["load_file"]).load_file(saved / "model.safetensors"))
    assert not any("vision_tower" in key for key in stored)  # frozen, reloaded from llava_source
    loaded = SugarModel.from_pretrained(saved).eval()
    query = [[image(3), "what is in the picture?"]]
    torch.testing.assert_close(loaded.encode(query), model.encode(query), atol=0, rtol=0)
    prompt = [image(3), "USER: what is in the picture? ASSISTANT:"]
    assert loaded.generate(prompt, max_new_tokens=4) == model.generate(prompt, max_new_tokens=4)
