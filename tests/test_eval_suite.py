"""The benchmark suite end to end on a small world with a tiny untrained model and toy teachers:
keys, ranges and counts (the numbers themselves mean nothing for an untrained model), the
files `sugar eval` writes, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from sugar.eval.benchmarks import generate_batch
from sugar.eval.suite import BENCHES, expand_benches, run_benchmarks, write_results
from sugar.models import SugarModel
from tiny_model import tiny_model_config

SMALL = tiny_model_config(512)  # the shared tiny test model, with room for long RAG prompts


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sugar.teachers.fit import FitConfig, fit_teachers
    from sugar.teachers.toy import ToyImageExpert, ToyTextExpert
    from sugar.train.examples import tokenizer_corpus
    from sugar.world import build_world

    root = tmp_path_factory.mktemp("eval")
    world = root / "world"
    build_world(world, seed=0, scale="small", progress=False)
    torch.manual_seed(0)
    model = SugarModel.from_preset("tiny", tokenizer_corpus=tokenizer_corpus(world), **SMALL).eval()
    model_dir = model.save_pretrained(root / "model")
    teachers = fit_teachers(
        root / "teachers",
        world=world,
        image_expert=ToyImageExpert(),
        text_expert=ToyTextExpert(),
        config=FitConfig(epochs=2),
        progress=False,
        log=None,
    )
    return {"root": root, "world": world, "model": model, "model_dir": model_dir, "teachers": teachers.suite}


def test_generate_batch_matches_one_prompt_at_a_time(setup: dict[str, Any]) -> None:
    from sugar.data import load_llava_conversations
    from sugar.eval.benchmarks import question_and_answer

    model = setup["model"]
    conversations = load_llava_conversations(setup["world"] / "instruct" / "test.json", setup["world"])[::37][:6]
    prompts = [question_and_answer(c)[0] for c in conversations]
    prompts.append(["a text only prompt about a red circle and a blue square"])
    one_by_one = [model.generate(p, max_new_tokens=5) for p in prompts]
    assert generate_batch(model, prompts, max_new_tokens=5, batch_size=4) == one_by_one
    assert generate_batch(model, prompts, max_new_tokens=0) == [""] * len(prompts)


def in_unit(value: float) -> bool:
    return 0.0 <= value <= 1.0


def test_every_benchmark_end_to_end(setup: dict[str, Any]) -> None:
    results = run_benchmarks(setup["model"], setup["world"], "all", teachers_dir=setup["teachers"], limit=4)
    assert list(results) == list(BENCHES)
    for name, result in results.items():
        assert result["bench"] == name and result["split"] == "test"
        assert result["limit"] == {"value": 4, "default": False, "rule": result["limit"]["rule"]}
        assert result["seconds"] >= 0

    retrieval = results["retrieval"]
    assert retrieval["images"] == 4 and retrieval["captions"] == 20
    for encoder in (retrieval, retrieval["teacher"]):
        assert set(encoder["t2i"]) == {"r@1", "r@5", "r@10"} and all(in_unit(v) for v in encoder["i2t"].values())

    interleaved = results["interleaved"]
    assert interleaved["queries"] == 4 and interleaved["candidates"] == 4
    for protocol in ("captions_and_images", "captions_only", "last_caption"):
        assert interleaved[protocol]["r@10"] == 1.0  # a pool of 4: every target is in the top 10
        assert in_unit(interleaved["teacher"][protocol]["r@1"])

    winoground = results["winoground"]
    assert winoground["items"] == 4 and all(in_unit(winoground[k]) for k in ("text", "image", "group"))
    assert set(winoground["teacher"]) >= {"text", "image", "group", "by_tag"}

    mmvp = results["mmvp"]
    assert mmvp["embedding"]["pairs"] == 4 and mmvp["generation"]["questions"] == 8
    patterns = {"colour", "count", "relation", "size", "shape"}
    assert set(mmvp["embedding"]["per_pattern"]) <= patterns and set(mmvp["generation"]["per_pattern"]) <= patterns
    assert in_unit(mmvp["embedding"]["average"]) and in_unit(mmvp["generation"]["question_accuracy"])
    assert in_unit(mmvp["teacher"]["embedding"]["average"])

    qa = results["qa"]
    assert qa["vqa"]["count"] == 4 and in_unit(qa["vqa"]["accuracy"])
    assert set(qa["pope"]) == {"random", "popular", "adversarial", "average"}
    for kind in ("random", "popular", "adversarial"):
        assert qa["pope"][kind]["count"] == 4
        assert all(in_unit(qa["pope"][kind][k]) for k in ("accuracy", "precision", "recall", "f1", "yes_ratio"))

    captions = results["captions"]
    assert captions["images"] == 4 and len(captions["examples"]) == 4
    assert all(in_unit(captions["bleu"][f"bleu{n}"]) for n in range(1, 5)) and captions["cider"] >= 0.0
    assert captions["bleu4"] == captions["bleu"]["bleu4"]

    rag = results["rag"]
    assert rag["questions"] == 12 and rag["answered"] == 4 and rag["knowledge_base"] == 60
    assert set(rag["retrieval"]) == {"self", "teacher"}
    assert set(rag["retrieval"]["self"]) == {"hit@1", "hit@3"}  # the suite asks k = 1 and 3
    expected_rows = {"no_retrieval", "oracle"} | {f"{r}_k{k}" for r in ("self", "teacher") for k in (1, 3)}
    assert set(rag["rows"]) == expected_rows
    assert all(in_unit(r["exact_match"]) and in_unit(r["contains_answer"]) for r in rag["rows"].values())

    webqa = results["webqa"]
    assert webqa["items"] == 4 and sum(webqa["count_by_position"].values()) == 4
    assert all(in_unit(v) for v in webqa["by_position"].values())

    report = write_results(results, setup["root"] / "out", command="sugar eval ...")
    text = report.read_text()
    assert "## Interleaved retrieval" in text and "| teacher (CLIP-style) |" in text and "self_k3" in text
    assert "## Captioning (BLEU-4, CIDEr-D)" in text
    assert f"spreads by {100 * webqa['flat_spread']:.1f} from sampling alone" in text
    assert "mmvp_patterns.png" in text and (report.parent / "mmvp_patterns.png").is_file()
    for name in BENCHES:
        assert json.loads((report.parent / f"{name}.json").read_text())["bench"] == name


def test_default_limits_and_data_files(setup: dict[str, Any]) -> None:
    world = setup["world"]
    results = run_benchmarks(setup["model"], world, "retrieval,winoground", limit=None)
    assert results["retrieval"]["limit"]["value"] is None and results["retrieval"]["images"] == 40
    # --data reads the same formats from any path: the world's own files give the same numbers
    coco = run_benchmarks(setup["model"], None, "retrieval", data=world / "captions" / "dataset_coco.json", image_root=world)
    assert coco["retrieval"]["t2i"] == results["retrieval"]["t2i"]
    wino = run_benchmarks(setup["model"], None, "winoground", data=world / "winoground" / "test.jsonl", image_root=world / "images")
    assert wino["winoground"]["group"] == results["winoground"]["group"]
    vist = run_benchmarks(setup["model"], None, "interleaved", data=world / "stories" / "vist" / "test.json", image_root=world / "images")
    assert vist["interleaved"]["queries"] == 6
    with pytest.raises(ValueError, match="exactly one"):
        run_benchmarks(setup["model"], None, ["retrieval", "qa"], data=world / "captions" / "dataset_coco.json")


def test_missing_files_say_what_to_run(setup: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="sugar world --out"):
        run_benchmarks(setup["model"], tmp_path, "winoground")
    with pytest.raises(FileNotFoundError, match="mmvp/train/MMVP_VLM/Questions.csv.*--split"):
        run_benchmarks(setup["model"], setup["world"], "mmvp", split="train")
    with pytest.raises(ValueError, match="needs a world"):
        run_benchmarks(setup["model"], None, "qa")
    with pytest.raises(ValueError, match="unknown benchmark 'vqa'"):
        expand_benches("vqa")
    assert expand_benches(["webqa,retrieval", "retrieval"]) == ["retrieval", "webqa"]


def test_cli_runs_one_bench(setup: dict[str, Any], tmp_path: Path) -> None:
    from sugar.cli import main

    out = tmp_path / "out"
    argv = ["eval", "--model", str(setup["model_dir"]), "--world", str(setup["world"]), "--bench", "interleaved"]
    assert main([*argv, "--out", str(out), "--limit", "3", "--no-progress"]) == 0
    result = json.loads((out / "interleaved.json").read_text())
    assert result["queries"] == 3 and result["limit"]["value"] == 3
    assert "sugar eval --model" in (out / "results.md").read_text()
    assert main(["eval", "--model", str(setup["model_dir"]), "--bench", "winoground", "--out", str(out)]) == 2  # no world
    assert main([*argv[:-1], "nonsense", "--out", str(out)]) == 2
