"""The clips benchmark: text <-> video retrieval and temporal grounding by soft alignment.

A clip is its sampled frames as image slices, a narration its sentences as text slices; each is
one document through the model's ordinary interleaved path, so the clip's embedding is that of
its last frame's prefix and the narration's that of its last sentence's prefix (method.md sec. 3).

Temporal grounding asks which frames each sentence is about. The expected alignment of GAK
(`sugar.align.soft_alignment`) between a clip's frame features and its sentence features gives,
for every (frame, sentence), the probability that an alignment path passes through it; from it:

- **accuracy**: the frame where a sentence's column is largest lies inside its gold span;
- **mean IoU**: a sentence's predicted span is the set of frames whose row is largest in its
  column (each frame goes to the sentence it aligns to most), scored by intersection over union
  with the gold frames.

Both ride on the monotone alignment path, which gets much of the way on order alone (below). An
order-free probe sits beside them:

- **localisation**: each sentence, embedded on its own, picks the frame, embedded on its own,
  nearest to it (cosine, the retrieval space); a hit when that frame lies in the sentence's span.
  Its chance level (the mean share of the clip a span covers) is reported with it.

Ties go to the earliest frame or sentence. Sentences with no sampled frame in their gold span
(possible after subsampling) are left out and counted. `uniform_alignment`, the clip cut into
equal runs in sentence order, is the baseline that knows nothing but the order: monotone
alignment gets that much for free.

Features: the model's are its prefix embeddings r at every slice of the clip document and of
the narration document (one forward pass each; the same cosine space it retrieves in), compared
with the squared Euclidean kernel; the teacher's are its Triple-Kernel slice features, so a frame
meets a sentence in the cross-modal part (as in the training targets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sugar.data.schema import ImageRef
from sugar.data.video import ClipRecord
from sugar.eval.metrics import recall_at_k

Span = tuple[int, int] | None


@dataclass(frozen=True)
class ClipItem:
    """One clip ready to score: sampled frames, sentences and each sentence's gold frames.

    `narrated`: the sentences are timed steps of one narration (YouCook2, the world); otherwise
    each is a caption of the whole clip (MSR-VTT), a text query of its own, with no grounding.
    """

    id: str
    frames: list[ImageRef]
    sentences: list[str]
    spans: list[Span]
    narrated: bool = True

    def __post_init__(self) -> None:
        if not self.frames or not self.sentences or len(self.spans) != len(self.sentences):
            raise ValueError(f"clip {self.id}: needs frames, sentences and one span per sentence")


def clip_items(records: Sequence[ClipRecord], num_frames: int | None, stride: int = 1, narrated: bool = True) -> list[ClipItem]:
    """Sample each record's frames (`num_frames` of every `stride`-th) and map its segments to them."""
    items = []
    for record in records:
        frames = record.frames(num_frames=num_frames, stride=stride)
        items.append(ClipItem(record.id, frames.images, record.sentences, frames.spans(record.segments), narrated))
    return items


# ----------------------------------------------------------------------------- grounding metric


def _first_argmax(values: Sequence[float]) -> int:
    best = 0
    for k, value in enumerate(values):
        if value > values[best]:
            best = k
    return best


def grounding_scores(alignment: Tensor | Sequence[Sequence[float]], spans: Sequence[Span]) -> dict[str, Any]:
    """Per-sentence grounding of one clip from its (frames, sentences) alignment (module docstring).

    Returns {"hits": [bool], "ious": [float], "predicted": [[frames]], "skipped": n} over the
    sentences that have a gold span, in order.
    """
    matrix = torch.as_tensor(alignment, dtype=torch.float64)
    if matrix.dim() != 2 or matrix.shape[1] != len(spans) or matrix.shape[0] == 0:
        raise ValueError(f"alignment must be (frames, sentences={len(spans)}), got {tuple(matrix.shape)}")
    rows, columns = matrix.tolist(), matrix.T.tolist()
    owner = [_first_argmax(row) for row in rows]  # the sentence each frame aligns to most
    hits: list[bool] = []
    ious: list[float] = []
    predicted: list[list[int]] = []
    skipped = 0
    for j, span in enumerate(spans):
        if span is None:
            skipped += 1
            continue
        first, last = span
        if not 0 <= first <= last < len(rows):
            raise ValueError(f"span {j} = {span} does not fit {len(rows)} frames")
        gold = set(range(first, last + 1))
        mine = {i for i, o in enumerate(owner) if o == j}
        hits.append(first <= _first_argmax(columns[j]) <= last)
        ious.append(len(gold & mine) / len(gold | mine))
        predicted.append(sorted(mine))
    return {"hits": hits, "ious": ious, "predicted": predicted, "skipped": skipped}


