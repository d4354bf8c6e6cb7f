"""The demo's pictures: training curves, M_r beside M_l for one batch, and the soft alignment
of two interleaved documents over their slices. Each is drawn from a finished demo folder."""

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
