"""Each new benchmark on tiny hand-made inputs whose right answers are worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from PIL import Image

from sugar.data import Conversation, Document, ImageRef, MMVPItem
from sugar.eval.benchmarks import (
    InterleavedQuery,
    MMVPQuestion,
    contains_answer,
    evaluate_interleaved_retrieval,
    evaluate_mmvp_choices,
    evaluate_mmvp_vlm,
    evaluate_pope,
    evaluate_qa,
    evaluate_rag,
    evaluate_webqa,
    parse_choice,
    parse_options,
    spread,
)
from sugar.eval.suite import balanced
from sugar.eval.metrics import flat_range

CONCEPTS = 8


def picture(concept: int) -> Image.Image:
    """A flat image whose red channel names its concept."""
    return Image.new("RGB", (4, 4), (10 * concept, 0, 0))


def concept_of(item: Any) -> int:
    if isinstance(item, Image.Image):
        return item.getpixel((0, 0))[0] // 10
    return int(str(item).split("concept-")[1].split()[0])


class OneHotEncoder:
    """A document is the normalised sum of one-hot vectors of its segments' concepts."""

    def encode_documents(self, documents: list[list[Any]]) -> torch.Tensor:
        out = torch.zeros(len(documents), CONCEPTS)
        for row, document in enumerate(documents):
            for item in document:
                out[row, concept_of(item)] += 1.0
        return torch.nn.functional.normalize(out, dim=1)


# ----------------------------------------------------------------------------- interleaved retrieval


def test_interleaved_retrieval_protocols_by_hand() -> None:
    # story k: images and captions 1-4 show concept k, the last caption names concept k+1
    queries = []
    for k in range(4):
        segments: list[Any] = []
        for _ in range(4):
            segments += [ImageRef(picture(k)), f"concept-{k} happens"]
        segments.append(f"concept-{(k + 1) % 4} ends it")
        queries.append(InterleavedQuery(f"s{k}", tuple(segments), k))
    candidates = [ImageRef(picture(k)) for k in range(4)]
    result = evaluate_interleaved_retrieval(OneHotEncoder(), candidates, queries, ks=(1, 2, 4))
    assert result["queries"] == 4 and result["candidates"] == 4
    assert result["captions_and_images"] == {"r@1": 1.0, "r@2": 1.0, "r@4": 1.0}
    assert result["captions_only"] == {"r@1": 1.0, "r@2": 1.0, "r@4": 1.0}  # 4 captions outvote the last
    # the last caption alone points at the next story; the target ties with the two others at 0,
    # and ties count against the query: rank 3
    assert result["last_caption"] == {"r@1": 0.0, "r@2": 0.0, "r@4": 1.0}


def test_interleaved_retrieval_rejects_a_target_outside_the_pool() -> None:
    query = InterleavedQuery("s", ("concept-0",), 3)
    with pytest.raises(ValueError, match="target 3"):
        evaluate_interleaved_retrieval(OneHotEncoder(), [picture(0)], [query])


# ----------------------------------------------------------------------------- MMVP


def pair(pattern: str, statements: tuple[int, int], images: tuple[int, int], qid: int) -> MMVPItem:
    return MMVPItem(
        id=f"{qid}-{qid + 1}",
        type=f"type of {pattern}",
        statement_0=f"concept-{statements[0]}",
        statement_1=f"concept-{statements[1]}",
        image_0=ImageRef(picture(images[0])),
        image_1=ImageRef(picture(images[1])),
        question_ids=(str(qid), str(qid + 1)),
    )


