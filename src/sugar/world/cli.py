"""`sugar world`: build the procedural world's dataset files in a directory.

sugar world --out data/world                       # small world: a few hundred images, seconds
sugar world --out data/world --scale default       # >= 20k images, about a minute on 2 cores
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "world",
        help="build the procedural world (images + task files in real dataset formats)",
        description=(
            "Write the procedural world to --out: PNG images, one file per task and split in the real "
            "dataset formats (COCO Karpathy, VIST, Winoground, MMVP, LLaVA, interleaved JSONL), the "
            "ground truth of every image (scenes.jsonl) and the manifest world.json. Re-running with "
            "the same arguments checks the directory and leaves it unchanged."
        ),
    )
    parser.add_argument("--out", required=True, help="directory to write the world into")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument(
        "--scale",
        choices=("small", "default"),
        default="small",
        help="small: a few hundred images (tests); default: >= 20k images",
    )
    parser.add_argument("--image-size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: min(2, CPUs))")
    parser.add_argument("--force", action="store_true", help="rebuild even when the directory is complete")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sugar.world.build import load_manifest, timed_build

    manifest_path, seconds = timed_build(
        args.out,
        seed=args.seed,
        scale=args.scale,
        image_size=args.image_size,
        workers=args.workers,
        progress=not args.quiet,
        force=args.force,
    )
    manifest = load_manifest(manifest_path.parent)
    print(
        f"world: {manifest.num_images} images, {len(manifest.files)} task files, "
        f"seed {manifest.seed}, scale {manifest.scale}, {seconds:.1f} s -> {manifest_path}"
    )
    for entry in manifest.files:
        counted = f"{entry.count:7d} {entry.unit:13s}"
        print(f"  {entry.task:15s} {entry.split:5s} {entry.format:26s} {counted} {entry.path}")
    return 0
