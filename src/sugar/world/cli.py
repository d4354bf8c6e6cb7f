"""`sugar world`: build the procedural world's dataset files in a directory.

sugar world --out data/world                       # small world (the default): a few hundred images, seconds
sugar world --out data/world --scale default       # the demo's world: ~26k images, about a minute on 2 cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sugar.checks import at_least, check_output_dir, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "world",
        help="build the procedural world (images + task files in real dataset formats)",
        description=(
            "Write the procedural world to --out: PNG images, one file per task and split in the real "
            "dataset formats (COCO Karpathy, VIST, Winoground, MMVP, LLaVA, interleaved JSONL, YouCook2 "
            "clips as frame folders), the "
            "ground truth of every image (scenes.jsonl) and the manifest world.json. Re-running with "
            "the same arguments checks the directory and leaves it unchanged."
        ),
    )
    parser.add_argument(
        "--out", required=True,
        help="directory to write the world into: new, empty, or an earlier world (world.json); any other folder is refused",
    )
    parser.add_argument("--seed", type=at_least(0), default=0, help="world seed (default 0)")
    parser.add_argument(
        "--scale",
        choices=("small", "default"),
        default="small",
        help="world size (default: small): small = a few hundred images, for tests; "
        "default = the demo's world, about 26k images and 460 clips (5.6k frames)",
    )
    parser.add_argument("--image-size", type=at_least(32), default=128, help="image side in pixels, >= 32 (default 128)")
    parser.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: min(2, CPUs))")
    parser.add_argument("--force", action="store_true", help="rebuild even when the directory is complete")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


# what a world folder holds at its top level (an interrupted build has no manifest yet)
WORLD_ENTRIES = frozenset(
    {"world.json", "scenes.jsonl", "images", "captions", "stories", "winoground", "mmvp", "instruct", "rag", "webqa", "clips"}
)


def _is_world(folder: Path) -> bool:
    """A complete world, or what an interrupted build of one left (temporary files start with a dot)."""
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    return (folder / "world.json").is_file() or (bool(names) and names <= WORLD_ENTRIES)


def run(args: argparse.Namespace) -> int:
    from sugar.world.build import load_manifest, timed_build

    check_output_dir(args.out, "--out", own=_is_world, what="an earlier (or interrupted) world")
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
        f"world: {manifest.num_images} images, {manifest.data.get('num_clip_frames', 0)} clip frames, {len(manifest.files)} task files, "
        f"seed {manifest.seed}, scale {manifest.scale}, {seconds:.1f} s -> {manifest_path}"
    )
    for entry in manifest.files:
        counted = f"{entry.count:7d} {entry.unit:13s}"
        print(f"  {entry.task:15s} {entry.split:5s} {entry.format:26s} {counted} {entry.path}")
    return 0
