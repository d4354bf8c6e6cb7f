"""The ablation summary: mean +- std over seeds, the claim checks, and the written results."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from sugar.ablate import METRICS, AblationSettings, claims, precision_note, run_ablation, summarise, write_results
from sugar.checks import UsageError
from sugar.demo import machine_record


PATTERNS = ("colour", "count", "relation", "shape", "size")


def model_results(
    t2i: float, vist: float, wino: tuple[float, float, float], vqa: float, rag: tuple[float, float, float],
    mmvp: float = 0.5, spread: float = 0.2, ground: float = 0.8,
) -> dict:
    text, image, group = wino
    per_pattern = {p: mmvp for p in PATTERNS}
    return {
        "mmvp": {"embedding": {"average": mmvp, "per_pattern": per_pattern},
                 "teacher": {"embedding": {"average": 0.4, "per_pattern": dict.fromkeys(PATTERNS, 0.4)}}},
        "captions": {"cider": 0.3},
        "clips": {
            "t2v": {"r@5": 0.4}, "v2t": {"r@5": 0.5}, "grounding": {"accuracy": ground, "mean_iou": ground - 0.2},
            "localisation": {"accuracy": ground - 0.3, "chance": 0.3},
            "teacher": {"t2v": {"r@5": 0.45}, "v2t": {"r@5": 0.6}, "grounding": {"accuracy": 0.9, "mean_iou": 0.7},
                        "localisation": {"accuracy": 0.55, "chance": 0.3}},
            "uniform_grounding": {"accuracy": 0.5, "mean_iou": 0.4},
            "sampling": {"clip_frames": 16, "frame_stride": 1},
        },
        # many items per position: a flat curve would spread by ~2 points, so the spreads are real curves
        "webqa": {"accuracy": 0.6, "position_spread": spread, "count_by_position": {str(p): 4000 for p in range(1, 7)}},
        "retrieval": {"t2i": {"r@5": t2i}, "i2t": {"r@5": t2i / 2}, "teacher": {"t2i": {"r@5": 0.5}, "i2t": {"r@5": 0.4}}},
        "interleaved": {"captions_and_images": {"r@5": vist}, "teacher": {"captions_and_images": {"r@5": 0.3}}},
        "winoground": {"text": text, "image": image, "group": group, "teacher": {"text": 0.2, "image": 0.1, "group": 0.05}},
        "qa": {"vqa": {"accuracy": vqa}, "pope": {"average": {"f1": 0.6}}},
        "rag": {
            "rows": {
                "no_retrieval": {"contains_answer": rag[0]},
                "self_k1": {"contains_answer": rag[1]},
                "teacher_k1": {"contains_answer": rag[2]},
            },
            "retrieval": {"self": {"hit@1": 0.7}},
        },
    }


def seed_results(shift: float) -> dict[str, dict]:
    return {
        "base": model_results(0.01 + shift, 0.02, (0.0, 0.0, 0.0), 0.50, (0.1, 0.1, 0.4)),
        "sugar": model_results(0.20 + shift, 0.30, (0.3, 0.2, 0.10), 0.49, (0.1, 0.5, 0.4), mmvp=0.6, spread=0.05),
        "no_gak": model_results(0.19, 0.10, (0.3, 0.2, 0.08), 0.49, (0.1, 0.4, 0.4), ground=0.6),
        "no_triple": model_results(0.18, 0.28, (0.3, 0.05, 0.02), 0.49, (0.1, 0.4, 0.4)),
        "last_token": model_results(0.05, 0.25, (0.3, 0.15, 0.05), 0.49, (0.1, 0.4, 0.4)),
    }


def test_summary_is_mean_and_sample_std_over_seeds() -> None:
    summary = summarise({0: seed_results(0.0), 1: seed_results(0.02)})
    cell = summary["sugar"]["T->I R@5"]
    assert cell["values"] == pytest.approx([0.20, 0.22])
    assert cell["mean"] == pytest.approx(0.21) and cell["std"] == pytest.approx(math.sqrt(2 * 0.01**2))
    assert summary["no_gak"]["VIST R@5"]["std"] == 0.0
    # the teacher row comes from the sugar runs' teacher entries, embedding columns only
    assert summary["teacher"]["Wino group"]["mean"] == pytest.approx(0.05)
    assert "VQA acc" not in summary["teacher"] and set(summary["sugar"]) == set(METRICS)


def test_claims_are_read_from_the_means() -> None:
    checked = {claim[:3]: (verdict, evidence) for claim, verdict, evidence in claims(summarise({0: seed_results(0.0)}))}
    assert checked["(1)"][0] == "holds"
    assert checked["(2)"][0] == "holds" and "no_gak +20.0" in checked["(2)"][1]
    assert checked["(3)"][0] == "holds"
    assert checked["(4)"][0] == "holds"
    assert checked["(5)"][0] == "holds"
    assert checked["(6)"][0] == "measured" and "VQA acc 50.0 -> 49.0 (-1.0)" in checked["(6)"][1]
    assert checked["(7)"][0] == "holds"
    assert checked["(8)"][0] == "holds" and "base 20.0 vs sugar 5.0" in checked["(8)"][1]
    assert checked["(9)"][0] == "holds" and "5 of 5" in [c for c in checked_claims() if c.startswith("(9)")][0]
    assert checked["(10"][0] == "holds" and "sugar 80.0 vs no_gak 60.0" in checked["(10"][1]
    worse = seed_results(0.0)
    worse["sugar"]["winoground"]["group"] = 0.0
    assert dict((c[:3], v) for c, v, _ in claims(summarise({0: worse})))["(7)"] == "does not hold"


def test_a_row_that_lacks_a_seed_is_compared_on_the_seeds_it_has() -> None:
    first, second = seed_results(0.0), seed_results(0.0)
    second["sugar"]["interleaved"]["captions_and_images"]["r@5"] = 0.10  # a poor seed 1 for sugar ...
    del second["no_gak"]  # ... which no_gak has not run yet
    evidence = {c[:3]: (v, e) for c, v, e in claims(summarise({0: first, 1: second}))}
    # sugar's mean over both seeds (20.0) against no_gak's seed 0 would halve the drop, inside sugar's spread
    verdict, text = evidence["(2)"]
    assert "no_gak +20.0 (on seed 0, which both rows have)" in text and verdict == "holds"
    verdict10, text10 = evidence["(10"]
    assert "sugar 80.0 vs no_gak 60.0 (on seed 0, which both rows have)" in text10
    assert "which both rows have" not in evidence["(1)"][1]  # sugar and base share every seed
    lone = {0: {"base": first["base"]}, 1: {"base": second["base"], "sugar": second["sugar"]}}
    assert dict((c[:3], v) for c, v, _ in claims(summarise(lone)))["(1)"] != "n/a"  # seed 1 shared
    del lone[1]["base"]
    assert dict((c[:3], v) for c, v, _ in claims(summarise(lone)))["(1)"] == "n/a"  # no seed in common


def checked_claims() -> list[str]:
    return [claim for claim, _, _ in claims(summarise({0: seed_results(0.0)}))]


def test_mmvp_claim_counts_patterns_improved_beyond_noise() -> None:
    results = seed_results(0.0)
    results["sugar"]["mmvp"]["embedding"]["per_pattern"] = {"colour": 0.7, "count": 0.5, "relation": 0.4, "shape": 0.5, "size": 0.5}
    (claim, verdict, evidence), = [c for c in claims(summarise({0: results})) if c[0].startswith("(9)")]
    assert verdict == "within seed noise" and "1 of 5" in claim and "relation does not hold" in evidence
    flat = seed_results(0.0)
    flat["sugar"]["webqa"]["position_spread"] = 0.3  # steeper than base's 0.2
    assert dict((c[:3], v) for c, v, _ in claims(summarise({0: flat})))["(8)"] == "does not hold"


def test_position_claim_needs_a_base_curve_beyond_sampling() -> None:
    results = seed_results(0.0)
    results["base"]["webqa"]["position_spread"] = 0.15
    for row in results.values():  # 6 positions x 40 items at 60%: a flat curve spreads by ~19.5 points
        row["webqa"]["count_by_position"] = {str(p): 40 for p in range(1, 7)}
    summary = summarise({0: results})
    assert summary["base"]["WebQA flat spread"]["mean"] == pytest.approx(0.195, abs=0.001)
    (claim, verdict, evidence), = [c for c in claims(summary) if c[0].startswith("(8)")]
    assert verdict == "not testable here"  # base's 15-point spread is sampling, not a position bias
    assert "spreads by base 19.5, sugar 19.5 from sampling alone" in evidence
    for row in results.values():
        row["webqa"]["count_by_position"] = {str(p): 4000 for p in range(1, 7)}  # ~2 points
    (claim, verdict, evidence), = [c for c in claims(summarise({0: results})) if c[0].startswith("(8)")]
    assert verdict == "holds"  # base's 15 points is now a real curve, and Sugar's 5 flattens it
    results["base"]["webqa"]["flat_spread"] = 0.5  # reported by the benchmark: kept, not recomputed
    assert summarise({0: results})["base"]["WebQA flat spread"]["mean"] == 0.5


def test_a_gain_smaller_than_the_seed_spread_is_noise() -> None:
    first, second = seed_results(0.0), seed_results(0.0)
    first["sugar"]["winoground"]["group"], second["sugar"]["winoground"]["group"] = 0.0, 0.04  # mean 2.0 +- 2.8
    first["base"]["winoground"]["group"], second["base"]["winoground"]["group"] = 0.0, 0.0
    second["no_triple"]["winoground"]["image"] = 0.19  # its drop (8.5) is still the largest, but noisy
    verdicts = {c[:3]: v for c, v, _ in claims(summarise({0: first, 1: second}))}
    assert verdicts["(1)"] == "within seed noise"
    assert verdicts["(3)"] == "within seed noise"
    assert verdicts["(2)"] == "holds"  # no_gak's VIST drop of 20 points with no spread at all


def test_results_are_written_as_markdown_json_and_picture(tmp_path: Path) -> None:
    settings = AblationSettings(results=tmp_path, seeds=[0, 1], command="sugar ablate --seeds 2")
    summary = summarise({0: seed_results(0.0), 1: seed_results(0.02)})
    path = write_results(summary, settings, 123.0, {"alpha": 1.0})
    text = path.read_text()
    assert "| sugar | 21.0 +- 1.4 |" in text and "sugar ablate --seeds 2" in text and "![ablation](ablation.png)" in text
    record = json.loads((tmp_path / "ablation.json").read_text())
    assert record["seeds"] == [0, 1] and record["summary"]["base"]["VQA acc"]["mean"] == pytest.approx(0.5)
    assert len(record["claims"]) == 10 and "| row | T->V R@5 | V->T R@5 | Ground acc | Ground IoU |" in text
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_rows_training_precision_is_listed_with_its_seed(tmp_path: Path) -> None:
    per_seed = {0: seed_results(0.0), 1: seed_results(0.02)}
    per_seed[0]["sugar"]["cpu_precision"] = "bfloat16 autocast"
    per_seed[1]["sugar"]["cpu_precision"] = "float32"
    per_seed[1]["base"]["cpu_precision"] = "float32"
    note = precision_note(per_seed)
    assert note.startswith("bfloat16 autocast: sugar/0; float32: base/1, sugar/1; not recorded: base/0, no_gak/0")
    settings = AblationSettings(results=tmp_path, seeds=[0, 1], command="sugar ablate --seeds 2")
    write_results(summarise(per_seed), settings, 1.0, {}, precisions=note)
    assert f"- training precision (row/seed; bf16 autocast where the CPU has native bf16): {note}" in (
        tmp_path / "ablation.md"
    ).read_text()
    assert json.loads((tmp_path / "ablation.json").read_text())["training_precision"] == note


def test_each_rows_base_build_is_listed_with_its_seed(tmp_path: Path) -> None:
    from sugar.ablate import base_digest, base_note

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert base_digest(tmp_path) == hashlib.sha256(b"weights").hexdigest()[:12]
    assert base_digest(tmp_path / "gone") == "no base weights found"  # a label: the scores are never lost to it
    per_seed = {0: seed_results(0.0), 1: seed_results(0.02)}
    per_seed[1]["no_gak"]["base_digest"] = per_seed[1]["no_triple"]["base_digest"] = "aaaaaaaaaaaa"
    note = base_note(per_seed)
    assert note.startswith("aaaaaaaaaaaa: no_gak/1, no_triple/1; not recorded: base/0, sugar/0")
    write_results(summarise(per_seed), AblationSettings(results=tmp_path, seeds=[0, 1]), 1.0, {}, bases=note)
    assert f"rows of one seed compare directly only on one build): {note}" in (tmp_path / "ablation.md").read_text()
    assert json.loads((tmp_path / "ablation.json").read_text())["base_builds"] == note


def test_video_results_read_the_clips_rows_per_seed(tmp_path: Path) -> None:
    from sugar.ablate import ROWS
    from sugar.video_results import write_video_results

    per_seed = {0: seed_results(0.0), 1: seed_results(0.02)}
    per_seed[1]["sugar"]["clips"]["grounding"]["accuracy"] = 0.9
    path = write_video_results(per_seed, ROWS, "sugar ablate --seeds 2", tmp_path / "video.md")
    assert path is not None
    record = json.loads((tmp_path / "video.json").read_text())
    assert record["summary"]["sugar"]["ground acc"]["values"] == pytest.approx([0.8, 0.9])
    assert record["summary"]["no_gak"]["ground acc"]["mean"] == pytest.approx(0.6)
    assert record["summary"]["teacher"]["T->V R@5"]["mean"] == pytest.approx(0.45)
    assert record["summary"]["equal split"]["ground acc"]["mean"] == pytest.approx(0.5)
    assert record["summary"]["equal split"]["localise acc"]["mean"] == pytest.approx(0.3)  # chance
    assert record["summary"]["no_gak"]["localise acc"]["mean"] == pytest.approx(0.3)
    assert "T->V R@1" not in record["summary"]["sugar"]  # not measured: left out, never zero
    text = path.read_text()
    assert "| sugar | 0 | 40.0 | 50.0 | 80.0 | 60.0 | 50.0 |" in text and "16 frames (stride 1)" in text
    for results in per_seed.values():
        for row in results.values():
            row.pop("clips", None)
    assert write_video_results(per_seed, ROWS, "x", tmp_path / "none.md") is None and not (tmp_path / "none.md").exists()


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        run_ablation(AblationSettings(out=tmp_path, variants=["no_such"]))
    with pytest.raises(ValueError, match="at least one seed"):
        run_ablation(AblationSettings(out=tmp_path, seeds=[]))


def test_finished_rows_are_kept_beside_the_results_and_reused_only_under_their_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import sugar.ablate as ablate
    import sugar.demo as demo

    evaluated: list[str] = []

    def fake_train(settings: Any, stage: str, extra: list[str], folder: str | None = None) -> Path:
        return settings.out / (folder or stage) / "model"

    def fake_evaluate(model_dir: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        evaluated.append(model_dir.parent.name)
        return {"retrieval": {"t2i": {"r@5": 0.25}}}

    prepared: list[bool] = []
    monkeypatch.setattr(demo, "prepare_models", lambda *args, with_sugar=True: prepared.append(with_sugar))
    monkeypatch.setattr(demo, "train_stage", fake_train)
    monkeypatch.setattr(ablate, "evaluate_variant", fake_evaluate)
    settings = AblationSettings(out=tmp_path / "runs", results=tmp_path / "results", variants=["no_gak"], progress=False)
    first = ablate.run_seed(settings, 0)
    assert evaluated == ["base", "sugar-no_gak"] and first["no_gak"]["retrieval"]["t2i"]["r@5"] == 0.25
    kept = tmp_path / "results" / "ablation-rows" / "seed0" / "no_gak.json"
    assert json.loads(kept.read_text())["recipe"]["variant"] == ["target_structure=mean"]
    shutil.rmtree(tmp_path / "runs")  # the run folder is gone; the kept scores stand in for it
    again = ablate.run_seed(settings, 0)
    assert evaluated == ["base", "sugar-no_gak"] and again["no_gak"] == first["no_gak"]
    assert prepared == [False]  # the demo's sugar stage is not trained for a study without its row; all kept: nothing
    changed = AblationSettings(
        out=tmp_path / "runs", results=tmp_path / "results", variants=["no_gak"], progress=False, overrides=["alpha=0.5"]
    )
    ablate.run_seed(changed, 0)  # another recipe: nothing kept applies
    assert evaluated[2:] == ["base", "sugar-no_gak"]
    kept.write_text("{broken")
    with pytest.raises(UsageError, match="no_gak.json: not valid JSON"):
        ablate.run_seed(AblationSettings(out=tmp_path / "fresh", results=tmp_path / "results", variants=["no_gak"]), 0)


def test_summed_time_is_kept_with_the_rows_survives_the_run_folders_and_counts_rebuilds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import sugar.ablate as ablate
    import sugar.demo as demo

    build = {"weights": b"base weights, build 1"}

    def prepare(demo_settings: Any, clock: Any, with_sugar: bool = True) -> None:  # the base build, in miniature
        model = demo_settings.out / "base" / "model"
        model.mkdir(parents=True, exist_ok=True)
        (model / "model.safetensors").write_bytes(build["weights"])

    monkeypatch.setattr(demo, "prepare_models", prepare)
    monkeypatch.setattr(demo, "train_stage", lambda settings, stage, extra, folder=None: settings.out / (folder or stage) / "model")
    monkeypatch.setattr(ablate, "evaluate_variant", lambda *args, **kwargs: {"retrieval": {"t2i": {"r@5": 0.25}}})
    settings = AblationSettings(out=tmp_path / "runs", results=tmp_path / "results", variants=["no_gak"], progress=False)
    stages = {"world": 60.0, "teachers": 120.0, "align": 300.0, "base": 1200.0, "train sugar-no_gak": 3000.0}
    (tmp_path / "runs" / "seed0").mkdir(parents=True)
    (tmp_path / "runs" / "seed0" / "stages.json").write_text(json.dumps(stages))
    rows = ablate.run_seed(settings, 0)
    assert rows["base"]["training_seconds"] == 1680.0 and rows["no_gak"]["training_seconds"] == 3000.0
    assert rows["no_gak"]["base_build_seconds"] == 1680.0
    assert rows["no_gak"]["cpu_precision"] == machine_record("auto")["cpu_precision"]
    first_build = hashlib.sha256(b"base weights, build 1").hexdigest()[:12]
    assert rows["base"]["base_digest"] == rows["no_gak"]["base_digest"] == first_build  # the build each row continues
    evaluation = sum(row["evaluation_seconds"] for row in rows.values())
    assert ablate.study_time({0: rows}) == ablate.StudyTime(pytest.approx(4680.0 + evaluation), [])
    shutil.rmtree(tmp_path / "runs")
    assert ablate.study_time({0: ablate.run_seed(settings, 0)}).seconds == pytest.approx(4680.0 + evaluation)
    # a later sitting rebuilds the base for a new row, on a faster machine: the kept rows keep their
    # own times (never the new stages.json's), and the rebuild counts once, on top
    build["weights"] = b"base weights, build 2"
    (tmp_path / "runs" / "seed0").mkdir(parents=True)
    rebuilt = {"world": 10.0, "teachers": 20.0, "align": 30.0, "base": 40.0, "train sugar-ld_only": 500.0}
    (tmp_path / "runs" / "seed0" / "stages.json").write_text(json.dumps(rebuilt))
    both = AblationSettings(out=tmp_path / "runs", results=tmp_path / "results", variants=["no_gak", "ld_only"], progress=False)
    rows = ablate.run_seed(both, 0)
    assert rows["base"]["training_seconds"] == 1680.0 and rows["ld_only"]["base_build_seconds"] == 100.0
    evaluation = sum(row["evaluation_seconds"] for row in rows.values())
    assert ablate.study_time({0: rows}).seconds == pytest.approx(4680.0 + 500.0 + 100.0 + evaluation)
    # records older than these fields are named, not guessed
    del rows["no_gak"]["training_seconds"], rows["ld_only"]["base_build_seconds"]
    second_build = hashlib.sha256(b"base weights, build 2").hexdigest()[:12]
    assert ablate.study_time({0: rows}) == ablate.StudyTime(
        pytest.approx(1680.0 + 500.0 + evaluation),
        ["the training of no_gak/0", f"the base rebuild {second_build} of seed 0"],
    )


def test_kept_only_reports_what_is_finished_and_labels_rows_some_seeds_lack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sugar.ablate as ablate
    import sugar.demo as demo

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--kept-only must train and evaluate nothing")

    monkeypatch.setattr(demo, "prepare_models", refuse)
    monkeypatch.setattr(ablate, "evaluate_variant", refuse)
    results = tmp_path / "results"
    settings = AblationSettings(
        out=tmp_path / "runs", results=results, seeds=[0, 1], variants=["sugar", "no_gak"], kept_only=True, progress=False,
    )
    for seed in (0, 1):
        rows = seed_results(0.02 * seed)
        for row in ("base", "sugar", *(("no_gak",) if seed == 0 else ())):  # seed 1 has no no_gak row yet
            path = ablate.kept_row_path(settings, seed, row)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**rows[row], "recipe": ablate.row_recipe(settings, seed, row)}))
    path = run_ablation(settings)
    text = path.read_text()
    assert "| no_gak (1 of 2 seeds) |" in text and "| sugar | 21.0 +- 1.4 |" in text
    assert "| no_gak (1 of 2 seeds) |" in (results / "video.md").read_text()
    # a measure only some of a row's seeds have (a benchmark rescored on one seed) says how many
    kept = ablate.kept_row_path(settings, 1, "sugar")
    record = json.loads(kept.read_text())
    del record["clips"]["localisation"]
    kept.write_text(json.dumps(record))
    text = run_ablation(settings).read_text()
    assert "| sugar | " in text and "| 50.0 (n=1) |" in text  # one seed: a value, no spread
    assert "| 50.0 (n=1) |" in (results / "video.md").read_text()
    assert "+- 0.0 |" not in text.split("| no_gak (1 of 2 seeds) |")[1].split("\n")[0]


def test_rescore_runs_a_changed_benchmark_on_the_finished_rows_models_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sugar.ablate as ablate
    import sugar.checks as checks
    import sugar.demo as demo

    monkeypatch.setattr(demo, "prepare_models", lambda *args, with_sugar=True: None)
    monkeypatch.setattr(demo, "train_stage", lambda settings, stage, extra, folder=None: settings.out / (folder or stage) / "model")
    calls: list[tuple[str, tuple[str, ...]]] = []

    def fake_evaluate(model_dir: Path, demo_settings: Any, limits: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append((model_dir.parent.name, tuple(limits)))
        return {bench: {"round": len(calls)} for bench in limits}

    monkeypatch.setattr(ablate, "evaluate_variant", fake_evaluate)
    settings = AblationSettings(out=tmp_path / "runs", results=tmp_path / "results", variants=["no_gak"], progress=False)
    first = ablate.run_seed(settings, 0)
    assert [name for name, _ in calls] == ["base", "sugar-no_gak"] and first["no_gak"]["retrieval"] == {"round": 2}

    rescore = AblationSettings(**{**vars(settings), "rescore": ("clips",)})
    with pytest.raises(UsageError, match="row base has no model at .*cannot be scored again without training"):
        ablate.run_seed(rescore, 0)
    for folder in ("base", "sugar-no_gak"):
        (tmp_path / "runs" / "seed0" / folder / "model").mkdir(parents=True)
    monkeypatch.setattr(checks, "check_model_dir", lambda path, argument="--model": Path(path))
    again = ablate.run_seed(rescore, 0)
    assert calls[2:] == [("base", ("clips",)), ("sugar-no_gak", ("clips",))]  # no training, one bench each
    assert again["no_gak"]["clips"] == {"round": 4} and again["no_gak"]["retrieval"] == {"round": 2}
    kept = json.loads(ablate.kept_row_path(settings, 0, "no_gak").read_text())
    assert kept["clips"] == {"round": 4} and kept["retrieval"] == {"round": 2} and kept["recipe"]["variant"]
    assert ablate.run_seed(settings, 0)["no_gak"]["clips"] == {"round": 4} and len(calls) == 4  # kept as rescored


def test_a_field_only_the_kept_copy_holds_survives_a_rescore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sugar.ablate as ablate
    import sugar.checks as checks
    import sugar.demo as demo

    monkeypatch.setattr(demo, "prepare_models", lambda *args, with_sugar=True: None)
    monkeypatch.setattr(demo, "train_stage", lambda settings, stage, extra, folder=None: settings.out / (folder or stage) / "model")
    monkeypatch.setattr(checks, "check_model_dir", lambda path, argument="--model": Path(path))
    calls: list[str] = []

    def fake_evaluate(model_dir: Path, demo_settings: Any, limits: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(model_dir.parent.name)
        return {bench: {"round": len(calls)} for bench in limits}

    monkeypatch.setattr(ablate, "evaluate_variant", fake_evaluate)
    settings = AblationSettings(out=tmp_path / "runs", results=tmp_path / "results", variants=["no_gak"], progress=False)
    ablate.run_seed(settings, 0)
    # a run folder written before rows carried their training time; the kept copy was backfilled
    out_row = tmp_path / "runs" / "seed0" / "ablation" / "no_gak.json"
    record = json.loads(out_row.read_text())
    del record["training_seconds"]
    out_row.write_text(json.dumps(record))
    kept_path = ablate.kept_row_path(settings, 0, "no_gak")
    kept = json.loads(kept_path.read_text())
    kept["training_seconds"] = 5487.0
    kept_path.write_text(json.dumps(kept))
    for folder in ("base", "sugar-no_gak"):
        (tmp_path / "runs" / "seed0" / folder / "model").mkdir(parents=True)
    rescore = AblationSettings(**{**vars(settings), "rescore": ("clips",)})
    again = ablate.run_seed(rescore, 0)
    assert again["no_gak"]["training_seconds"] == 5487.0 and again["no_gak"]["clips"] == {"round": 4}
    kept = json.loads(kept_path.read_text())
    assert kept["training_seconds"] == 5487.0 and kept["clips"] == {"round": 4}
    assert json.loads(out_row.read_text())["training_seconds"] == 5487.0
