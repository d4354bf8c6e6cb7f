"""The world's items in the on-disk formats of the real datasets they stand in for.

Users with the real data read it with the same `sugar.data` loaders that read the world, so
every record here follows the public format: field names, nesting, id conventions and image
layout. Extra fields are added only where the real format has room for them (JSON objects),
never to the CSV files whose readers unpack rows positionally.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from sugar.world.clips import FPS, Clip, clip_folder
from sugar.world.language import tokens, vist_text
from sugar.world.tasks import (
    CaptionItem,
    KBDoc,
    MMVPPair,
    RAGQuestion,
    Story,
    VQAItem,
    WebQAItem,
    WinogroundItem,
)

IMAGE_TOKEN = "<image>"


def coco_karpathy(items: list[CaptionItem]) -> dict[str, Any]:
    """Karpathy's `dataset_coco.json`: one file, the split stored per image.

    An image's file is `<root>/<filepath>/<filename>` with the world directory as root.
    """
    images = []
    sentid = 0
    for imgid, item in enumerate(items):
        directory, filename = item.image.rsplit("/", 1)
        sentences = []
        for raw in item.captions:
            sentences.append({"tokens": tokens(raw), "raw": raw, "imgid": imgid, "sentid": sentid})
            sentid += 1
        images.append(
            {
                "filepath": directory,
                "sentids": [s["sentid"] for s in sentences],
                "filename": filename,
                "imgid": imgid,
                "split": item.split,
                "sentences": sentences,
                "cocoid": imgid,
            }
        )
    return {"images": images, "dataset": "coco"}


def interleaved_record(id_: str, segments: list[tuple[str, str]], meta: dict[str, Any]) -> dict[str, Any]:
    """The project's interleaved JSONL record; segments are ("image", path) or ("text", text)."""
    out = []
    for kind, value in segments:
        if kind == "image":
            out.append({"type": "image", "path": value})
        elif kind == "text":
            out.append({"type": "text", "text": value})
        else:
            raise ValueError(f"segment type must be 'image' or 'text', got {kind!r}")
    return {"id": id_, "segments": out, "meta": meta}


def story_record(story: Story) -> dict[str, Any]:
    segments: list[tuple[str, str]] = []
    for step in story.steps:
        segments += [("image", step.image), ("text", step.text)]
    meta = {
        "task": "stories",
        "split": story.split,
        "story_id": story.story_id,
        "events": [step.event for step in story.steps],
        "vist_photo_ids": story.photo_ids,
        "compositional": story.compositional,
    }
    return interleaved_record(f"story_{story.story_id}", segments, meta)


def vist_sis(stories: list[Story]) -> dict[str, Any]:
    """VIST's story-in-sequence file (`<split>.story-in-sequence.json` in the real release).

    One album per story; photo `<id>` is the file `images/<id>.png` of the world directory.
    `annotations` is a list of one-element lists, one per sentence, as in the release.
    """
    albums, images, annotations = [], [], []
    for story in stories:
        album_id = story.story_id
        photo_ids = story.photo_ids
        albums.append(
            {
                "id": album_id,
                "title": f"world story {story.story_id}",
                "description": "",
                "vist_label": "world",
                "photos": len(photo_ids),
                "primary": photo_ids[0],
                "owner": "sugar-world",
                "date_create": "",
                "date_update": "",
                "farm": "",
                "server": "",
                "secret": "",
            }
        )
        for step, photo_id in zip(story.steps, photo_ids):
            images.append(
                {
                    "id": photo_id,
                    "album_id": album_id,
                    "url_o": step.image,
                    "title": "",
                    "text": "",
                    "tags": "",
                    "datetaken": "",
                    "license": "",
                    "media": "photo",
                    "secret": "",
                    "latitude": "",
                    "longitude": "",
                }
            )
        for order, (step, photo_id) in enumerate(zip(story.steps, photo_ids)):
            annotations.append(
                [
                    {
                        "storylet_id": f"{story.story_id}{order}",
                        "story_id": story.story_id,
                        "album_id": album_id,
                        "photo_flickr_id": photo_id,
                        "worker_arranged_photo_order": order,
                        "text": vist_text(step.text),
                        "original_text": step.text,
                        "setting": "first-2-pick-and-tell",
                        "worker_id": "sugar-world",
                        "tier": "story-in-sequence",
                    }
                ]
            )
    return {
        "info": {"description": "Visual storytelling in the sugar procedural world", "version": "1"},
        "type": "story-in-sequence",
        "albums": albums,
        "images": images,
        "annotations": annotations,
    }


