"""The document schema: every sample in the project is an ordered list of images and texts.

A caption pair, a VQA turn, a story and a web page are all `Document`s (method.md section 2), so
the teachers, the model and the losses see one type. Task records (`CaptionedImage`, `Story`,
`WinogroundItem`, `MMVPItem`, `Conversation`) keep what a benchmark needs beyond the sequence
(the pairing of Winoground, the roles of a dialogue) and convert to documents with
`to_documents()`.

Constructors validate: wrong types raise TypeError, empty or inconsistent values raise
DataFormatError naming the field. Images are referenced, not decoded: `ImageRef.load()` decodes
on demand, so a dataset of a million images costs a million paths, not a million bitmaps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from sugar.data.errors import DataFormatError
from sugar.data.images import open_rgb, to_rgb
from sugar.data.text import sentence_spans

Modality = Literal["image", "text"]
TextUnit = Literal["sentence", "segment"]
TEXT_UNITS: tuple[str, ...] = ("sentence", "segment")
IMAGE_TOKEN = "<image>"


class ImageRef:
    """An image segment: a file path (decoded on `load()`) or an in-memory PIL image.

    `ImageRef(x)` takes either; `ImageRef(path=...)` and `ImageRef(image=...)` say which.
    """

    __slots__ = ("_path", "_image")

    def __init__(
        self,
        source: str | os.PathLike[str] | Image.Image | None = None,
        /,
        *,
        path: str | os.PathLike[str] | None = None,
        image: Image.Image | None = None,
    ) -> None:
        given = [value for value in (source, path, image) if value is not None]
        if len(given) != 1:
            raise TypeError("ImageRef takes exactly one of: a positional source, path=, image=")
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"ImageRef path= expects a str or os.PathLike, got {type(path).__name__}")
        if image is not None and not isinstance(image, Image.Image):
            raise TypeError(f"ImageRef image= expects a PIL image, got {type(image).__name__}")
        source = given[0]
        self._path: Path | None = None
        self._image: Image.Image | None = None
        if isinstance(source, Image.Image):
            self._image = source
        elif isinstance(source, (str, os.PathLike)):
            if not os.fspath(source):
                raise DataFormatError("ImageRef path is empty")
            self._path = Path(source)
        else:
            raise TypeError(f"ImageRef expects a file path or a PIL image, got {type(source).__name__}")

    @property
    def path(self) -> Path | None:
        """The file, or None for an in-memory image."""
        return self._path

    @property
    def image(self) -> Image.Image | None:
        """The in-memory image as given (any mode), or None for a file reference."""
        return self._image

    def load(self) -> Image.Image:
        """Decode to a new RGB image; ImageLoadError names the file if it is missing or broken."""
        if self._image is not None:
            rgb = to_rgb(self._image)
            return rgb.copy() if rgb is self._image else rgb
        assert self._path is not None
        return open_rgb(self._path)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageRef):
            return NotImplemented
        if self._path is not None:
            return self._path == other._path
        return self._image is other._image

    def __hash__(self) -> int:
        return hash(self._path) if self._path is not None else id(self._image)

    def __repr__(self) -> str:
        if self._path is not None:
            return f"ImageRef({str(self._path)!r})"
        assert self._image is not None
        return f"ImageRef(<PIL {self._image.mode} {self._image.width}x{self._image.height}>)"


Segment = str | ImageRef


@dataclass(frozen=True)
class Slice:
    """One unit of the teacher's slice sequence: an image, or a sentence (or whole text segment)."""

    modality: Modality
    segment: int  # index of the segment it comes from in Document.segments
    content: str | ImageRef
    span: tuple[int, int] | None = None  # [start, end) characters in that text segment; None for images


def _check_text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise DataFormatError(f"{name}: expected a non-empty text, got {value!r}")
    return value


def _check_image(value: object, name: str) -> ImageRef:
    if not isinstance(value, ImageRef):
        raise TypeError(f"{name}: expected an ImageRef, got {type(value).__name__}")
    return value


def _check_meta(value: object, name: str = "meta") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{name}: expected a dict, got {type(value).__name__}")
    return value


def _check_id(value: object, name: str = "id") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    return value


