"""BLEU and CIDEr-D against the COCO caption toolkit (pycocoevalcap), and by hand."""

from __future__ import annotations

import random

import pytest

from sugar.eval.caption_metrics import cider_d, corpus_bleu, tokenize

WORDS = "a the red blue green small large circle square star triangle left right of above below is two".split()


def random_caption(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))


def test_tokens_are_lower_case_words() -> None:
    assert tokenize("A red Circle, left of 2 squares.") == ["a", "red", "circle", "left", "of", "2", "squares"]


def test_a_candidate_equal_to_its_references_scores_one_in_bleu() -> None:
    references = [["a red circle left of a blue square"] * 2, ["two green stars above a small triangle"] * 2]
    candidates = [refs[0] for refs in references]
    assert corpus_bleu(candidates, references) == pytest.approx([1.0] * 4)
    # no shared word at all: every BLEU is (almost) zero and CIDEr-D is zero
    assert corpus_bleu(["x y z w", "q r s t"], references)[3] < 1e-6
    assert cider_d(["x y z w", "q r s t"], references)[0] == 0.0


def test_brevity_penalty_uses_the_closest_reference_length() -> None:
    # candidate of 3 words, references of 4 and 8: the closest is 4, penalty exp(1 - 4/3)
    bleu1 = corpus_bleu(["a red circle"], [["a red circle left", "a red circle left of a blue square"]])[0]
    assert bleu1 == pytest.approx(2.718281828459045 ** (1 - 4 / 3), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_coco_caption_toolkit(seed: int) -> None:
    bleu_module = pytest.importorskip("pycocoevalcap.bleu.bleu", reason="pycocoevalcap (the COCO toolkit) is not installed")
    cider_module = pytest.importorskip("pycocoevalcap.cider.cider")
    rng = random.Random(seed)
    references = [[random_caption(rng) for _ in range(rng.randint(1, 5))] for _ in range(40)]
    candidates = [random_caption(rng) if i % 3 else references[i][0] for i in range(40)]
    gts = {i: refs for i, refs in enumerate(references)}
    res = {i: [candidate] for i, candidate in enumerate(candidates)}
    expected_bleu, _ = bleu_module.Bleu(4).compute_score(gts, res, verbose=0)
    expected_cider, expected_each = cider_module.Cider().compute_score(gts, res)
    assert corpus_bleu(candidates, references) == pytest.approx(expected_bleu, rel=1e-9)
    score, each = cider_d(candidates, references)
    assert score == pytest.approx(float(expected_cider), rel=1e-9)
    assert each == pytest.approx([float(v) for v in expected_each], rel=1e-9, abs=1e-12)


def test_errors_name_the_mismatch() -> None:
    with pytest.raises(ValueError, match="2 candidates but 1 reference sets"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="reference set 1 is empty"):
        cider_d(["a", "b"], [["a"], []])