def story_retrieval(stories: list[Story], split: str) -> dict[str, Any]:
    """VIST-style retrieval: five sentences and the first four images -> the fifth image.

    Each query is an interleaved segment list (image, text, ..., image, text, text) ending with
    the fifth sentence; `target` indexes `candidates`, the fifth images of every story of the
    split, which is the candidate pool (as in FROMAGe / GILL's VIST evaluation).
    """
    candidates = [story.steps[-1].image for story in stories]
    queries = []
    for k, story in enumerate(stories):
        segments: list[dict[str, str]] = []
        for step in story.steps[:-1]:
            segments += [{"type": "image", "path": step.image}, {"type": "text", "text": step.text}]
        segments.append({"type": "text", "text": story.steps[-1].text})
        queries.append({"story_id": story.story_id, "segments": segments, "target": k})
    return {"task": "story_retrieval", "split": split, "candidates": candidates, "queries": queries}


def winoground_record(item: WinogroundItem) -> dict[str, Any]:
    """Winoground's examples.jsonl record; images are stems under `images/` (`<stem>.png`)."""
    return {
        "id": item.id,
        "image_0": item.image_0,
        "image_1": item.image_1,
        "caption_0": item.caption_0,
        "caption_1": item.caption_1,
        "tag": item.tag,
        "secondary_tag": "",
        "num_main_preds": 1,
        "collapsed_tag": item.tag,
        "swap": item.swap,
        "compositional": item.compositional,
    }


MMVP_VLM_DIR = "MMVP_VLM"
MMVP_VLM_IMAGES = "MLLM_VLM Images"
MMVP_DIR = "MMVP"
MMVP_IMAGES = "MMVP Images"


def mmvp_vlm_image(pair: MMVPPair, which: int) -> str:
    """Path of one MMVP-VLM image inside the split's MMVP_VLM folder: `<Type>/<qid>.png`."""
    return f"{MMVP_VLM_IMAGES}/{pair.type}/{pair.question_ids[which]}.png"


def mmvp_image(pair: MMVPPair, which: int) -> str:
    """Path of one MMVP (MLLM) image inside the split's MMVP folder: `MMVP Images/<index>.png`."""
    return f"{MMVP_IMAGES}/{pair.question_ids[which]}.png"


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def mmvp_vlm_csv(pairs: list[MMVPPair]) -> str:
    """MMVP-VLM's Questions.csv: `Question ID,Type,Statement`, the two rows of a pair adjacent."""
    rows: list[list[Any]] = []
    for pair in pairs:
        q0, q1 = pair.question_ids
        rows.append([q0, pair.type, pair.statement_0])
        rows.append([q1, pair.type, pair.statement_1])
    return _csv_text(["Question ID", "Type", "Statement"], rows)


def mmvp_options(pair: MMVPPair) -> str:
    return f"(a) {pair.options[0]} (b) {pair.options[1]}"


def mmvp_csv(pairs: list[MMVPPair]) -> str:
    """MMVP's (MLLM) Questions.csv: `Index,Question,Options,Correct Answer`, one row per image."""
    rows: list[list[Any]] = []
    letters = ("(a)", "(b)")
    for pair in pairs:
        for which in (0, 1):
            rows.append(
                [pair.question_ids[which], pair.question, mmvp_options(pair), letters[pair.answers[which]]]
            )
    return _csv_text(["Index", "Question", "Options", "Correct Answer"], rows)


def mmvp_patterns_csv(pairs: list[MMVPPair]) -> str:
    """Side table (not part of either MMVP format): the pattern label of every question id."""
    rows: list[list[Any]] = []
    for pair in pairs:
        for which in (0, 1):
            rows.append([pair.question_ids[which], pair.index, pair.pattern, int(pair.compositional)])
    return _csv_text(["Question ID", "Pair", "Pattern", "Compositional"], rows)


