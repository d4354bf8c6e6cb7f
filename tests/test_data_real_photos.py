"""Smoke test: real photos (colour, grayscale, bilevel, RGBA) flow through the COCO loader.

The photos come from scikit-image's bundled samples, written to a temporary folder by
tests/fixtures/skimage_coco/materialize.py; only the hand-written captions are in the repository.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from sugar.data import load_coco_karpathy, load_documents

pytest.importorskip("skimage", reason="scikit-image provides the sample photos (install the test extra)")

FIXTURE = Path(__file__).parent / "fixtures" / "skimage_coco"


def materializer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("skimage_coco_materialize", FIXTURE / "materialize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materializer().materialize(tmp_path_factory.mktemp("skimage_photos"))


def test_real_photos_load_as_rgb(photo_root: Path) -> None:
    from skimage import data

    items = load_coco_karpathy(FIXTURE / "dataset_coco.json", photo_root, verify_images=True)
    assert len(items) == 10
    assert all(len(item.captions) == 5 for item in items)
    assert len({caption for item in items for caption in item.captions}) == 50
    names = [item.image.path.name for item in items]
    assert names == list(materializer().PHOTOS)
    images = {name: item.image.load() for name, item in zip(names, items, strict=True)}
    for name, image in images.items():
        pixels = getattr(data, materializer().PHOTOS[name])()
        assert image.mode == "RGB", name
        assert image.size == (pixels.shape[1], pixels.shape[0]), name
    camera = np.asarray(images["camera.png"])
    assert (camera[..., 0] == data.camera()).all()  # grayscale PNG: lossless, replicated to 3 channels
    assert (camera[..., 0] == camera[..., 1]).all() and (camera[..., 1] == camera[..., 2]).all()
    horse = np.asarray(images["horse.png"])
    assert set(np.unique(horse)) <= {0, 255} and (horse[..., 0] == np.where(data.horse(), 255, 0)).all()
    logo = np.asarray(images["logo.png"])
    alpha = data.logo()[..., 3]
    assert (logo[alpha == 0] == 255).all()  # transparent corners composited on white
    coffee = np.asarray(images["coffee.jpg"]).astype(int)
    assert np.abs(coffee - data.coffee().astype(int)).mean() < 4  # JPEG round trip stays close


def test_real_photos_split_and_documents(photo_root: Path) -> None:
    assert [
        i.image_id for i in load_coco_karpathy(FIXTURE / "dataset_coco.json", photo_root, split="test")
    ] == [
        "900009",
        "900010",
    ]
    docs = load_documents(FIXTURE / "dataset_coco.json", format="coco_karpathy", image_root=photo_root)
    assert len(docs) == 50
    assert all(doc.modalities == ["image", "text"] for doc in docs)
    assert docs[0].texts == ["A smiling astronaut in an orange flight suit poses for a portrait."]