@dataclass
class Document:
    """An ordered, non-empty sequence of text (str) and image (ImageRef) segments.

    Strings are always text: pass file paths as `pathlib.Path` through `from_items`, or wrap
    them in `ImageRef`, so a caption is never mistaken for a file name.
    """

    segments: list[Segment]
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.segments, (list, tuple)):
            raise TypeError(f"Document.segments: expected a list, got {type(self.segments).__name__}")
        self.segments = list(self.segments)
        if not self.segments:
            raise DataFormatError("Document.segments: expected at least one text or image segment, got none")
        for index, segment in enumerate(self.segments):
            if isinstance(segment, str):
                _check_text(segment, f"Document.segments[{index}]")
            elif not isinstance(segment, ImageRef):
                raise TypeError(
                    f"Document.segments[{index}]: expected str (text) or ImageRef (image), got "
                    f"{type(segment).__name__}; Document.from_items also accepts PIL images and Paths"
                )
        _check_id(self.id, "Document.id")
        _check_meta(self.meta, "Document.meta")

    @classmethod
    def from_items(
        cls,
        items: list[str | ImageRef | Image.Image | os.PathLike[str]],
        id: str = "",
        meta: dict[str, Any] | None = None,
    ) -> Document:
        """Build from what users hold: str is text; PIL images and Path-likes are images."""
        segments: list[Segment] = []
        for index, item in enumerate(items):
            if isinstance(item, (str, ImageRef)):
                segments.append(item)
            elif isinstance(item, (Image.Image, os.PathLike)):
                segments.append(ImageRef(item))
            else:
                raise TypeError(
                    f"item {index}: expected str (text), PIL image, Path or ImageRef, "
                    f"got {type(item).__name__}"
                )
        return cls(segments, id=id, meta={} if meta is None else meta)

    @property
    def modalities(self) -> list[Modality]:
        return ["text" if isinstance(s, str) else "image" for s in self.segments]

    @property
    def texts(self) -> list[str]:
        return [s for s in self.segments if isinstance(s, str)]

    @property
    def images(self) -> list[ImageRef]:
        return [s for s in self.segments if isinstance(s, ImageRef)]

    def image_refs(self) -> list[ImageRef]:
        """Every image this record references (the same protocol as the task records)."""
        return self.images

    def to_documents(self) -> list[Document]:
        return [self]

    def slices(self, text_unit: TextUnit = "sentence") -> list[Slice]:
        """The slice sequence of method.md section 2: each image, and each sentence or text segment."""
        if text_unit not in TEXT_UNITS:
            raise ValueError(f"text_unit: expected one of {TEXT_UNITS}, got {text_unit!r}")
        result: list[Slice] = []
        for index, segment in enumerate(self.segments):
            if isinstance(segment, ImageRef):
                result.append(Slice("image", index, segment))
            elif text_unit == "segment":
                start = len(segment) - len(segment.lstrip())
                end = len(segment.rstrip())
                result.append(Slice("text", index, segment[start:end], (start, end)))
            else:
                for start, end in sentence_spans(segment):
                    result.append(Slice("text", index, segment[start:end], (start, end)))
        return result


@dataclass
class CaptionedImage:
    """An image with its reference captions (COCO / Flickr30k Karpathy split)."""

    image: ImageRef
    captions: list[str]
    split: str = ""
    image_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_image(self.image, "CaptionedImage.image")
        if not isinstance(self.captions, list):
            raise TypeError(f"CaptionedImage.captions: expected a list, got {type(self.captions).__name__}")
        if not self.captions:
            raise DataFormatError("CaptionedImage.captions: expected at least one caption, got none")
        for index, caption in enumerate(self.captions):
            _check_text(caption, f"CaptionedImage.captions[{index}]")
        _check_id(self.split, "CaptionedImage.split")
        _check_id(self.image_id, "CaptionedImage.image_id")
        _check_meta(self.meta, "CaptionedImage.meta")

    def image_refs(self) -> list[ImageRef]:
        return [self.image]

    def to_documents(self) -> list[Document]:
        """One [image, caption] document per caption, id "<image_id>#<caption index>"."""
        return [
            Document(
                [self.image, caption],
                id=f"{self.image_id}#{index}",
                meta={"image_id": self.image_id, "caption_index": index, "split": self.split},
            )
            for index, caption in enumerate(self.captions)
        ]


@dataclass
class Story:
    """A visual story: ordered (image, sentence) steps (VIST SIS, the project's stories)."""

    id: str
    steps: list[tuple[ImageRef, str]]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id(self.id, "Story.id")
        if not isinstance(self.steps, list):
            raise TypeError(f"Story.steps: expected a list, got {type(self.steps).__name__}")
        if not self.steps:
            raise DataFormatError("Story.steps: expected at least one (image, text) step, got none")
        for index, step in enumerate(self.steps):
            if not isinstance(step, tuple) or len(step) != 2:
                raise TypeError(f"Story.steps[{index}]: expected an (ImageRef, str) tuple, got {step!r}")
            _check_image(step[0], f"Story.steps[{index}][0]")
            _check_text(step[1], f"Story.steps[{index}][1]")
        _check_meta(self.meta, "Story.meta")

    @property
    def images(self) -> list[ImageRef]:
        return [image for image, _ in self.steps]

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.steps]

    def image_refs(self) -> list[ImageRef]:
        return self.images

    def to_document(self) -> Document:
        """image_1, text_1, image_2, text_2, ...: each sentence follows the photo it describes."""
        segments: list[Segment] = []
        for image, text in self.steps:
            segments += [image, text]
        return Document(segments, id=self.id, meta=dict(self.meta))

    def to_documents(self) -> list[Document]:
        return [self.to_document()]


