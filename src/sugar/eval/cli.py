"""`sugar eval`: run the benchmark suite on a saved model; one JSON per benchmark + results.md."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

BENCH_HELP = (
    "benchmark(s) to run, comma-separated or repeated: retrieval (image-text R@k), interleaved (VIST "
    "protocol R@k), winoground, mmvp (per-pattern, by embeddings and by likelihood of the two choices), "
    "qa (VQA exact match and POPE per negative type), rag (no retrieval / own retrieval k=1,2,3 / "
    "teacher retrieval / oracle), webqa (accuracy by position of the relevant source), or all (default)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    from sugar.eval.suite import DATA_BENCHES, DEFAULT_LIMITS

    defaults = ", ".join(f"{name} {limit}" for name, limit in DEFAULT_LIMITS.items() if limit is not None)
    data_help = "; ".join(f"{name}: {what}" for name, what in DATA_BENCHES.items())
    parser = subparsers.add_parser(
        "eval",
        help="run the benchmark suite on a saved model",
        description=(
            "Evaluate a saved Sugar model on the world's held-out split (or, with --data, on a real dataset "
            "file): writes OUT/<bench>.json for each benchmark, OUT/results.md with the tables, and pictures "
            "(MMVP per-pattern bars, WebQA position curve)."
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
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument(
        "--teachers", help="a `sugar teachers fit` folder: adds the CLIP-style teacher baseline and RAG's external retriever"
    )
    parser.add_argument("--out", default="runs/eval", help="output folder (default runs/eval)")
    parser.add_argument(
        "--limit", type=int, help="at most N items per benchmark (per POPE type); 0 = every item; default: per-benchmark"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="documents per forward pass (default 32)")
    parser.add_argument("--device", help="torch device, e.g. cuda (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from sugar.eval.suite import expand_benches, run_benchmarks, write_results

    benches = expand_benches(args.bench or ["all"])
    if args.world is None and args.data is None:
        raise ValueError("give --world DIR (a built world) or --data PATH (a real dataset file)")
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
    )
    report = write_results(results, args.out, command=_command(args, benches))
    for name, result in results.items():
        print(f"{name}: {result['seconds']} s -> {Path(args.out) / (name + '.json')}")
    print(f"results: {report}")
    return 0


def _command(args: argparse.Namespace, benches: list[str]) -> str:
    """The equivalent command line, for the report (also when called from Python)."""
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
    return " ".join(shlex.quote(p) for p in parts)
