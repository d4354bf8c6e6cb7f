"""Standard metric definitions, kept apart from models so each is checked on hand-made inputs."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import Tensor


def recall_at_k(similarity: Tensor, positives: Sequence[Sequence[int]], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Fraction of queries with at least one positive among the k most similar candidates.

    similarity: (queries, candidates); positives[q]: candidate indices that count as correct
    (COCO: an image has five captions, so image->text queries have five positives).
    Ties are broken against the query (a positive tied with a negative ranks below it).
    """
    if similarity.dim() != 2 or similarity.shape[0] != len(positives):
        raise ValueError(f"similarity must be (queries={len(positives)}, candidates), got {tuple(similarity.shape)}")
    rank_of_best = []
    for q, correct in enumerate(positives):
        if not correct:
            raise ValueError(f"query {q} has no positive candidate")
        scores = similarity[q]
        best_positive = scores[list(correct)].max()
        mask = torch.ones_like(scores, dtype=torch.bool)
        mask[list(correct)] = False
        rank_of_best.append(int((scores[mask] >= best_positive).sum()))
    ranks = torch.tensor(rank_of_best)
    return {f"r@{k}": float((ranks < k).float().mean()) for k in ks}


def winoground_scores(similarity: Tensor) -> dict[str, float]:
    """Winoground text / image / group scores (Thrush et al., 2022) from (N, 2, 2) similarities
    s[n, c, i] of caption c with image i.

    text: each image prefers its own caption; image: each caption prefers its own image;
    group: both at once. Strict inequalities, as in the official evaluation.
    """
    if similarity.dim() != 3 or similarity.shape[1:] != (2, 2):
        raise ValueError(f"winoground similarities must be (N, 2, 2), got {tuple(similarity.shape)}")
    s = similarity
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    group = text & image
    return {"text": float(text.float().mean()), "image": float(image.float().mean()), "group": float(group.float().mean())}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION_TABLE = str.maketrans({c: " " for c in string.punctuation})


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and articles removed, white space collapsed (SQuAD-style)."""
    text = text.lower().translate(_PUNCTUATION_TABLE)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: str | Sequence[str]) -> bool:
    options = [answers] if isinstance(answers, str) else list(answers)
    return any(normalize_answer(prediction) == normalize_answer(a) for a in options)


def yes_no(prediction: str) -> str | None:
    """POPE's reading of a free-form answer: the first yes / no word, else None."""
    for word in normalize_answer(prediction).split():
        if word in ("yes", "no"):
            return word
    return None


def binary_scores(predictions: Sequence[str | None], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and yes-ratio with "yes" as the positive class (POPE).
    An unreadable prediction counts as wrong."""
    if len(predictions) != len(labels) or not labels:
        raise ValueError(f"need as many predictions as labels (and some), got {len(predictions)} and {len(labels)}")
    tp = sum(p == "yes" and l == "yes" for p, l in zip(predictions, labels))
    fp = sum(p == "yes" and l == "no" for p, l in zip(predictions, labels))
    fn = sum(p != "yes" and l == "yes" for p, l in zip(predictions, labels))
    correct = sum(p == l for p, l in zip(predictions, labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": correct / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": sum(p == "yes" for p in predictions) / len(labels),
    }


def _binomial_cdf(count: int, rate: float) -> list[float]:
    """P(X <= k) for k = 0..count, X ~ Binomial(count, rate), through log-pmfs (no overflow)."""
    if rate <= 0.0 or rate >= 1.0:
        return [1.0 if (rate <= 0.0 or k == count) else 0.0 for k in range(count + 1)]
    log_rate, log_miss = math.log(rate), math.log1p(-rate)
    total, cdf = 0.0, []
    for k in range(count + 1):
        log_comb = math.lgamma(count + 1) - math.lgamma(k + 1) - math.lgamma(count - k + 1)
        total += math.exp(log_comb + k * log_rate + (count - k) * log_miss)
        cdf.append(min(total, 1.0))
    return cdf


def flat_range(rate: float, counts: Sequence[int]) -> float:
    """Expected best-minus-worst accuracy over groups of `counts` items each when every group's
    true accuracy is `rate`: the spread sampling alone gives a perfectly flat curve.

    A measured spread (WebQA's position curve) is evidence of a real difference between groups
    only where it clears this; six groups of 40 items at 20% accuracy give about 16 points."""
    if not counts or any(n <= 0 for n in counts):
        raise ValueError(f"counts must be positive item counts per group, got {list(counts)}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be an accuracy in [0, 1], got {rate}")
    cdfs = [_binomial_cdf(n, rate) for n in counts]
    values = sorted({Fraction(k, n) for n in counts for k in range(n + 1)})

    def below_or_at(group: int, value: Fraction) -> float:  # P(accuracy of the group <= value)
        return cdfs[group][math.floor(value * counts[group])]

    expected_max = expected_min = 0.0
    all_below_before, all_above_before = 0.0, 1.0
    for value in values:
        all_below = math.prod(below_or_at(g, value) for g in range(len(counts)))
        all_above = math.prod(1.0 - below_or_at(g, value) for g in range(len(counts)))
        expected_max += float(value) * (all_below - all_below_before)  # P(max == value)
        expected_min += float(value) * (all_above_before - all_above)  # P(min == value)
        all_below_before, all_above_before = all_below, all_above
    return expected_max - expected_min
