"""Errors and the skip report of the data layer.

Every problem with input data raises `DataFormatError` (a `ValueError`) whose message says
where (file, line or record) and what was expected, so a bad record in a million-line file is
found in seconds. Skipping bad records is opt-in (`on_error="skip"`) and never silent: the
loader warns with the count (`SkippedRecordsWarning`) and, when given a `LoadReport`, lists
every skipped record in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class DataFormatError(ValueError):
    """Input data does not match its format; the message names the file, record and field."""


class ImageLoadError(DataFormatError):
    """An image file is missing, unreadable, corrupt or truncated; the message names the file."""


class SkippedRecordsWarning(UserWarning):
    """Emitted once per load when `on_error="skip"` dropped records; the message has the count."""


@dataclass(frozen=True)
class SkippedRecord:
    """One record dropped under `on_error="skip"`: where it was and why."""

    location: str  # e.g. "captions.jsonl:12" or "dataset_coco.json: images[3]"
    reason: str  # the message of the DataFormatError it raised


@dataclass
class LoadReport:
    """What one loader call read: pass one in to get the skipped records programmatically.

    The loader overwrites every field, so a report describes the last call it was passed to.
    """

    path: Path | None = None
    loaded: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)
