"""Shared reading and validation machinery of the loaders.

Field checks raise DataFormatError naming the field and what was expected; `RecordRun` prefixes
the record's location (file and line, or file and index) and applies the `on_error` policy, so
every loader reports errors the same way.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from sugar.data.errors import (
    DataFormatError,
    ImageLoadError,
    LoadReport,
    SkippedRecord,
    SkippedRecordsWarning,
)
from sugar.data.schema import ImageRef

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("raise", "skip")


class HasImages(Protocol):
    def image_refs(self) -> list[ImageRef]: ...


R = TypeVar("R", bound=HasImages)


def annotation_file(path: str | os.PathLike[str]) -> Path:
    """The annotation file as a Path; FileNotFoundError names it when it does not exist."""
    result = Path(path)
    if not result.is_file():
        raise FileNotFoundError(f"annotation file not found: {result}")
    return result


def image_directory(path: str | os.PathLike[str]) -> Path:
    """The image root as a Path; FileNotFoundError names it when it is not a directory."""
    result = Path(path)
    if not result.is_dir():
        raise FileNotFoundError(f"image_root is not a directory: {result}")
    return result


def read_json(path: Path) -> Any:
    """Parse a whole JSON file; errors name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not UTF-8 text ({error})") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFormatError(
            f"{path}:{error.lineno}: invalid JSON at column {error.colno}: {error.msg}"
        ) from error


def jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes) of every non-blank line; parse each with `parse_json_line`."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield number, raw


def parse_json_line(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataFormatError(f"not UTF-8 text ({error})") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFormatError(f"invalid JSON at column {error.colno}: {error.msg}") from error


def describe(value: Any) -> str:
    """A short "type (value)" description for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = "null" if value is None else type(value).__name__
    return f"{kind} {text}"


def expect_object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataFormatError(f"{name}: expected a JSON object, got {describe(value)}")
    return value


def expect_list(value: Any, name: str, *, non_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise DataFormatError(f"{name}: expected a list, got {describe(value)}")
    if non_empty and not value:
        raise DataFormatError(f"{name}: expected a non-empty list, got []")
    return value


def expect_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataFormatError(f"{name}: expected a non-empty string, got {describe(value)}")
    return value


def expect_string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise DataFormatError(f"{name}: expected a string, got {describe(value)}")
    return value


def expect_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataFormatError(f"{name}: expected an integer, got {describe(value)}")
    return value


def expect_identifier(value: Any, name: str) -> str:
    """An id written as a string or an integer (datasets use both); returned as a string."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise DataFormatError(f"{name}: expected a non-empty string or an integer id, got {describe(value)}")
    return str(value)


def require(obj: dict[str, Any], key: str, prefix: str = "") -> Any:
    """obj[key], or a DataFormatError naming the missing field and the keys that are there."""
    if key not in obj:
        present = ", ".join(sorted(map(str, obj))) or "none"
        raise DataFormatError(f"missing field '{prefix}{key}' (fields present: {present})")
    return obj[key]


def image_file(image_root: Path, relative: str, name: str, *, allow_absolute: bool = False) -> ImageRef:
    """An existing image file under `image_root`; checked now (cheap), decoded later."""
    if os.path.isabs(relative) and not allow_absolute:
        raise DataFormatError(f"{name}: image path {relative!r} must be relative to image_root")
    # os.path here: loaders call this once per record, hundreds of thousands of times
    joined = os.path.join(image_root, relative)
    if not os.path.isfile(joined):
        raise ImageLoadError(f"{name}: image file not found: {joined}")
    return ImageRef(Path(joined))


def find_image(directory: Path, stem: str, extensions: tuple[str, ...], name: str) -> ImageRef:
    """The one file `directory/<stem><ext>` for ext in `extensions`; none or several is an error."""
    candidates = [directory / f"{stem}{extension}" for extension in extensions]
    found = [path for path in candidates if path.is_file()]
    if not found:
        tried = ", ".join(str(path) for path in candidates)
        raise ImageLoadError(f"{name}: image file not found for {stem!r} (tried {tried})")
    if len(found) > 1:
        raise DataFormatError(
            f"{name}: several image files for {stem!r}: {', '.join(map(str, found))}; keep exactly one"
        )
    return ImageRef(found[0])


def check_on_error(on_error: str) -> OnError:
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error: expected one of {ON_ERROR_CHOICES}, got {on_error!r}")
    return on_error  # type: ignore[return-value]


class RecordRun:
    """Builds the records of one file, applying the on_error policy and image verification."""

    def __init__(
        self,
        path: Path,
        on_error: str,
        verify_images: bool,
        report: LoadReport | None,
        *,
        unique_key: Callable[[Any], str] | None = None,
    ) -> None:
        self.path = path
        self.on_error = check_on_error(on_error)
        self.verify_images = verify_images
        self.report = report
        self.unique_key = unique_key  # records whose key repeats an earlier one are errors
        self.skipped: list[SkippedRecord] = []
        self.seen_ids: dict[str, str] = {}

    def build(self, location: str, make: Callable[..., R], *args: Any) -> R | None:
        """make(*args), verified; on error raise (with `location`) or record the skip."""
        try:
            record = make(*args)
            if self.verify_images:
                for ref in record.image_refs():
                    ref.load()
            if self.unique_key is not None:
                record_id = self.unique_key(record)
                if record_id in self.seen_ids:
                    raise DataFormatError(
                        f"duplicate id {record_id!r} (first used at {self.seen_ids[record_id]})"
                    )
                self.seen_ids[record_id] = location
            return record
        except DataFormatError as error:
            if self.on_error == "raise":
                raise type(error)(f"{location}: {error}") from error
            self.skipped.append(SkippedRecord(location, str(error)))
            return None

    def skip_or_raise(self, location: str, error: DataFormatError) -> None:
        """For errors found outside `build` (e.g. while grouping): same policy."""
        if self.on_error == "raise":
            raise type(error)(f"{location}: {error}") from error
        self.skipped.append(SkippedRecord(location, str(error)))

    def finish(self, records: list[R]) -> list[R]:
        """Fill the report and warn with the skip count; a load never drops records silently."""
        if self.report is not None:
            self.report.path = self.path
            self.report.loaded = len(records)
            self.report.skipped = list(self.skipped)
        if self.skipped:
            first = self.skipped[0]
            warnings.warn(
                SkippedRecordsWarning(
                    f"{self.path}: skipped {len(self.skipped)} bad record(s) because on_error='skip' "
                    f"(loaded {len(records)}); first: {first.location}: {first.reason}"
                ),
                stacklevel=3,
            )
        return records
