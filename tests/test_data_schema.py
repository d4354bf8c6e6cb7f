"""The document schema, sentence slicing, task records and RGB decoding of sugar.data."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sugar.data import (
    CaptionedImage,
    Conversation,
    DataFormatError,
    Document,
    ImageLoadError,
    ImageRef,
    MMVPItem,
    Story,
    WinogroundItem,
    open_rgb,
    sentence_spans,
    split_sentences,
    to_rgb,
)


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> Image.Image:
    return Image.new("RGB", size, colour)


# --- ImageRef ------------------------------------------------------------------------------------


def test_image_ref_from_path_and_pil(tmp_path: Path) -> None:
    solid((10, 20, 30)).save(tmp_path / "a.png")
    by_path = ImageRef(tmp_path / "a.png")
    assert by_path.path == tmp_path / "a.png" and by_path.image is None
    assert ImageRef(str(tmp_path / "a.png")) == by_path == ImageRef(path=tmp_path / "a.png")
    loaded = by_path.load()
    assert loaded.mode == "RGB" and loaded.size == (8, 6) and loaded.getpixel((0, 0)) == (10, 20, 30)

    gray = Image.new("L", (4, 4), 77)
    in_memory = ImageRef(gray)
    assert in_memory.path is None and in_memory.image is gray and ImageRef(image=gray) == in_memory
    assert in_memory.load().getpixel((0, 0)) == (77, 77, 77)
    rgb = solid((1, 2, 3))
    assert ImageRef(rgb).load() is not rgb  # a copy: callers may edit what load() returns
    assert "PIL L 4x4" in repr(in_memory)


def test_documents_pickle_for_data_loader_workers(tmp_path: Path) -> None:
    document = Document([ImageRef(tmp_path / "a.png"), "text", ImageRef(Image.new("L", (2, 2), 3))], id="d")
    copy = pickle.loads(pickle.dumps(document))
    assert copy.segments[0] == document.segments[0] and copy.id == "d"
    assert copy.segments[2].load().getpixel((0, 0)) == (3, 3, 3)


def test_image_ref_rejects_bad_sources() -> None:
    with pytest.raises(TypeError, match="file path or a PIL image"):
        ImageRef(3)  # type: ignore[arg-type]
    with pytest.raises(DataFormatError, match="empty"):
        ImageRef("")
    with pytest.raises(TypeError, match="exactly one"):
        ImageRef()
    with pytest.raises(TypeError, match="exactly one"):
        ImageRef("a.png", path="b.png")
    with pytest.raises(TypeError, match="path= expects"):
        ImageRef(path=Image.new("L", (1, 1)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="image= expects"):
        ImageRef(image="a.png")  # type: ignore[arg-type]


def test_image_ref_load_names_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not found: .*nowhere.png"):
        ImageRef(tmp_path / "nowhere.png").load()
    (tmp_path / "noise.png").write_bytes(b"this is not an image at all")
    with pytest.raises(ImageLoadError, match="noise.png"):
        ImageRef(tmp_path / "noise.png").load()


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_image_is_detected(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8))
    whole = tmp_path / f"whole{suffix}"
    noisy.save(whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    assert open_rgb(whole).size == (64, 64)
    with pytest.raises(ImageLoadError, match=f"cut{suffix}"):
        open_rgb(cut)


# --- RGB conversion ------------------------------------------------------------------------------


def test_to_rgb_grayscale_and_bilevel() -> None:
    assert to_rgb(Image.new("L", (3, 3), 200)).getpixel((1, 1)) == (200, 200, 200)
    assert to_rgb(Image.new("1", (3, 3), 1)).getpixel((1, 1)) == (255, 255, 255)
    rgb = solid((5, 6, 7))
    assert to_rgb(rgb) is rgb


def test_to_rgb_composites_alpha_on_white() -> None:
    rgba = Image.new("RGBA", (2, 1), (0, 0, 255, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    out = to_rgb(rgba)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)  # transparent blue becomes white, not blue or black
    assert out.getpixel((1, 0)) == (255, 0, 0)
    half = to_rgb(Image.new("RGBA", (1, 1), (0, 0, 0, 128)))
    assert all(120 <= c <= 135 for c in half.getpixel((0, 0)))
    assert to_rgb(Image.new("LA", (1, 1), (0, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_to_rgb_palette_with_and_without_transparency(tmp_path: Path) -> None:
    palette = solid((200, 10, 10)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert to_rgb(palette).getpixel((0, 0)) == (200, 10, 10)
    transparent = palette.copy()
    transparent.info["transparency"] = transparent.getpixel((0, 0))
    transparent.save(tmp_path / "t.png")
    assert open_rgb(tmp_path / "t.png").getpixel((0, 0)) == (255, 255, 255)


def test_to_rgb_sixteen_bit_and_unsupported_modes(tmp_path: Path) -> None:
    deep = np.array([[0, 65535], [32896, 257]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    out = open_rgb(tmp_path / "deep.png")
    assert [out.getpixel(p)[0] for p in [(0, 0), (1, 0), (0, 1), (1, 1)]] == [0, 255, 128, 1]
    with pytest.raises(ValueError, match="'F'"):
        to_rgb(Image.new("F", (2, 2), 0.5))
    Image.new("I", (2, 2), 5).save(tmp_path / "wide.tif")
    with pytest.raises(ImageLoadError, match="wide.tif"):
        open_rgb(tmp_path / "wide.tif")


# --- Document ------------------------------------------------------------------------------------


def test_document_validation_errors() -> None:
    with pytest.raises(DataFormatError, match="at least one"):
        Document([])
    with pytest.raises(DataFormatError, match=r"segments\[1\]: expected a non-empty text"):
        Document(["ok", "   "])
    with pytest.raises(TypeError, match=r"segments\[0\].*got int.*from_items"):
        Document([5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="Document.segments: expected a list"):
        Document("just a string")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Document.id"):
        Document(["x"], id=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Document.meta"):
        Document(["x"], meta=[])  # type: ignore[arg-type]


def test_document_from_items_and_accessors(tmp_path: Path) -> None:
    pil = solid((1, 1, 1))
    doc = Document.from_items(
        ["a caption", pil, tmp_path / "x.png", ImageRef(pil), "more"], id="d", meta={"k": 1}
    )
    assert doc.modalities == ["text", "image", "image", "image", "text"]
    assert doc.texts == ["a caption", "more"]
    assert [ref.path for ref in doc.images] == [None, tmp_path / "x.png", None]
    assert doc.images[0].image is pil
    assert doc.image_refs() == doc.images and doc.to_documents() == [doc]
    assert Document.from_items(["x.png"]).modalities == ["text"]  # strings are always text
    with pytest.raises(TypeError, match="item 1"):
        Document.from_items(["x", 1.5])  # type: ignore[list-item]


def test_slices_by_sentence_and_by_segment() -> None:
    image = ImageRef(solid((0, 0, 0)))
    text = "  A red ball. It rolls away!  "
    doc = Document([image, text, image, "Then it stops"])
    slices = doc.slices()
    assert [(s.modality, s.segment) for s in slices] == [
        ("image", 0),
        ("text", 1),
        ("text", 1),
        ("image", 2),
        ("text", 3),
    ]
    assert [s.content for s in slices if s.modality == "text"] == [
        "A red ball.",
        "It rolls away!",
        "Then it stops",
    ]
    for s in slices:
        if s.span is not None:
            assert text_of(doc, s.segment)[s.span[0] : s.span[1]] == s.content
    assert slices[0].content is image and slices[0].span is None
    whole = doc.slices(text_unit="segment")
    assert [s.content for s in whole if s.modality == "text"] == [
        "A red ball. It rolls away!",
        "Then it stops",
    ]
    assert whole[1].span == (2, 28)
    with pytest.raises(ValueError, match="text_unit"):
        doc.slices(text_unit="word")  # type: ignore[arg-type]


def text_of(doc: Document, index: int) -> str:
    segment = doc.segments[index]
    assert isinstance(segment, str)
    return segment


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "A red circle. A blue square!  Is it big? Yes.",
            ["A red circle.", "A blue square!", "Is it big?", "Yes."],
        ),
        (
            "Mr. Smith met Dr. Who, e.g. at noon. They talked.",
            ["Mr. Smith met Dr. Who, e.g. at noon.", "They talked."],
        ),
        ("J. R. Tolkien wrote it. Pi is 3.14 here.", ["J. R. Tolkien wrote it.", "Pi is 3.14 here."]),
        ("1. Take the cup.\n2. Drink it.", ["1. Take the cup.", "2. Drink it."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("It ends... and goes on. Done", ["It ends... and goes on.", "Done"]),
        ("no final stop", ["no final stop"]),
        ("line one\nline two", ["line one", "line two"]),
        ("  \n\t ", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected
    assert [text[a:b] for a, b in sentence_spans(text)] == expected


# --- task records --------------------------------------------------------------------------------


def test_captioned_image_documents_and_validation() -> None:
    image = ImageRef(solid((9, 9, 9)))
    item = CaptionedImage(image, ["one", "two"], split="test", image_id="42")
    docs = item.to_documents()
    assert [d.id for d in docs] == ["42#0", "42#1"]
    assert docs[1].segments == [image, "two"] and docs[1].meta["split"] == "test"
    with pytest.raises(DataFormatError, match="at least one caption"):
        CaptionedImage(image, [])
    with pytest.raises(DataFormatError, match=r"captions\[1\]"):
        CaptionedImage(image, ["ok", ""])
    with pytest.raises(TypeError, match="CaptionedImage.image"):
        CaptionedImage("a.jpg", ["x"])  # type: ignore[arg-type]


def test_story_document_interleaves_image_then_sentence() -> None:
    a, b = ImageRef(solid((1, 0, 0))), ImageRef(solid((0, 1, 0)))
    story = Story("s1", [(a, "First."), (b, "Second.")], meta={"album_id": "7"})
    doc = story.to_document()
    assert doc.segments == [a, "First.", b, "Second."] and doc.id == "s1" and doc.meta == {"album_id": "7"}
    assert story.images == [a, b] and story.texts == ["First.", "Second."]
    with pytest.raises(DataFormatError, match="at least one"):
        Story("s", [])
    with pytest.raises(TypeError, match=r"steps\[0\]"):
        Story("s", [(a, "x", "y")])  # type: ignore[list-item]


def test_pair_records_give_two_matching_documents() -> None:
    a, b = ImageRef(solid((1, 0, 0))), ImageRef(solid((0, 1, 0)))
    wino = WinogroundItem("0", "a b", "b a", a, b, tag="Object")
    assert [d.segments for d in wino.to_documents()] == [[a, "a b"], [b, "b a"]]
    assert wino.image_refs() == [a, b]
    mmvp = MMVPItem("1-2", "Color", "red", "blue", a, b, question_ids=("1", "2"))
    assert [d.id for d in mmvp.to_documents()] == ["1-2/0", "1-2/1"]
    with pytest.raises(DataFormatError, match="caption_1"):
        WinogroundItem("0", "a b", " ", a, b)


def test_conversation_rules_and_document() -> None:
    image = ImageRef(solid((3, 3, 3)))
    chat = Conversation("c", image, [("human", "Look: <image>\nWhat is it?"), ("gpt", "A grey square.")])
    assert chat.to_document().segments == ["Look:", image, "What is it?", "A grey square."]
    assert chat.image_refs() == [image]
    text_only = Conversation("t", None, [("human", "Hi"), ("gpt", "Hello")])
    assert text_only.to_document().segments == ["Hi", "Hello"] and text_only.image_refs() == []
    with pytest.raises(DataFormatError, match=r"turns\[1\]: expected role 'gpt'"):
        Conversation("c", None, [("human", "a"), ("human", "b")])
    with pytest.raises(DataFormatError, match="expected 1 <image> placeholder.*found 0"):
        Conversation("c", image, [("human", "no token"), ("gpt", "b")])
    with pytest.raises(DataFormatError, match="expected 0 <image> placeholder.*found 1"):
        Conversation("c", None, [("human", "<image> hi"), ("gpt", "b")])
    with pytest.raises(DataFormatError, match="only appear in a human turn"):
        Conversation("c", image, [("human", "<image>"), ("gpt", "<image>")])
    with pytest.raises(DataFormatError, match="at least one turn"):
        Conversation("c", None, [])