@dataclass
class WinogroundItem:
    """Two captions with the same words in a different order, and the image each one describes."""

    id: str
    caption_0: str
    caption_1: str
    image_0: ImageRef
    image_1: ImageRef
    tag: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id(self.id, "WinogroundItem.id")
        _check_text(self.caption_0, "WinogroundItem.caption_0")
        _check_text(self.caption_1, "WinogroundItem.caption_1")
        _check_image(self.image_0, "WinogroundItem.image_0")
        _check_image(self.image_1, "WinogroundItem.image_1")
        _check_id(self.tag, "WinogroundItem.tag")
        _check_meta(self.meta, "WinogroundItem.meta")

    def image_refs(self) -> list[ImageRef]:
        return [self.image_0, self.image_1]

    def to_documents(self) -> list[Document]:
        """The two matching pairs [image_0, caption_0] and [image_1, caption_1]."""
        return [
            Document([self.image_0, self.caption_0], id=f"{self.id}/0", meta={"tag": self.tag}),
            Document([self.image_1, self.caption_1], id=f"{self.id}/1", meta={"tag": self.tag}),
        ]


@dataclass
class MMVPItem:
    """An MMVP-VLM pair: two images differing in one visual pattern (`type`), one statement each.

    statement_k describes image_k; a model passes the pair when it matches both the right way.
    """

    id: str
    type: str
    statement_0: str
    statement_1: str
    image_0: ImageRef
    image_1: ImageRef
    question_ids: tuple[str, str] = ("", "")
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id(self.id, "MMVPItem.id")
        _check_text(self.type, "MMVPItem.type")
        _check_text(self.statement_0, "MMVPItem.statement_0")
        _check_text(self.statement_1, "MMVPItem.statement_1")
        _check_image(self.image_0, "MMVPItem.image_0")
        _check_image(self.image_1, "MMVPItem.image_1")
        if not isinstance(self.question_ids, tuple) or len(self.question_ids) != 2:
            raise TypeError(f"MMVPItem.question_ids: expected a pair of strings, got {self.question_ids!r}")
        _check_meta(self.meta, "MMVPItem.meta")

    def image_refs(self) -> list[ImageRef]:
        return [self.image_0, self.image_1]

    def to_documents(self) -> list[Document]:
        """The two matching pairs [image_0, statement_0] and [image_1, statement_1]."""
        return [
            Document([self.image_0, self.statement_0], id=f"{self.id}/0", meta={"type": self.type}),
            Document([self.image_1, self.statement_1], id=f"{self.id}/1", meta={"type": self.type}),
        ]


CONVERSATION_ROLES: tuple[str, str] = ("human", "gpt")


@dataclass
class Conversation:
    """A LLaVA instruction sample: alternating human / gpt turns, optionally about one image.

    With an image, exactly one human turn carries the `<image>` placeholder where the visual
    tokens go; without one, no turn may carry it (LLaVA's rule; a mismatch misaligns training).
    """

    id: str
    image: ImageRef | None
    turns: list[tuple[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id(self.id, "Conversation.id")
        if self.image is not None:
            _check_image(self.image, "Conversation.image")
        if not isinstance(self.turns, list):
            raise TypeError(f"Conversation.turns: expected a list, got {type(self.turns).__name__}")
        if not self.turns:
            raise DataFormatError("Conversation.turns: expected at least one turn, got none")
        placeholders = 0
        for index, turn in enumerate(self.turns):
            if not isinstance(turn, tuple) or len(turn) != 2:
                raise TypeError(f"Conversation.turns[{index}]: expected a (role, text) tuple, got {turn!r}")
            role, text = turn
            expected = CONVERSATION_ROLES[index % 2]
            if role != expected:
                raise DataFormatError(
                    f"Conversation.turns[{index}]: expected role {expected!r} (turns alternate "
                    f"human, gpt, ...), got {role!r}"
                )
            _check_text(text, f"Conversation.turns[{index}] text")
            count = text.count(IMAGE_TOKEN)
            if count and role != "human":
                raise DataFormatError(
                    f"Conversation.turns[{index}]: {IMAGE_TOKEN} may only appear in a human turn"
                )
            placeholders += count
        wanted = 0 if self.image is None else 1
        if placeholders != wanted:
            raise DataFormatError(
                f"Conversation.turns: expected {wanted} {IMAGE_TOKEN} placeholder(s) "
                f"({'no image' if self.image is None else 'one image'}), found {placeholders}"
            )
        _check_meta(self.meta, "Conversation.meta")

    def image_refs(self) -> list[ImageRef]:
        return [] if self.image is None else [self.image]

    def to_document(self) -> Document:
        """Each turn's text as a segment, the image in place of `<image>`.

        Roles are dropped: marking turns is the model's chat template's job, not the document's.
        """
        segments: list[Segment] = []
        for _, text in self.turns:
            before, token, after = text.partition(IMAGE_TOKEN)
            if token and self.image is not None:
                if before.strip():
                    segments.append(before.strip())
                segments.append(self.image)
                if after.strip():
                    segments.append(after.strip())
            else:
                segments.append(text.strip())
        return Document(segments, id=self.id, meta=dict(self.meta))

    def to_documents(self) -> list[Document]:
        return [self.to_document()]
