"""Training building blocks: the batch stream, prefix sampling, config loading, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sugar.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from sugar.train.config import TrainConfig, load_config
from sugar.train.mixture import BatchStream, TrainingExample, caption_examples
from sugar.train.recipe import sample_cut_points


def pool(kind: str, size: int) -> list[TrainingExample]:
    return [TrainingExample((f"{kind}-{i}",), (0,), kind, f"{kind}-{i}") for i in range(size)]


def ids(batch: list) -> list[str]:
    return [example.id for example, _, _ in batch]


def test_batches_are_a_function_of_seed_and_step() -> None:
    pools = {"captions": pool("captions", 7), "vqa": pool("vqa", 5)}
    first = BatchStream(pools, {"captions": 3, "vqa": 2}, seed=1)
    second = BatchStream(pools, {"captions": 3, "vqa": 2}, seed=1)
    assert [ids(first.batch(s)) for s in range(6)] == [ids(second.batch(s)) for s in reversed(range(6))][::-1]
    assert ids(BatchStream(pools, {"captions": 3, "vqa": 2}, seed=2).batch(0)) != ids(first.batch(0))


def test_each_epoch_visits_every_example_once() -> None:
    stream = BatchStream({"captions": pool("captions", 6)}, {"captions": 3}, seed=0)
    assert sorted(ids(stream.batch(0)) + ids(stream.batch(1))) == sorted(f"captions-{i}" for i in range(6))


def test_ranks_split_the_global_batch_of_one_process() -> None:
    pools = {"captions": pool("captions", 11), "stories": pool("stories", 4)}
    single = BatchStream(pools, {"captions": 4, "stories": 2}, seed=3)
    double = BatchStream(pools, {"captions": 2, "stories": 1}, seed=3)
    for step in range(5):
        together = ids(single.batch(step))
        split = ids(double.batch(step, rank=0, world_size=2)) + ids(double.batch(step, rank=1, world_size=2))
        assert sorted(together) == sorted(split)


def test_caption_examples_alternate_order_and_caption() -> None:
    [example] = caption_examples([(Path("img.png"), ["one.", "two."], "x")])
    views = {example.view(seed=0, epoch=e) for e in range(40)}
    assert ((Path("img.png"), "one."), (1,)) in views and (("two.", Path("img.png")), (0,)) in views
    assert len(views) == 4


def test_paired_captions_put_both_orders_of_one_caption_in_the_batch() -> None:
    examples = caption_examples([(Path(f"{i}.png"), [f"a{i}.", f"b{i}."], f"c{i}") for i in range(6)])
    stream = BatchStream({"captions": examples}, {"captions": 4}, seed=0, paired=("captions",))
    for step in range(6):
        batch = stream.batch(step)
        assert len(batch) == 4 and len(set(ids(batch))) == 2
        for first, second in (batch[0:2], batch[2:4]):
            assert first[0] is second[0]
            image, caption = first[1]
            assert isinstance(image, Path) and second[1] == (caption, image)
            assert first[2] == (1,) and second[2] == (0,)
    # one epoch is three batches of two items: each of the six items appears once
    assert sorted(i for step in range(3) for i in ids(stream.batch(step))[::2]) == sorted(f"c{i}" for i in range(6))
    with pytest.raises(ValueError, match="must be even"):
        BatchStream({"captions": examples}, {"captions": 3}, seed=0, paired=("captions",))
    with pytest.raises(ValueError, match="mix.captions must be even"):
        load_config(None, ["mix={captions: 3, vqa: 2}"])
    assert load_config(None, ["mix={captions: 3, vqa: 2}", "paired_captions=false"]).mix["captions"] == 3


def test_cut_points_always_include_the_last_slice() -> None:
    cuts = sample_cut_points([1, 2, 6, 6], 3, [0, 1, 2, 3])
    assert cuts[0] == [0] and cuts[1] == [0, 1]
    for document_cuts in cuts[2:]:
        assert document_cuts[-1] == 5 and len(document_cuts) == 3 and len(set(document_cuts)) == 3
    assert sample_cut_points([6], 3, [2]) == [cuts[2]]  # a function of the document's seed alone


def test_config_overrides_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("stage: base\nsteps: 5\nmix: {captions: 2, vqa: 2}\n")
    config = load_config(path, ["alpha=0.25", "mix.vqa=0", "model_overrides.head_dim=64"])
    assert config.stage == "base" and config.steps == 5 and config.alpha == 0.25
    assert config.mix == {"captions": 2, "vqa": 0} and config.model_overrides == {"head_dim": 64}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['stpes'\]"):
        load_config(path, ["stpes=3"])
    with pytest.raises(ValueError, match="mix must map"):
        load_config(None, ["mix={pictures: 3}"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_checkpoint_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)  # frozen weights are not stored
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".tmp-step_00000009-1").mkdir()  # a save killed half-way
    for step in (1, 2, 3):
        path = save_checkpoint(tmp_path / "checkpoints", step, model, optimizer, scheduler, {"note": "x"}, keep=2)
    assert latest_checkpoint(tmp_path / "checkpoints") == path
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_00000002", "step_00000003"]
    expected_next = torch.randn(1)  # RNG state after the save

    clone = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    clone[0].load_state_dict(model[0].state_dict())
    clone[0].weight.requires_grad_(False)
    clone_optimizer = torch.optim.AdamW([p for p in clone.parameters() if p.requires_grad], lr=0.1)
    clone_scheduler = torch.optim.lr_scheduler.StepLR(clone_optimizer, 1, gamma=0.5)
    torch.manual_seed(123)
    state = load_checkpoint(path, clone, clone_optimizer, clone_scheduler)
    assert state["step"] == 3 and state["note"] == "x"
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)
    assert clone_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert torch.equal(torch.randn(1), expected_next)
    assert "exp_avg" in clone_optimizer.state_dict()["state"][0]


def test_length_groups_bound_padding_and_cover_every_row_once() -> None:
    from sugar.train.recipe import length_groups

    lengths = [30, 31, 200, 29, 33, 210, 32, 90]
    groups = length_groups(lengths, slack=1.25)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        padded = len(group) * max(lengths[i] for i in group)
        assert padded <= 1.25 * sum(lengths[i] for i in group)
    # the long stories do not share a group with the short caption rows
    assert any(set(g) == {2, 5} for g in groups)
    assert length_groups([]) == []


def test_new_stage_and_pair_target_options_are_validated() -> None:
    assert load_config(None, ["stage=align"]).stage == "align"
    assert load_config(None, ["pair_target=one"]).pair_target == "one"
    with pytest.raises(ValueError, match="pair_target"):
        load_config(None, ["pair_target=both"])
    with pytest.raises(ValueError, match="stage"):
        load_config(None, ["stage=pretrain"])
    with pytest.raises(ValueError, match="save_models_at"):
        load_config(None, ["steps=10", "save_models_at=[5, 11]"])


def test_alpha_schedules_rise_over_the_warm_up_to_alpha() -> None:
    from sugar.train.recipe import alpha_at

    def schedule(name: str) -> list[float]:
        config = load_config(None, ["steps=10", "alpha=0.5", f"alpha_schedule={name}", "alpha_warmup=0.4"])
        return [alpha_at(config, step) for step in range(10)]

    assert schedule("constant") == [0.0] * 4 + [0.5] * 6  # generation only, then discrimination
    assert schedule("linear") == pytest.approx([0.0, 0.125, 0.25, 0.375] + [0.5] * 6)
    assert schedule("cosine") == pytest.approx([0.0, 0.5 * 0.5 * (1 - 0.7071067811865476), 0.25, 0.5 * 0.5 * 1.7071067811865475] + [0.5] * 6)
    plain = load_config(None, ["steps=10", "alpha=0.5", "alpha_schedule=cosine"])
    assert [alpha_at(plain, step) for step in range(10)] == [0.5] * 10  # no warm-up: alpha throughout
    with pytest.raises(ValueError, match="alpha_schedule"):
        load_config(None, ["alpha_schedule=step"])
    with pytest.raises(ValueError, match=r"alpha_warmup is a fraction of the steps in \[0, 1\), got 1.0"):
        load_config(None, ["alpha_warmup=1.0"])


def test_the_teacher_temperature_reads_from_an_override_and_refuses_zero() -> None:
    assert load_config(None, []).infonce_teacher_temperature is None
    assert load_config(None, ["infonce_teacher_temperature=0.2"]).infonce_teacher_temperature == 0.2
    with pytest.raises(ValueError, match="infonce_teacher_temperature must be > 0"):
        load_config(None, ["infonce_teacher_temperature=0"])


def test_resume_guard_treats_one_place_written_three_ways_as_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run started with absolute paths resumes when given relative ones, or the same folder
    reached through a symlink; a genuinely different folder is still a change."""
    from sugar.train.guards import config_differences

    (tmp_path / "real" / "world").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    saved = TrainConfig(world=str(tmp_path / "real" / "world")).to_dict()
    for written in ["real/world", "link/world", str(tmp_path / "link" / "world")]:
        assert config_differences(saved, TrainConfig(world=written).to_dict()) == []
    moved = config_differences(saved, TrainConfig(world="other").to_dict())
    assert len(moved) == 1 and moved[0].startswith("world:")