def llava_conversation(
    id_: str, image: str, turns: tuple[tuple[str, str], ...], **extra: Any
) -> dict[str, Any]:
    """LLaVA's instruction record; the first human turn starts with `<image>\\n`."""
    conversations = []
    for k, (human, gpt) in enumerate(turns):
        value = f"{IMAGE_TOKEN}\n{human}" if k == 0 else human
        conversations.append({"from": "human", "value": value})
        conversations.append({"from": "gpt", "value": gpt})
    record: dict[str, Any] = {"id": id_, "image": image, "conversations": conversations}
    record.update({k: v for k, v in extra.items() if v is not None})
    return record


def vqa_record(item: VQAItem) -> dict[str, Any]:
    extra: dict[str, Any] = {"task": item.task}
    if item.task == "pope":
        extra.update(
            category=item.category,
            label=item.label,
            object=f"{item.combo[0]} {item.combo[1]}" if item.combo else None,
        )
    return llava_conversation(item.id, item.image, item.turns, **extra)


def kb_record(doc: KBDoc) -> dict[str, Any]:
    meta = {
        "task": "rag_kb",
        "species": doc.species.name,
        "colour": doc.species.colour,
        "shape": doc.species.shape,
        "facts": list(doc.facts),
    }
    return interleaved_record(doc.id, [("image", doc.image), ("text", doc.text)], meta)


def rag_question_record(q: RAGQuestion) -> dict[str, Any]:
    return llava_conversation(
        q.id,
        q.image,
        ((q.question, q.reply),),
        task="rag",
        question_type=q.question_type,
        answer=q.answer,
        gold_doc_ids=list(q.gold_doc_ids),
        species={"name": q.species.name, "colour": q.species.colour, "shape": q.species.shape},
    )


def webqa_record(item: WebQAItem) -> dict[str, Any]:
    """Six (image, text) sources as interleaved segments; the question and answer in `meta`."""
    segments: list[tuple[str, str]] = []
    for source in item.sources:
        segments += [("image", source.image), ("text", source.text)]
    meta = {
        "task": "webqa",
        "split": item.split,
        "question": item.question,
        "answer": item.answer,
        "relevant_position": item.relevant_position,
        "num_sources": len(item.sources),
        "question_type": item.question_type,
        "compositional": item.compositional,
    }
    return interleaved_record(item.id, segments, meta)


# YouCook2's subset names for the world's splits.
YOUCOOK2_SUBSETS: dict[str, str] = {"train": "training", "val": "validation", "test": "testing"}


def youcook2_annotations(clips: list[Clip]) -> dict[str, Any]:
    """YouCook2's annotation JSON (`youcookii_annotations_trainval.json`) for one split's clips.

    {"database": {id: {"subset", "recipe_type", "duration", "video_url", "annotations":
    [{"segment": [start, end], "id", "sentence"}]}}}, segments in seconds as in the release. The
    world's frames are FPS apart, frame k showing [k / FPS, (k + 1) / FPS): a sentence over
    frames s..e has the segment [s, e + 1]. A clip's frames are the folder `video_url`
    (relative to the world); `fps` is the one field YouCook2 lacks, since a frame folder has no
    clock of its own.
    """
    database: dict[str, Any] = {}
    for clip in clips:
        database[clip.clip_id] = {
            "subset": YOUCOOK2_SUBSETS[clip.split],
            "recipe_type": "world",
            "duration": len(clip.frames) / FPS,
            "video_url": clip_folder(clip.split, clip.clip_id),
            "fps": FPS,
            "annotations": [
                {"segment": [round(s.start / FPS), round((s.end + 1) / FPS)], "id": i, "sentence": s.text}
                for i, s in enumerate(clip.sentences)
            ],
        }
    return {"database": database}


def clip_ground_truth_record(clip: Clip) -> dict[str, Any]:
    """What the world knows of one clip: every frame's scene and each sentence's subject and frames."""
    return {
        "id": clip.clip_id,
        "split": clip.split,
        "compositional": clip.compositional,
        "fps": FPS,
        "frames": [{"path": path, "scene": scene.to_dict()} for path, scene in zip(clip.frame_paths, clip.frames)],
        "sentences": [s.to_dict() for s in clip.sentences],
    }
