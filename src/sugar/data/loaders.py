"""Loaders for the real on-disk formats of the benchmarks and corpora Sugar trains and evaluates on.

The project's procedural world writes each task in the same format as the dataset it stands for,
so one loader serves both the built-in world and the real download. Conventions shared by all:

- `image_root` is a directory; each loader's docstring says how a record names its image in it.
  Image files are checked for existence at load time (cheap) and decoded lazily by
  `ImageRef.load()`; `verify_images=True` decodes every image during the load instead.
- `on_error="raise"` (default) stops at the first bad record with a DataFormatError naming the
  file, the line or record index, the field and what was expected. `on_error="skip"` drops bad
  records, warns once with the count (SkippedRecordsWarning) and, when a `LoadReport` is passed
  as `report`, lists each skipped record and the reason in it. Problems with the file as a whole
  (not JSON, wrong top-level shape) always raise DataFormatError; a missing annotation file or
  image_root raises FileNotFoundError.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sugar.data._io import (
    RecordRun,
    annotation_file,
    describe,
    expect_identifier,
    expect_int,
    expect_list,
    expect_object,
    expect_string,
    expect_text,
    find_image,
    image_directory,
    image_file,
    jsonl_lines,
    parse_json_line,
    read_json,
    require,
)
from sugar.data.errors import DataFormatError, LoadReport
from sugar.data.schema import (
    CaptionedImage,
    Conversation,
    Document,
    ImageRef,
    MMVPItem,
    Segment,
    Story,
    WinogroundItem,
)

PathLike = str | os.PathLike[str]
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".png", ".jpeg")


# --- COCO / Flickr30k, Karpathy split -------------------------------------------------------------


def _coco_record(entry: Any, image_root: Path) -> CaptionedImage:
    entry = expect_object(entry, "image entry")
    filename = expect_text(require(entry, "filename"), "filename")
    filepath = expect_string(entry.get("filepath", ""), "filepath")
    split = expect_text(require(entry, "split"), "split")
    if "cocoid" in entry:
        image_id = expect_identifier(entry["cocoid"], "cocoid")
    elif "imgid" in entry:
        image_id = expect_identifier(entry["imgid"], "imgid")
    else:
        raise DataFormatError("missing field 'cocoid' or 'imgid' (one is needed as the image id)")
    sentences = expect_list(require(entry, "sentences"), "sentences", non_empty=True)
    captions = []
    for index, sentence in enumerate(sentences):
        sentence = expect_object(sentence, f"sentences[{index}]")
        raw = require(sentence, "raw", prefix=f"sentences[{index}].")
        captions.append(expect_text(raw, f"sentences[{index}].raw").strip())
    image = image_file(image_root, str(Path(filepath) / filename), "filepath/filename")
    meta = {key: value for key, value in entry.items() if key != "sentences"}
    return CaptionedImage(image=image, captions=captions, split=split, image_id=image_id, meta=meta)


def load_coco_karpathy(
    json_path: PathLike,
    image_root: PathLike,
    split: str | None = None,
    *,
    on_error: str = "raise",
    verify_images: bool = False,
    report: LoadReport | None = None,
) -> list[CaptionedImage]:
    """Images and captions from a Karpathy-split file (`dataset_coco.json`, `dataset_flickr30k.json`).

    Format: {"images": [{"filepath"?, "filename", "split", "imgid", "cocoid"?, "sentids",
    "sentences": [{"raw", "tokens", "imgid", "sentid"}]}], "dataset": ...}. The image is
    `image_root/filepath/filename` (COCO: image_root holds train2014/ and val2014/; Flickr30k has
    no filepath). Captions are the `raw` sentences, stripped; the image id is `cocoid` when present
    (COCO), else `imgid` (Flickr). `split` keeps one of "train", "val", "test", "restval";
    `split="train"` also keeps "restval", the 30k validation images Karpathy moved to training.
    """
    path = annotation_file(json_path)
    root = image_directory(image_root)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataFormatError(
            f"{path}: expected a JSON object with an 'images' list (Karpathy format), got {describe(data)}"
        )
    wanted: set[str] | None = None
    if split is not None:
        if not isinstance(split, str) or not split:
            raise ValueError(f"split: expected a split name or None, got {split!r}")
        wanted = {split, "restval"} if split == "train" else {split}
        present = {e.get("split") for e in data["images"] if isinstance(e, dict)}
        if not wanted & present:
            names = ", ".join(sorted(str(s) for s in present))
            raise DataFormatError(f"{path}: no image has split {split!r} (splits in the file: {names})")
    run = RecordRun(path, on_error, verify_images, report)
    records = []
    for index, entry in enumerate(data["images"]):
        declared = entry.get("split") if isinstance(entry, dict) else None
        if wanted is not None and isinstance(declared, str) and declared not in wanted:
            continue  # malformed entries are never filtered out: building them reports the error
        record = run.build(f"{path}: images[{index}]", _coco_record, entry, root)
        if record is not None:
            records.append(record)
    return run.finish(records)


# --- VIST, story-in-sequence ---------------------------------------------------------------------

VIST_EXTENSIONS: tuple[str, ...] = (".jpg", ".png", ".jpeg", ".gif")


def _vist_story(
    story_id: str,
    storylets: list[tuple[int, dict[str, Any]]],
    image_root: Path,
    text_field: str,
    extensions: tuple[str, ...],
) -> Story:
    ordered: dict[int, tuple[int, dict[str, Any]]] = {}
    for index, storylet in storylets:
        name = f"annotations[{index}][0]"
        order = expect_int(
            require(storylet, "worker_arranged_photo_order", f"{name}."),
            f"{name}.worker_arranged_photo_order",
        )
        if order in ordered:
            raise DataFormatError(
                f"story {story_id!r}: worker_arranged_photo_order {order} appears twice "
                f"(annotations[{ordered[order][0]}] and annotations[{index}])"
            )
        ordered[order] = (index, storylet)
    if sorted(ordered) != list(range(len(ordered))):
        raise DataFormatError(
            f"story {story_id!r}: worker_arranged_photo_order values {sorted(ordered)} "
            f"are not 0..{len(ordered) - 1}"
        )
    steps: list[tuple[ImageRef, str]] = []
    storylet_ids = []
    for order in range(len(ordered)):
        index, storylet = ordered[order]
        name = f"annotations[{index}][0]"
        photo = expect_identifier(require(storylet, "photo_flickr_id", f"{name}."), f"{name}.photo_flickr_id")
        text = expect_text(require(storylet, text_field, f"{name}."), f"{name}.{text_field}")
        steps.append((find_image(image_root, photo, extensions, f"{name}.photo_flickr_id"), text.strip()))
        storylet_ids.append(storylet.get("storylet_id"))
    meta: dict[str, Any] = {"storylet_ids": storylet_ids}
    if "album_id" in storylets[0][1]:
        meta["album_id"] = storylets[0][1]["album_id"]
    return Story(id=story_id, steps=steps, meta=meta)


def load_vist_sis(
    json_path: PathLike,
    image_root: PathLike,
    *,
    text_field: str = "original_text",
    extensions: tuple[str, ...] = VIST_EXTENSIONS,
    on_error: str = "raise",
    verify_images: bool = False,
    report: LoadReport | None = None,
) -> list[Story]:
    """Stories from a VIST story-in-sequence file (`train.story-in-sequence.json`, ...).

    Format: {"images": [...], "albums": [...], "annotations": [[{"story_id", "photo_flickr_id",
    "worker_arranged_photo_order", "text", "original_text", "storylet_id", "album_id", ...}], ...]}:
    one storylet per inner list. Storylets are grouped by story_id (stories in order of first
    appearance) and ordered by worker_arranged_photo_order, which must run 0..n-1. The image is
    `image_root/<photo_flickr_id><ext>` for exactly one ext in `extensions` (VIST ships per-split
    folders of .jpg with a few .png/.gif: image_root is one such folder). `text_field` picks
    "original_text" (as written, the default) or "text" (lower-cased, names replaced by [male]...).
    """
    path = annotation_file(json_path)
    root = image_directory(image_root)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataFormatError(
            f"{path}: expected a JSON object with an 'annotations' list (VIST SIS format), "
            f"got {describe(data)}"
        )
    run = RecordRun(path, on_error, verify_images, report)
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, annotation in enumerate(data["annotations"]):
        try:
            if not isinstance(annotation, list) or len(annotation) != 1:
                raise DataFormatError(
                    f"expected a list holding one storylet object, got {describe(annotation)}"
                )
            storylet = expect_object(annotation[0], f"annotations[{index}][0]")
            story_id = expect_identifier(
                require(storylet, "story_id", f"annotations[{index}][0]."), "story_id"
            )
        except DataFormatError as error:
            run.skip_or_raise(f"{path}: annotations[{index}]", error)
            continue
        groups.setdefault(story_id, []).append((index, storylet))
    records = []
    for story_id, storylets in groups.items():
        location = f"{path}: story {story_id} (annotations[{storylets[0][0]}]...)"
        record = run.build(location, _vist_story, story_id, storylets, root, text_field, extensions)
        if record is not None:
            records.append(record)
    return run.finish(records)


# --- Winoground ----------------------------------------------------------------------------------


def _winoground_record(raw: bytes, image_root: Path, extensions: tuple[str, ...]) -> WinogroundItem:
    obj = expect_object(parse_json_line(raw), "line")
    item_id = expect_identifier(require(obj, "id"), "id")
    captions = [expect_text(require(obj, f"caption_{k}"), f"caption_{k}") for k in (0, 1)]
    names = [expect_text(require(obj, f"image_{k}"), f"image_{k}") for k in (0, 1)]
    tag = expect_string(require(obj, "tag"), "tag")
    images = [find_image(image_root, names[k], extensions, f"image_{k}") for k in (0, 1)]
    known = {"id", "caption_0", "caption_1", "image_0", "image_1", "tag"}
    meta = {key: value for key, value in obj.items() if key not in known}
    return WinogroundItem(item_id, captions[0], captions[1], images[0], images[1], tag=tag, meta=meta)


def load_winoground(
    jsonl_path: PathLike,
    image_root: PathLike,
    *,
    extensions: tuple[str, ...] = (".png", ".jpg", ".jpeg"),
    on_error: str = "raise",
    verify_images: bool = False,
    report: LoadReport | None = None,
) -> list[WinogroundItem]:
    """Winoground items from `examples.jsonl`, one JSON object per line.

    Format: {"id", "caption_0", "caption_1", "image_0", "image_1", "tag", "secondary_tag",
    "num_main_preds", "collapsed_tag"}; image_k names a file stem: the image is
    `image_root/<image_k><ext>` (the release: data/images/ex_0_img_0.png). caption_k describes
    image_k. Fields beyond the six used go to `meta`.
    """
    path = annotation_file(jsonl_path)
    root = image_directory(image_root)
    run = RecordRun(path, on_error, verify_images, report)
    records = []
    for number, raw in jsonl_lines(path):
        record = run.build(f"{path}:{number}", _winoground_record, raw, root, extensions)
        if record is not None:
            records.append(record)
    return run.finish(records)


# --- MMVP-VLM ------------------------------------------------------------------------------------

MMVP_COLUMNS: tuple[str, str, str] = ("Question ID", "Type", "Statement")


def _mmvp_pair(
    rows: list[tuple[int, list[str]]], header: list[str], image_root: Path, extensions: tuple[str, ...]
) -> MMVPItem:
    qids, types, statements, images = [], [], [], []
    extra: list[dict[str, str]] = []
    for line, values in rows:
        if len(values) != len(header):
            raise DataFormatError(
                f"line {line}: expected {len(header)} columns ({', '.join(header)}), got {len(values)}"
            )
        row = dict(zip(header, values, strict=True))
        qids.append(expect_text(row["Question ID"], f"line {line} 'Question ID'"))
        types.append(expect_text(row["Type"], f"line {line} 'Type'"))
        statements.append(expect_text(row["Statement"], f"line {line} 'Statement'"))
        extra.append({key: value for key, value in row.items() if key not in MMVP_COLUMNS})
    if types[0] != types[1]:
        raise DataFormatError(
            f"the two rows of a pair must share 'Type', got {types[0]!r} (line {rows[0][0]}) and "
            f"{types[1]!r} (line {rows[1][0]}); rows pair up two by two, so a missing row "
            "shifts every later pair"
        )
    for (line, _), qid in zip(rows, qids, strict=True):
        images.append(find_image(image_root / types[0], qid, extensions, f"line {line} image"))
    meta: dict[str, Any] = {"rows": extra} if any(extra) else {}
    return MMVPItem(
        id=f"{qids[0]}-{qids[1]}",
        type=types[0],
        statement_0=statements[0],
        statement_1=statements[1],
        image_0=images[0],
        image_1=images[1],
        question_ids=(qids[0], qids[1]),
        meta=meta,
    )


def load_mmvp_vlm(
    csv_path: PathLike,
    image_root: PathLike,
    *,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    on_error: str = "raise",
    verify_images: bool = False,
    report: LoadReport | None = None,
) -> list[MMVPItem]:
    """Pairs from the MMVP-VLM benchmark's `Questions.csv`.

    Layout of the release (MMVP/MMVP_VLM): `Questions.csv` with the header "Question ID", "Type",
    "Statement", and `MLLM_VLM Images/<Type>/<Question ID>.jpg` — pass that images folder as
    `image_root`. Consecutive data rows form a pair (rows 1-2, 3-4, ...): two images that differ
    in the visual pattern named by Type, statement k describing image k. The official scoring
    prefixes each statement with "a photo of "; this loader returns the statements unchanged.
    Extra columns are kept per row in `meta["rows"]`.
    """
    path = annotation_file(csv_path)
    root = image_directory(image_root)
    run = RecordRun(path, on_error, verify_images, report)
    rows: list[tuple[int, list[str]]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or any(column not in header for column in MMVP_COLUMNS):
                raise DataFormatError(
                    f"{path}:1: expected a CSV header with columns "
                    f"{', '.join(map(repr, MMVP_COLUMNS))}, got {header}"
                )
            for values in reader:
                if values:
                    rows.append((reader.line_num, values))
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not UTF-8 text ({error})") from error
    except csv.Error as error:
        raise DataFormatError(f"{path}: malformed CSV: {error}") from error
    if not rows:
        raise DataFormatError(f"{path}: no data rows after the header")
    if len(rows) % 2:
        raise DataFormatError(
            f"{path}: {len(rows)} data rows; MMVP-VLM rows come in consecutive pairs, "
            "so the count must be even"
        )
    records = []
    for start in range(0, len(rows), 2):
        pair = rows[start : start + 2]
        location = f"{path}: lines {pair[0][0]}-{pair[1][0]}"
        record = run.build(location, _mmvp_pair, pair, header, root, extensions)
        if record is not None:
            records.append(record)
    return run.finish(records)


# --- LLaVA conversations -------------------------------------------------------------------------


def _llava_record(entry: Any, image_root: Path) -> Conversation:
    entry = expect_object(entry, "record")
    conversation_id = expect_identifier(require(entry, "id"), "id")
    image: ImageRef | None = None
    if entry.get("image") is not None:
        relative = expect_text(entry["image"], "image")
        image = image_file(image_root, relative, "image", allow_absolute=True)
    turns = []
    messages = expect_list(require(entry, "conversations"), "conversations", non_empty=True)
    for index, message in enumerate(messages):
        message = expect_object(message, f"conversations[{index}]")
        role = expect_string(
            require(message, "from", f"conversations[{index}]."), f"conversations[{index}].from"
        )
        value = expect_string(
            require(message, "value", f"conversations[{index}]."), f"conversations[{index}].value"
        )
        turns.append((role, value))
    meta = {key: value for key, value in entry.items() if key not in {"id", "image", "conversations"}}
    return Conversation(id=conversation_id, image=image, turns=turns, meta=meta)


def load_llava_conversations(
    json_path: PathLike,
    image_root: PathLike,
    *,
    on_error: str = "raise",
    verify_images: bool = False,
    report: LoadReport | None = None,
) -> list[Conversation]:
    """Instruction samples in LLaVA's conversation JSON (`llava_v1_5_mix665k.json`, ...).

    Format: a list of {"id", "image"?, "conversations": [{"from": "human" | "gpt", "value"}]}.
    Turns alternate human, gpt, ...; with "image", one human turn carries the `<image>`
    placeholder, without it none does. The image is `image_root/<image>` (LLaVA's
    `--image_folder`; an absolute "image" is used as is, as LLaVA's os.path.join does). Other
    fields go to `meta`.
    """
    path = annotation_file(json_path)
    root = image_directory(image_root)
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a JSON list of conversation records, got {describe(data)}")
    run = RecordRun(path, on_error, verify_images, report)
    records = []
    for index, entry in enumerate(data):
        record = run.build(f"{path}: record [{index}]", _llava_record, entry, root)
        if record is not None:
            records.append(record)
    return run.finish(records)


# --- MMC4 interleaved documents ------------------------------------------------------------------


def _mmc4_document(raw: bytes, image_root: Path, document_id: str) -> Document:
    obj = expect_object(parse_json_line(raw), "line")
    texts = expect_list(require(obj, "text_list"), "text_list", non_empty=True)
    for index, text in enumerate(texts):
        expect_text(text, f"text_list[{index}]")
    infos = expect_list(require(obj, "image_info"), "image_info")
    before: dict[int, list[ImageRef]] = {}
    for index, info in enumerate(infos):
        info = expect_object(info, f"image_info[{index}]")
        name = expect_text(
            require(info, "image_name", f"image_info[{index}]."), f"image_info[{index}].image_name"
        )
        field = f"image_info[{index}].matched_text_index"
        position = expect_int(require(info, "matched_text_index", f"image_info[{index}]."), field)
        if not 0 <= position < len(texts):
            raise DataFormatError(
                f"{field}: expected an index into text_list (0..{len(texts) - 1}), got {position}"
            )
        image = image_file(image_root, name, f"image_info[{index}].image_name")
        before.setdefault(position, []).append(image)
    segments: list[Segment] = []
    for index, text in enumerate(texts):
        segments += before.get(index, [])
        segments.append(text)
    meta = {key: value for key, value in obj.items() if key != "text_list"}
    return Document(segments, id=document_id, meta=meta)


def load_mmc4(
    jsonl_path: PathLike,
    image_root: PathLike,
    *,
    on_error: str = "raise",
    verify_images: bool = False,
    report: LoadReport | None = None,
) -> list[Document]:
    """Interleaved web documents in MMC4's JSONL (one document per line, as in its shards).

    Format: {"text_list": [sentence, ...], "image_info": [{"image_name", "matched_text_index",
    "matched_sim", "raw_url", ...}], "similarity_matrix", "url", ...}. Each image goes right before
    the sentence it was matched to (images matched to the same sentence keep their image_info
    order), as OpenFlamingo's MMC4 pipeline does. The image is `image_root/<image_name>`. MMC4 has
    no document id: the id is "<file stem>:<line>"; every field but text_list is kept in `meta`.
    """
    path = annotation_file(jsonl_path)
    root = image_directory(image_root)
    run = RecordRun(path, on_error, verify_images, report)
    records = []
    for number, raw in jsonl_lines(path):
        record = run.build(f"{path}:{number}", _mmc4_document, raw, root, f"{path.stem}:{number}")
        if record is not None:
            records.append(record)
    return run.finish(records)


# --- the project's own interleaved JSONL ---------------------------------------------------------

INTERLEAVED_KEYS = frozenset({"id", "segments", "meta"})


def _interleaved_document(raw: bytes, image_root: Path) -> Document:
    obj = expect_object(parse_json_line(raw), "line")
    unknown = sorted(set(obj) - INTERLEAVED_KEYS)
    if unknown:
        raise DataFormatError(
            f"unexpected field(s) {unknown}; a document has 'id', 'segments' and optional 'meta'"
        )
    document_id = expect_text(require(obj, "id"), "id")
    segments_json = expect_list(require(obj, "segments"), "segments", non_empty=True)
    meta = expect_object(obj.get("meta", {}), "meta")
    segments: list[Segment] = []
    for index, segment in enumerate(segments_json):
        name = f"segments[{index}]"
        segment = expect_object(segment, name)
        kind = require(segment, "type", f"{name}.")
        if kind == "image":
            expected = {"type", "path"}
        elif kind == "text":
            expected = {"type", "text"}
        else:
            raise DataFormatError(f"{name}.type: expected 'image' or 'text', got {describe(kind)}")
        if set(segment) != expected:
            raise DataFormatError(
                f"{name}: a {kind} segment has exactly the fields {sorted(expected)}, got {sorted(segment)}"
            )
        if kind == "image":
            relative = expect_text(segment["path"], f"{name}.path")
            segments.append(image_file(image_root, relative, f"{name}.path"))
        else:
            segments.append(expect_text(segment["text"], f"{name}.text"))
    return Document(segments, id=document_id, meta=meta)


def load_interleaved(
    jsonl_path: PathLike,
    image_root: PathLike,
    *,
    on_error: str = "raise",
    verify_images: bool = False,
    report: LoadReport | None = None,
) -> list[Document]:
    """Documents in the project's interleaved JSONL, the format for users' own data.

    One object per line: {"id": str, "segments": [{"type": "image", "path": str} |
    {"type": "text", "text": str}, ...], "meta": {...}?}. Image paths are relative to
    `image_root` (so a dataset folder can move); ids are unique within the file; unknown fields
    are errors, so a misspelt key is caught instead of ignored.
    """
    path = annotation_file(jsonl_path)
    root = image_directory(image_root)
    run = RecordRun(path, on_error, verify_images, report, unique_key=lambda document: document.id)
    records = []
    for number, raw in jsonl_lines(path):
        record = run.build(f"{path}:{number}", _interleaved_document, raw, root)
        if record is not None:
            records.append(record)
    return run.finish(records)


# --- dispatch ------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[..., list[Any]]] = {
    "coco_karpathy": load_coco_karpathy,
    "vist_sis": load_vist_sis,
    "winoground": load_winoground,
    "mmvp_vlm": load_mmvp_vlm,
    "llava": load_llava_conversations,
    "mmc4": load_mmc4,
    "interleaved": load_interleaved,
}
FORMATS: tuple[str, ...] = tuple(LOADERS)


def load_documents(path: PathLike, format: str, image_root: PathLike, **options: Any) -> list[Document]:
    """Load any supported format and flatten its records to Documents (`record.to_documents()`).

    Caption files give one [image, caption] document per caption, Winoground and MMVP one per
    matching pair, VIST one per story, LLaVA one per conversation. `options` go to the loader
    (on_error, verify_images, report, split, ...).
    """
    if format not in LOADERS:
        raise DataFormatError(f"unknown data format {format!r}; supported formats: {', '.join(FORMATS)}")
    records = LOADERS[format](path, image_root, **options)
    documents: list[Document] = []
    for record in records:
        documents.extend(record.to_documents())
    return documents