def test_run_log_drops_the_steps_a_resumed_run_trains_again(tmp_path: Path) -> None:
    from sugar.train.recipe import RunLog

    first = RunLog(tmp_path, enabled=True)
    for step in (10, 20, 30, 40):  # killed after step 40, its last checkpoint at step 20
        first.write({"step": step, "loss": float(step)})
    first.close()
    resumed = RunLog(tmp_path, enabled=True, resumed_at=20)
    for step in (30, 40):
        resumed.write({"step": step, "loss": -float(step)})
    resumed.close()
    rows = (tmp_path / "train_log.csv").read_text().splitlines()
    assert rows[0].split(",") == RunLog.FIELDS
    assert [row.split(",")[:2] for row in rows[1:]] == [["10", "10.0"], ["20", "20.0"], ["30", "-30.0"], ["40", "-40.0"]]


def test_a_resumed_run_counts_the_training_its_earlier_sittings_did(tmp_path: Path) -> None:
    from sugar.train.checkpoint import LATEST
    from sugar.train.recipe import RunLog, trained_seconds

    assert trained_seconds(tmp_path) == 0.0  # no checkpoint: a fresh run
    log = RunLog(tmp_path, enabled=True)
    for step, seconds in ((10, 41.5), (20, 83.0), (30, 124.5)):
        log.write({"step": step, "elapsed_seconds": seconds})
    log.close()
    checkpoint = tmp_path / "checkpoints" / "step_00000020"
    checkpoint.mkdir(parents=True)
    (tmp_path / "checkpoints" / LATEST).write_text(checkpoint.name + "\n")
    # a checkpoint written before the record: its step's row of the log, not the last row's time
    (checkpoint / "state.json").write_text(json.dumps({"step": 20}))
    assert trained_seconds(tmp_path) == 83.0
    (checkpoint / "state.json").write_text(json.dumps({"step": 20, "elapsed_seconds": 90.25}))
    assert trained_seconds(tmp_path) == 90.25  # the checkpoint's own record wins