def _pooled_mean(per_clip: Sequence[dict[str, Any]], key: str) -> float:
    """The mean of `key` over every scored sentence of every clip (0 when none)."""
    values = [v for clip in per_clip for v in clip[key]]
    return sum(values) / len(values) if values else 0.0


def summarise_grounding(per_clip: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy and mean IoU over every scored sentence of every clip."""
    return {
        "accuracy": _pooled_mean(per_clip, "hits"),
        "mean_iou": _pooled_mean(per_clip, "ious"),
        "sentences": sum(len(clip["hits"]) for clip in per_clip),
        "skipped_sentences": sum(clip["skipped"] for clip in per_clip),
        "clips": len(per_clip),
    }


def localisation_scores(frames: Tensor, sentences: Tensor, spans: Sequence[Span]) -> dict[str, Any]:
    """Order-free grounding of one clip: (frames, d) and (sentences, d) unit vectors, each slice
    embedded alone; {"hits": [bool], "chance": [float]} over the sentences with a gold span."""
    if frames.dim() != 2 or sentences.dim() != 2 or sentences.shape[0] != len(spans):
        raise ValueError(f"expected (frames, d) and (sentences={len(spans)}, d), got {tuple(frames.shape)} and {tuple(sentences.shape)}")
    similarity = (sentences.double() @ frames.double().T).tolist()
    hits: list[bool] = []
    chance: list[float] = []
    for j, span in enumerate(spans):
        if span is None:
            continue
        first, last = span
        hits.append(first <= _first_argmax(similarity[j]) <= last)
        chance.append((last - first + 1) / frames.shape[0])
    return {"hits": hits, "chance": chance}


def summarise_localisation(per_clip: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "accuracy": _pooled_mean(per_clip, "hits"),
        "chance": _pooled_mean(per_clip, "chance"),
        "sentences": sum(len(clip["hits"]) for clip in per_clip),
    }


def uniform_alignment(frames: int, sentences: int) -> Tensor:
    """(frames, sentences) 0/1 matrix: frame i belongs to sentence floor(i * sentences / frames)."""
    if frames < 1 or sentences < 1:
        raise ValueError(f"frames and sentences must be >= 1, got {frames} and {sentences}")
    out = torch.zeros(frames, sentences, dtype=torch.float64)
    for i in range(frames):
        out[i, i * sentences // frames] = 1.0
    return out


# ----------------------------------------------------------------------------- features


@torch.no_grad()
def model_slice_embeddings(model: Any, documents: Sequence[Sequence[Any]], batch_size: int = 8) -> list[Tensor]:
    """(slices, head_dim) prefix embeddings r at every slice of each document, one forward each batch."""
    out: list[Tensor] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(documents), batch_size):
            chunk = [list(d) for d in documents[start : start + batch_size]]
            batch = model.processor(chunk).to(model.device)
            for k, truncated in enumerate(batch.truncated):
                if truncated:
                    raise ValueError(
                        f"document {start + k} ({len(chunk[k])} segments) does not fit the model's max_length "
                        f"({model.config.max_length} tokens); sample fewer frames (clip_frames / --clip-frames)"
                    )
            cuts = [list(range(len(spans))) for spans in batch.slices]
            embeddings = model(batch, cut_points=cuts).embeddings.float().cpu()
            offset = 0
            for document_cuts in cuts:
                out.append(embeddings[offset : offset + len(document_cuts)])
                offset += len(document_cuts)
    finally:
        model.train(was_training)
    return out


@dataclass
class ClipFeatures:
    """What one encoder gives the benchmark: clip and text vectors, and per-slice features with
    the kernel and the modality ids soft_alignment reads them with."""

    videos: Tensor  # (clips, d) L2-normalised
    texts: Tensor  # (texts, d) L2-normalised
    text_owner: list[int]  # the clip of each text
    frame_features: list[Tensor]  # per clip (frames, D)
    sentence_features: list[Tensor]  # per clip (sentences, D)
    kernel: Any  # a sugar.kernels LocalKernel
    uses_modality: bool
    frame_vectors: list[Tensor] | None = None  # per clip (frames, d): each frame embedded alone, unit
    sentence_vectors: list[Tensor] | None = None  # per clip (sentences, d): each sentence alone, unit


def _text_documents(items: Sequence[ClipItem]) -> tuple[list[list[Any]], list[int]]:
    """A narration is one document of all its sentences; a whole-clip caption is one document each."""
    documents: list[list[Any]] = []
    owner: list[int] = []
    for index, item in enumerate(items):
        groups = [item.sentences] if item.narrated else [[s] for s in item.sentences]
        documents += groups
        owner += [index] * len(groups)
    return documents, owner


def model_features(model: Any, items: Sequence[ClipItem], batch_size: int = 8) -> ClipFeatures:
    from sugar.kernels import SquaredEuclidean

    clips = model_slice_embeddings(model, [[f.load() for f in item.frames] for item in items], batch_size)
    narrations = model_slice_embeddings(model, [item.sentences for item in items], batch_size)
    documents, owner = _text_documents(items)
    if all(item.narrated for item in items):
        texts = torch.stack([n[-1] for n in narrations])
    else:
        texts = torch.stack([e[-1] for e in model_slice_embeddings(model, documents, batch_size)])
    alone_frames = _per_clip(
        [e[-1] for e in model_slice_embeddings(model, [[f.load()] for item in items for f in item.frames], batch_size)],
        [len(item.frames) for item in items],
    )
    alone_sentences = _per_clip(
        [e[-1] for e in model_slice_embeddings(model, [[s] for item in items for s in item.sentences], batch_size)],
        [len(item.sentences) for item in items],
    )
    return ClipFeatures(
        torch.stack([c[-1] for c in clips]), texts, owner, clips, narrations, SquaredEuclidean(), False,
        alone_frames, alone_sentences,
    )


def _per_clip(vectors: Sequence[Tensor], counts: Sequence[int]) -> list[Tensor]:
    """Flat per-slice vectors back into one normalised (slices, d) block per clip."""
    out, offset = [], 0
    for count in counts:
        out.append(torch.nn.functional.normalize(torch.stack(list(vectors[offset : offset + count])).float(), dim=-1))
        offset += count
    return out


def teacher_features(suite: Any, items: Sequence[ClipItem]) -> ClipFeatures:
    """The CLIP-style row: a clip is the normalised mean of its frames' cross-modal embeddings, a
    text the mean of its sentences' (as `TeacherEncoder` does); slices carry Triple-Kernel features."""
    from sugar.eval.benchmarks import TeacherEncoder

    encoder = TeacherEncoder(suite)
    frame_lists: list[list[Any]] = [[f.load() for f in item.frames] for item in items]
    documents, owner = _text_documents(items)
    videos = torch.cat([encoder.encode_documents(frame_lists[k : k + 64]) for k in range(0, len(items), 64)])
    texts = encoder.encode_documents(list(documents))
    frames = [suite.slice_features(f) for f in frame_lists]
    sentences = [suite.slice_features(item.sentences) for item in items]
    flat_frames = [[f] for clip in frame_lists for f in clip]
    alone_frames = torch.cat([encoder.encode_documents(flat_frames[k : k + 64]) for k in range(0, len(flat_frames), 64)])
    alone_sentences = encoder.encode_documents([[s] for item in items for s in item.sentences])
    return ClipFeatures(
        videos, texts, owner, frames, sentences, suite.kernel, True,
        _per_clip(list(alone_frames), [len(f) for f in frame_lists]),
        _per_clip(list(alone_sentences), [len(item.sentences) for item in items]),
    )


# ----------------------------------------------------------------------------- the benchmark


def alignments(features: ClipFeatures, sigma: float | None = None, delta: float | None = 1.0) -> list[Tensor]:
    """(frames, sentences) expected alignment of each clip (sigma, when given, replaces delta)."""
    from sugar.align import soft_alignment
    from sugar.kernels import IMAGE, TEXT

    out = []
    for frames, sentences in zip(features.frame_features, features.sentence_features):
        options: dict[str, Any] = {"sigma": sigma} if sigma is not None else {"delta": delta}
        if features.uses_modality:
            options["x_modality"] = torch.full((frames.shape[0],), IMAGE, dtype=torch.long)
            options["y_modality"] = torch.full((sentences.shape[0],), TEXT, dtype=torch.long)
        out.append(soft_alignment(frames.double(), sentences.double(), kernel=features.kernel, **options))
    return out


def evaluate_clips(
    features: ClipFeatures,
    items: Sequence[ClipItem],
    ks: Sequence[int] = (1, 5, 10),
    sigma: float | None = None,
    delta: float | None = 1.0,
) -> dict[str, Any]:
    """t2v / v2t recall@k, and grounding over the narrated clips (with each clip's alignment)."""
    similarity = features.texts @ features.videos.T
    texts_of: list[list[int]] = [[] for _ in items]
    for text, clip in enumerate(features.text_owner):
        texts_of[clip].append(text)
    result: dict[str, Any] = {
        "t2v": recall_at_k(similarity, [[o] for o in features.text_owner], ks),
        "v2t": recall_at_k(similarity.T, texts_of, ks),
    }
    narrated = [k for k, item in enumerate(items) if item.narrated and len(item.sentences) > 1]
    if narrated:
        matrices = alignments(features, sigma=sigma, delta=delta)
        per_clip = [grounding_scores(matrices[k], items[k].spans) for k in narrated]
        result["grounding"] = summarise_grounding(per_clip)
        result["alignments"] = {items[k].id: matrices[k] for k in narrated}
        if features.frame_vectors is not None and features.sentence_vectors is not None:
            result["localisation"] = summarise_localisation(
                [localisation_scores(features.frame_vectors[k], features.sentence_vectors[k], items[k].spans) for k in narrated]
            )
    return result


def uniform_grounding(items: Sequence[ClipItem]) -> dict[str, Any]:
    """The order-only baseline: each clip cut into equal runs, one per sentence."""
    chosen = [item for item in items if item.narrated and len(item.sentences) > 1]
    return summarise_grounding([grounding_scores(uniform_alignment(len(i.frames), len(i.sentences)), i.spans) for i in chosen])


def run_clips(
    items: Sequence[ClipItem],
    model_features_fn: Callable[[], ClipFeatures],
    teacher_features_fn: Callable[[], ClipFeatures] | None = None,
    sigma: float | None = None,
    delta: float | None = 1.0,
) -> dict[str, Any]:
    """The benchmark's result: the model's numbers, the teacher's under "teacher", the uniform
    grounding baseline, and one example clip's alignments for the picture."""
    if not items:
        raise ValueError("no clips to evaluate")
    model = evaluate_clips(model_features_fn(), items, sigma=sigma, delta=delta)
    teacher = evaluate_clips(teacher_features_fn(), items, sigma=sigma, delta=delta) if teacher_features_fn else None
    result: dict[str, Any] = {"clips": len(items), "frames": sum(len(i.frames) for i in items)}
    alignments_of = {"model": model.pop("alignments", {})}
    result.update(model)
    if teacher is not None:
        alignments_of["teacher"] = teacher.pop("alignments", {})
        result["teacher"] = teacher
    if "grounding" in result:
        result["uniform_grounding"] = uniform_grounding(items)
        example = next((i for i in items if i.narrated and len(i.sentences) >= 3), None) or next(
            i for i in items if i.narrated and len(i.sentences) > 1
        )
        result["example"] = {
            "id": example.id,
            "frames": [str(f.path) if f.path is not None else None for f in example.frames],
            "sentences": list(example.sentences),
            "spans": [list(s) if s is not None else None for s in example.spans],
            "alignment": {name: [[round(v, 4) for v in row] for row in found[example.id].tolist()] for name, found in alignments_of.items()},
        }
    return result
