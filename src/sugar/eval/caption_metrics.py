"""Caption metrics of the COCO caption evaluation: corpus BLEU-1..4 and CIDEr-D.

The definitions are those of the COCO caption toolkit (pycocoevalcap), against which the tests
check them: BLEU with the closest reference length for the brevity penalty and the toolkit's
tiny smoothing constants; CIDEr-D with document frequencies over the references of the scored
set, n = 1..4, length penalty sigma = 6, clipped candidate tf-idf and the factor 10. Tokens
are lower-case alphanumeric words (the world's captions carry no other punctuation that the
toolkit's PTB tokenizer would keep).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

MAX_N = 4
CIDER_SIGMA = 6.0
_TINY, _SMALL = 1e-15, 1e-9  # the toolkit's smoothing of empty n-gram counts


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _ngrams(tokens: Sequence[str], n_max: int = MAX_N) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for n in range(1, n_max + 1):
        for start in range(len(tokens) - n + 1):
            counts[tuple(tokens[start : start + n])] += 1
    return counts


def _check(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference sets")
    for index, refs in enumerate(references):
        if not refs:
            raise ValueError(f"reference set {index} is empty; every candidate needs at least one reference")


def corpus_bleu(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """[BLEU-1, ..., BLEU-4] of the whole set (n-gram counts summed over it, one brevity penalty)."""
    _check(candidates, references)
    guess, correct = [0] * MAX_N, [0] * MAX_N
    test_length = reference_length = 0
    for candidate, refs in zip(candidates, references):
        tokens = tokenize(candidate)
        ref_tokens = [tokenize(r) for r in refs]
        # the reference length closest to the candidate's (the shorter one on a tie)
        reference_length += min((abs(len(r) - len(tokens)), len(r)) for r in ref_tokens)[1]
        test_length += len(tokens)
        clip: Counter[tuple[str, ...]] = Counter()
        for r in ref_tokens:
            for gram, count in _ngrams(r).items():
                clip[gram] = max(clip[gram], count)
        for gram, count in _ngrams(tokens).items():
            correct[len(gram) - 1] += min(count, clip[gram])
        for n in range(MAX_N):
            guess[n] += max(0, len(tokens) - n)
    scores, product = [], 1.0
    ratio = (test_length + _TINY) / (reference_length + _SMALL)
    penalty = 1.0 if ratio >= 1.0 else math.exp(1.0 - 1.0 / ratio)
    for n in range(MAX_N):
        product *= (correct[n] + _TINY) / (guess[n] + _SMALL)
        scores.append(penalty * product ** (1.0 / (n + 1)))
    return scores


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    """CIDEr-D of the set and of each candidate; document frequencies come from the references
    of this set, so a score depends on the set it is computed over (as in the toolkit)."""
    _check(candidates, references)
    ref_counts = [[_ngrams(tokenize(r)) for r in refs] for refs in references]
    frequency: Counter[tuple[str, ...]] = Counter()
    for counts in ref_counts:
        for gram in set().union(*[c.keys() for c in counts]):
            frequency[gram] += 1
    log_images = math.log(float(len(candidates)))

    def vector(counts: Counter[tuple[str, ...]]) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
        vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(MAX_N)]
        norms = [0.0] * MAX_N
        length = 0
        for gram, term in counts.items():
            n = len(gram) - 1
            value = float(term) * (log_images - math.log(max(1.0, frequency[gram])))
            vec[n][gram] = value
            norms[n] += value * value
            if n == 1:  # the toolkit's length is the number of bigrams
                length += term
        return vec, [math.sqrt(v) for v in norms], length

    per_candidate = []
    for candidate, counts in zip(candidates, ref_counts):
        hyp, hyp_norm, hyp_length = vector(_ngrams(tokenize(candidate)))
        total = [0.0] * MAX_N
        for ref_count in counts:
            ref, ref_norm, ref_length = vector(ref_count)
            penalty = math.exp(-((hyp_length - ref_length) ** 2) / (2.0 * CIDER_SIGMA**2))
            for n in range(MAX_N):
                value = sum(min(weight, ref[n].get(gram, 0.0)) * ref[n].get(gram, 0.0) for gram, weight in hyp[n].items())
                if hyp_norm[n] != 0 and ref_norm[n] != 0:
                    value /= hyp_norm[n] * ref_norm[n]
                total[n] += value * penalty
        per_candidate.append(10.0 * sum(total) / MAX_N / len(counts))
    return sum(per_candidate) / len(per_candidate), per_candidate
