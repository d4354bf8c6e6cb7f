"""The balance study: settings, errors that say what was expected, and rows kept across sittings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sugar.balance import parse_schedule, study_settings
from sugar.checks import UsageError
from sugar.cli import main


def test_settings_are_alphas_then_schedules_at_the_demo_alpha() -> None:
    study = study_settings([0.0, 0.3], ["cosine:0.25"])
    assert [s.folder for s in study] == ["alpha-0", "alpha-0.3", "cosine-0.25"]
    assert study[1].overrides == ("alpha=0.3",)
    assert study[2].overrides == ("alpha=0.1", "alpha_schedule=cosine", "alpha_warmup=0.25")
    assert [s.demo for s in study_settings([0.0, 0.1], ["linear:0.3"])] == [False, True, False]
    assert parse_schedule("linear:0") == ("linear", 0.0)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [("linear", "expected NAME:WARMUP"), ("step:0.3", "expected NAME:WARMUP"), ("linear:x", "must be a number"),
     ("cosine:1", r"must be in \[0, 1\)")],
)
def test_schedule_errors(schedule: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_schedule(schedule)


def test_alpha_errors_and_repeats() -> None:
    with pytest.raises(UsageError, match="alpha must be >= 0"):
        study_settings([-0.1], [])
    with pytest.raises(UsageError, match="settings repeat"):
        study_settings([0.1, 0.1], [])


def test_command_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["balance", "--alphas", "0,fast"]) == 2
    assert "--alphas must be comma-separated numbers" in capsys.readouterr().err
    assert main(["balance", "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err


def test_finished_settings_are_kept_and_reused_without_their_run_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import shutil

    import sugar.curve as curve
    import sugar.demo as demo
    from sugar.balance import BalanceSettings, run_balance

    trained: list[str] = []

    def fake_train(settings: Any, stage: str, extra: list[str], folder: str | None = None) -> Path:
        run = settings.out / (folder or stage)
        (run / "model").mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps({"alpha": extra[-1]}))
        trained.append(folder or stage)
        return run / "model"

    def fake_score(model_dir: Path, demo_dir: Path, split: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"retrieval": {"t2i": {"r@5": 0.5 if split == "test" else 0.4}}}

    monkeypatch.setattr(demo, "prepare_models", lambda *args, **kwargs: None)
    monkeypatch.setattr(demo, "train_stage", fake_train)
    monkeypatch.setattr(curve, "score_saved_model", fake_score)
    settings = BalanceSettings(demo=tmp_path / "runs", results=tmp_path / "results", alphas=[0.0, 0.3], schedules=[])
    run_balance(settings)
    assert trained == ["balance/alpha-0", "balance/alpha-0.3"]
    kept = json.loads((tmp_path / "results" / "balance-rows" / "seed0" / "alpha-0.3.json").read_text())
    assert kept["scores"]["test"]["T->I R@5"] == 0.5 and kept["recipe"]["setting"] == ["alpha=0.3"]
    shutil.rmtree(tmp_path / "runs")
    text = run_balance(settings).read_text()
    assert trained == ["balance/alpha-0", "balance/alpha-0.3"]  # nothing trained again
    assert "| alpha 0.3 | 50.0 |" in text
    run_balance(BalanceSettings(demo=tmp_path / "runs", results=tmp_path / "results", alphas=[0.3], schedules=[], steps=7))
    assert trained[2:] == ["balance/alpha-0.3"]  # another budget: the kept row does not apply
    # the demo's own alpha at the demo's budget is the demo's sugar stage, not a second training of it
    run_balance(BalanceSettings(demo=tmp_path / "runs", results=tmp_path / "results", alphas=[0.1], schedules=[]))
    assert trained[3:] == ["sugar"]
    run_balance(BalanceSettings(demo=tmp_path / "runs", results=tmp_path / "results", alphas=[0.1], schedules=[], steps=7))
    assert trained[4:] == ["balance/alpha-0.1"]  # at another budget it is a setting of its own


def test_the_default_and_base_over_seeds_come_from_the_ablations_kept_rows(tmp_path: Path) -> None:
    from sugar.ablate import AblationSettings, kept_row_path, row_recipe
    from sugar.balance import BalanceSettings, default_over_seeds, write_balance
    from sugar.kept import keep_scores

    ablation = AblationSettings(results=tmp_path)
    for seed, t2i in ((0, 0.2), (1, 0.3), (2, 0.4)):
        for name, value in (("base", 0.01), ("sugar", t2i)):
            if (seed, name) != (2, "base"):  # seed 2 lacks its base row: it does not count
                scores = {"retrieval": {"t2i": {"r@5": value}}, "captions": {"cider": 1.5}}
                keep_scores(kept_row_path(ablation, seed, name), scores, row_recipe(ablation, seed, name))
    other = AblationSettings(results=tmp_path, steps=50)  # another budget: not the default
    keep_scores(kept_row_path(other, 3, "sugar"), {"retrieval": {"t2i": {"r@5": 0.9}}}, row_recipe(other, 3, "sugar"))
    settings = BalanceSettings(results=tmp_path, command="sugar balance")
    found = default_over_seeds(settings)
    assert [r["T->I R@5"] for r in found["default"]] == [0.2, 0.3] and [r["seed"] for r in found["base"]] == [0.0, 1.0]
    scores = {"alpha 0.1": {"val": {"T->I R@5": 0.4}, "test": {"T->I R@5": 0.3}}}
    base = {"val": {"T->I R@5": 0.0}, "test": {"T->I R@5": 0.0}}
    study = study_settings([0.1], [])
    text = write_balance(settings, study, scores, base, base, {}).read_text()
    assert "## The default (alpha 0.1) and base over seeds 0, 1, test" in text
    assert "| default | 25.0 +- 7.1 | - | - | - | - | 150.0 +- 0.0 |" in text and "| base | 1.0 +- 0.0 |" in text
    assert "retrieval all" in text and "The picture: the test split" in text
    assert "## The default" not in write_balance(BalanceSettings(results=tmp_path, steps=9), study, scores, base, base, {}).read_text()
    for name in ("base", "sugar"):  # at another budget, that budget's rows
        keep_scores(kept_row_path(other, 3, name), {"retrieval": {"t2i": {"r@5": 0.9}}}, row_recipe(other, 3, name))
    assert [r["seed"] for r in default_over_seeds(BalanceSettings(results=tmp_path, steps=50))["default"]] == [3.0]


def test_the_steps_along_alpha_and_the_schedules_against_constant_alpha(tmp_path: Path) -> None:
    from sugar.balance import BalanceSettings, write_balance

    study = study_settings([0.3, 0.0, 0.1], ["linear:0.3"])
    values = {"alpha 0": (0.02, 0.52), "alpha 0.1": (0.44, 0.45), "alpha 0.3": (0.49, 0.46),
              "linear warm-up 0.3 (alpha 0.1)": (0.40, 0.50)}
    scores = {name: {split: {"T->I R@5": t2i, "VQA acc": vqa + (0.01 if split == "test" else 0.0)} for split in ("val", "test")}
              for name, (t2i, vqa) in values.items()}
    base = {"val": {}, "test": {}}
    text = write_balance(BalanceSettings(results=tmp_path, steps=9), study, scores, base, base, {}).read_text()
    steps = text.split("## Step by step along alpha, val")[1].split("## Alpha schedules")[0]
    # ordered by alpha, whatever the order asked for
    assert "| alpha 0 -> 0.1 | +42.0 | - | -7.0 | - | - | - |" in steps
    assert "| alpha 0.1 -> 0.3 | +5.0 | - | +1.0 | - | - | - |" in steps
    assert "alpha 0.3 -> 0" not in steps
    schedules = text.split("## Alpha schedules against constant alpha 0.1")[1]
    assert "| linear warm-up 0.3 (alpha 0.1), val | -4.0 | - | +5.0 | - | - | - |" in schedules
    assert "| linear warm-up 0.3 (alpha 0.1), test | -4.0 | - | +5.0 | - | - | - |" in schedules
    # without the constant setting at the schedules' final alpha there is nothing to compare them with
    text = write_balance(BalanceSettings(results=tmp_path, steps=9), study_settings([0.0, 0.3], ["linear:0.3"]),
                         scores, base, base, {}).read_text()
    assert "## Alpha schedules" not in text and "| alpha 0 -> 0.3 |" in text
