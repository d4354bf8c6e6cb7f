"""Sentence splitting for text slices (method.md section 2: a slice is one sentence by default).

A small rule-based splitter, not a linguistic one: the teacher kernels only need stable, sensible
units, and a dependency-free splitter behaves identically on every machine. Rules:

- a line break always ends a sentence (list items, dialogue lines, captions one per line);
- `.`, `!`, `?` (possibly repeated, possibly followed by closing quotes or brackets) end a
  sentence when whitespace follows and the next word does not start with a lower-case letter;
- a period after a known abbreviation ("Mr.", "e.g.", "etc.") or a single capital initial
  ("J. Smith") does not end a sentence, nor does a leading list number ("1. Take ...").

Offsets are returned so the model side can find the last token of each slice in the tokenised
segment (method.md section 3).
"""

from __future__ import annotations

import re

_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "cf", "al"}
    | {"approx", "fig", "no", "vol", "inc", "ltd", "co"}
)
_BOUNDARY = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)")
_WORD_BEFORE = re.compile(r"(\S+)$")


def _line_sentence_ends(line: str) -> list[int]:
    """End offsets (exclusive) of the sentence boundaries inside one line, excluding its end."""
    ends = []
    sentence_start = 0
    for match in _BOUNDARY.finditer(line):
        rest = line[match.end() :].lstrip()
        if not rest or rest[0].islower():
            continue
        word = _WORD_BEFORE.search(line[sentence_start : match.end()])
        token = word.group(1) if word else ""
        bare = token.rstrip("\"'\u201d\u2019)]").rstrip(".!?").lower()
        if match.group(0).startswith(".") and (
            bare in _ABBREVIATIONS
            or (len(bare) == 1 and bare.isalpha())
            or (bare.isdigit() and not line[sentence_start : match.start()].strip(" 0123456789"))
        ):
            continue
        ends.append(match.end())
        sentence_start = match.end()
    return ends


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of the sentences of `text`, stripped of surrounding spaces."""
    spans = []
    offset = 0
    for line in text.splitlines(keepends=True):
        cuts = [0, *_line_sentence_ends(line), len(line)]
        for start, end in zip(cuts[:-1], cuts[1:], strict=True):
            piece = line[start:end]
            stripped = piece.strip()
            if stripped:
                lead = len(piece) - len(piece.lstrip())
                spans.append((offset + start + lead, offset + start + lead + len(stripped)))
        offset += len(line)
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, in order, each stripped; an all-whitespace text has none."""
    return [text[start:end] for start, end in sentence_spans(text)]