def test_mmvp_vlm_per_pattern_by_hand() -> None:
    items = [
        pair("colour", (0, 1), (0, 1), 1),  # right both ways
        pair("count", (2, 2), (2, 3), 3),  # statement 1 is as near image 0 as image 1 never wins
        pair("count", (4, 5), (4, 5), 5),  # right
    ]
    patterns = {"1": "colour", "3": "count", "5": "count"}
    result = evaluate_mmvp_vlm(OneHotEncoder(), items, patterns)
    assert result["pairs"] == 3
    assert result["per_pattern"] == {"colour": 1.0, "count": 0.5}
    assert result["average"] == pytest.approx(0.75)
    assert result["overall"] == pytest.approx(2 / 3)
    assert result["counts"] == {"colour": 1, "count": 2}
    assert result["image_to_statement"]["per_pattern"] == {"colour": 1.0, "count": 0.5}
    # without a pattern table the release's Type column groups the pairs
    assert set(evaluate_mmvp_vlm(OneHotEncoder(), items)["per_pattern"]) == {"type of colour", "type of count"}


class ChoiceModel:
    """Believes each image (by concept) shows one option text; scores it 0, the others -1."""

    def __init__(self, beliefs: dict[int, str]) -> None:
        self.beliefs = beliefs
        self.calls = 0

    def target_logprobs(self, documents: Sequence[Sequence[Any]], targets: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
        self.calls += 1
        assert all(list(t) == [2] for t in targets)
        scores = [0.0 if document[2] == self.beliefs[concept_of(document[0])] else -1.0 for document in documents]
        return torch.tensor(scores)


def question(qid: int, concept: int, options: tuple[str, str], answer: int, pattern: str) -> MMVPQuestion:
    text = f"(a) {options[0]} (b) {options[1]}"
    return MMVPQuestion(str(qid), ImageRef(picture(concept)), "What is it?", text, options, answer, pattern)


def test_mmvp_choices_count_a_pair_only_when_both_are_right() -> None:
    questions = [
        question(1, 0, ("red", "blue"), 0, "colour"),
        question(2, 1, ("red", "blue"), 1, "colour"),
        question(3, 2, ("two", "three"), 0, "count"),
        question(4, 3, ("two", "three"), 1, "count"),
    ]
    model = ChoiceModel({0: "red", 1: "blue", 2: "two", 3: "two"})  # wrong on question 4 only
    result = evaluate_mmvp_choices(model, questions, batch_size=3)
    assert result["question_accuracy"] == 0.75
    assert result["per_pattern"] == {"colour": 1.0, "count": 0.0}
    assert result["average"] == 0.5 and result["pairs"] == 2 and result["questions"] == 4
    assert model.calls == 2  # batched: 3 questions, then 1
    with pytest.raises(ValueError, match="pairs"):
        evaluate_mmvp_choices(model, questions[:3])


def test_parse_options_and_choice() -> None:
    assert parse_options("(a) Open (b) Closed") == ("Open", "Closed")
    assert parse_options("(a) left of (b) right of (c) above") == ("left of", "right of", "above")
    assert parse_choice("(b)", 2) == 1 and parse_choice(" a ", 2) == 0
    with pytest.raises(ValueError):
        parse_options("Open or Closed")
    with pytest.raises(ValueError):
        parse_choice("(c)", 2)


# ----------------------------------------------------------------------------- QA and POPE


class ScriptedModel:
    """Answers each prompt's last text from a script (the default when the text is unknown)."""

    def __init__(self, script: dict[str, str], default: str = "") -> None:
        self.script = script
        self.default = default
        self.prompts: list[list[Any]] = []

    def generate(self, document: list[Any], max_new_tokens: int = 32) -> str:
        self.prompts.append(list(document))
        return self.script.get(document[-1], self.default)


def pope_question(index: int, category: str, label: str) -> Conversation:
    return Conversation(
        id=f"pope_{category}_{index}",
        image=ImageRef(picture(0)),
        turns=[("human", f"<image>\nIs there object {category} {index}?"), ("gpt", label.capitalize())],
        meta={"task": "pope", "category": category, "label": label},
    )


def test_pope_scores_per_negative_type_by_hand() -> None:
    random = [pope_question(i, "random", label) for i, label in enumerate(["yes", "yes", "no", "no"])]
    adversarial = [pope_question(i, "adversarial", label) for i, label in enumerate(["yes", "no"])]
    script = {
        "Is there object random 0?": "Yes",  # tp
        "Is there object random 1?": "no",  # fn
        "Is there object random 2?": "yes, there is",  # fp
        "Is there object random 3?": "No.",  # tn
        "Is there object adversarial 0?": "Yes.",  # tp
        "Is there object adversarial 1?": "I cannot tell",  # unreadable: wrong
    }
    result = evaluate_pope(ScriptedModel(script), random + adversarial)
    assert result["random"] == {
        "accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "yes_ratio": 0.5, "count": 4, "unreadable": 0,
    }
    assert result["adversarial"] == {
        "accuracy": 0.5, "precision": 1.0, "recall": 1.0, "f1": 1.0, "yes_ratio": 0.5, "count": 2, "unreadable": 1,
    }
    assert result["average"]["accuracy"] == 0.5 and result["average"]["f1"] == 0.75 and result["average"]["count"] == 6
    # evaluate_qa reads the world's POPE records (task + category) too
    qa = evaluate_qa(ScriptedModel(script), random)
    assert qa["count"] == 4 and qa["accuracy"] == 0.5  # "Yes" and "No." match their references exactly
    assert qa["pope"]["random"]["accuracy"] == 0.5


def test_qa_exact_match_counts_normalised_answers() -> None:
    vqa = Conversation("q", ImageRef(picture(0)), [("human", "<image>\nWhat colour?"), ("gpt", "It is red.")], {"task": "vqa"})
    assert evaluate_qa(ScriptedModel({"What colour?": "it is red"}), [vqa])["accuracy"] == 1.0
    assert "pope" not in evaluate_qa(ScriptedModel({}), [vqa])


def test_contains_answer_matches_whole_words() -> None:
    assert contains_answer("It lives in the Salted Caves.", "the Salted Caves")
    assert contains_answer("The square is yellow", ["blue", "yellow"])
    assert not contains_answer("It lives in the caves", "the Salted Caves")
    assert not contains_answer("reddish", "red")
    assert not contains_answer("anything", "")


def test_spread_and_balanced_subsets() -> None:
    assert spread(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert spread(list(range(3)), None) == [0, 1, 2] and spread(list(range(3)), 9) == [0, 1, 2]
    items = [(p, i) for p in (1, 2, 3) for i in range(4)]
    chosen = balanced(items, lambda item: item[0], 7)
    assert len(chosen) == 7 and [sum(c[0] == p for c in chosen) for p in (1, 2, 3)] == [3, 2, 2]


# ----------------------------------------------------------------------------- RAG


NAMES = ["Vexem", "Pellebel", "Wixaisk"]


class KnowledgeModel(ScriptedModel):
    """Embeds a document by its image's concept; answers with the name in the context document
    nearest the question (the last one), or gives up."""

    def __init__(self) -> None:
        super().__init__({})

    def encode(self, documents: list[list[Any]], batch_size: int = 32, show_progress: bool | None = None) -> torch.Tensor:
        images = [[item for item in document if isinstance(item, Image.Image)] for document in documents]
        return OneHotEncoder().encode_documents([[found[-1]] for found in images])

    def generate(self, document: list[Any], max_new_tokens: int = 32) -> str:
        self.prompts.append(list(document))
        named = [item for item in document if isinstance(item, str) and item.startswith("This is a ")]
        if not named:
            return "I do not know."
        return f"It is called a {named[-1].removeprefix('This is a ').rstrip('.')}."


class ShiftedEncoder:
    """A poor external retriever: a question's image is read as the next species."""

    def encode_documents(self, documents: list[list[Any]]) -> torch.Tensor:
        shifted = []
        for document in documents:
            concept = concept_of(document[0])
            if any(isinstance(item, str) and item.startswith("What") for item in document):
                concept = (concept + 1) % len(NAMES)
            shifted.append([f"concept-{concept}"])
        return OneHotEncoder().encode_documents(shifted)


def test_rag_rows_and_hits_by_hand() -> None:
    kb = [Document([ImageRef(picture(k)), f"This is a {name}."], id=f"kb_{k}") for k, name in enumerate(NAMES)]
    questions = [
        Conversation(
            f"rag_{k}",
            ImageRef(picture(k)),
            [("human", "<image>\nWhat is this creature called?"), ("gpt", f"It is called a {name}.")],
            {"answer": name, "gold_doc_ids": [f"kb_{k}"]},
        )
        for k, name in enumerate(NAMES)
    ]
    model = KnowledgeModel()
    result = evaluate_rag(model, questions, kb, external={"teacher": ShiftedEncoder()}, ks=(1, 3))
    assert result["retrieval"]["self"] == {"hit@1": 1.0, "hit@3": 1.0}
    assert result["retrieval"]["teacher"] == {"hit@1": 0.0, "hit@3": 1.0}
    rows = {name: (r["exact_match"], r["contains_answer"]) for name, r in result["rows"].items()}
    assert rows == {
        "no_retrieval": (0.0, 0.0),
        "self_k1": (1.0, 1.0),
        "self_k3": (1.0, 1.0),  # the most relevant document sits last, nearest the question
        "teacher_k1": (0.0, 0.0),
        "teacher_k3": (0.0, 0.0),
        "oracle": (1.0, 1.0),
    }
    assert result["answered"] == 3 and result["questions"] == 3 and result["knowledge_base"] == 3
    # generate_count answers a spread subset; hit@k still uses every question
    assert evaluate_rag(KnowledgeModel(), questions, kb, ks=(1,), generate_count=2)["answered"] == 2


def test_rag_names_a_question_whose_gold_document_is_missing() -> None:
    kb = [Document([ImageRef(picture(0)), "This is a Vexem."], id="kb_0")]
    bad = Conversation("rag_x", ImageRef(picture(0)), [("human", "<image>\nWhat?"), ("gpt", "A Vexem.")],
                       {"answer": "Vexem", "gold_doc_ids": ["kb_9"]})
    with pytest.raises(ValueError, match="rag_x.*kb_9"):
        evaluate_rag(KnowledgeModel(), [bad], kb)


# ----------------------------------------------------------------------------- WebQA


def test_webqa_position_curve_by_hand() -> None:
    items, script = [], {}
    for position in range(1, 7):
        for copy in range(2):
            segments: list[Any] = []
            for source in range(6):
                segments += [ImageRef(picture(source)), f"source {source}"]
            question = f"q{position}-{copy}: what colour?"
            items.append(Document(segments, id=question, meta={"question": question, "answer": "yellow", "relevant_position": position}))
            # the model finds the early sources only; one reply is the bare word
            if position <= 3:
                script[question] = "yellow" if (position, copy) == (1, 0) else "The square is yellow."
    result = evaluate_webqa(ScriptedModel(script, default="no idea"), items)
    assert result["by_position"] == {"1": 1.0, "2": 1.0, "3": 1.0, "4": 0.0, "5": 0.0, "6": 0.0}
    assert result["exact_by_position"]["1"] == 0.5 and result["exact_match"] == pytest.approx(1 / 12)
    assert result["accuracy"] == 0.5 and result["count_by_position"] == {str(p): 2 for p in range(1, 7)}
    # its spread (1.0) is far beyond what 2 items a position give a flat curve at 50% by chance
    assert result["position_spread"] == 1.0 and result["flat_spread"] == pytest.approx(flat_range(0.5, [2] * 6))
    assert 0.5 < result["flat_spread"] < 1.0
    with pytest.raises(ValueError, match="relevant_position"):
        evaluate_webqa(ScriptedModel({}), [Document(["x"], id="bad", meta={"question": "q", "answer": "a"})])
