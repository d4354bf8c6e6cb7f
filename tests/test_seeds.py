"""`sugar seeds`: mean +- std over finished demo folders, and the checks that keep it honest."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from sugar.checks import UsageError
from sugar.cli import main
from sugar.seeds import load_runs, mean_std, summarise, write_summary


def demo_metrics(seed: int, t2i: float, vqa: float, steps: int = 500) -> dict[str, Any]:
    model = {
        "retrieval": {"t2i": {"r@1": t2i / 2, "r@5": t2i}, "i2t": {"r@5": t2i}},
        "interleaved": {"5c": {"r@5": 0.1}, "5c4i": {"r@5": 0.3}},
        "winoground": {"text": 0.1, "image": 0.05, "group": 0.02},
        "qa": {"accuracy": vqa},
        "pope": {"f1": 0.6, "accuracy": 0.5},
        "rag": {k: {"accuracy": 0.2, "hit@1": 0.3} for k in ("none", "self_k1", "self_k3", "teacher_k1")}
        | {"oracle": {"accuracy": 1.0}},
    }
    teacher = {k: model[k] for k in ("retrieval", "interleaved", "winoground")}
    return {
        "quick": False,
        "model": {"lm": "SmolLM2-135M-Instruct", "vision_tower": "efficientnet-lite0", "lora_r": 16},
        "stages": {"base": 100.0 + seed, "sugar": 200.0},
        "seeds": {"world": seed, "training": seed},
        "config": {"steps": steps, "alpha": 0.1, "seed": seed, "output_dir": f"runs/s{seed}/sugar"},
        "models": {"base": model, "sugar": model, "teacher": teacher},
        "versions": {"torch": "2.13.0"},
    }


def write_run(root: Path, name: str, metrics: dict[str, Any]) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_mean_std_is_the_sample_spread() -> None:
    cell = mean_std([0.2, 0.4, 0.6])
    assert cell.mean == pytest.approx(0.4)
    assert cell.std == pytest.approx(0.2)
    assert mean_std([0.5]).std == 0.0


def test_summary_over_three_seeds(tmp_path: Path) -> None:
    folders = [write_run(tmp_path, f"s{s}", demo_metrics(s, t2i=0.2 + 0.1 * s, vqa=0.5)) for s in (2, 0, 1)]
    runs = load_runs(folders)
    assert [run.seed for run in runs] == [0, 1, 2]
    summary = summarise(runs)
    assert summary["sugar"]["T->I R@5"].mean == pytest.approx(0.3)
    assert summary["sugar"]["T->I R@5"].std == pytest.approx(0.1)
    assert summary["sugar"]["VQA"].std == pytest.approx(0.0)
    assert "VQA" not in summary["teacher"]  # the teacher does not generate
    markdown, data = write_summary(runs, tmp_path / "out" / "demo-seeds")
    text = markdown.read_text()
    assert "| sugar | 15.0 +- 5.0 | 30.0 +- 10.0 |" in text
    assert "seeds 0, 1, 2" in text
    payload = json.loads(data.read_text())
    assert payload["seeds"] == [0, 1, 2]
    assert math.isclose(payload["summary"]["base"]["T->I R@5"]["mean"], 0.3)
    assert payload["stages"]["base"]["mean"] == pytest.approx(101.0)


def test_a_metrics_file_stands_for_its_folder(tmp_path: Path) -> None:
    kept = write_run(tmp_path, "results-seed0", demo_metrics(0, 0.2, 0.5)) / "metrics.json"
    folder = write_run(tmp_path, "s1", demo_metrics(1, 0.4, 0.5))
    runs = load_runs([kept, folder])
    assert [run.folder.name for run in runs] == ["results-seed0", "s1"]
    assert summarise(runs)["sugar"]["T->I R@5"].mean == pytest.approx(0.3)
    with pytest.raises(UsageError, match=r"gone.json: not found"):
        load_runs([kept, tmp_path / "gone.json"])


def test_a_setting_an_older_run_did_not_record_is_listed_not_compared(tmp_path: Path) -> None:
    older = write_run(tmp_path, "s0", demo_metrics(0, 0.2, 0.5))
    newer_metrics = demo_metrics(1, 0.4, 0.5)
    newer_metrics["config"]["alpha_schedule"] = "constant"
    newer = write_run(tmp_path, "s1", newer_metrics)
    runs = load_runs([older, newer])
    markdown, _ = write_summary(runs, tmp_path / "summary")
    assert "alpha_schedule (seed 1: constant)" in markdown.read_text()
    changed = demo_metrics(2, 0.4, 0.5)
    changed["config"]["alpha_schedule"] = "cosine"
    with pytest.raises(UsageError, match="'alpha_schedule' is 'cosine', but 'constant'"):
        load_runs([newer, write_run(tmp_path, "s2", changed)])


def test_errors_name_the_folder_and_the_setting(tmp_path: Path) -> None:
    a = write_run(tmp_path, "a", demo_metrics(0, 0.2, 0.5))
    with pytest.raises(UsageError, match="at least two"):
        load_runs([a])
    with pytest.raises(UsageError, match=r"missing/metrics.json: not found"):
        load_runs([a, tmp_path / "missing"])
    same = write_run(tmp_path, "same", demo_metrics(0, 0.3, 0.5))
    with pytest.raises(UsageError, match="both seed 0"):
        load_runs([a, same])
    other = write_run(tmp_path, "other", demo_metrics(1, 0.3, 0.5, steps=1000))
    with pytest.raises(UsageError, match=r"other/metrics.json: sugar-stage setting 'steps' is 1000, but 500"):
        load_runs([a, other])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"broken/metrics.json: not valid JSON"):
        load_runs([a, broken])


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folders = [str(write_run(tmp_path, f"s{s}", demo_metrics(s, 0.2, 0.5))) for s in (0, 1)]
    assert main(["seeds", *folders, "--out", str(tmp_path / "summary")]) == 0
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "summary.json").is_file()
    assert main(["seeds", folders[0]]) == 2
    assert "at least two" in capsys.readouterr().err
