"""Scores kept beside the results with the recipe that made them.

A study that spans several sittings (`sugar ablate`, `sugar balance`) cannot count on its run
folders surviving: each finished row's scores are written under the results folder (to be
committed as they come) with a record of everything that decided them, and a later run reuses a
kept row only when its own recipe is the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sugar.checks import UsageError
from sugar.fileio import atomic_write_text


def keep_scores(path: Path, scores: dict[str, Any], recipe: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps({**scores, "recipe": recipe}, indent=2))


def kept_scores(path: Path, recipe: dict[str, Any]) -> dict[str, Any] | None:
    """The scores kept in `path` if `recipe` made them; None if absent or made otherwise."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not valid JSON ({error.msg}, line {error.lineno}); delete it to re-run the row") from None
    if not isinstance(record, dict):
        raise UsageError(f"{path}: expected a JSON object of scores; delete it to re-run the row")
    # JSON turns tuples into lists and int keys into strings: compare in JSON form
    if json.loads(json.dumps(recipe)) != record.pop("recipe", None):
        return None
    return record
