"""The lmms-eval adapter against the installed lmms-eval: registry, instantiation, and constructed requests.

lmms-eval 0.7.3 lists torchvision, timm and ~40 other packages as dependencies; with
`--no-deps` plus pytz, jinja2 and loguru, its model API (`lmms_eval.api.model`,
`lmms_eval.api.instance`, `lmms_eval.models`) imports and runs beside this torch. Tests skip
when it is absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip(
    "lmms_eval.api.model",
    reason="lmms-eval is not installed (pip install --no-deps lmms-eval==0.7.3 pytz jinja2 loguru)",
)

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelRegistryV2

from sugar.eval.harness.lmms_adapter import (
    MODEL_ID,
    SugarLMMS,
    cut_at_stops,
    lmms_eval_manifest,
    register_with_lmms_eval,
)
from sugar.models import SugarModel
from tiny_model import tiny_model_config

CORPUS = [
    "A red circle is left of a blue square. It is small.",
    "Two green triangles are above a yellow star!",
    "What colour is the circle? red",
    "Is there a star in the picture? Answer: yes no",
    "Look at the first picture and the second picture. What changed?",
]
TINY = tiny_model_config()
TASK, SPLIT = "world_qa", "test"


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))


DOCS: list[dict[str, Any]] = [
    {"images": [picture(0)], "question": "What colour is the circle?", "answer": "red"},
    {"images": [picture(1), picture(2)], "question": "What changed?", "answer": "yes"},
    {"images": [], "question": "Is there a star in the picture?", "answer": "no"},
]


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    return list(doc["images"])


def doc_to_target(doc: dict[str, Any]) -> str:
    return " " + doc["answer"]


def request(kind: str, arguments: tuple[Any, ...], doc_id: int) -> Instance:
    return Instance(
        request_type=kind,  # type: ignore[arg-type]
        arguments=arguments,
        idx=0,
        metadata={"task": TASK, "doc_id": doc_id, "repeats": 1},
    )


ANSWER = "red circle left of blue square"


def teach_answer(model: SugarModel, steps: int = 80) -> None:
    """A few steps on one answer, so greedy decoding gives several distinct words rather than an
    untrained model's repeated token (the stop and greedy checks need real words)."""
    rows = [[DOCS[0]["images"][0], "What colour is the circle?", ANSWER], ["What colour is the circle?", ANSWER]]
    batch = model.processor(rows, targets=[[-1], [-1]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small only pay a thread pool's overhead
    try:
        model.train()
        for _ in range(steps):
            loss = model(batch, return_embeddings=False).loss
            assert loss is not None
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = SugarModel.from_preset("tiny", tokenizer_corpus=CORPUS + [ANSWER], **TINY)
    teach_answer(model)
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "sugar-tiny")


@pytest.fixture(scope="module")
def lm(saved: Path) -> SugarLMMS:
    register_with_lmms_eval()
    from lmms_eval import models

    model_class = models.get_model(MODEL_ID)
    instance = model_class.create_from_arg_string(
        f"pretrained={saved},max_new_tokens=6", {"batch_size": 2, "device": "cpu"}
    )
    instance.task_dict = {TASK: {SPLIT: DOCS}}
    return instance


def test_lmms_eval_resolves_and_builds_the_model(lm: SugarLMMS, saved: Path) -> None:
    assert isinstance(lm, lmms) and isinstance(lm, SugarLMMS)
    assert lm.batch_size == 2 and lm.max_new_tokens == 6 and lm.device == torch.device("cpu")
    assert lm.rank == 0 and lm.world_size == 1
    registry = ModelRegistryV2()  # a fresh registry, as an entry point would fill it
    registry.register_manifest(lmms_eval_manifest())
    assert registry.get_model_class(MODEL_ID) is SugarLMMS
    assert registry.resolve(MODEL_ID).model_type == "simple"


def test_prompt_documents_place_images(lm: SugarLMMS) -> None:
    first, second = picture(3), picture(4)
    assert lm.document("Look at <image> and <image>. What changed?", [first, second]) == [
        "Look at",
        first,
        "and",
        second,
        ". What changed?",
    ]
    assert lm.document("What colour is the circle?", [first, second]) == [first, second, "What colour is the circle?"]
    assert lm.document("  ", [first]) == [first]
    assert lm.document("<image>\nDescribe it.", [first]) == [first, "Describe it."]


def test_generate_until_places_images_and_stops(lm: SugarLMMS) -> None:
    model = lm.model
    free = request("generate_until", ("What colour is the circle?", {}, doc_to_visual, 0, TASK, SPLIT), 0)
    placed = request(
        "generate_until",
        ("Look at <image> and <image>. What changed?", {"max_new_tokens": 4}, doc_to_visual, 1, TASK, SPLIT),
        1,
    )
    text_only = request(
        "generate_until", ("Is there a star in the picture?", {"until": []}, doc_to_visual, 2, TASK, SPLIT), 2
    )
    answers = lm.generate_until([free, placed, text_only])
    assert answers[0] == model.generate([DOCS[0]["images"][0], "What colour is the circle?"], max_new_tokens=6)
    second = ["Look at", DOCS[1]["images"][0], "and", DOCS[1]["images"][1], ". What changed?"]
    assert answers[1] == model.generate(second, max_new_tokens=4)
    assert answers[2] == model.generate(["Is there a star in the picture?"], max_new_tokens=6)
    words = answers[0].split()
    assert len(words) >= 3, answers[0]
    stop = words[1]
    stopped = lm.generate_until(
        [request("generate_until", ("What colour is the circle?", {"until": [stop]}, doc_to_visual, 0, TASK, SPLIT), 0)]
    )
    assert stopped == [answers[0][: answers[0].find(stop)]]


def test_sampling_settings_warn_and_decode_greedily(saved: Path) -> None:
    lm = SugarLMMS(saved, device="cpu", max_new_tokens=3)
    lm.task_dict = {TASK: {SPLIT: DOCS}}
    arguments = ("What colour is the circle?", {"temperature": 0.7, "do_sample": True}, doc_to_visual, 0, TASK, SPLIT)
    with pytest.warns(UserWarning, match="greedily"):
        sampled = lm.generate_until([request("generate_until", arguments, 0)])
    greedy = lm.generate_until([request("generate_until", (arguments[0], {}, *arguments[2:]), 0)])
    assert sampled == greedy


def test_loglikelihood_is_the_continuation_log_probability(lm: SugarLMMS) -> None:
    model = lm.model
    requests = [
        request(
            "loglikelihood", ("What colour is the circle? Answer:", doc_to_target, doc_to_visual, 0, TASK, SPLIT), 0
        ),
        request("loglikelihood", ("<image> then <image>: what changed?", " yes", doc_to_visual, 1, TASK, SPLIT), 1),
        request("loglikelihood", ("Is there a star in the picture?", doc_to_target, doc_to_visual, 2, TASK, SPLIT), 2),
        request("loglikelihood", ("", "red"), 0),
    ]
    scores = lm.loglikelihood(requests)  # batch_size 2: two batches
    documents = [
        [DOCS[0]["images"][0], "What colour is the circle? Answer:", "red"],
        [DOCS[1]["images"][0], "then", DOCS[1]["images"][1], ": what changed?", "yes"],
        ["Is there a star in the picture?", "no"],
        ["red"],
    ]
    for (logprob, greedy), document in zip(scores, documents):
        # The model's own training loss over the continuation tokens (mean CE) gives the same sum.
        batch = model.processor([document], targets=[[len(document) - 1]], add_eos=False)
        with torch.no_grad():
            output = model(batch, return_embeddings=False)
        assert output.loss is not None and output.label_tokens
        assert logprob == pytest.approx(-float(output.loss) * output.label_tokens, abs=1e-4)
        assert logprob < 0 and isinstance(greedy, bool)


def test_loglikelihood_reports_greedy_continuations(lm: SugarLMMS) -> None:
    prompt = "What colour is the circle?"
    continuation = lm.model.generate([DOCS[0]["images"][0], prompt], max_new_tokens=2)
    assert continuation
    other = "red" if continuation.split()[0] != "red" else "blue"
    (_, greedy), (_, not_greedy) = lm.loglikelihood(
        [
            request("loglikelihood", (prompt, " " + continuation, doc_to_visual, 0, TASK, SPLIT), 0),
            request("loglikelihood", (prompt, " " + other, doc_to_visual, 0, TASK, SPLIT), 0),
        ]
    )
    assert greedy and not not_greedy


def test_multi_round_feeds_previous_answers(lm: SugarLMMS) -> None:
    seen: list[tuple[int, list[str]]] = []

    def doc_to_text(
        doc: dict[str, Any], previous_output: list[str], round_idx: int, previous_round_info: Any
    ) -> tuple[Any, ...]:
        seen.append((round_idx, list(previous_output)))
        if round_idx == 3:
            return None, None, True, previous_output, None
        question = f"Round {round_idx}: what colour is the circle?"
        return doc["images"], question, False, previous_output, {"round": round_idx}

    arguments = ("What colour is the circle?", {"max_new_tokens": 3}, doc_to_visual, doc_to_text, 0, TASK, SPLIT)
    (rounds,) = lm.generate_until_multi_round([request("generate_until_multi_round", arguments, 0)])
    assert len(rounds) == 3
    assert [r for r, _ in seen] == [1, 2, 3]
    assert seen[1][1] == rounds[:2] and seen[2][1] == rounds
    assert rounds[0] == lm.model.generate([DOCS[0]["images"][0], "What colour is the circle?"], max_new_tokens=3)
    second = lm.model.generate([DOCS[0]["images"][0], "Round 1: what colour is the circle?"], max_new_tokens=3)
    assert rounds[1] == second


def test_requests_the_model_cannot_serve_are_refused(lm: SugarLMMS) -> None:
    video = {TASK: {SPLIT: [{"images": ["clip.mp4"]}]}}
    saved_docs = lm.task_dict
    lm.task_dict = video
    try:
        with pytest.raises(TypeError, match="images only"):
            lm.generate_until([request("generate_until", ("Describe.", {}, doc_to_visual, 0, TASK, SPLIT), 0)])
    finally:
        lm.task_dict = saved_docs
    with pytest.raises(ValueError, match="places 2"):
        lm.generate_until([request("generate_until", ("<image> <image>", {}, doc_to_visual, 0, TASK, SPLIT), 0)])
    with pytest.raises(KeyError, match="no document 7"):
        lm.generate_until([request("generate_until", ("Hi", {}, doc_to_visual, 7, TASK, SPLIT), 7)])
    with pytest.raises(ValueError, match="batch_size: expected a positive integer, got 'auto'"):
        SugarLMMS(lm.model, batch_size="auto")


def test_cut_at_stops_takes_the_earliest() -> None:
    assert cut_at_stops("red circle. blue square", [".", "blue"]) == "red circle"
    assert cut_at_stops("red circle", ["", "green"]) == "red circle"


TASK_UTILS = """from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return "<image>\\n" + doc["question"]


def process_results(doc, results):
    return {"exact": float(results[0].strip() == doc["answer"])}
"""

TASK_YAML = """dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
test_split: test
task: sugar_local_qa
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 8
  until: ["blue"]
process_results: !function utils.process_results
metric_list:
  - metric: exact
    aggregation: mean
    higher_is_better: true
"""


def evaluator_or_skip() -> Any:
    """lmms-eval's evaluator needs datasets, evaluate, sacrebleu, tenacity and filelock<4 on top of
    the model API (`make install` pins them: HARNESS_DEPS in the Makefile); skip where they are absent."""
    try:
        import filelock._api  # noqa: F401  (removed in filelock 4; lmms-eval 0.7.3 patches it)
        from lmms_eval import evaluator
        from lmms_eval.tasks import TaskManager
    except ImportError as error:
        pytest.skip(f"lmms-eval's evaluator cannot run here: {error}")
    return evaluator, TaskManager


def test_simple_evaluate_runs_a_local_generation_task(
    saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator, task_manager_class = evaluator_or_skip()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = []
    for index in range(3):
        path = tmp_path / f"picture{index}.png"
        picture(index).save(path)
        rows.append({"image": str(path), "question": "What colour is the circle?", "answer": "red circle left of"})
    data = tmp_path / "qa.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "utils.py").write_text(TASK_UTILS)
    (tasks / "sugar_local_qa.yaml").write_text(TASK_YAML.format(data=data, cache=tmp_path / "datasets-cache"))
    register_with_lmms_eval()
    results = evaluator.simple_evaluate(
        model=MODEL_ID,
        model_args=f"pretrained={saved},max_new_tokens=8",
        tasks=["sugar_local_qa"],
        task_manager=task_manager_class(include_path=str(tasks), include_defaults=False),
        batch_size=1,
        device="cpu",
        bootstrap_iters=0,
    )
    responses = [sample["resps"] for sample in results["samples"]["sugar_local_qa"]]
    assert responses == [[["red circle left of "]]] * 3  # greedy answer cut at the task's `until`
    assert results["results"]["sugar_local_qa"]["exact,none"] == 1.0
