"""The main job and the ablation end to end on a small world: a tiny model, a few steps per stage,
the real offline experts as teachers. Checks the files and keys users read, and that a re-run
reuses every finished stage instead of training again."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("efficientnet_lite_pytorch")

from sugar.ablate import AblationSettings, run_ablation  # noqa: E402
from sugar.demo import DemoSettings, run_demo  # noqa: E402
from sugar.models.config import CONFIG_NAME  # noqa: E402
from tiny_model import tiny_model_config  # noqa: E402


def tiny_overrides() -> list[str]:
    model = json.dumps(tiny_model_config(256))
    return ["model=tiny", f"model_overrides={model}", "log_every=1", "checkpoint_every=2"]


def settings(out: Path, **values: object) -> DemoSettings:
    return DemoSettings(
        out=out, scale="small", align_steps=2, base_steps=2, sugar_steps=2, qa_questions=4, overrides=tiny_overrides(),
        progress=False, **values,  # type: ignore[arg-type]
    )


def test_demo_writes_metrics_and_report_and_reuses_finished_stages(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    report = run_demo(settings(out))
    metrics = json.loads((out / "metrics.json").read_text())
    keys = [
        "retrieval.t2i.r@5", "retrieval.i2t.r@5", "interleaved.5c4i.r@5", "winoground.group", "qa.accuracy",
        "pope.f1", "rag.none.accuracy", "rag.self_k1.accuracy", "rag.teacher_k1.accuracy", "rag.oracle.accuracy",
        "rag.self_k1.hit@1",
    ]
    for name in ("base", "sugar"):
        for key in keys:
            value = metrics["models"][name]
            for part in key.split("."):
                value = value[part]
            assert isinstance(value, float) and 0.0 <= value <= 1.0, (name, key, value)
        assert metrics["models"][name]["qa"]["count"] == 4
    teacher = metrics["models"]["teacher"]
    assert "qa" not in teacher and "rag" not in teacher and "r@10" in teacher["retrieval"]["i2t"]
    assert 0.0 <= teacher["interleaved"]["5c4i"]["r@5"] <= 1.0
    assert metrics["model"]["lm"] == "random" and metrics["peak_rss_gb"] > 0
    assert set(metrics["stages"]) >= {"world", "teachers", "align", "base", "sugar", "evaluation", "pictures"}
    assert metrics["config"]["stage"] == "sugar" and metrics["config"]["paired_captions"] is True
    assert set(metrics["wall_time_seconds"]) >= {"world", "teachers", "align", "base", "sugar", "evaluation", "pictures", "total"}
    assert report.read_text().startswith("#")
    from sugar.models.precision import cpu_has_native_bf16

    assert metrics["machine"]["cpu_native_bf16"] is cpu_has_native_bf16() and metrics["machine"]["torch_threads"] >= 1
    native = cpu_has_native_bf16()
    # the precision follows the model's own autocast setting (the tiny model's is "off") and the CPU
    setting = json.loads((out / "sugar" / "model" / CONFIG_NAME).read_text())["autocast"]
    precision = "bfloat16 autocast" if setting == "bfloat16" or (setting == "auto" and native) else "float32"
    assert metrics["machine"]["cpu_precision"] == precision
    assert f"{precision} on the CPU ({'native' if native else 'no native'} bf16)" in report.read_text()
    assert len(metrics["pictures"]) == 3
    for picture in metrics["pictures"].values():
        assert (out / picture).read_bytes()[:4] == b"\x89PNG" and f"]({picture})" in report.read_text()

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/model/model.safetensors")}
    assert len(stamps) == 3
    run_demo(settings(out))
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/model/model.safetensors")} == stamps
    assert json.loads((out / "stages.json").read_text()) == {k: v for k, v in metrics["wall_time_seconds"].items() if k != "total"}


def test_ablation_trains_each_variant_from_the_same_base(tmp_path: Path) -> None:
    limits = {"retrieval": 20, "interleaved": 5, "winoground": 6, "qa": 4, "rag": 3}
    ablation = AblationSettings(
        out=tmp_path / "runs", results=tmp_path / "results", seeds=[0], variants=["sugar", "no_gak", "last_token"],
        steps=2, base_steps=2, scale="small", overrides=tiny_overrides(), limits=limits, progress=False,
        command="sugar ablate --seeds 1 --steps 2",
    )
    path = run_ablation(ablation)
    seed = tmp_path / "runs" / "seed0"
    assert sorted(p.name for p in seed.glob("sugar*")) == ["sugar-2steps", "sugar-last_token-2steps", "sugar-no_gak-2steps"]
    configs = {p.parent.name: json.loads((p.parent / "config.json").read_text()) for p in seed.glob("sugar*/model")}
    assert {c["init_from"] for c in configs.values()} == {str(seed / "base" / "model")}
    assert configs["sugar-no_gak-2steps"]["target_structure"] == "mean"
    assert json.loads((seed / "sugar-last_token-2steps" / "model" / "sugar_config.json").read_text())["image_pooling"] == "last"
    record = json.loads((tmp_path / "results" / "ablation.json").read_text())
    assert set(record["summary"]) == {"base", "sugar", "no_gak", "last_token", "teacher"}
    assert record["summary"]["sugar"]["T->I R@5"]["values"] and len(record["claims"]) == 10
    assert "| no_gak |" in path.read_text()


def test_quick_demo_is_small_short_and_labelled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sugar.demo as demo
    from sugar.cli import main
    from sugar.eval.report import write_demo_report

    seen: list[DemoSettings] = []
    monkeypatch.setattr(demo, "run_demo", lambda settings: seen.append(settings) or tmp_path / "report.md")
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--no-progress"]) == 0
    (quick,) = seen
    assert quick.quick and quick.scale == "small" and quick.out == Path("runs/demo-quick")
    assert (quick.align_steps, quick.base_steps, quick.sugar_steps) == tuple(demo.QUICK_STEPS[s] for s in ("align", "base", "sugar"))
    report = write_demo_report(tmp_path, {"quick": True, "models": {}, "seeds": {"world": 0}, "model": {"lm": "x"}})
    assert "QUICK LOOK" in report.read_text().splitlines()[0]


def test_balance_trains_each_setting_from_the_same_base_and_plots_the_trade_off(tmp_path: Path) -> None:
    from sugar.balance import BalanceSettings, run_balance

    limits = {"retrieval": 10, "interleaved": 5, "qa": 4, "captions": 4}
    study = BalanceSettings(
        demo=tmp_path / "demo", results=tmp_path / "results", alphas=[0.0, 0.5], schedules=["linear:0.5"],
        steps=2, base_steps=2, align_steps=2, scale="small", overrides=tiny_overrides(), limits=limits, progress=False,
        command="sugar balance --alphas 0,0.5 --schedules linear:0.5 --steps 2",
    )
    path = run_balance(study)
    runs = tmp_path / "demo" / "balance"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["alpha-0", "alpha-0.5", "linear-0.5"]
    configs = {p.name: json.loads((p / "config.json").read_text()) for p in runs.iterdir() if p.is_dir()}
    assert {c["init_from"] for c in configs.values()} == {str(tmp_path / "demo" / "base" / "model")}
    assert configs["alpha-0"]["alpha"] == 0.0 and configs["alpha-0.5"]["alpha_schedule"] == "constant"
    assert configs["linear-0.5"]["alpha_schedule"] == "linear" and configs["linear-0.5"]["alpha_warmup"] == 0.5
    assert configs["linear-0.5"]["alpha"] == 0.1  # the demo's alpha, reached at the end of the warm-up
    record = json.loads((tmp_path / "results" / "balance.json").read_text())
    assert set(record["scores"]) == {"alpha 0", "alpha 0.5", "linear warm-up 0.5 (alpha 0.1)"}
    for split in ("val", "test"):
        assert set(record["scores"]["alpha 0"][split]) == {"T->I R@5", "VIST 5c+4i R@5", "VQA acc", "POPE F1", "BLEU-4", "CIDEr-D"}
        assert record["base"][split]["CIDEr-D"] is not None and record["teacher"][split]["T->I R@5"] is not None
    assert (tmp_path / "results" / "balance.png").stat().st_size > 0
    text = path.read_text()
    assert "## val" in text and "## test" in text and "| alpha 0.5 |" in text
    # a re-run reuses every training and score
    stamps = {p: p.stat().st_mtime for p in runs.glob("*/eval/*.json")}
    run_balance(study)
    assert {p: p.stat().st_mtime for p in runs.glob("*/eval/*.json")} == stamps


def test_stage_clock_keeps_the_time_of_the_process_that_finished_a_stage(tmp_path: Path) -> None:
    from sugar.demo import StageClock

    waiting, finishing = StageClock(tmp_path), StageClock(tmp_path)  # two processes on one folder
    finishing("train sugar-no_gak", lambda: time.sleep(0.3))
    waiting("train sugar-no_gak", lambda: None)  # found finished: its near-zero reuse is not the stage's time
    waiting("world", lambda: None)
    stages = json.loads((tmp_path / "stages.json").read_text())
    assert set(stages) == {"world", "train sugar-no_gak"} and stages["train sugar-no_gak"] >= 0.2


def test_stage_clock_adds_the_training_a_resumed_run_did_before(tmp_path: Path) -> None:
    from sugar.demo import StageClock

    run = tmp_path / "sugar-no_gak"
    checkpoint = run / "checkpoints" / "step_00000200"
    checkpoint.mkdir(parents=True)
    (run / "checkpoints" / "latest").write_text(checkpoint.name + "\n")
    (checkpoint / "state.json").write_text(json.dumps({"step": 200, "elapsed_seconds": 900.0}))
    clock = StageClock(tmp_path)
    clock("train sugar-no_gak", lambda: time.sleep(0.2), run=run)  # resumes at step 200
    clock("evaluation", lambda: None, run=None)
    stages = json.loads((tmp_path / "stages.json").read_text())
    assert 900.2 <= stages["train sugar-no_gak"] < 905 and stages["evaluation"] < 5


def test_a_folder_built_with_one_seed_refuses_another(tmp_path: Path) -> None:
    from sugar.checks import UsageError
    from sugar.demo import check_folder_seed, prepare_models

    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text(json.dumps({"stage": "base", "seed": 1}))
    check_folder_seed(tmp_path, 1)  # the folder's own seed continues it
    with pytest.raises(UsageError, match=r"base/config\.json.*seed 1, not the requested 2.*--seed 1"):
        prepare_models(settings(tmp_path, seed=2), lambda name, work: pytest.fail(f"{name} ran"))
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "world.json").write_text(json.dumps({"seed": 0}))
    with pytest.raises(UsageError, match=r"world\.json.*seed 0, not the requested 1"):
        check_folder_seed(tmp_path, 1)
    check_folder_seed(tmp_path / "fresh", 5)  # nothing built yet: any seed
