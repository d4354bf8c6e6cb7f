"""Each metric against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from sugar.eval.metrics import (
    binary_scores, exact_match, flat_range, normalize_answer, recall_at_k, winoground_scores, yes_no,
)


def test_recall_at_k_by_hand() -> None:
    similarity = torch.tensor(
        [
            [0.9, 0.1, 0.5, 0.0],  # positive 0 ranks first
            [0.8, 0.2, 0.7, 0.6],  # positive 1 ranks fourth
            [0.3, 0.4, 0.35, 0.9],  # positives {0, 2}: best is 2 at rank 3
        ]
    )
    result = recall_at_k(similarity, [[0], [1], [0, 2]], ks=(1, 2, 3, 4))
    assert result == {"r@1": pytest.approx(1 / 3), "r@2": pytest.approx(1 / 3), "r@3": pytest.approx(2 / 3), "r@4": 1.0}


def test_recall_ties_count_against_the_query() -> None:
    assert recall_at_k(torch.tensor([[0.5, 0.5]]), [[1]], ks=(1,))["r@1"] == 0.0


def test_winoground_scores_by_hand() -> None:
    similarity = torch.tensor(
        [
            [[0.9, 0.1], [0.2, 0.8]],  # all correct: text, image, group
            [[0.9, 0.95], [0.2, 0.99]],  # text ok (0.9>0.2, 0.99>0.95); image fails (0.9<0.95)
            [[0.5, 0.4], [0.6, 0.7]],  # image ok (0.5>0.4, 0.7>0.6); text fails (0.5<0.6)
            [[0.1, 0.9], [0.9, 0.1]],  # everything wrong
        ]
    )
    assert winoground_scores(similarity) == {"text": 0.5, "image": 0.5, "group": 0.25}


def test_answer_normalisation_and_exact_match() -> None:
    assert normalize_answer("  The Red, circle! ") == "red circle"
    assert exact_match("a red circle.", ["Red circle", "blue"])
    assert not exact_match("red circles", "red circle")
    assert yes_no("Yes, there is.") == "yes" and yes_no("No.") == "no" and yes_no("maybe") is None


def test_binary_scores_by_hand() -> None:
    predictions = ["yes", "yes", "no", None, "no"]
    labels = ["yes", "no", "yes", "yes", "no"]
    scores = binary_scores(predictions, labels)
    # tp=1, fp=1, fn=2 (one "no", one unreadable), correct = 2
    assert scores["accuracy"] == pytest.approx(2 / 5)
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.4)
    assert scores["yes_ratio"] == pytest.approx(2 / 5)


def test_flat_range_by_hand() -> None:
    # two groups of one item at rate p: the range is 1 exactly when they differ, 2p(1-p)
    assert flat_range(0.3, [1, 1]) == pytest.approx(2 * 0.3 * 0.7)
    # groups of two at 0.5: accuracies 0, .5, 1 w.p. 1/4, 1/2, 1/4; E|a-b| over independent pairs
    values, probs = (0.0, 0.5, 1.0), (0.25, 0.5, 0.25)
    expected = sum(pa * pb * abs(a - b) for a, pa in zip(values, probs) for b, pb in zip(values, probs))
    assert flat_range(0.5, [2, 2]) == pytest.approx(expected)
    assert flat_range(0.0, [40] * 6) == 0.0 and flat_range(1.0, [5, 5]) == 0.0 and flat_range(0.4, [40]) == 0.0


def test_flat_range_agrees_with_sampling() -> None:
    generator = torch.Generator().manual_seed(0)
    for rate, counts in ((0.2, [40] * 6), (0.3, [10, 40, 25])):
        draws = torch.stack([torch.binomial(torch.full((100_000,), float(n)), torch.full((100_000,), rate), generator=generator) / n for n in counts], 1)
        sampled = float((draws.max(1).values - draws.min(1).values).mean())
        assert flat_range(rate, counts) == pytest.approx(sampled, abs=0.002)
    assert flat_range(0.2, [40] * 6) == pytest.approx(0.159, abs=0.001)  # WebQA's 6 positions x 40 items


def test_flat_range_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="counts"):
        flat_range(0.5, [40, 0])
    with pytest.raises(ValueError, match="rate"):
        flat_range(1.5, [40])
