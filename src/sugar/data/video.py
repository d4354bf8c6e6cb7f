"""Clips: frame sequences aligned in time with their narration, from YouCook2, MSR-VTT or the world.

    from sugar.data import load_youcook2
    clips = load_youcook2("youcookii_annotations_trainval.json", "raw_videos", split="val")
    frames = clips[0].frames(num_frames=16)           # 16 frames spread evenly over the video
    spans = frames.spans(clips[0].segments)           # each sentence's first and last sampled frame

A clip's media is a **frame folder** (image files in name order, `fps` frames per second) or a
**video file**. Frame folders are read with PIL and always work; video files are decoded with
PyAV (`pip install "sugar[video]"`), the FFmpeg binding whose wheels bundle FFmpeg itself, so it
installs without a system FFmpeg, and whose frames carry presentation timestamps, which the
sentence segments are matched against. Without PyAV a video file raises an ImportError that says
what to install (or: extract the frames into a folder, which needs nothing).

Sampling (`sample_indices`): keep every `stride`-th frame, then `num_frames` of those, one from the
middle of each of `num_frames` equal runs (the usual uniform sampling of video-text retrieval).
A sampled frame's time is the middle of the interval it is shown for; a sentence's segment
[start, end) in seconds covers the sampled frames whose time lies in it.

The loaders follow `sugar.data.loaders`: errors name the file, the record (clip id) and the field;
`on_error="skip"` drops bad records and counts them.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sugar.data._io import (
    RecordRun,
    annotation_file,
    describe,
    expect_identifier,
    expect_list,
    expect_object,
    expect_string,
    expect_text,
    image_directory,
    read_json,
    require,
)
from sugar.data.errors import DataFormatError, LoadReport
from sugar.data.schema import ImageRef

PathLike = str | os.PathLike[str]
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
FRAME_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
# YouCook2 subset names, and the split names the rest of the project uses for them.
YOUCOOK2_SUBSETS: dict[str, str] = {"train": "training", "val": "validation", "test": "testing"}
MSRVTT_SPLITS: dict[str, str] = {"train": "train", "val": "validate", "test": "test"}


class VideoLoadError(DataFormatError):
    """A video file or frame folder is missing, empty or cannot be decoded; the message names it."""


@dataclass(frozen=True)
class ClipSegment:
    """One sentence of a clip's narration and the time it describes, [start, end) in seconds."""

    sentence: str
    start: float
    end: float


@dataclass(frozen=True)
class SampledFrames:
    """Frames taken from a clip: the images, their times (s) and positions in the whole clip."""

    images: list[ImageRef]
    times: list[float]
    indices: list[int]

    def __len__(self) -> int:
        return len(self.images)

    def span(self, start: float, end: float) -> tuple[int, int] | None:
        """First and last sampled frame whose time lies in [start, end); None when none does."""
        inside = [k for k, t in enumerate(self.times) if start <= t < end]
        return (inside[0], inside[-1]) if inside else None

    def spans(self, segments: Sequence[ClipSegment]) -> list[tuple[int, int] | None]:
        return [self.span(s.start, s.end) for s in segments]


@dataclass
class ClipRecord:
    """A clip and its narration: the media (`source`, a video file or a frame folder) and segments.

    `fps` is the frame rate of a frame folder (None: one frame per second); a video file keeps
    its own timestamps.
    """

    id: str
    source: Path
    segments: list[ClipSegment]
    subset: str = ""
    duration: float | None = None
    fps: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.source, Path):
            raise TypeError(f"ClipRecord.source: expected a Path, got {type(self.source).__name__}")
        if not self.segments:
            raise DataFormatError(f"ClipRecord {self.id!r}: expected at least one narrated segment, got none")

    @property
    def sentences(self) -> list[str]:
        return [s.sentence for s in self.segments]

    @property
    def is_frame_folder(self) -> bool:
        return self.source.is_dir()

    def image_refs(self) -> list[ImageRef]:
        """The frame files of a frame folder (`verify_images` decodes them); none for a video file."""
        return frame_files(self.source) if self.is_frame_folder else []

    def frames(self, num_frames: int | None = None, stride: int = 1) -> SampledFrames:
        """`num_frames` frames (all when None) of every `stride`-th, spread evenly over the clip."""
        return sample_frames(self.source, num_frames=num_frames, stride=stride, fps=self.fps)


# --- sampling -------------------------------------------------------------------------------------


