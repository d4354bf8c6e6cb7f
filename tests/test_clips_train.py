"""Clips in the training mix: a clip's frames and its narration as one matched pair for L_d, drawn
two views at a time, read with the same loader the benchmark uses; worlds without clips refuse it
clearly and keep their tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sugar.train.config import MIX_KINDS, PAIRED_KINDS, load_config
from tiny_model import tiny_model_config


def test_clip_examples_are_the_frames_and_the_narration(world: Path) -> None:
    from sugar.train.examples import CLIP_TRAIN_FRAMES, load_world_examples

    assert "clips" in MIX_KINDS and "clips" in PAIRED_KINDS
    pool = load_world_examples(world, "train", ["clips"])["clips"]
    truth = [json.loads(line) for line in (world / "clips" / "ground_truth_train.jsonl").read_text().splitlines()]
    assert [e.id for e in pool] == [t["id"] for t in truth] and all(e.kind == "clips" for e in pool)
    for example, gt in zip(pool, truth):
        (frames, frame_targets), (narration, narration_targets) = example.alternates
        assert frame_targets == () and narration_targets == ()  # L_d only
        assert list(narration) == [s["text"] for s in gt["sentences"]]
        assert len(frames) == min(CLIP_TRAIN_FRAMES, len(gt["frames"])) and all(isinstance(f, Path) for f in frames)
        paths = [f["path"] for f in gt["frames"]]
        positions = [paths.index(str(f.relative_to(world))) for f in frames]
        assert positions == sorted(positions) and positions[0] <= 1 and positions[-1] >= len(paths) - 2  # spread over the clip
    fewer = load_world_examples(world, "train", ["clips"], clip_frames=3)["clips"]
    assert all(len(e.alternates[0][0]) == 3 for e in fewer)


def test_the_mix_draws_both_views_as_one_document(world: Path, teachers: Path) -> None:
    from sugar.models import SugarModel
    from sugar.teachers import TeacherSuite
    from sugar.train.examples import load_world_examples, tokenizer_corpus
    from sugar.train.losses import alignment_targets
    from sugar.train.mixture import BatchStream
    from sugar.train.recipe import SliceTeacher, compute_losses, load_image, pair_document_ids, prefix_slices, sample_cut_points

    with pytest.raises(ValueError, match="mix.clips must be even"):
        load_config(None, ["mix={captions: 2, clips: 1}"])
    pools = load_world_examples(world, "train", ["clips", "captions"])
    stream = BatchStream(pools, {"clips": 2, "captions": 2}, seed=0, paired=("captions", *PAIRED_KINDS))
    examples = stream.batch(0)
    assert [e.kind for e, _, _ in examples] == ["clips", "clips", "captions", "captions"]
    assert examples[0][0] is examples[1][0]
    assert all(not isinstance(s, str) for s in examples[0][1]) and all(isinstance(s, str) for s in examples[1][1])

    torch.manual_seed(0)
    model = SugarModel.from_preset("tiny", tokenizer_corpus=tokenizer_corpus(world), **tiny_model_config(256))
    documents = [[load_image(s) if not isinstance(s, str) else s for s in segments] for _, segments, _ in examples]
    batch = model.processor(documents)
    assert not any(batch.truncated)
    cuts = sample_cut_points([len(s) for s in batch.slices], 1, [0] * len(examples))
    teacher = SliceTeacher(TeacherSuite.load(teachers), "triple")
    ids = pair_document_ids(examples, "kernel", rank=0)
    assert ids is not None and ids[0] == ids[1] != ids[2]
    targets = alignment_targets(prefix_slices(batch.slices, cuts, teacher, 0, document_ids=ids), teacher.kernel, delta=1.0)
    assert targets[0, 1] == 1.0 and targets[0, 2] < 1.0  # the clip and its narration are one document
    settings = load_config(None, ["stage=sugar", "alpha=1.0", "mix={clips: 2, captions: 2}"])
    losses = compute_losses(model, model.processor, examples, settings, teacher, 0, 0, torch.device("cpu"))
    assert losses.discriminative is not None and torch.isfinite(losses.total)
    only_clips = compute_losses(model, model.processor, examples[:2], settings, teacher, 0, 0, torch.device("cpu"))
    assert only_clips.generative is not None and only_clips.generative.item() == 0.0  # no answer to learn


def test_narrations_read_with_the_world_tokenizer_and_old_worlds_keep_theirs(world: Path, tmp_path: Path) -> None:
    from sugar.models import SugarModel
    from sugar.train.examples import load_world_examples, tokenizer_corpus

    model = SugarModel.from_preset("tiny", tokenizer_corpus=tokenizer_corpus(world), **tiny_model_config(64))
    unknown = model.tokenizer.unk_token_id
    for example in load_world_examples(world, "train", ["clips"])["clips"]:
        for sentence in example.alternates[1][0]:
            assert unknown not in model.tokenizer(sentence)["input_ids"], sentence
    old = tmp_path / "old"
    shutil.copytree(world, old, ignore=shutil.ignore_patterns("clips"))
    assert tokenizer_corpus(old) == tokenizer_corpus(world)
    with pytest.raises(FileNotFoundError, match=r"has none .*sugar world --out .* --force.*mix.clips=0"):
        load_world_examples(old, "train", ["captions", "clips"])
