"""Clip loaders and frame sampling: the world's clips read back through the YouCook2 loader, errors
that name the file, the clip and the field, MSR-VTT, and video files through PyAV (when installed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sugar.data import (
    DataFormatError,
    LoadReport,
    SkippedRecordsWarning,
    VideoLoadError,
    load_msrvtt,
    load_youcook2,
    sample_frames,
    sample_indices,
)
from sugar.world import build_world, load_manifest


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("video-world") / "w"
    build_world(root, seed=0, scale="small", progress=False)
    return root


def frame_folder(folder: Path, colours: list[tuple[int, int, int]], names: list[str] | None = None) -> Path:
    folder.mkdir(parents=True)
    for k, colour in enumerate(colours):
        name = names[k] if names else f"frame_{k:04d}.png"
        Image.new("RGB", (16, 16), colour).save(folder / name)
    return folder


def youcook2(path: Path, database: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"database": database}))
    return path


def record(subset: str = "validation", duration: float = 6, segments: list[Any] | None = None) -> dict[str, Any]:
    segments = segments if segments is not None else [[0, 3], [3, 6]]
    return {
        "subset": subset,
        "recipe_type": "101",
        "duration": duration,
        "annotations": [{"segment": s, "id": i, "sentence": f"step {i} happens."} for i, s in enumerate(segments)],
    }


# --------------------------------------------------------------------------- sampling


def test_sample_indices_by_hand() -> None:
    assert sample_indices(10) == list(range(10))
    assert sample_indices(10, num_frames=4) == [1, 3, 6, 8]  # middles of 4 runs of 2.5 frames
    assert sample_indices(10, stride=3) == [0, 3, 6, 9]
    assert sample_indices(10, num_frames=2, stride=2) == [2, 6]  # of 0, 2, 4, 6, 8
    assert sample_indices(3, num_frames=8) == [0, 1, 2]
    assert sample_indices(0, num_frames=4) == []
    for bad in ({"stride": 0}, {"num_frames": 0}, {"stride": 1.5}, {"num_frames": True}):
        with pytest.raises(ValueError):
            sample_indices(10, **bad)  # type: ignore[arg-type]


def test_frame_folders_in_natural_order_with_times_and_spans(tmp_path: Path) -> None:
    colours = [(10 * k, 0, 0) for k in range(12)]
    names = [f"f{k}.jpg" if k % 2 else f"f{k}.png" for k in range(12)]
    folder = frame_folder(tmp_path / "clip", colours, names)
    (folder / "notes.txt").write_text("not a frame")
    frames = sample_frames(folder, fps=2.0)
    assert [ref.path.name for ref in frames.images] == names  # f2 before f10
    assert frames.times[:3] == [0.25, 0.75, 1.25]
    sub = sample_frames(folder, num_frames=3, stride=2, fps=2.0)  # kept 0, 2, ..., 10
    assert sub.indices == [2, 6, 10] and sub.times == [1.25, 3.25, 5.25]
    assert sub.span(0.0, 1.0) is None and sub.span(1.0, 4.0) == (0, 1) and sub.span(3.3, 6.0) == (2, 2)
    with pytest.raises(VideoLoadError, match="no image files"):
        sample_frames(frame_folder(tmp_path / "empty", []))
    with pytest.raises(VideoLoadError, match="no video file or frame folder"):
        sample_frames(tmp_path / "nothing")


# --------------------------------------------------------------------------- the world through the loader


def test_world_clips_read_back_with_their_spans(world: Path) -> None:
    manifest = load_manifest(world)
    for split in ("train", "val", "test"):
        path = manifest.path("clips", split, "youcook2-annotations-json")
        truth = [json.loads(line) for line in manifest.path("clips", split, "sugar-clip-ground-truth-jsonl").read_text().splitlines()]
        clips = load_youcook2(path, world / "clips" / split, split=split, verify_images=True)
        assert [c.id for c in clips] == [t["id"] for t in truth]
        for clip, gt in zip(clips, truth):
            assert clip.sentences == [s["text"] for s in gt["sentences"]]
            frames = clip.frames()
            assert [str(ref.path.relative_to(world)) for ref in frames.images] == [f["path"] for f in gt["frames"]]
            assert frames.spans(clip.segments) == [tuple(s["frames"]) for s in gt["sentences"]]
            # every second frame: a sentence keeps the sampled frames that fall inside its frames
            half = clip.frames(stride=2)
            for span, sentence in zip(half.spans(clip.segments), gt["sentences"]):
                first, last = sentence["frames"]
                inside = [k for k, i in enumerate(half.indices) if first <= i <= last]
                assert span == ((inside[0], inside[-1]) if inside else None)
    # the YouCook2 subset names and the project's split names select the same clips
    path = manifest.path("clips", "val", "youcook2-annotations-json")
    assert [c.id for c in load_youcook2(path, world / "clips" / "val", split="validation")] == [
        c.id for c in load_youcook2(path, world / "clips" / "val", split="val")
    ]


# --------------------------------------------------------------------------- errors


def test_youcook2_errors_name_the_file_the_clip_and_the_field(tmp_path: Path) -> None:
    frame_folder(tmp_path / "videos" / "abc", [(0, 0, 0)] * 6)
    videos = tmp_path / "videos"
    cases: list[tuple[dict[str, Any], str]] = [
        ({k: v for k, v in record().items() if k != "subset"}, "missing field 'subset'"),
        (record(duration=-1), "duration: expected a positive number"),
        (record(segments=[[3, 1]]), r"annotations\[0\].segment: expected 0 <= start < end <= duration \(6\)"),
        (record(segments=[[0, 9]]), r"annotations\[0\].segment: expected 0 <= start < end <= duration"),
        (record(segments=[[0]]), r"annotations\[0\].segment: expected \[start, end\]"),
        (record(segments=[["0", 2]]), r"annotations\[0\].segment\[0\]: expected a finite number"),
        (record(segments=[]), "annotations: expected a non-empty list"),
        ({**record(), "annotations": [{"segment": [0, 2], "sentence": " "}]}, r"annotations\[0\].sentence: expected a non-empty string"),
        ({**record(), "fps": 0}, "fps: expected a positive number"),
    ]
    for index, (entry, message) in enumerate(cases):
        path = youcook2(tmp_path / f"bad{index}.json", {"abc": entry})
        with pytest.raises(DataFormatError, match=message) as caught:
            load_youcook2(path, videos)
        assert f"bad{index}.json: database['abc']" in str(caught.value)
    path = youcook2(tmp_path / "missing.json", {"abc": record(), "zzz": record()})
    with pytest.raises(VideoLoadError, match=r"database\['zzz'\]: video: no frame folder zzz/ or video file zzz"):
        load_youcook2(path, videos)
    report = LoadReport()
    with pytest.warns(SkippedRecordsWarning, match="skipped 1 bad record"):
        clips = load_youcook2(path, videos, on_error="skip", report=report)
    assert [c.id for c in clips] == ["abc"] and report.num_skipped == 1 and "zzz" in report.skipped[0].location
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(DataFormatError, match="list.json: expected a JSON object with a 'database' object"):
        load_youcook2(tmp_path / "list.json", videos)
    with pytest.raises(DataFormatError, match=r"no clip has split 'test' \(splits in the file: validation\)"):
        load_youcook2(youcook2(tmp_path / "one.json", {"abc": record()}), videos, split="test")
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        load_youcook2(tmp_path / "absent.json", videos)


def test_youcook2_finds_raw_videos_layout_and_refuses_two_media(tmp_path: Path) -> None:
    videos = tmp_path / "raw_videos"
    frame_folder(videos / "validation" / "101" / "abc", [(0, 0, 0)] * 6)
    path = youcook2(tmp_path / "a.json", {"abc": record()})
    (clip,) = load_youcook2(path, videos)
    assert clip.source == videos / "validation" / "101" / "abc" and clip.subset == "validation"
    assert clip.meta["recipe_type"] == "101" and len(clip.frames()) == 6 and clip.fps is None
    (videos / "abc.mp4").write_bytes(b"")
    with pytest.raises(DataFormatError, match="several media for clip 'abc'"):
        load_youcook2(path, videos)


def test_msrvtt_groups_captions_per_video(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    for name in ("video0", "video1"):
        frame_folder(videos / name, [(0, 0, 0)] * 4)
    data = {
        "videos": [
            {"video_id": "video0", "split": "train", "start time": 1.0, "end time": 5.0, "category": 3},
            {"video_id": "video1", "split": "validate", "start time": 0.0, "end time": 4.0, "category": 1},
        ],
        "sentences": [
            {"video_id": "video0", "caption": "a man cooks", "sen_id": 0},
            {"video_id": "video1", "caption": "a dog runs", "sen_id": 1},
            {"video_id": "video0", "caption": "someone is cooking", "sen_id": 2},
        ],
    }
    path = tmp_path / "train_val_videodatainfo.json"
    path.write_text(json.dumps(data))
    clips = load_msrvtt(path, videos)
    assert [c.id for c in clips] == ["video0", "video1"]
    assert clips[0].sentences == ["a man cooks", "someone is cooking"] and clips[0].duration == 4.0
    assert all(s.start == 0.0 and s.end == 4.0 for s in clips[0].segments)
    assert [c.id for c in load_msrvtt(path, videos, split="val")] == ["video1"]
    data["videos"][1]["end time"] = -1.0
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"videos\[1\] \(video1\): 'end time' \(-1\) must be after 'start time'"):
        load_msrvtt(path, videos)


# --------------------------------------------------------------------------- video files


def test_a_missing_video_library_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"not really a video")
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'sugar\[video\]'"):
        sample_frames(tmp_path / "clip.mp4")


def write_video(path: Path, colours: list[tuple[int, int, int]], fps: int) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for colour in colours:
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), colour, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_files_are_sampled_by_their_timestamps(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)] * 2
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "abc.mp4", colours, fps=2)
    frames = sample_frames(videos / "abc.mp4", num_frames=5)
    assert frames.indices == [1, 3, 5, 7, 9]
    assert frames.times == pytest.approx([0.75, 1.75, 2.75, 3.75, 4.75])
    for ref, index in zip(frames.images, frames.indices):
        mean = np.asarray(ref.load(), dtype=float).reshape(-1, 3).mean(0)
        assert np.abs(mean - np.asarray(colours[index])).max() < 40, (index, mean)
    assert sample_frames(videos / "abc.mp4", stride=4).indices == [0, 4, 8]
    # the same file through the YouCook2 loader: sentence segments select frames by time
    path = youcook2(tmp_path / "a.json", {"abc": record(duration=5, segments=[[0, 2], [2, 5]])})
    (clip,) = load_youcook2(path, videos)
    assert clip.source == videos / "abc.mp4"
    assert clip.frames().spans(clip.segments) == [(0, 3), (4, 9)]
    (videos / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(VideoLoadError, match="broken.mp4"):
        sample_frames(videos / "broken.mp4")