def sample_indices(total: int, num_frames: int | None = None, stride: int = 1) -> list[int]:
    """Positions of the frames to keep out of `total`: every `stride`-th, then `num_frames` of
    those from the middles of equal runs (all of them when there are no more than `num_frames`)."""
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1):
        raise ValueError(f"num_frames must be an integer >= 1 or None, got {num_frames!r}")
    kept = list(range(0, total, stride))
    if num_frames is None or num_frames >= len(kept):
        return kept
    return [kept[int((k + 0.5) * len(kept) / num_frames)] for k in range(num_frames)]


def _natural_key(name: str) -> list[Any]:
    """frame_2 before frame_10: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def frame_files(folder: Path) -> list[ImageRef]:
    """The image files of a frame folder in natural name order; VideoLoadError when there are none."""
    if not folder.is_dir():
        raise VideoLoadError(f"frame folder not found: {folder}")
    names = sorted((p.name for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and p.is_file()), key=_natural_key)
    if not names:
        raise VideoLoadError(f"frame folder {folder} holds no image files ({', '.join(FRAME_EXTENSIONS)})")
    return [ImageRef(folder / name) for name in names]


def _import_av() -> Any:
    try:
        import av
    except ImportError:
        raise ImportError(
            "reading video files needs PyAV: pip install 'sugar[video]' (or pip install av); "
            "alternatively extract the frames into a folder (frame_0000.png, ...), which needs nothing"
        ) from None
    return av


def _video_frames(path: Path, num_frames: int | None, stride: int) -> SampledFrames:
    """Decode the sampled frames of a video file with PyAV (first pass: timestamps only)."""
    av = _import_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoLoadError(f"video file {path} has no video stream")
            stream = container.streams.video[0]
            stamps = sorted({packet.pts for packet in container.demux(stream) if packet.pts is not None})
            time_base = float(stream.time_base)
        if not stamps:
            raise VideoLoadError(f"video file {path} holds no frames")
        chosen = sample_indices(len(stamps), num_frames, stride)
        wanted = {stamps[i] for i in chosen}
        decoded: dict[int, Any] = {}
        with av.open(str(path)) as container:
            for frame in container.decode(container.streams.video[0]):
                if frame.pts in wanted and frame.pts not in decoded:
                    decoded[frame.pts] = frame.to_image()
                    if len(decoded) == len(wanted):
                        break
    except VideoLoadError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise VideoLoadError(f"cannot decode video file {path}: {error}") from error
    missing = [stamps[i] for i in chosen if stamps[i] not in decoded]
    if missing:
        raise VideoLoadError(f"video file {path}: {len(missing)} sampled frames could not be decoded (truncated file?)")
    gaps = [b - a for a, b in zip(stamps, stamps[1:])] or [0]
    times = []
    for i in chosen:
        gap = stamps[i + 1] - stamps[i] if i + 1 < len(stamps) else gaps[-1]
        times.append((stamps[i] - stamps[0] + gap / 2) * time_base)
    return SampledFrames([ImageRef(decoded[stamps[i]]) for i in chosen], times, chosen)


def sample_frames(
    source: PathLike, num_frames: int | None = None, stride: int = 1, fps: float | None = None
) -> SampledFrames:
    """Frames of a video file or a frame folder (see the module docstring for the sampling rule).

    A folder's frame k is shown for [k / fps, (k + 1) / fps) (fps None: 1); its images stay file
    references, decoded when used. A video file's frames are decoded now (PyAV).
    """
    path = Path(source)
    if path.is_dir():
        rate = 1.0 if fps is None else fps
        if not rate > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        files = frame_files(path)
        chosen = sample_indices(len(files), num_frames, stride)
        return SampledFrames([files[i] for i in chosen], [(i + 0.5) / rate for i in chosen], chosen)
    if not path.is_file():
        raise VideoLoadError(f"no video file or frame folder at {path}")
    sample_indices(1, num_frames, stride)  # argument errors before any decoding
    return _video_frames(path, num_frames, stride)


def find_clip_source(video_root: Path, clip_id: str, name: str, subfolders: Sequence[str] = ()) -> Path:
    """The one frame folder `<root>/<id>/` or video file `<root>/<id><ext>` of a clip, also looked
    for under `<root>/<subfolders...>/` (YouCook2's raw_videos/<subset>/<recipe_type>/ layout)."""
    bases = [video_root]
    if subfolders and all(subfolders):
        bases.append(video_root.joinpath(*subfolders))
    found: list[Path] = []
    for base in bases:
        folder = base / clip_id
        if folder.is_dir():
            found.append(folder)
        found += [base / f"{clip_id}{ext}" for ext in VIDEO_EXTENSIONS if (base / f"{clip_id}{ext}").is_file()]
    if not found:
        where = " and ".join(str(b) for b in bases)
        raise VideoLoadError(
            f"{name}: no frame folder {clip_id}/ or video file {clip_id}{{{','.join(VIDEO_EXTENSIONS)}}} in {where}"
        )
    if len(found) > 1:
        raise DataFormatError(f"{name}: several media for clip {clip_id!r}: {', '.join(map(str, found))}; keep exactly one")
    return found[0]


# --- field checks ---------------------------------------------------------------------------------


def _expect_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataFormatError(f"{name}: expected a finite number, got {describe(value)}")
    return float(value)


def _expect_positive(value: Any, name: str) -> float:
    number = _expect_number(value, name)
    if number <= 0:
        raise DataFormatError(f"{name}: expected a positive number, got {describe(value)}")
    return number


def _split_names(split: str | None, names: dict[str, str], path: Path, present: set[str]) -> set[str] | None:
    if split is None:
        return None
    if not isinstance(split, str) or not split:
        raise ValueError(f"split: expected a split name or None, got {split!r}")
    wanted = {split, names.get(split, split)}
    if not wanted & present:
        listed = ", ".join(sorted(present)) or "none"
        raise DataFormatError(f"{path}: no clip has split {split!r} (splits in the file: {listed})")
    return wanted


# --- YouCook2 -------------------------------------------------------------------------------------


def _youcook2_record(clip_id: str, entry: Any, video_root: Path) -> ClipRecord:
    entry = expect_object(entry, "record")
    subset = expect_text(require(entry, "subset"), "subset")
    duration = _expect_positive(require(entry, "duration"), "duration")
    recipe_type = expect_string(entry.get("recipe_type", ""), "recipe_type")
    fps = None if entry.get("fps") is None else _expect_positive(entry["fps"], "fps")
    annotations = expect_list(require(entry, "annotations"), "annotations", non_empty=True)
    segments = []
    for index, annotation in enumerate(annotations):
        name = f"annotations[{index}]"
        annotation = expect_object(annotation, name)
        segment = expect_list(require(annotation, "segment", f"{name}."), f"{name}.segment")
        if len(segment) != 2:
            raise DataFormatError(f"{name}.segment: expected [start, end] in seconds, got {describe(segment)}")
        start = _expect_number(segment[0], f"{name}.segment[0]")
        end = _expect_number(segment[1], f"{name}.segment[1]")
        if not 0 <= start < end <= duration:
            raise DataFormatError(
                f"{name}.segment: expected 0 <= start < end <= duration ({duration:g}), got {describe(segment)}"
            )
        sentence = expect_text(require(annotation, "sentence", f"{name}."), f"{name}.sentence").strip()
        segments.append(ClipSegment(sentence, start, end))
    source = find_clip_source(video_root, clip_id, "video", (subset, recipe_type))
    known = {"subset", "duration", "fps", "annotations"}
    meta = {key: value for key, value in entry.items() if key not in known}
    return ClipRecord(clip_id, source, segments, subset=subset, duration=duration, fps=fps, meta=meta)


def world_clip_annotations(world: Path, split: str, reader: str, otherwise: str) -> Path:
    """The world's clip annotations of `split`, or an error naming the command that adds them to
    this world (its own seed and scale: `sugar world` alone would rebuild the small world).
    `reader` says who needs them, `otherwise` how to go on without them."""
    path = world / "clips" / f"youcookii_annotations_{split}.json"
    if path.is_file():
        return path
    try:
        config = json.loads((world / "world.json").read_text()).get("config", {})
        rebuild = f"sugar world --out {world} --seed {config['seed']} --scale {config['scale']} --force"
    except (OSError, ValueError, KeyError, AttributeError):
        rebuild = f"sugar world --out {world} --seed SEED --scale SCALE --force"
    raise FileNotFoundError(
        f"{path} not found: {reader} reads the world's clips, and {world} has none for split {split!r} "
        f"(built before clips were added?). Add them with `{rebuild}` (the other files come out "
        f"byte-identical), or {otherwise}"
    )


def load_youcook2(
    json_path: PathLike,
    video_root: PathLike,
    split: str | None = None,
    *,
    on_error: str = "raise",
    verify_images: bool = False,
    report: LoadReport | None = None,
) -> list[ClipRecord]:
    """Clips with timed sentences from a YouCook2 annotation file (`youcookii_annotations_trainval.json`).

    Format: {"database": {<id>: {"subset": "training" | "validation" | "testing", "duration": s,
    "recipe_type", "video_url", "annotations": [{"segment": [start, end], "id", "sentence"}]}}},
    segments in seconds within [0, duration]. A clip's media is the frame folder `<video_root>/<id>/`
    or the video file `<video_root>/<id>.<ext>`, also looked for under `<video_root>/<subset>/
    <recipe_type>/` (the layout of YouCook2's raw_videos). `fps` (the world's addition) is the
    frame rate of a frame folder. `split` keeps one subset ("val" and "validation" are the same).
    """
    path = annotation_file(json_path)
    root = image_directory(video_root)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise DataFormatError(f"{path}: expected a JSON object with a 'database' object (YouCook2 format), got {describe(data)}")
    database: dict[str, Any] = data["database"]
    present = {str(e.get("subset")) for e in database.values() if isinstance(e, dict)}
    wanted = _split_names(split, YOUCOOK2_SUBSETS, path, present)
    run = RecordRun(path, on_error, verify_images, report)
    records = []
    for clip_id, entry in database.items():
        declared = entry.get("subset") if isinstance(entry, dict) else None
        if wanted is not None and isinstance(declared, str) and declared not in wanted:
            continue  # malformed entries are never filtered out: building them reports the error
        record = run.build(f"{path}: database[{clip_id!r}]", _youcook2_record, clip_id, entry, root)
        if record is not None:
            records.append(record)
    return run.finish(records)


# --- MSR-VTT --------------------------------------------------------------------------------------


def _msrvtt_record(video: Any, captions: list[str], video_root: Path) -> ClipRecord:
    video = expect_object(video, "video")
    clip_id = expect_identifier(require(video, "video_id"), "video_id")
    split = expect_text(require(video, "split"), "split")
    start = _expect_number(video.get("start time", 0.0), "start time")
    end = _expect_number(video.get("end time", start + 1.0), "end time")
    if end <= start:
        raise DataFormatError(f"'end time' ({end:g}) must be after 'start time' ({start:g})")
    if not captions:
        raise DataFormatError(f"video {clip_id!r} has no sentence in 'sentences'")
    duration = end - start
    source = find_clip_source(video_root, clip_id, "video_id")
    segments = [ClipSegment(caption, 0.0, duration) for caption in captions]  # each caption: the whole clip
    meta = {key: value for key, value in video.items() if key not in {"video_id", "split"}}
    return ClipRecord(clip_id, source, segments, subset=split, duration=duration, meta=meta)


def load_msrvtt(
    json_path: PathLike,
    video_root: PathLike,
    split: str | None = None,
    *,
    on_error: str = "raise",
    verify_images: bool = False,
    report: LoadReport | None = None,
) -> list[ClipRecord]:
    """Clips and their captions from MSR-VTT's `train_val_videodatainfo.json` / `test_videodatainfo.json`.

    Format: {"videos": [{"video_id": "video0", "split": "train" | "validate" | "test",
    "start time", "end time", "category", "url", "id"}], "sentences": [{"video_id", "caption",
    "sen_id"}]}. Every caption describes the whole clip (one segment [0, duration) each), so
    MSR-VTT serves retrieval, not temporal grounding. Media: `<video_root>/<video_id>.mp4` (or
    any of VIDEO_EXTENSIONS) or a frame folder `<video_root>/<video_id>/`.
    """
    path = annotation_file(json_path)
    root = image_directory(video_root)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list) or not isinstance(data.get("sentences"), list):
        raise DataFormatError(f"{path}: expected a JSON object with 'videos' and 'sentences' lists (MSR-VTT format), got {describe(data)}")
    run = RecordRun(path, on_error, verify_images, report)
    captions: dict[str, list[str]] = {}
    for index, raw in enumerate(data["sentences"]):
        try:
            sentence = expect_object(raw, f"sentences[{index}]")
            video_id = expect_identifier(require(sentence, "video_id", f"sentences[{index}]."), f"sentences[{index}].video_id")
            caption = expect_text(require(sentence, "caption", f"sentences[{index}]."), f"sentences[{index}].caption")
        except DataFormatError as error:
            run.skip_or_raise(f"{path}: sentences[{index}]", error)
            continue
        captions.setdefault(video_id, []).append(caption.strip())
    present = {str(v.get("split")) for v in data["videos"] if isinstance(v, dict)}
    wanted = _split_names(split, MSRVTT_SPLITS, path, present)
    records = []
    for index, video in enumerate(data["videos"]):
        declared = video.get("split") if isinstance(video, dict) else None
        if wanted is not None and isinstance(declared, str) and declared not in wanted:
            continue
        clip_id = str(video.get("video_id")) if isinstance(video, dict) else ""
        location = f"{path}: videos[{index}]" + (f" ({clip_id})" if clip_id else "")
        record = run.build(location, _msrvtt_record, video, captions.get(clip_id, []), root)
        if record is not None:
            records.append(record)
    return run.finish(records)
