"""The clips benchmark: the grounding metric against hand-computed values, the model's slice
embeddings, and `sugar eval --bench clips` end to end on the small world (tiny untrained model,
toy teachers: the numbers mean nothing, their keys, ranges and counts do)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from sugar.eval.clips import (
    ClipItem,
    grounding_scores,
    localisation_scores,
    model_slice_embeddings,
    summarise_localisation,
    summarise_grounding,
    uniform_alignment,
    uniform_grounding,
)
from sugar.eval.suite import run_benchmarks, write_results
from sugar.models import SugarModel
from tiny_model import tiny_model_config


# --------------------------------------------------------------------------- the metric by hand


def test_grounding_scores_by_hand() -> None:
    alignment = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]]
    scores = grounding_scores(alignment, [(0, 0), (1, 3)])
    # sentence 0 peaks at frame 0 (gold 0..0), sentence 1 at frame 3 (gold 1..3): both hit;
    # frames 0-1 go to sentence 0, frames 2-3 to sentence 1: IoU 1/2 and 2/3
    assert scores["hits"] == [True, True]
    assert scores["predicted"] == [[0, 1], [2, 3]]
    assert scores["ious"] == pytest.approx([1 / 2, 2 / 3])
    summary = summarise_grounding([scores])
    assert summary["accuracy"] == 1.0 and summary["mean_iou"] == pytest.approx(7 / 12) and summary["sentences"] == 2

    # a sentence without sampled frames is left out and counted; a miss and an empty prediction
    alignment = [[0.5, 0.2, 0.3], [0.1, 0.8, 0.1], [0.4, 0.35, 0.25]]
    scores = grounding_scores(alignment, [(0, 0), None, (2, 2)])
    assert scores["skipped"] == 1
    assert scores["hits"] == [True, False]  # sentence 2 peaks at frame 0, outside 2..2
    assert scores["predicted"] == [[0, 2], []]  # frame 1 goes to the skipped sentence
    assert scores["ious"] == pytest.approx([1 / 2, 0.0])

    # ties go to the earliest frame and the earliest sentence
    scores = grounding_scores([[0.5, 0.5], [0.5, 0.5]], [(1, 1), (0, 1)])
    assert scores["hits"] == [False, True] and scores["predicted"] == [[0, 1], []]
    assert scores["ious"] == pytest.approx([1 / 2, 0.0])

    two = summarise_grounding([grounding_scores([[1.0, 0.0], [0.0, 1.0]], [(0, 0), (1, 1)]), scores])
    assert two["accuracy"] == pytest.approx(3 / 4) and two["mean_iou"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    with pytest.raises(ValueError, match="frames, sentences=3"):
        grounding_scores([[1.0, 0.0]], [(0, 0), (0, 0), (0, 0)])
    with pytest.raises(ValueError, match="does not fit 2 frames"):
        grounding_scores([[1.0], [1.0]], [(0, 2)])


def test_localisation_by_hand() -> None:
    """Each sentence picks its nearest frame by cosine; no order, no alignment path."""
    frames = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
    sentences = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.7071, 0.7071]])
    # nearest frames: 1, 0, then 2 and 3 tie at 0.9899 -> the earlier, 2
    scores = localisation_scores(frames, sentences, [(1, 2), (2, 3), None])
    assert scores == {"hits": [True, False], "chance": [0.5, 0.5]}
    scores = localisation_scores(frames, sentences, [(0, 0), (0, 0), (2, 2)])
    assert scores["hits"] == [False, True, True] and scores["chance"] == [0.25, 0.25, 0.25]
    total = summarise_localisation([scores, {"hits": [False], "chance": [1.0]}])
    assert total == {"accuracy": 0.5, "chance": pytest.approx(0.4375), "sentences": 4}
    with pytest.raises(ValueError, match="sentences=2"):
        localisation_scores(frames, sentences, [(0, 0), (1, 1)])


def test_uniform_alignment_is_the_equal_split() -> None:
    assert uniform_alignment(5, 2).argmax(1).tolist() == [0, 0, 0, 1, 1]
    assert uniform_alignment(6, 3).argmax(1).tolist() == [0, 0, 1, 1, 2, 2]
    item = ClipItem("c", [object()] * 6, ["a.", "b.", "c."], [(0, 1), (2, 4), (5, 5)])  # type: ignore[list-item]
    result = uniform_grounding([item])
    # runs 0-1, 2-3, 4-5: the last sentence peaks at frame 4, outside its gold frame 5
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["mean_iou"] == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)


# --------------------------------------------------------------------------- the benchmark


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sugar.teachers.fit import FitConfig, fit_teachers
    from sugar.teachers.toy import ToyImageExpert, ToyTextExpert
    from sugar.train.examples import tokenizer_corpus
    from sugar.world import build_world

    root = tmp_path_factory.mktemp("clips-eval")
    world = root / "world"
    build_world(world, seed=0, scale="small", progress=False)
    torch.manual_seed(0)
    model = SugarModel.from_preset("tiny", tokenizer_corpus=tokenizer_corpus(world), **tiny_model_config(512)).eval()
    teachers = fit_teachers(
        root / "teachers", world=world, image_expert=ToyImageExpert(), text_expert=ToyTextExpert(),
        config=FitConfig(epochs=2), progress=False, log=None,
    )
    return {"root": root, "world": world, "model": model, "model_dir": model.save_pretrained(root / "model"), "teachers": teachers.suite}


def in_unit(value: float) -> bool:
    return 0.0 <= value <= 1.0


def test_slice_embeddings_end_with_the_document_embedding(setup: dict[str, Any]) -> None:
    from PIL import Image

    model = setup["model"]
    frames = [Image.new("RGB", (32, 32), (40 * k, 0, 0)) for k in range(5)]
    documents: list[list[Any]] = [frames, ["A red circle sits on the left.", "Then it turns blue."], frames[:2]]
    slices = model_slice_embeddings(model, documents, batch_size=2)
    assert [tuple(s.shape) for s in slices] == [(5, 16), (2, 16), (2, 16)]
    assert torch.allclose(torch.stack([s[-1] for s in slices]), model.encode(documents), atol=1e-5)
    assert torch.allclose(slices[2], slices[0][:2], atol=1e-5)  # causal: a prefix reads only itself
    small = SugarModel.from_preset("tiny", tokenizer=model.tokenizer, **tiny_model_config(64)).eval()
    with pytest.warns(UserWarning, match="longer than max_length"), pytest.raises(ValueError, match="max_length.*--clip-frames"):
        model_slice_embeddings(small, [frames])


def test_clips_benchmark_end_to_end(setup: dict[str, Any]) -> None:
    results = run_benchmarks(setup["model"], setup["world"], "clips", teachers_dir=setup["teachers"])
    clips = results["clips"]
    truth = [json.loads(line) for line in (setup["world"] / "clips" / "ground_truth_test.jsonl").read_text().splitlines()]
    assert clips["clips"] == len(truth) == 8 and clips["format"] == "youcook2"
    assert clips["frames"] == sum(len(t["frames"]) for t in truth)  # at most 12 frames each: all of them
    sentences = sum(len(t["sentences"]) for t in truth)
    for encoder in (clips, clips["teacher"]):
        assert set(encoder["t2v"]) == {"r@1", "r@5", "r@10"} and encoder["t2v"]["r@10"] == 1.0  # 8 candidates
        assert all(in_unit(v) for v in [*encoder["t2v"].values(), *encoder["v2t"].values()])
        grounding = encoder["grounding"]
        assert grounding["sentences"] == sentences and grounding["skipped_sentences"] == 0
        assert in_unit(grounding["accuracy"]) and in_unit(grounding["mean_iou"])
        localisation = encoder["localisation"]
        assert localisation["sentences"] == sentences and in_unit(localisation["accuracy"])
        assert 0 < localisation["chance"] < 1
    assert clips["localisation"]["chance"] == clips["teacher"]["localisation"]["chance"]
    assert in_unit(clips["uniform_grounding"]["mean_iou"])
    example = clips["example"]
    assert len(example["sentences"]) >= 3 and set(example["alignment"]) == {"model", "teacher"}
    matrix = torch.tensor(example["alignment"]["model"])
    assert matrix.shape == (len(example["frames"]), len(example["sentences"]))
    assert torch.allclose(matrix.sum(1).clamp(max=1), torch.ones(len(matrix)), atol=1e-3)  # every frame is on the path

    # every second frame, at most 3 of them: fewer frames, and sentences without one are counted
    sparse = run_benchmarks(setup["model"], setup["world"], "clips", clip_frames=3, frame_stride=2)["clips"]
    assert sparse["frames"] == 3 * 8 and sparse["sampling"] == {"clip_frames": 3, "frame_stride": 2}
    assert sparse["grounding"]["sentences"] + sparse["grounding"]["skipped_sentences"] == sentences
    assert sparse["grounding"]["skipped_sentences"] > 0 and "teacher" not in sparse

    report = write_results(results, setup["root"] / "out", command="sugar eval --bench clips")
    text = report.read_text()
    assert "## Clips: text-video retrieval and temporal grounding" in text and "| equal split (order only) |" in text
    assert "| localisation |" in text and "(chance) |" in text
    assert "clip_alignment.png" in text and (report.parent / "clip_alignment.png").stat().st_size > 1000

    # the world's YouCook2 file through --data gives the same numbers
    data = run_benchmarks(
        setup["model"], None, "clips", data=setup["world"] / "clips" / "youcookii_annotations_test.json",
        image_root=setup["world"] / "clips" / "test",
    )["clips"]
    assert data["t2v"] == clips["t2v"] and data["grounding"] == clips["grounding"]


def test_a_world_without_clips_fails_before_any_benchmark_runs(setup: dict[str, Any], tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(setup["world"], old, ignore=shutil.ignore_patterns("clips"))
    calls: list[str] = []
    model = setup["model"]
    original = model.encode

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append("encode")
        return original(*args, **kwargs)

    model.encode = counted  # type: ignore[method-assign]
    try:
        with pytest.raises(FileNotFoundError, match=r"has none for split 'test'.*sugar world --out .* --force"):
            run_benchmarks(model, old, "retrieval,clips")
    finally:
        del model.encode
    assert calls == []


def test_cli_runs_the_clips_bench(setup: dict[str, Any], tmp_path: Path) -> None:
    from sugar.cli import main

    out = tmp_path / "out"
    argv = ["eval", "--model", str(setup["model_dir"]), "--world", str(setup["world"]), "--bench", "clips"]
    assert main([*argv, "--out", str(out), "--clip-frames", "4", "--frame-stride", "2", "--split", "val", "--no-progress"]) == 0
    result = json.loads((out / "clips.json").read_text())
    assert result["split"] == "val" and result["clips"] == 4 and result["frames"] == 16
    assert "--clip-frames 4 --frame-stride 2" in (out / "results.md").read_text()


def test_the_clip_picture_beside_the_story_picture(setup: dict[str, Any], tmp_path: Path) -> None:
    from sugar.eval.pictures import clip_alignment, plot_clip_alignment

    path = clip_alignment(setup["root"], tmp_path / "pictures", setup["teachers"], delta=1.0)
    assert path.name == "clip_alignment.png" and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"panels\['model'\] must be \(frames=3, sentences=2\)"):
        plot_clip_alignment({"model": [[1.0, 0.0]]}, ["a", "b", "c"], ["x.", "y."], [(0, 0), (1, 2)], tmp_path / "x.png")
