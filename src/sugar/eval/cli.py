"""`sugar eval`: run the benchmark suite on a saved model; one JSON per benchmark + results.md."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from sugar.checks import (
    UsageError,
    check_device,
    check_model_dir,
    check_output_dir,
    check_teachers_dir,
    check_world_dir,
    existing_dir,
    non_negative_int,
    positive_int,
)

PICTURES = ("mmvp_patterns.png", "webqa_position.png", "clip_alignment.png")

BENCH_HELP = (
    "benchmark(s) to run, comma-separated or repeated: retrieval (image-text R@k), interleaved (VIST "
    "protocol R@k), winoground, mmvp (per-pattern, by embeddings and by likelihood of the two choices), "
    "qa (VQA exact match and POPE per negative type), captions (BLEU-4 and CIDEr-D), rag (no retrieval / own retrieval k=1,2,3 / "
    "teacher retrieval / oracle), webqa (accuracy by position of the relevant source), clips (text-video R@k and "
    "temporal grounding of each sentence in its clip's frames), or all (default)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    from sugar.eval.suite import DATA_BENCHES, DEFAULT_CLIP_FRAMES, DEFAULT_LIMITS

    defaults = ", ".join(f"{name} {limit}" for name, limit in DEFAULT_LIMITS.items() if limit is not None)
    data_help = "; ".join(f"{name}: {what}" for name, what in DATA_BENCHES.items())
    parser = subparsers.add_parser(
        "eval",
        help="run the benchmark suite on a saved model",
        description=(
            "Evaluate a saved Sugar model on the world's held-out split (or, with --data, on a real dataset "
            "file): writes OUT/<bench>.json for each benchmark, OUT/results.md with the tables, and pictures "
            "(MMVP per-pattern bars, WebQA position curve, one clip's alignment)."
        ),
        epilog=(
            f"Without --limit every item is used except where a default cut applies ({defaults}; an evenly "
            f"spread subset); every result JSON records the limit it ran under. "
            f"--data formats: {data_help}."
        ),
    )
    parser.add_argument("--model", required=True, help="a saved SugarModel folder")
    parser.add_argument("--bench", action="append", help=BENCH_HELP)
    parser.add_argument("--world", help="a built world folder (`sugar world --out DIR`); needed unless --data is given")
    parser.add_argument("--data", help="run one benchmark on a real dataset file instead of the world (see below)")
    parser.add_argument("--image-root", help="image folder for --data (default depends on the format, see below)")
    parser.add_argument("--split", default="test", help="split to evaluate: train, val or test of a world (default test)")
    parser.add_argument(
        "--teachers", help="a `sugar teachers fit` folder: adds the CLIP-style teacher baseline and RAG's external retriever"
    )
    parser.add_argument(
        "--out", default="runs/eval",
        help="output folder (default runs/eval); a folder holding other files of the same names is refused",
    )
    parser.add_argument(
        "--limit", type=non_negative_int, help="at most N items per benchmark (per POPE type); 0 = every item; default: per-benchmark"
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="documents per forward pass (default 32)")
    parser.add_argument(
        "--clip-frames", type=non_negative_int, default=DEFAULT_CLIP_FRAMES,
        help=f"clips: frames sampled per clip, spread evenly (default {DEFAULT_CLIP_FRAMES}; 0 = every frame)",
    )
    parser.add_argument(
        "--frame-stride", type=positive_int, default=1,
        help="clips: keep every N-th frame before sampling --clip-frames of them (default 1)",
    )
    parser.add_argument("--device", help="torch device, e.g. cuda (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from sugar.eval.suite import DEFAULT_CLIP_FRAMES, expand_benches, run_benchmarks, write_results

    benches = expand_benches(args.bench or ["all"])
    _check_arguments(args, benches)
    results = run_benchmarks(
        args.model,
        args.world,
        benches,
        split=args.split,
        teachers_dir=args.teachers,
        limit=args.limit,
        data=args.data,
        image_root=args.image_root,
        batch_size=args.batch_size,
        device=args.device,
        show_progress=not args.no_progress,
        clip_frames=getattr(args, "clip_frames", DEFAULT_CLIP_FRAMES) or None,
        frame_stride=getattr(args, "frame_stride", 1),
    )
    report = write_results(results, args.out, command=_command(args, benches))
    for name, result in results.items():
        print(f"{name}: {result['seconds']} s -> {Path(args.out) / (name + '.json')}")
    print(f"results: {report}")
    return 0


def _check_arguments(args: argparse.Namespace, benches: list[str]) -> None:
    """Every path and the output folder, before the model loads: a wrong --out must not cost the results."""
    check_model_dir(args.model)
    if args.world is None and args.data is None:
        raise UsageError("--world/--data: expected a built world folder or a real dataset file, found neither")
    if args.world is not None:
        check_world_dir(args.world)
        if args.data is None and args.split not in ("train", "val", "test"):
            raise UsageError(f"--split: expected train, val or test (the world's splits), found {args.split!r}")
    if args.data is not None and not Path(args.data).exists():
        raise UsageError(f"--data {args.data}: file or folder not found")
    if args.image_root is not None:
        existing_dir(args.image_root, "--image-root")
    if args.teachers is not None:
        check_teachers_dir(args.teachers)
    check_device(args.device)
    written = {f"{name}.json" for name in benches} | {"results.md", *PICTURES}
    check_output_dir(
        args.out, "--out", what="an earlier evaluation (results.md) or a folder without files of the names it writes",
        own=lambda folder: (folder / "results.md").is_file() or not any((folder / name).exists() for name in written),
    )


def _command(args: argparse.Namespace, benches: list[str]) -> str:
    """The equivalent command line, for the report (also when called from Python)."""
    from sugar.eval.suite import DEFAULT_CLIP_FRAMES

    parts = ["sugar", "eval", "--model", args.model, "--bench", ",".join(benches)]
    for flag, value in (
        ("--world", args.world),
        ("--data", args.data),
        ("--image-root", args.image_root),
        ("--split", args.split),
        ("--teachers", args.teachers),
        ("--out", args.out),
        ("--limit", args.limit),
    ):
        if value is not None:
            parts += [flag, str(value)]
    if "clips" in benches:
        parts += ["--clip-frames", str(getattr(args, "clip_frames", DEFAULT_CLIP_FRAMES))]
        parts += ["--frame-stride", str(getattr(args, "frame_stride", 1))]
    return " ".join(shlex.quote(p) for p in parts)
