"""Where does each L_d pull? Why the paper's MSE learns retrieval slower than the InfoNCE.

    python benchmarks/loss_focus.py --world runs/demo/world --teachers runs/demo/teachers \
        base=runs/demo/base/model sugar=runs/demo/sugar/model mse=runs/demo/sugar-mse/model

At the demo's alpha the MSE's L_d has the larger gradient of the two losses (results/loss_balance.md),
yet in 500 steps it learns a tenth of the InfoNCE's retrieval. Retrieval only needs each prefix's
positive (the other view of its image-caption pair) ranked above the other documents; L_d also
regresses every other entry of the similarity matrix. This draws the sugar stage's batches as
`sugar train` does, embeds their prefixes with each model (no training) and splits the gradient of
each loss on the cosine matrix M_r by the pairs it falls on:

- positives: other prefixes of the same item (the pairs retrieval must rank first);
- rivals: other-document prefixes the model ranks at or above the row's weakest positive (the pairs
  that cost retrieval);
- the rest: the other-document prefixes already ranked below every positive.

For each loss it prints the share of the squared gradient on each kind of pair, how often the
loss pushes a rival's cosine up rather than down, and the models' in-batch rank of the positive,
cosines and the teacher targets they regress onto. Targets follow each loss's recipe: `mse` and
the InfoNCE treat an image and its caption as one document (target 1), `paper` gives the pair the
teacher's kernel.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from sugar.train.config import PAIRED_KINDS, TrainConfig, load_config
from sugar.train.examples import load_world_examples
from sugar.train.losses import alignment_targets, cosine_infonce, similarity_mse
from sugar.train.mixture import BatchStream
from sugar.train.recipe import (
    SliceTeacher,
    document_seed,
    forward_in_length_groups,
    load_image,
    pair_document_ids,
    prefix_slices,
)

# loss label -> (its recipe overrides on the demo's sugar stage, the loss on (M_r, M_l))
LOSSES: dict[str, tuple[list[str], Callable[[Tensor, Tensor, TrainConfig], Tensor]]] = {
    "infonce (demo)": ([], lambda c, t, cfg: cosine_infonce(c, t, cfg.infonce_temperature, cfg.infonce_teacher_temperature)),
    "mse": (["discriminative_loss=mse"], lambda c, t, cfg: similarity_mse(c, t)),
    "paper (mse, pair = kernel)": (["discriminative_loss=mse", "pair_target=kernel"], lambda c, t, cfg: similarity_mse(c, t)),
}


def pair_masks(cosines: Tensor, same_item: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """positives, rivals (other documents ranked at or above the row's weakest positive), the rest."""
    eye = torch.eye(cosines.shape[0], dtype=torch.bool)
    positives = same_item & ~eye
    others = ~same_item
    weakest = cosines.masked_fill(~positives, float("inf")).min(dim=1, keepdim=True).values
    rivals = others & (cosines >= weakest)
    return positives, rivals, others & ~rivals


def focus(cosines: Tensor, targets: Tensor, same_item: Tensor, loss: Callable[[Tensor], Tensor]) -> dict[str, float]:
    leaf = cosines.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(loss(leaf), leaf)
    gradient = gradient + gradient.T  # M_r is symmetric: each pair gets both of its entries' pull
    positives, rivals, rest = pair_masks(cosines, same_item)
    squared = gradient.pow(2)
    total = max(float(squared[~torch.eye(cosines.shape[0], dtype=torch.bool)].sum()), 1e-30)
    return {
        "positives": float(squared[positives].sum()) / total,
        "rivals": float(squared[rivals].sum()) / total,
        "rest": float(squared[rest].sum()) / total,
        "rivals_up": float((gradient[rivals] < 0).float().mean()) if bool(rivals.any()) else float("nan"),
        "rival_count": float(rivals.sum()) / cosines.shape[0],
    }


def retrieval(cosines: Tensor, same_item: Tensor) -> dict[str, float]:
    positives, _, _ = pair_masks(cosines, same_item)
    others = ~same_item
    rows = [i for i in range(cosines.shape[0]) if positives[i].any() and others[i].any()]
    best_positive = cosines.masked_fill(~positives, -2.0).max(dim=1).values
    top_other = cosines.masked_fill(~others, -2.0).max(dim=1).values
    return {
        "r1": statistics.mean(float(best_positive[i] > top_other[i]) for i in rows),
        "positive_cos": float(cosines[positives].mean()),
        "other_cos": float(cosines[others].mean()),
        "other_cos_std": float(cosines[others].std()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", required=True)
    parser.add_argument("--teachers", required=True)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("models", nargs="+", metavar="LABEL=MODEL", help="model folders to embed the batches with")
    args = parser.parse_args()

    from sugar.demo import DEMO_RECIPE
    from sugar.models import SugarModel
    from sugar.teachers import TeacherSuite

    recipe = [f"{k}={v}" for k, v in DEMO_RECIPE["sugar"].items()]
    suite = TeacherSuite.load(args.teachers)
    models = dict(spec.split("=", 1) for spec in args.models)
    configs = {
        label: load_config(None, [*recipe, "stage=sugar", f"init_from={next(iter(models.values()))}", f"world={args.world}",
                                  f"teachers={args.teachers}", "max_caption_images=4000", *overrides])
        for label, (overrides, _) in LOSSES.items()
    }
    config = configs["infonce (demo)"]
    teacher = SliceTeacher(suite, config.teacher_kernel)
    pools = load_world_examples(Path(config.world), "train", [k for k, v in config.mix.items() if v], max_caption_images=4000)
    paired = (*(("captions",) if config.paired_captions else ()), *PAIRED_KINDS)
    stream = BatchStream(pools, config.mix, config.seed, paired=paired)
    batches = [stream.batch(step) for step in range(args.batches)]
    print(f"{args.batches} sugar-stage batches of {config.batch_size} documents, {config.prefixes_per_document} prefixes each\n")

    focus_rows: list[str] = []
    model_rows: list[str] = []
    for model_label, path in models.items():
        model = SugarModel.from_pretrained(path).eval()
        cells: dict[str, list[dict[str, float]]] = {label: [] for label in LOSSES}
        seen: list[dict[str, float]] = []
        targets_seen: dict[str, list[tuple[float, float]]] = {label: [] for label in LOSSES}
        for step, examples in enumerate(batches):
            documents = [[load_image(s) if not isinstance(s, str) else s for s in segments] for _, segments, _ in examples]
            seeds = [document_seed(config.seed, step, example.id) for example, _, _ in examples]
            with torch.no_grad():
                output = forward_in_length_groups(model, model.processor, documents, None, seeds,
                                                  config.prefixes_per_document, config.max_length)
            assert output.embeddings is not None
            cosines = (output.embeddings @ output.embeddings.T).float()
            item = prefix_slices(output.slices, output.cuts, teacher, 0, pair_document_ids(examples, "one", 0)).document
            same_item = item.unsqueeze(0) == item.unsqueeze(1)
            seen.append(retrieval(cosines, same_item))
            targets_of: dict[str, Tensor] = {}  # the losses differ in pair_target only
            for label, (_, loss) in LOSSES.items():
                loss_config = configs[label]
                if loss_config.pair_target not in targets_of:
                    prefixes = prefix_slices(output.slices, output.cuts, teacher, 0,
                                             pair_document_ids(examples, loss_config.pair_target, 0))
                    targets_of[loss_config.pair_target] = alignment_targets(
                        prefixes, teacher.kernel, delta=loss_config.delta, structure=loss_config.target_structure)
                targets = targets_of[loss_config.pair_target]
                cells[label].append(focus(cosines, targets, same_item, lambda c: loss(c, targets, loss_config)))
                off = ~torch.eye(len(item), dtype=torch.bool)
                targets_seen[label].append((float(targets[same_item & off].mean()), float(targets[~same_item].mean())))
        r = {k: statistics.mean(s[k] for s in seen) for k in seen[0]}
        model_rows.append(f"| {model_label} | {100 * r['r1']:.1f}% | {r['positive_cos']:.3f} | "
                          f"{r['other_cos']:.3f} +- {r['other_cos_std']:.3f} |")
        for label in LOSSES:
            c = {k: statistics.mean(x[k] for x in cells[label]) for k in cells[label][0]}
            t_pos, t_other = (statistics.mean(v[i] for v in targets_seen[label]) for i in (0, 1))
            focus_rows.append(f"| {model_label} | {label} | {t_pos:.3f} / {t_other:.3f} | {100 * c['positives']:.1f}% | "
                              f"{100 * c['rivals']:.1f}% | {100 * c['rest']:.1f}% | {c['rival_count']:.1f} | "
                              f"{100 * c['rivals_up']:.0f}% |")
        print(f"embedded with {model_label}", flush=True)

    print("\nThe models on these batches (in-batch: does a prefix's nearest positive beat every other document?):\n")
    print("| model | nearest positive ranked first | cosine of positives | cosine of other documents (mean +- std) |")
    print("|---|---|---|---|")
    print("\n".join(model_rows))
    print("\nWhere each loss's gradient on M_r falls (share of its squared norm over the off-diagonal pairs):\n")
    print("| model | loss | target of positives / others | positives | rivals | rest | rivals per row | rivals pushed up |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(focus_rows))


if __name__ == "__main__":
    main()
