"""The real-use teacher paths (DINOv2, a BGE-style CLS text encoder, CLIP) on tiny random local models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sugar.teachers.cross import ClipTowers
from sugar.teachers.encoders import Dinov2Expert, HFTextExpert, ImagePreprocess, build_encoder
from sugar.teachers.suite import TeacherSuite

WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] a an the red blue green circle square triangle left right of is above"
).split()


def images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)) for _ in range(count)]


def save_tokenizer(folder: Path) -> None:
    from transformers import BertTokenizer

    BertTokenizer(vocab={word: index for index, word in enumerate(WORDS)}).save_pretrained(folder)


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    dino = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=28,
        patch_size=14,
    )
    Dinov2Model(dino).save_pretrained(root / "dinov2")
    bert = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=64,
    )
    BertModel(bert).save_pretrained(root / "bge")
    save_tokenizer(root / "bge")
    clip = CLIPConfig(
        text_config={
            "vocab_size": len(WORDS),
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 32,
            "bos_token_id": 2,
            "eos_token_id": 3,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(clip).save_pretrained(root / "clip")
    save_tokenizer(root / "clip")
    return {"dinov2": root / "dinov2", "bge": root / "bge", "clip": root / "clip"}


def test_dinov2_expert_pooling(hf_models: dict[str, Path]) -> None:
    cls_expert = Dinov2Expert(str(hf_models["dinov2"]), pooling="cls")
    mean_expert = Dinov2Expert(str(hf_models["dinov2"]), pooling="mean")
    batch = images(3)
    cls, mean = cls_expert.encode(batch), mean_expert.encode(batch)
    assert cls.shape == mean.shape == (3, 32)
    assert torch.allclose(cls.norm(dim=1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(cls, mean)
    pixels = cls_expert.preprocess(batch)
    assert pixels.shape == (3, 3, 28, 28)  # no preprocessor_config.json: the config's image size
    with torch.no_grad():
        expected = cls_expert.model(pixel_values=pixels).pooler_output
    assert torch.allclose(cls, torch.nn.functional.normalize(expected, dim=1), atol=1e-5)
    assert cls_expert.fingerprint() != mean_expert.fingerprint()
    rebuilt = build_encoder(cls_expert.spec())
    assert rebuilt.fingerprint() == cls_expert.fingerprint()


def test_preprocessor_config_is_read(tmp_path: Path, hf_models: dict[str, Path]) -> None:
    from transformers import Dinov2Model

    Dinov2Model.from_pretrained(hf_models["dinov2"]).save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"shortest_edge": 32},
                "crop_size": {"height": 28, "width": 28},
                "do_center_crop": True,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.25, 0.25, 0.25],
                "resample": 2,
            }
        )
    )
    expert = Dinov2Expert(str(tmp_path))
    assert expert.preprocess == ImagePreprocess(32, 28, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear")
    assert expert.encode(images(2)).shape == (2, 32)


def test_image_preprocess_resizes_short_edge_and_crops() -> None:
    preprocess = ImagePreprocess(16, 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    wide = Image.new("RGB", (64, 32), (255, 0, 0))
    array = preprocess.array(wide)
    assert array.shape == (3, 16, 16)
    assert np.allclose(array[0], 1.0) and np.allclose(array[1:], -1.0)  # red in [-1, 1]


def test_bge_style_cls_text_expert(hf_models: dict[str, Path]) -> None:
    expert = HFTextExpert(str(hf_models["bge"]), pooling="cls")
    texts = ["a red circle", "the blue square is left of a green triangle", "above"]
    features = expert.encode(texts)
    assert features.shape == (3, 24)
    assert torch.allclose(features.norm(dim=1), torch.ones(3), atol=1e-5)
    batch = expert.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = expert.model(**batch).last_hidden_state
    assert torch.allclose(features, torch.nn.functional.normalize(hidden[:, 0], dim=1), atol=1e-5)
    mean = HFTextExpert(str(hf_models["bge"]), pooling="mean").encode(texts)
    assert not torch.allclose(features, mean)


def test_clip_towers_match_get_features(hf_models: dict[str, Path]) -> None:
    towers = ClipTowers(str(hf_models["clip"]))
    batch, texts = images(2), ["a red circle", "a blue square above the triangle"]
    image_features, text_features = towers.image.encode(batch), towers.text.encode(texts)
    assert image_features.shape == (2, 16) and text_features.shape == (2, 16)
    with torch.no_grad():
        pixels = towers.image.preprocess(batch)
        expected_images = towers.model.get_image_features(pixel_values=pixels).pooler_output
        tokens = towers.tokenizer(texts, padding=True, return_tensors="pt")
        expected_texts = towers.model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).pooler_output
    assert torch.allclose(image_features, torch.nn.functional.normalize(expected_images, dim=1), atol=1e-5)
    assert torch.allclose(text_features, torch.nn.functional.normalize(expected_texts, dim=1), atol=1e-5)


def test_real_use_suite_round_trip(tmp_path: Path, hf_models: dict[str, Path]) -> None:
    suite = TeacherSuite(
        Dinov2Expert(str(hf_models["dinov2"])),
        HFTextExpert(str(hf_models["bge"]), pooling="cls"),
        ClipTowers(str(hf_models["clip"])),
        cache_dir=tmp_path / "cache",
    )
    assert suite.expert_dim == 32 and suite.cross_dim == 16
    slices = images(2) + ["a red circle", "left of the square"]
    features = suite.slice_features(slices)
    assert features.shape == (4, 48)
    assert torch.all(features[2:, 24:32] == 0)  # the 24-d text expert is padded to 32
    assert torch.allclose(features[:2, 32:], suite.encode_images(slices[:2]))
    suite.save(tmp_path / "teachers")
    saved = json.loads((tmp_path / "teachers" / "suite.json").read_text())
    assert saved["cross"] == {"kind": "clip", "source": str(hf_models["clip"])}
    loaded = TeacherSuite.load(tmp_path / "teachers", cache_dir=None)
    assert torch.equal(loaded.slice_features(slices), features)
