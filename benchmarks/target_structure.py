"""How different are the GAK targets from the order-free mean targets on real Sugar-stage batches?

    python benchmarks/target_structure.py --model runs/demo/base/model --world runs/demo/world --teachers runs/demo/teachers

The no_gak ablation replaces the dynamic alignment of two prefixes' slice sequences with the mean
local kernel over all their slice pairs. Removing GAK can only change what the model learns where
the two target matrices differ, and that depends on the prefixes a batch holds: two one-slice
prefixes give the same value under both (one alignment path, one pair). This draws batches the
way `sugar train` does (the same stream, cut points and teacher features), builds both target
matrices and reports, per mix, how long the prefixes are and how much the targets disagree:
rank correlation of the cross-document entries (all of them, and within pairs of prefixes of
equal length, where only order and content differ: GAK also penalises a length mismatch, the
mean does not), how often a row's nearest other-document prefix is the same, the share of each
row's tempered softmax that falls on other documents, the total-variation distance between the rows' tempered softmaxes (what the InfoNCE
regresses onto) and the RMS difference of the entries (what the MSE regresses onto).
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch
from torch import Tensor

from sugar.train.config import PAIRED_KINDS, load_config
from sugar.train.examples import load_world_examples
from sugar.train.losses import alignment_targets
from sugar.train.mixture import BatchStream
from sugar.train.recipe import (
    SliceTeacher,
    build_model,
    document_seed,
    load_image,
    pair_document_ids,
    prefix_slices,
    sample_cut_points,
)

MIXES = {
    "sugar stage (the demo's mix)": None,
    "with stories": "{captions: 8, stories: 4, vqa: 2, rag: 2}",
    "stories only": "{stories: 8}",
}


def spearman(a: Tensor, b: Tensor) -> float:
    ranks = [x.argsort().argsort().double() for x in (a, b)]
    centred = [r - r.mean() for r in ranks]
    return float((centred[0] * centred[1]).sum() / (centred[0].norm() * centred[1].norm()).clamp_min(1e-12))


def mean_defined(values: list[float]) -> float:
    """The mean of the values that are not NaN (a batch without equal-length pairs has none)."""
    defined = [v for v in values if not math.isnan(v)]
    return statistics.mean(defined) if defined else math.nan


def compare(gak: Tensor, mean: Tensor, same_document: Tensor, lengths: Tensor, temperature: float) -> dict[str, float]:
    other = ~same_document
    # within pairs of prefixes of equal length: the order (not the length) effect of the alignment
    equal = other & (lengths.unsqueeze(0) == lengths.unsqueeze(1)) & (lengths.unsqueeze(0) > 1)
    rows = [i for i in range(gak.shape[0]) if other[i].any()]
    top_agree = [float(gak[i][other[i]].argmax() == mean[i][other[i]].argmax()) for i in rows]
    p_gak = torch.softmax(gak / temperature, dim=1)
    p_mean = torch.softmax(mean / temperature, dim=1)
    return {
        "spearman": spearman(gak[other], mean[other]),
        "spearman_equal": spearman(gak[equal], mean[equal]) if int(equal.sum()) > 2 else math.nan,
        "elsewhere_gak": float((p_gak * other).sum(1).mean()),
        "elsewhere_mean": float((p_mean * other).sum(1).mean()),
        "top1": statistics.mean(top_agree),
        "tv": float(0.5 * (p_gak - p_mean).abs().sum(1).mean()),
        "rms": float((gak - mean)[other].pow(2).mean().sqrt()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the base model folder (its processor cuts the slices)")
    parser.add_argument("--world", required=True)
    parser.add_argument("--teachers", required=True)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--teacher-temperatures", default="0.05,0.1,0.15,0.2,0.3,0.5",
                        help="teacher-side InfoNCE temperatures to scan on the demo's mix")
    args = parser.parse_args()

    from sugar.demo import DEMO_RECIPE
    from sugar.teachers import TeacherSuite

    recipe = [f"{k}={v}" for k, v in DEMO_RECIPE["sugar"].items()]
    suite = TeacherSuite.load(args.teachers)
    processor = None
    demo_batches: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    print(f"{args.batches} batches per mix; cross-document entries only (same-document targets are 1 under both)\n")
    print("| mix | prefixes per batch | slices per prefix | prefixes of <= 2 slices | Spearman | Spearman, equal lengths > 1 "
          "| same nearest | softmax mass on other documents, GAK / mean | TV of softmaxes | RMS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, mix in MIXES.items():
        overrides = [*recipe, "stage=sugar", f"init_from={args.model}", f"world={args.world}", f"teachers={args.teachers}",
                     "max_caption_images=4000", *([f"mix={mix}"] if mix else [])]
        config = load_config(None, overrides)
        if processor is None:
            processor = build_model(config, lambda: []).processor
        teacher = SliceTeacher(suite, config.teacher_kernel)
        pools = load_world_examples(Path(config.world), "train", [k for k, v in config.mix.items() if v], max_caption_images=4000)
        paired = (*(("captions",) if config.paired_captions else ()), *PAIRED_KINDS)
        stream = BatchStream(pools, config.mix, config.seed, paired=paired)
        scores: list[dict[str, float]] = []
        held: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        lengths: list[int] = []
        for step in range(args.batches):
            examples = stream.batch(step)
            documents = [[load_image(s) if not isinstance(s, str) else s for s in segments] for _, segments, _ in examples]
            batch = processor(documents, max_length=config.max_length)
            seeds = [document_seed(config.seed, step, example.id) for example, _, _ in examples]
            cuts = sample_cut_points([len(s) for s in batch.slices], config.prefixes_per_document, seeds)
            prefixes = prefix_slices(batch.slices, cuts, teacher, 0, pair_document_ids(examples, config.pair_target, 0))
            same = prefixes.document.unsqueeze(0) == prefixes.document.unsqueeze(1)
            gak = alignment_targets(prefixes, teacher.kernel, delta=config.delta, structure="gak")
            mean = alignment_targets(prefixes, teacher.kernel, delta=config.delta, structure="mean")
            scores.append(compare(gak, mean, same, prefixes.lengths, config.infonce_temperature))
            held.append((gak, mean, same, prefixes.lengths))
            lengths += prefixes.lengths.tolist()
        cell = {k: mean_defined([s[k] for s in scores]) for k in scores[0]}
        short = sum(n <= 2 for n in lengths) / len(lengths)
        print(f"| {label} `{config.mix}` | {len(lengths) / args.batches:.0f} | {statistics.mean(lengths):.2f} | "
              f"{100 * short:.0f}% | {cell['spearman']:.3f} | {cell['spearman_equal']:.3f} | {100 * cell['top1']:.0f}% | "
              f"{100 * cell['elsewhere_gak']:.1f}% / {100 * cell['elsewhere_mean']:.1f}% | {cell['tv']:.3f} | {cell['rms']:.3f} |",
              flush=True)
        if mix is None:
            demo_batches = held
    print("\nThe demo's mix, the teacher side of the InfoNCE at other temperatures (the model side stays at "
          f"{config.infonce_temperature}):\n")
    print("| teacher temperature | softmax mass on other documents, GAK / mean | TV of softmaxes |")
    print("|---|---|---|")
    for temperature in (float(t) for t in args.teacher_temperatures.split(",")):
        cells = [compare(*batch, temperature) for batch in demo_batches]
        print(f"| {temperature:g} | {100 * mean_defined([c['elsewhere_gak'] for c in cells]):.1f}% / "
              f"{100 * mean_defined([c['elsewhere_mean'] for c in cells]):.1f}% | {mean_defined([c['tv'] for c in cells]):.3f} |")


if __name__ == "__main__":
    main()
