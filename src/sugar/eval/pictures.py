"""The demo's pictures: training curves, M_r beside M_l for one batch, and the soft alignment
of two interleaved documents over their slices. Each is drawn from a finished demo folder.
Beside them, `clip_alignment` draws one world clip's frames against its narration's sentences
(`sugar eval --bench clips` draws the same picture for the model it evaluates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sugar.eval.plots import plot_similarity_matrices, plot_soft_alignment, plot_training_curves

# The batch drawn for M_r / M_l: a few caption pairs (each in both orders) and stories, so the
# picture shows both the same-document blocks and the matched image / caption pairs.
PICTURE_MIX = {"captions": 6, "stories": 2}


def training_curves(out: Path, pictures: Path) -> Path:
    logs = {stage: out / stage / "train_log.csv" for stage in ("align", "base", "sugar") if (out / stage / "train_log.csv").is_file()}
    return plot_training_curves(logs, pictures / "training_curves.png")


def _prefix_label(example_id: str, kind: str, view: tuple[Any, ...], cut: int) -> str:
    order = "".join("I" if not isinstance(s, str) else "T" for s in view[: cut + 1])
    return f"{kind[:3]} {example_id[-4:]} {order}"


@torch.no_grad()
def similarity_matrices(out: Path, pictures: Path, model: Any, suite: Any, config: dict[str, Any]) -> Path:
    """M_r (the Sugar model's cosines) beside M_l (the teacher's GAK targets) for one batch."""
    from sugar.train.config import config_from_dict
    from sugar.train.examples import load_world_examples
    from sugar.train.losses import alignment_targets
    from sugar.train.mixture import BatchStream
    from sugar.train.recipe import SliceTeacher, document_seed, load_image, prefix_slices, sample_cut_points

    settings = config_from_dict(config, "the sugar stage's config.json")
    pools = load_world_examples(out / "world", "test", list(PICTURE_MIX))
    examples = BatchStream(pools, PICTURE_MIX, settings.seed, paired=("captions",)).batch(0)
    documents = [[load_image(s) if not isinstance(s, str) else s for s in segments] for _, segments, _ in examples]
    batch = model.processor(documents, max_length=settings.max_length)
    seeds = [document_seed(settings.seed, 0, example.id) for example, _, _ in examples]
    cuts = sample_cut_points([len(s) for s in batch.slices], settings.prefixes_per_document, seeds)
    model.eval()
    embeddings = model(batch, cut_points=cuts, return_embeddings=True).embeddings
    teacher = SliceTeacher(suite, settings.teacher_kernel)
    ids = [example.id for example, _, _ in examples] if settings.pair_target == "one" else None
    prefixes = prefix_slices(batch.slices, cuts, teacher, document_offset=0, document_ids=ids)
    targets = alignment_targets(prefixes, teacher.kernel, delta=settings.delta, structure=settings.target_structure)
    labels = [
        _prefix_label(example.id, example.kind, segments, cut)
        for (example, segments, _), document_cuts in zip(examples, cuts)
        for cut in document_cuts
    ]
    return plot_similarity_matrices(
        embeddings @ embeddings.T, targets, pictures / "similarity_matrices.png", labels=labels,
        title="one test batch: caption pairs in both orders, then stories",
    )


def story_alignment(out: Path, pictures: Path, suite: Any, delta: float) -> Path:
    """The expected GAK alignment between the first two test stories, drawn over their slices."""
    from sugar.align import soft_alignment
    from sugar.data import load_interleaved
    from sugar.kernels import IMAGE, TEXT

    stories = load_interleaved(out / "world" / "stories" / "test.jsonl", out / "world")[:2]
    if len(stories) < 2:
        raise ValueError(f"{out / 'world' / 'stories' / 'test.jsonl'}: need two stories for the alignment picture")
    sides = []
    for story in stories:
        slices = [item.load() if not isinstance(item, str) else item for item in (s.content for s in story.slices())]
        features = suite.slice_features(slices)
        modality = torch.tensor([TEXT if isinstance(s, str) else IMAGE for s in slices])
        sides.append((slices, features, modality))
    (x_slices, x, x_modality), (y_slices, y, y_modality) = sides
    alignment = soft_alignment(
        x.double(), y.double(), delta=delta, kernel=suite.kernel, x_modality=x_modality, y_modality=y_modality
    )
    return plot_soft_alignment(
        alignment, x_slices, y_slices, pictures / "story_alignment.png",
        title=f"{stories[0].id} against {stories[1].id}: expected alignment under the Triple Kernel",
    )


def plot_clip_alignment(
    panels: dict[str, Any],
    frames: list[Any],
    sentences: list[str],
    spans: list[Any],
    out: Path,
    title: str = "",
) -> Path:
    """Expected alignment of one clip, frames down (thumbnails), sentences across, one panel per
    encoder; each sentence's gold frames are outlined and the frame it aligns to most is dotted.

    `frames` are PIL images (or labels when a frame cannot be shown); `spans[j]` is sentence j's
    gold (first, last) frame, or None.
    """
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox
    from matplotlib.patches import Rectangle
    from PIL import Image

    from sugar.eval.plots import _as_matrix, _check_out, _plain, _save, _thumbnail, _wrap

    out = _check_out(out)
    n, m = len(frames), len(sentences)
    if not panels or n == 0 or m == 0 or len(spans) != m:
        raise ValueError(f"need at least one panel, frames, sentences and one span per sentence; got {len(panels)}, {n}, {m}, {len(spans)}")
    matrices = {name: _as_matrix(matrix, f"panels[{name!r}]") for name, matrix in panels.items()}
    for name, matrix in matrices.items():
        if matrix.shape != (n, m):
            raise ValueError(f"panels[{name!r}] must be (frames={n}, sentences={m}), got {matrix.shape}")
    cell = min(0.45, 7.0 / n)  # inches per heatmap cell
    thumb_pt = 0.9 * cell * 72
    legend = "\n".join(_wrap(f"{j + 1}. {text}", 90, 2) for j, text in enumerate(sentences))
    left, gap, right, bottom = 0.8, 0.35, 0.3, 0.45
    top = 0.75 + 0.16 * (legend.count("\n") + 1)
    width = left + len(matrices) * (m * cell + gap) + right
    width = max(width, 6.5)
    height = top + n * cell + bottom
    figure = Figure(figsize=(width, height))
    x = left
    for number, (name, matrix) in enumerate(matrices.items()):
        ax = figure.add_axes((x / width, bottom / height, m * cell / width, n * cell / height))
        ax.imshow(matrix / max(float(matrix.max()), 1e-12), cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
        ax.set_xticks(range(m), [str(j + 1) for j in range(m)], fontsize=7)
        ax.set_yticks(range(n), [str(i + 1) for i in range(n)], fontsize=6)
        ax.yaxis.tick_right()
        if number < len(matrices) - 1:
            ax.set_yticklabels([])
        ax.set_title(_plain(name), fontsize=8)
        ax.tick_params(length=2)
        for j, span in enumerate(spans):
            if span is not None:
                first, last = span
                ax.add_patch(Rectangle((j - 0.5, first - 0.5), 1, last - first + 1, fill=False, edgecolor="crimson", linewidth=1.6))
            ax.plot([j], [int(matrix[:, j].argmax())], marker="o", markersize=3.5, color="orange")
        if number == 0:
            for i, frame in enumerate(frames):
                if isinstance(frame, Image.Image):
                    box = AnnotationBbox(_thumbnail(frame, thumb_pt), (0, i), xycoords=("axes fraction", "data"),
                                         xybox=(-(thumb_pt / 2 + 3), 0), boxcoords="offset points", frameon=False)
                    ax.add_artist(box)
                else:
                    ax.annotate(_plain(str(frame)), (0, i), xycoords=("axes fraction", "data"), xytext=(-3, 0),
                                textcoords="offset points", ha="right", va="center", fontsize=6)
        x += m * cell + gap
    heading = _plain(title) if title else "Soft alignment of one clip"
    figure.text(0.02, 1 - 0.08 / height, heading, ha="left", va="top", fontsize=9)
    figure.text(0.02, 1 - 0.3 / height, "frames down, sentences across; outline: gold frames; dot: the frame each "
                "sentence aligns to most", ha="left", va="top", fontsize=7, color="dimgray")
    figure.text(0.02, 1 - 0.52 / height, legend, ha="left", va="top", fontsize=7)
    return _save(figure, out)


def clip_alignment(out: Path, pictures: Path, suite: Any, delta: float, split: str = "test") -> Path:
    """The teacher's expected alignment between the first narrated test clip (three sentences or
    more) and its narration, over its frames, with the gold spans: the clip beside the stories."""
    from sugar.data import load_youcook2
    from sugar.eval.clips import alignments, clip_items, teacher_features

    world = out / "world"
    records = load_youcook2(world / "clips" / f"youcookii_annotations_{split}.json", world / "clips" / split, split=split)
    chosen = next((r for r in records if len(r.segments) >= 3), None) or records[0]
    (item,) = clip_items([chosen], num_frames=None)
    (alignment,) = alignments(teacher_features(suite, [item]), delta=delta)
    return plot_clip_alignment(
        {"teacher (Triple Kernel)": alignment}, [f.load() for f in item.frames], item.sentences, item.spans,
        pictures / "clip_alignment.png", title=f"{item.id} against its narration",
    )


def demo_pictures(out: Path) -> dict[str, str]:
    """Draw every picture of a finished demo folder into OUT/pictures; {name: path relative to OUT}."""
    import json

    from sugar.models import SugarModel
    from sugar.teachers import TeacherSuite

    pictures = out / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    config = json.loads((out / "sugar" / "config.json").read_text())
    suite = TeacherSuite.load(out / "teachers")
    model = SugarModel.from_pretrained(out / "sugar" / "model", vision_cache_dir=str(out / "vision-cache"))
    drawn = {
        "training curves (L_g, L_d)": training_curves(out, pictures),
        "M_r beside M_l for one batch": similarity_matrices(out, pictures, model, suite, config),
        "soft alignment of two stories": story_alignment(out, pictures, suite, float(config.get("delta", 1.0))),
    }
    return {name: str(path.relative_to(out)) for name, path in drawn.items()}
