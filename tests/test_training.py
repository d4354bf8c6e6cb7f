"""The training recipe end to end on a small world with a tiny model and toy teachers:
both losses fall, a SIGKILLed run resumes to the same weights, two processes equal one."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sugar.train.config import TrainConfig, load_config
from tiny_model import tiny_model_config

TINY_MODEL = tiny_model_config(256)


def overrides(world: Path, teachers: Path, out: Path, **values: object) -> list[str]:
    settings = {
        "world": str(world),
        "teachers": str(teachers),
        "output_dir": str(out),
        "model": "tiny",
        "mix": "{captions: 4, stories: 2, vqa: 2}",
        "model_overrides": "{" + ", ".join(f"{k}: {v!r}" for k, v in TINY_MODEL.items()).replace("'", '"') + "}",
        "learning_rate": 3e-3,
        "log_every": 1,
        **values,
    }
    return [f"{k}={v}" for k, v in settings.items()]


def config(world: Path, teachers: Path, out: Path, **values: object) -> TrainConfig:
    return load_config(None, overrides(world, teachers, out, **values))


def read_log(path: Path) -> list[dict[str, float]]:
    with open(path) as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def test_short_runs_lower_both_losses(world: Path, teachers: Path, tmp_path: Path) -> None:
    from sugar.train.recipe import train

    base = train(config(world, teachers, tmp_path / "base", stage="base", steps=30), show_progress=False)
    rows = read_log(tmp_path / "base" / "train_log.csv")
    first, last = sum(r["generative_loss"] for r in rows[:5]) / 5, sum(r["generative_loss"] for r in rows[-5:]) / 5
    assert last < 0.8 * first
    assert all(math.isnan(r["discriminative_loss"]) for r in rows)

    train(config(world, teachers, tmp_path / "sugar", stage="sugar", steps=30, init_from=str(base), alpha=2.0), show_progress=False)
    rows = read_log(tmp_path / "sugar" / "train_log.csv")
    first_d = sum(r["discriminative_loss"] for r in rows[:5]) / 5
    last_d = sum(r["discriminative_loss"] for r in rows[-5:]) / 5
    assert last_d < 0.7 * first_d
    assert rows[-1]["generative_loss"] < first  # still below where base started
    assert (tmp_path / "sugar" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "sugar" / "tensorboard").is_dir()


def test_rag_and_webqa_examples_put_the_answer_after_its_context(world: Path) -> None:
    from sugar.data import load_interleaved
    from sugar.train.examples import load_world_examples

    pools = load_world_examples(world, "train", ["rag", "webqa"])
    knowledge_base = {d.id: d for d in load_interleaved(world / "rag" / "kb.jsonl", world)}
    assert pools["rag"] and pools["webqa"]
    for example in pools["rag"][:20]:
        # gold document first (image + text), then the question's image and text, then the answer
        assert isinstance(example.segments[0], Path) and example.segments[0].parent.name == "images"
        [target] = example.targets
        assert target == len(example.segments) - 1 and isinstance(example.segments[target], str)
        assert any(example.segments[1] == text for d in knowledge_base.values() for text in d.texts)
    for example in pools["webqa"][:20]:
        assert sum(isinstance(s, Path) for s in example.segments) == 6
        assert example.targets == (len(example.segments) - 1,) and example.segments[-2].endswith("?")
    with pytest.raises(ValueError, match="mix must map"):
        load_config(None, ["mix={captions: 2, pictures: 1}"])


def test_existing_checkpoints_need_resume(world: Path, teachers: Path, tmp_path: Path) -> None:
    from sugar.train.recipe import train

    settings = config(world, teachers, tmp_path / "run", stage="base", steps=2, checkpoint_every=1)
    train(settings, show_progress=False)
    with pytest.raises(ValueError, match="pass --resume"):
        train(settings, show_progress=False)


def run_cli(arguments: list[str]) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "sugar.cli", "train", "--no-progress", *arguments],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def test_sigkilled_run_resumes_to_identical_weights(world: Path, teachers: Path, tmp_path: Path) -> None:
    steps = ["stage=sugar", "steps=12", "checkpoint_every=3", "alpha=1.0"]
    reference = run_cli(overrides(world, teachers, tmp_path / "reference") + steps)
    assert reference.wait(timeout=600) == 0, reference.stdout.read().decode() if reference.stdout else ""

    interrupted = run_cli(overrides(world, teachers, tmp_path / "killed") + steps)
    checkpoint = tmp_path / "killed" / "checkpoints" / "step_00000006"
    deadline = time.time() + 600
    while not checkpoint.is_dir() and interrupted.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert interrupted.poll() is None, "the run finished before it could be killed"
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert not (tmp_path / "killed" / "model").exists()

    resumed = run_cli(overrides(world, teachers, tmp_path / "killed") + steps + ["--resume"])
    output = resumed.communicate(timeout=600)[0].decode()
    assert resumed.returncode == 0, output
    assert "resumed from" in output
    expected = load_file(str(tmp_path / "reference" / "model" / "model.safetensors"))
    got = load_file(str(tmp_path / "killed" / "model" / "model.safetensors"))
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    # the log holds every logged step once, as the uninterrupted run's does
    logged = [(tmp_path / run / "train_log.csv").read_text().splitlines() for run in ("reference", "killed")]
    assert [line.split(",")[0] for line in logged[1]] == [line.split(",")[0] for line in logged[0]]
    # and its clock goes on across the resume: the time the killed sitting trained is counted
    elapsed = [float(line.split(",")[-1]) for line in logged[1][1:]]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    final = json.loads((tmp_path / "killed" / "checkpoints" / "step_00000012" / "state.json").read_text())
    assert final["elapsed_seconds"] >= elapsed[-1]


TWO_PROCESS_SCRIPT = r"""
import json, os, sys
import torch, torch.distributed as dist
from pathlib import Path
from sugar.train.config import load_config
from sugar.train.examples import load_world_examples
from sugar.train.mixture import BatchStream
from sugar.train.recipe import SliceTeacher, compute_losses
from sugar.models import SugarModel
from sugar.teachers import TeacherSuite

rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
if world_size > 1:
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
config = load_config(None, json.loads(sys.argv[1]))
model = SugarModel.from_pretrained(sys.argv[2])
pools = load_world_examples(Path(config.world), "train", ["captions", "stories", "vqa"])
stream = BatchStream(pools, config.mix, config.seed)
teacher = SliceTeacher(TeacherSuite.load(config.teachers), "triple")
losses = compute_losses(model, model.processor, stream.batch(0, rank, world_size), config, teacher, 0, rank, torch.device("cpu"))
losses.total.backward()
grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
for g in grads.values():
    if world_size > 1:
        dist.all_reduce(g)
        g /= world_size
if rank == 0:
    torch.save({"generative": losses.generative.item(), "discriminative": losses.discriminative.item(), "grads": grads}, sys.argv[3])
if world_size > 1:
    dist.destroy_process_group()
"""


def test_two_processes_compute_the_one_process_losses_and_gradients(world: Path, teachers: Path, tmp_path: Path) -> None:
    import json

    from sugar.models import SugarModel
    from sugar.train.examples import tokenizer_corpus

    torch.manual_seed(0)
    model_dir = SugarModel.from_preset("tiny", tokenizer_corpus=tokenizer_corpus(world), **TINY_MODEL).save_pretrained(tmp_path / "model")
    script = tmp_path / "step.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    common = overrides(world, teachers, tmp_path / "unused", stage="sugar")

    def run(world_size: int, mix: str, out: Path) -> dict:
        arguments = json.dumps([a for a in common if not a.startswith("mix=")] + [f"mix={mix}"])
        processes = []
        for rank in range(world_size):
            environment = {
                **os.environ, "RANK": str(rank), "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": "29533", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            }
            processes.append(subprocess.Popen([sys.executable, str(script), arguments, str(model_dir), str(out)], env=environment, stderr=subprocess.PIPE))
        for process in processes:
            _, error = process.communicate(timeout=300)
            assert process.returncode == 0, error.decode()
        return torch.load(out, weights_only=False)

    single = run(1, "{captions: 4, stories: 2, vqa: 2}", tmp_path / "one.pt")
    double = run(2, "{captions: 2, stories: 1, vqa: 1}", tmp_path / "two.pt")
    assert double["discriminative"] == pytest.approx(single["discriminative"], rel=1e-5)
    assert double["generative"] == pytest.approx(single["generative"], rel=1e-5)
    assert single["grads"].keys() == double["grads"].keys()
    for name, gradient in single["grads"].items():
        torch.testing.assert_close(double["grads"][name], gradient, rtol=1e-4, atol=1e-6, msg=name)


def build_tiny_model(world: Path):
    from sugar.models import SugarModel
    from sugar.train.examples import tokenizer_corpus

    return SugarModel.from_preset("tiny", tokenizer_corpus=tokenizer_corpus(world), **TINY_MODEL)


def test_pair_target_one_makes_an_image_and_its_caption_one_document(world: Path, teachers: Path) -> None:
    from sugar.teachers import TeacherSuite
    from sugar.train.examples import load_world_examples
    from sugar.train.losses import alignment_targets
    from sugar.train.mixture import BatchStream
    from sugar.train.recipe import SliceTeacher, load_image, prefix_slices, sample_cut_points

    pools = load_world_examples(world, "train", ["captions"])
    examples = BatchStream(pools, {"captions": 4}, seed=0, paired=("captions",)).batch(0)
    model = build_tiny_model(world)
    documents = [[load_image(s) if not isinstance(s, str) else s for s in segments] for _, segments, _ in examples]
    batch = model.processor(documents)
    cuts = sample_cut_points([len(s) for s in batch.slices], 1, [0] * len(examples))
    teacher = SliceTeacher(TeacherSuite.load(teachers), "triple")
    as_two = alignment_targets(prefix_slices(batch.slices, cuts, teacher, 0), teacher.kernel, delta=1.0)
    ids = [example.id for example, _, _ in examples]
    as_one = alignment_targets(prefix_slices(batch.slices, cuts, teacher, 0, document_ids=ids), teacher.kernel, delta=1.0)
    # rows 0/1 and 2/3 are one image and its caption in both orders
    assert as_one[0, 1] == 1.0 and as_one[2, 3] == 1.0 and as_two[0, 1] < 1.0
    assert torch.equal(as_one[0, 2], as_two[0, 2]) and as_one[0, 2] < 1.0


def test_rag_pairs_make_a_question_and_its_gold_document_one_document(world: Path, teachers: Path) -> None:
    from sugar.data import load_interleaved, load_llava_conversations
    from sugar.eval.benchmarks import question_and_answer
    from sugar.teachers import TeacherSuite
    from sugar.train.examples import load_world_examples
    from sugar.train.losses import alignment_targets
    from sugar.train.mixture import BatchStream
    from sugar.train.recipe import PAIRED_KINDS, SliceTeacher, load_image, pair_document_ids, prefix_slices, sample_cut_points

    pools = load_world_examples(world, "train", ["rag_pairs", "captions"])
    knowledge_base = {d.id: d for d in load_interleaved(world / "rag" / "kb.jsonl", world)}
    questions = {q.id: q for q in load_llava_conversations(world / "rag" / "questions_train.json", world)}
    for example in pools["rag_pairs"][:20]:
        question = questions[example.id]
        gold = question.meta["gold_doc_ids"]
        assert len(example.alternates) == 2 * len(gold)
        query, _ = question_and_answer(question)
        for (asked, asked_targets), (document, document_targets), gold_id in zip(
            example.alternates[::2], example.alternates[1::2], gold
        ):
            # the query is what evaluate_rag encodes (image, question), never the answer
            assert len(asked) == len(query) == 2 and asked[1] == query[1] and isinstance(asked[0], Path)
            assert asked_targets == () and document_targets == ()
            assert document[1] == knowledge_base[gold_id].texts[0]
    stream = BatchStream(pools, {"rag_pairs": 2, "captions": 2}, seed=0, paired=("captions", *PAIRED_KINDS))
    examples = stream.batch(0)
    assert [e.kind for e, _, _ in examples] == ["rag_pairs", "rag_pairs", "captions", "captions"]
    model = build_tiny_model(world)
    documents = [[load_image(s) if not isinstance(s, str) else s for s in segments] for _, segments, _ in examples]
    batch = model.processor(documents)
    cuts = sample_cut_points([len(s) for s in batch.slices], 1, [0] * len(examples))
    teacher = SliceTeacher(TeacherSuite.load(teachers), "triple")
    for pair_target, caption_pair_is_one in (("kernel", False), ("one", True)):
        ids = pair_document_ids(examples, pair_target, rank=0)
        assert ids is not None
        targets = alignment_targets(prefix_slices(batch.slices, cuts, teacher, 0, document_ids=ids), teacher.kernel, delta=1.0)
        assert targets[0, 1] == 1.0  # the question and its gold document, under either reading
        assert bool(targets[2, 3] == 1.0) is caption_pair_is_one
        assert targets[0, 2] < 1.0
    assert pair_document_ids(examples[2:], "kernel", rank=0) is None
    # rows without an answer add nothing to L_g but take part in L_d
    from sugar.train.recipe import compute_losses

    settings = load_config(None, ["stage=sugar", "alpha=1.0", "mix={rag_pairs: 2, captions: 2}"])
    losses = compute_losses(model, model.processor, examples, settings, teacher, 0, 0, torch.device("cpu"))
    only_pairs = compute_losses(model, model.processor, examples[:2], settings, teacher, 0, 0, torch.device("cpu"))
    assert losses.generative is not None and losses.discriminative is not None and only_pairs.discriminative is not None
    assert torch.isfinite(losses.total) and only_pairs.generative is not None and only_pairs.generative.item() == 0.0
    with pytest.raises(ValueError, match="mix.rag_pairs must be even"):
        load_config(None, ["mix={captions: 2, rag_pairs: 1}"])


def test_align_stage_trains_the_projector_alone_and_snapshots_are_saved(world: Path, teachers: Path, tmp_path: Path) -> None:
    from sugar.train.recipe import train

    run = config(world, teachers, tmp_path / "align", stage="align", steps=3, mix="{captions: 4}", save_models_at="[1, 2]")
    out = train(run, show_progress=False)
    assert (tmp_path / "align" / "snapshots" / "step-1" / "model.safetensors").is_file()
    assert (tmp_path / "align" / "snapshots" / "step-2" / "model.safetensors").is_file()
    first = load_file(tmp_path / "align" / "snapshots" / "step-1" / "model.safetensors")
    last = load_file(out / "model.safetensors")
    changed = {k for k in first if not torch.equal(first[k], last[k])}
    assert changed and all(k.startswith("backbone.projector.") for k in changed)


def test_compute_losses_weighs_l_d_by_the_scheduled_alpha(world: Path, teachers: Path, tmp_path: Path) -> None:
    from sugar.teachers import TeacherSuite
    from sugar.train.examples import load_world_examples
    from sugar.train.mixture import BatchStream
    from sugar.train.recipe import SliceTeacher, compute_losses

    settings = config(world, teachers, tmp_path, stage="sugar", steps=10, alpha=0.5, alpha_schedule="linear",
                      alpha_warmup=0.5, gradient_accumulation=2, mix="{captions: 4}")
    pools = load_world_examples(world, "train", ["captions"])
    examples = BatchStream(pools, settings.mix, seed=0, paired=("captions",)).batch(0)
    model = build_tiny_model(world)
    teacher = SliceTeacher(TeacherSuite.load(teachers), "triple")
    for micro_step, alpha in [(0, 0.0), (5, 0.5 * 2 / 5), (12, 0.5)]:  # micro-steps of 2 per optimizer step
        losses = compute_losses(model, model.processor, examples, settings, teacher, micro_step, 0, torch.device("cpu"))
        assert losses.generative is not None and losses.discriminative is not None
        assert losses.total.item() == pytest.approx(losses.generative.item() + alpha * losses.discriminative.item(), rel=1e-5)
