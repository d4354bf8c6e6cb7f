"""Each loader on its hand-written fixture, and every malformed input failing with a clear error."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from sugar.data import (
    FORMATS,
    DataFormatError,
    ImageLoadError,
    LoadReport,
    SkippedRecordsWarning,
    load_coco_karpathy,
    load_documents,
    load_interleaved,
    load_llava_conversations,
    load_mmc4,
    load_mmvp_vlm,
    load_vist_sis,
    load_winoground,
)

FIXTURES = Path(__file__).parent / "fixtures"
COCO = FIXTURES / "coco_karpathy" / "dataset_coco.json"
COCO_IMAGES = FIXTURES / "coco_karpathy" / "images"
VIST = FIXTURES / "vist_sis" / "test.story-in-sequence.json"
VIST_IMAGES = FIXTURES / "vist_sis" / "images"
WINO = FIXTURES / "winoground" / "examples.jsonl"
WINO_IMAGES = FIXTURES / "winoground" / "images"
MMVP = FIXTURES / "mmvp_vlm" / "Questions.csv"
MMVP_IMAGES = FIXTURES / "mmvp_vlm" / "MLLM_VLM Images"
LLAVA = FIXTURES / "llava" / "conversations.json"
LLAVA_IMAGES = FIXTURES / "llava" / "images"
MMC4 = FIXTURES / "mmc4" / "docs_shard_0.jsonl"
MMC4_IMAGES = FIXTURES / "mmc4" / "images"
INTERLEAVED = FIXTURES / "interleaved" / "documents.jsonl"
INTERLEAVED_IMAGES = FIXTURES / "interleaved" / "images"

RED = (220, 30, 30)
BLUE = (30, 60, 220)


def close(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def copy_fixture(name: str, tmp_path: Path) -> Path:
    """A writable copy of one fixture folder, for the malformed-input cases."""
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def edit_json(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def edit_line(path: Path, number: int, new_text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = new_text
    path.write_text("\n".join(lines) + "\n")


# --- COCO Karpathy -------------------------------------------------------------------------------


def test_coco_karpathy_fixture() -> None:
    items = load_coco_karpathy(COCO, COCO_IMAGES, verify_images=True)
    assert [item.image_id for item in items] == ["42", "73", "74", "133"]
    assert [item.split for item in items] == ["test", "train", "restval", "val"]
    assert [len(item.captions) for item in items] == [5, 5, 6, 5]
    assert items[0].captions[2] == "A bright red box sits in the centre"  # raw caption stripped
    assert items[0].image.path == COCO_IMAGES / "val2014" / "COCO_val2014_000000000042.jpg"
    assert items[1].image.path == COCO_IMAGES / "train2014" / "COCO_train2014_000000000073.jpg"
    assert items[0].meta["imgid"] == 0 and items[0].meta["sentids"] == [0, 1, 2, 3, 4]
    red = items[0].image.load()
    assert red.mode == "RGB" and close(red.getpixel((16, 12)), RED)
    gray = items[3].image.load()  # a grayscale JPEG, as a few real COCO images are
    assert gray.mode == "RGB" and len(set(gray.getpixel((16, 12)))) == 1


def test_coco_karpathy_split_filter_and_restval() -> None:
    assert [i.image_id for i in load_coco_karpathy(COCO, COCO_IMAGES, split="train")] == ["73", "74"]
    assert [i.image_id for i in load_coco_karpathy(COCO, COCO_IMAGES, split="test")] == ["42"]
    assert [i.image_id for i in load_coco_karpathy(COCO, COCO_IMAGES, split="restval")] == ["74"]
    with pytest.raises(
        DataFormatError,
        match=r"no image has split 'validation' \(splits in the file: restval, test, train, val\)",
    ):
        load_coco_karpathy(COCO, COCO_IMAGES, split="validation")


def test_coco_karpathy_flickr_style_without_filepath_or_cocoid(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    shutil.copy(
        COCO_IMAGES / "val2014" / "COCO_val2014_000000000042.jpg", tmp_path / "img" / "1000092795.jpg"
    )
    entry = {
        "filename": "1000092795.jpg",
        "imgid": 0,
        "split": "train",
        "sentids": [0],
        "sentences": [{"raw": "Two young guys with shaggy hair.", "tokens": [], "imgid": 0, "sentid": 0}],
    }
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"images": [entry], "dataset": "flickr30k"}))
    [item] = load_coco_karpathy(tmp_path / "dataset_flickr30k.json", tmp_path / "img")
    assert item.image_id == "0" and item.image.path == tmp_path / "img" / "1000092795.jpg"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["images"][1].pop("filename"), r"images\[1\]: missing field 'filename'"),
        (lambda d: d["images"][2].update(sentences=[]), r"images\[2\]: sentences: expected a non-empty list"),
        (
            lambda d: d["images"][0]["sentences"][3].update(raw=7),
            r"images\[0\]: sentences\[3\]\.raw: expected a non-empty string, got int 7",
        ),
        (
            lambda d: d["images"][0]["sentences"][1].pop("raw"),
            r"images\[0\]: missing field 'sentences\[1\]\.raw'",
        ),
        (
            lambda d: d["images"][3].update(split=None),
            r"images\[3\]: split: expected a non-empty string, got null",
        ),
        (
            lambda d: [d["images"][0].pop(k) for k in ("cocoid", "imgid")],
            r"images\[0\]: missing field 'cocoid' or 'imgid'",
        ),
        (
            lambda d: d["images"].__setitem__(1, "COCO_1.jpg"),
            r"images\[1\]: image entry: expected a JSON object, got str",
        ),
        (
            lambda d: d["images"][1].update(filename="gone.jpg"),
            r"images\[1\]: filepath/filename: image file not found: .*train2014.gone\.jpg",
        ),
    ],
)
def test_coco_karpathy_malformed(tmp_path: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    folder = copy_fixture("coco_karpathy", tmp_path)
    edit_json(folder / "dataset_coco.json", edit)
    with pytest.raises(DataFormatError, match=r"dataset_coco\.json: " + expected):
        load_coco_karpathy(folder / "dataset_coco.json", folder / "images")


def test_coco_karpathy_whole_file_errors(tmp_path: Path) -> None:
    broken = tmp_path / "dataset_coco.json"
    broken.write_text('{"images": [\n  {"filename": "a.jpg",}\n]}')
    with pytest.raises(DataFormatError, match=r"dataset_coco\.json:2: invalid JSON at column"):
        load_coco_karpathy(broken, tmp_path)
    broken.write_text('[{"filename": "a.jpg"}]')
    with pytest.raises(DataFormatError, match="expected a JSON object with an 'images' list"):
        load_coco_karpathy(broken, tmp_path)
    with pytest.raises(FileNotFoundError, match="annotation file not found: .*missing.json"):
        load_coco_karpathy(tmp_path / "missing.json", tmp_path)
    with pytest.raises(FileNotFoundError, match="image_root is not a directory: .*no_images"):
        load_coco_karpathy(COCO, tmp_path / "no_images")


def test_image_problems_found_at_load_or_on_decode(tmp_path: Path) -> None:
    folder = copy_fixture("coco_karpathy", tmp_path)
    victim = folder / "images" / "val2014" / "COCO_val2014_000000000074.jpg"
    victim.write_bytes(victim.read_bytes()[:300])  # truncated
    items = load_coco_karpathy(folder / "dataset_coco.json", folder / "images")  # existence only: fine
    with pytest.raises(ImageLoadError, match="COCO_val2014_000000000074.jpg"):
        items[2].image.load()
    with pytest.raises(
        ImageLoadError, match=r"images\[2\]: cannot decode image file .*COCO_val2014_000000000074\.jpg"
    ):
        load_coco_karpathy(folder / "dataset_coco.json", folder / "images", verify_images=True)
    report = LoadReport()
    with pytest.warns(SkippedRecordsWarning, match="skipped 1 bad record"):
        kept = load_coco_karpathy(
            folder / "dataset_coco.json",
            folder / "images",
            verify_images=True,
            on_error="skip",
            report=report,
        )
    assert [i.image_id for i in kept] == ["42", "73", "133"]
    assert report.loaded == 3 and report.num_skipped == 1
    assert "images[2]" in report.skipped[0].location and "truncated" in report.skipped[0].reason.lower()


# --- VIST SIS ------------------------------------------------------------------------------------


def test_vist_sis_fixture() -> None:
    stories = load_vist_sis(VIST, VIST_IMAGES, verify_images=True)
    assert [s.id for s in stories] == ["50001", "50002"]
    first, second = stories
    assert [ref.path.name for ref in first.images] == [
        "4401.jpg",
        "4402.jpg",
        "4403.png",
        "4404.jpg",
        "4405.jpg",
    ]
    # the second story is stored out of order: worker_arranged_photo_order decides
    assert [ref.path.name for ref in second.images] == [
        "4403.png",
        "4406.jpg",
        "4401.jpg",
        "4407.jpg",
        "4405.jpg",
    ]
    assert second.texts[0] == "Anna brought the red ball to the park."
    assert second.meta == {
        "storylet_ids": ["250010", "250011", "250012", "250013", "250014"],
        "album_id": "72157600000000001",
    }
    lower = load_vist_sis(VIST, VIST_IMAGES, text_field="text")
    assert lower[0].texts[0] == "[male] put his red ball on the grass ."
    for ref in first.images:  # palette PNG and grayscale JPEG decode to RGB too
        assert ref.load().mode == "RGB"
    ball = [
        close(ref.load().getpixel(x), RED)
        for ref, x in zip(first.images, [(5, 12), (11, 12), (16, 12), (21, 12), (27, 12)], strict=True)
    ]
    assert all(ball)  # the ball moves right step by step
    doc = first.to_document()
    assert doc.modalities == ["image", "text"] * 5


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["annotations"][6][0].update(worker_arranged_photo_order=1),
            r"story 50002 .*worker_arranged_photo_order 1 appears twice",
        ),
        (
            lambda d: d["annotations"][4][0].update(worker_arranged_photo_order=7),
            r"story 50001 .*values \[0, 1, 2, 3, 7\] are not 0\.\.4",
        ),
        (
            lambda d: d["annotations"][1][0].update(photo_flickr_id="999"),
            r"story 50001 .*annotations\[1\]\[0\]\.photo_flickr_id: "
            r"image file not found for '999' \(tried .*999\.jpg",
        ),
        (
            lambda d: d["annotations"][2][0].pop("original_text"),
            r"story 50001 .*missing field 'annotations\[2\]\[0\]\.original_text'",
        ),
        (
            lambda d: d["annotations"].__setitem__(3, {"story_id": "50001"}),
            r"annotations\[3\]: expected a list holding one storylet object, got dict",
        ),
        (
            lambda d: d["annotations"][5][0].pop("story_id"),
            r"annotations\[5\]: missing field 'annotations\[5\]\[0\]\.story_id'",
        ),
    ],
)
def test_vist_sis_malformed(tmp_path: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    folder = copy_fixture("vist_sis", tmp_path)
    path = folder / "test.story-in-sequence.json"
    edit_json(path, edit)
    with pytest.raises(DataFormatError, match=r"test\.story-in-sequence\.json: " + expected):
        load_vist_sis(path, folder / "images")


def test_vist_sis_skip_drops_whole_story_and_ambiguous_image(tmp_path: Path) -> None:
    folder = copy_fixture("vist_sis", tmp_path)
    path = folder / "test.story-in-sequence.json"
    edit_json(path, lambda d: d["annotations"][5][0].pop("story_id"))  # story 50002 loses a step
    report = LoadReport()
    with pytest.warns(SkippedRecordsWarning, match="skipped 2 bad record"):
        stories = load_vist_sis(path, folder / "images", on_error="skip", report=report)
    assert [s.id for s in stories] == ["50001"]
    assert "not 0..3" in report.skipped[1].reason  # the orphaned story fails its order check
    shutil.copy(folder / "images" / "4401.jpg", folder / "images" / "4401.png")
    with pytest.raises(DataFormatError, match=r"several image files for '4401'"):
        load_vist_sis(VIST, folder / "images")


# --- Winoground ----------------------------------------------------------------------------------


def test_winoground_fixture() -> None:
    items = load_winoground(WINO, WINO_IMAGES, verify_images=True)
    assert [i.id for i in items] == ["0", "1", "2"]
    first = items[0]
    assert (first.caption_0, first.caption_1) == (
        "a red square left of a blue circle",
        "a blue circle left of a red square",
    )
    assert first.tag == "Object" and first.meta == {
        "secondary_tag": "",
        "num_main_preds": 1,
        "collapsed_tag": "Object",
    }
    assert items[1].image_1.path == WINO_IMAGES / "ex_1_img_1.jpg"  # extension found on disk
    left_red, left_blue = first.image_0.load(), first.image_1.load()
    assert close(left_red.getpixel((8, 12)), RED) and close(left_red.getpixel((24, 12)), BLUE)
    assert close(left_blue.getpixel((8, 12)), BLUE) and close(left_blue.getpixel((24, 12)), RED)
    palette = items[2].image_0.load()  # saved as a palette PNG
    assert palette.mode == "RGB" and close(palette.getpixel((16, 5)), BLUE)


@pytest.mark.parametrize(
    ("line", "text", "expected"),
    [
        (2, '{"id": 1, "caption_0": "a", ', r"examples\.jsonl:2: invalid JSON at column"),
        (
            3,
            '{"id": 2, "caption_0": "x", "image_0": "ex_2_img_0", "image_1": "ex_2_img_1", "tag": ""}',
            r"examples\.jsonl:3: missing field 'caption_1'",
        ),
        (
            1,
            '{"id": true, "caption_0": "a", "caption_1": "b", '
            '"image_0": "ex_0_img_0", "image_1": "ex_0_img_1", "tag": ""}',
            r"examples\.jsonl:1: id: expected a non-empty string or an integer id, got bool True",
        ),
        (
            1,
            '{"id": 0, "caption_0": "a", "caption_1": "b", '
            '"image_0": "ex_9_img_0", "image_1": "ex_0_img_1", "tag": ""}',
            r"examples\.jsonl:1: image_0: image file not found for 'ex_9_img_0' "
            r"\(tried .*ex_9_img_0\.png, .*ex_9_img_0\.jpg",
        ),
        (2, '["id", 1]', r"examples\.jsonl:2: line: expected a JSON object, got list"),
    ],
)
def test_winoground_malformed(tmp_path: Path, line: int, text: str, expected: str) -> None:
    folder = copy_fixture("winoground", tmp_path)
    edit_line(folder / "examples.jsonl", line, text)
    with pytest.raises(DataFormatError, match=expected):
        load_winoground(folder / "examples.jsonl", folder / "images")


# --- MMVP-VLM ------------------------------------------------------------------------------------


def test_mmvp_vlm_fixture() -> None:
    items = load_mmvp_vlm(MMVP, MMVP_IMAGES, verify_images=True)
    assert [(i.id, i.type) for i in items] == [("1-2", "Orientation"), ("3-4", "Color"), ("5-6", "Quantity")]
    assert items[2].statement_0 == "There are two squares, one above the other"  # quoted comma
    assert items[1].question_ids == ("3", "4")
    assert items[1].image_1.path == MMVP_IMAGES / "Color" / "4.png"
    assert close(items[1].image_0.load().getpixel((16, 12)), RED)
    assert close(items[1].image_1.load().getpixel((16, 12)), BLUE)
    assert items[0].meta == {}


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        (
            "ID,Type,Statement\n1,Color,x\n2,Color,y\n",
            r"Questions\.csv:1: expected a CSV header with columns 'Question ID', 'Type', 'Statement'",
        ),
        (
            "Question ID,Type,Statement\n1,Orientation,a\n2,Orientation,b\n3,Color,c\n",
            r"Questions\.csv: 3 data rows; .*must be even",
        ),
        (
            "Question ID,Type,Statement\n1,Orientation,a\n3,Color,c\n",
            r"Questions\.csv: lines 2-3: the two rows of a pair must share 'Type', "
            r"got 'Orientation' \(line 2\) and 'Color' \(line 3\)",
        ),
        (
            "Question ID,Type,Statement\n1,Orientation\n2,Orientation,b\n",
            r"Questions\.csv: lines 2-3: line 2: expected 3 columns \(Question ID, Type, Statement\), got 2",
        ),
        (
            "Question ID,Type,Statement\n1,Orientation,a\n2,Orientation,\n",
            r"Questions\.csv: lines 2-3: line 3 'Statement': expected a non-empty string",
        ),
        (
            "Question ID,Type,Statement\n1,Orientation,a\n7,Orientation,b\n",
            r"Questions\.csv: lines 2-3: line 3 image: "
            r"image file not found for '7' \(tried .*Orientation.7\.jpg",
        ),
        ("Question ID,Type,Statement\n", r"Questions\.csv: no data rows"),
    ],
)
def test_mmvp_vlm_malformed(tmp_path: Path, csv_text: str, expected: str) -> None:
    folder = copy_fixture("mmvp_vlm", tmp_path)
    (folder / "Questions.csv").write_text(csv_text)
    with pytest.raises(DataFormatError, match=expected):
        load_mmvp_vlm(folder / "Questions.csv", folder / "MLLM_VLM Images")


def test_mmvp_vlm_extra_columns_kept(tmp_path: Path) -> None:
    folder = copy_fixture("mmvp_vlm", tmp_path)
    (folder / "Questions.csv").write_text("Question ID,Type,Statement,Note\n3,Color,red,r\n4,Color,blue,b\n")
    [item] = load_mmvp_vlm(folder / "Questions.csv", folder / "MLLM_VLM Images")
    assert item.meta == {"rows": [{"Note": "r"}, {"Note": "b"}]}


# --- LLaVA ---------------------------------------------------------------------------------------


def test_llava_fixture() -> None:
    chats = load_llava_conversations(LLAVA, LLAVA_IMAGES, verify_images=True)
    assert [c.id for c in chats] == ["000000033471", "000000052846", "text_only_7"]
    first = chats[0]
    assert (
        first.image is not None
        and first.image.path == LLAVA_IMAGES / "coco" / "train2017" / "000000033471.jpg"
    )
    assert [role for role, _ in first.turns] == ["human", "gpt", "human", "gpt"]
    assert first.turns[0][1] == "<image>\nHow many squares are in the image?"
    assert first.to_document().modalities == ["image", "text", "text", "text", "text"]
    assert chats[1].to_document().modalities == ["text", "image", "text"]  # <image> after the question
    assert chats[2].image is None and chats[2].meta == {"model": ""}
    assert first.image.load().mode == "RGB"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d[0]["conversations"][1].update({"from": "human"}),
            r"record \[0\]: Conversation\.turns\[1\]: expected role 'gpt'",
        ),
        (
            lambda d: d[1]["conversations"][0].update(value="Describe the shape."),
            r"record \[1\]: .*expected 1 <image> placeholder\(s\) \(one image\), found 0",
        ),
        (
            lambda d: d[2]["conversations"][0].update(value="<image>\nWhat?"),
            r"record \[2\]: .*expected 0 <image> placeholder\(s\) \(no image\), found 1",
        ),
        (
            lambda d: d[1].update(image="coco/train2017/missing.jpg"),
            r"record \[1\]: image: image file not found: .*missing\.jpg",
        ),
        (lambda d: d[0].pop("conversations"), r"record \[0\]: missing field 'conversations'"),
        (
            lambda d: d[0]["conversations"][2].update(value=None),
            r"record \[0\]: conversations\[2\]\.value: expected a string, got null",
        ),
        (
            lambda d: d[2].update(image=["a.jpg", "b.jpg"]),
            r"record \[2\]: image: expected a non-empty string, got list",
        ),
    ],
)
def test_llava_malformed(tmp_path: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    folder = copy_fixture("llava", tmp_path)
    edit_json(folder / "conversations.json", edit)
    with pytest.raises(DataFormatError, match=r"conversations\.json: " + expected):
        load_llava_conversations(folder / "conversations.json", folder / "images")


def test_llava_top_level_must_be_a_list(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"id": "1", "conversations": []}')
    with pytest.raises(
        DataFormatError, match=r"c\.json: expected a JSON list of conversation records, got dict"
    ):
        load_llava_conversations(tmp_path / "c.json", tmp_path)


# --- MMC4 ----------------------------------------------------------------------------------------


def test_mmc4_fixture() -> None:
    docs = load_mmc4(MMC4, MMC4_IMAGES, verify_images=True)
    assert [d.id for d in docs] == ["docs_shard_0:1", "docs_shard_0:2", "docs_shard_0:4"]  # line 3 is blank
    first, second, third = docs
    assert first.modalities == ["text", "image", "text", "text", "image", "text"]  # image before its sentence
    assert first.segments[2] == "Here is a green circle."
    assert [ref.path.name for ref in second.images] == [
        "0f1e2d3c4b5a.jpg",
        "9a8b7c6d5e4f.jpg",
    ]  # image_info order
    assert second.modalities == ["text", "image", "image", "text", "text"]
    assert third.segments == ["A page with no pictures at all."]
    assert first.meta["url"] == "http://example.com/shapes" and len(first.meta["image_info"]) == 2
    assert "text_list" not in first.meta
    assert [s.content for s in second.slices() if s.modality == "text"][:2] == [
        "Two plain colours.",
        "Red and green side by side.",
    ]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["image_info"][1].update(matched_text_index=4),
            r"docs_shard_0\.jsonl:1: image_info\[1\]\.matched_text_index: "
            r"expected an index into text_list \(0\.\.3\), got 4",
        ),
        (
            lambda d: d["image_info"][0].update(matched_text_index="1"),
            r"docs_shard_0\.jsonl:1: image_info\[0\]\.matched_text_index: expected an integer, got str '1'",
        ),
        (lambda d: d.update(text_list=[]), r"docs_shard_0\.jsonl:1: text_list: expected a non-empty list"),
        (
            lambda d: d["text_list"].__setitem__(2, ""),
            r"docs_shard_0\.jsonl:1: text_list\[2\]: expected a non-empty string",
        ),
        (
            lambda d: d["image_info"][0].update(image_name="lost.jpg"),
            r"docs_shard_0\.jsonl:1: image_info\[0\]\.image_name: image file not found: .*lost\.jpg",
        ),
        (lambda d: d.pop("image_info"), r"docs_shard_0\.jsonl:1: missing field 'image_info'"),
    ],
)
def test_mmc4_malformed(tmp_path: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    folder = copy_fixture("mmc4", tmp_path)
    path = folder / "docs_shard_0.jsonl"
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    edit(first)
    lines[0] = json.dumps(first)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=expected):
        load_mmc4(path, folder / "images")


def test_mmc4_malformed_line_number_counts_blank_lines(tmp_path: Path) -> None:
    folder = copy_fixture("mmc4", tmp_path)
    edit_line(folder / "docs_shard_0.jsonl", 4, '{"text_list": ["x"], "image_info": [}')
    with pytest.raises(DataFormatError, match=r"docs_shard_0\.jsonl:4: invalid JSON"):
        load_mmc4(folder / "docs_shard_0.jsonl", folder / "images")


# --- the project's interleaved JSONL -------------------------------------------------------------


def test_interleaved_fixture() -> None:
    docs = load_interleaved(INTERLEAVED, INTERLEAVED_IMAGES, verify_images=True)
    assert [d.id for d in docs] == ["story-0", "note-1", "image-2"]
    story = docs[0]
    assert story.modalities == ["image", "text", "image", "text"]
    assert story.meta == {"task": "story", "split": "test"} and docs[1].meta == {} and docs[2].meta == {}
    assert [s.modality for s in story.slices()] == ["image", "text", "text", "image", "text"]
    assert len(story.slices(text_unit="segment")) == 4
    step = story.images[0].load()  # RGBA whose transparent (blue) background must come out white
    assert step.mode == "RGB" and step.getpixel((24, 12)) == (255, 255, 255)
    assert close(step.getpixel((8, 12)), RED)
    assert docs[1].segments == ["Only words here."] and docs[2].modalities == ["image"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"id": "a", "segments": [], "meta": {}}', r":2: segments: expected a non-empty list, got \[\]"),
        (
            '{"id": "a", "segments": [{"type": "text", "text": "x"}], "metadata": {}}',
            r":2: unexpected field\(s\) \['metadata'\]",
        ),
        (
            '{"id": "a", "segments": [{"type": "video", "path": "v.mp4"}]}',
            r":2: segments\[0\]\.type: expected 'image' or 'text', got str 'video'",
        ),
        (
            '{"id": "a", "segments": [{"type": "text", "text": "x", "path": "p"}]}',
            r":2: segments\[0\]: a text segment has exactly the fields \['text', 'type'\]",
        ),
        (
            '{"id": "a", "segments": [{"type": "text", "text": "  "}]}',
            r":2: segments\[0\]\.text: expected a non-empty string",
        ),
        (
            '{"id": "a", "segments": [{"type": "image", "path": "/abs/single.jpg"}]}',
            r":2: segments\[0\]\.path: image path '/abs/single\.jpg' must be relative to image_root",
        ),
        (
            '{"id": "a", "segments": [{"type": "image", "path": "story/step_9.png"}]}',
            r":2: segments\[0\]\.path: image file not found: .*step_9\.png",
        ),
        (
            '{"id": "story-0", "segments": [{"type": "text", "text": "x"}]}',
            r":2: duplicate id 'story-0' \(first used at .*documents\.jsonl:1\)",
        ),
        ('{"segments": [{"type": "text", "text": "x"}]}', r":2: missing field 'id'"),
        (
            '{"id": "a", "segments": [{"type": "text", "text": "x"}], "meta": "none"}',
            r":2: meta: expected a JSON object, got str",
        ),
        ('{"id": "a" "segments": []}', r":2: invalid JSON at column 12: Expecting .,. delimiter"),
    ],
)
def test_interleaved_malformed(tmp_path: Path, text: str, expected: str) -> None:
    folder = copy_fixture("interleaved", tmp_path)
    edit_line(folder / "documents.jsonl", 2, text)
    with pytest.raises(DataFormatError, match=r"documents\.jsonl" + expected):
        load_interleaved(folder / "documents.jsonl", folder / "images")


def test_skip_reports_the_count_and_every_reason(tmp_path: Path) -> None:
    folder = copy_fixture("interleaved", tmp_path)
    path = folder / "documents.jsonl"
    good = path.read_text()
    path.write_text(
        good
        + "not json\n"
        + '{"id": "x", "segments": []}\n'
        + '{"id": "y", "segments": [{"type": "text", "text": "fine"}]}\n'
    )
    report = LoadReport()
    with pytest.warns(
        SkippedRecordsWarning,
        match=r"documents\.jsonl: skipped 2 bad record\(s\) because on_error='skip' \(loaded 4\)",
    ):
        docs = load_interleaved(path, folder / "images", on_error="skip", report=report)
    assert [d.id for d in docs] == ["story-0", "note-1", "image-2", "y"]
    assert report.path == path and report.loaded == 4 and report.num_skipped == 2
    assert [r.location.rsplit(":", 1)[1] for r in report.skipped] == ["4", "5"]
    assert "invalid JSON" in report.skipped[0].reason and "non-empty list" in report.skipped[1].reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped: no warning
        assert len(load_interleaved(INTERLEAVED, INTERLEAVED_IMAGES, on_error="skip")) == 3
    with pytest.raises(ValueError, match=r"on_error: expected one of \('raise', 'skip'\), got 'ignore'"):
        load_interleaved(INTERLEAVED, INTERLEAVED_IMAGES, on_error="ignore")


# --- dispatch ------------------------------------------------------------------------------------


def test_load_documents_every_format() -> None:
    cases = {
        "coco_karpathy": (COCO, COCO_IMAGES, 21),  # one document per caption
        "vist_sis": (VIST, VIST_IMAGES, 2),
        "winoground": (WINO, WINO_IMAGES, 6),  # two matching pairs per item
        "mmvp_vlm": (MMVP, MMVP_IMAGES, 6),
        "llava": (LLAVA, LLAVA_IMAGES, 3),
        "mmc4": (MMC4, MMC4_IMAGES, 3),
        "interleaved": (INTERLEAVED, INTERLEAVED_IMAGES, 3),
    }
    assert set(cases) == set(FORMATS)
    for name, (path, root, count) in cases.items():
        docs = load_documents(path, format=name, image_root=root)
        assert len(docs) == count, name
        assert all(doc.slices() for doc in docs)
    test_only = load_documents(COCO, format="coco_karpathy", image_root=COCO_IMAGES, split="test")
    assert [d.id for d in test_only] == [f"42#{k}" for k in range(5)]


def test_load_documents_unknown_format_lists_the_known_ones() -> None:
    with pytest.raises(
        DataFormatError,
        match="unknown data format 'webdataset'; supported formats: "
        "coco_karpathy, vist_sis, winoground, mmvp_vlm, llava, mmc4, interleaved",
    ):
        load_documents(COCO, format="webdataset", image_root=COCO_IMAGES)
