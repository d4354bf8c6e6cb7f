"""`sugar train`: one training stage from a YAML config plus key=value overrides."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train one stage (base: generative only; sugar: L_g + alpha * L_d)",
        description=(
            "Train one stage. Settings come from --config (YAML) and then KEY=VALUE overrides, "
            "e.g. `sugar train --config configs/tiny.yaml stage=base output_dir=runs/x/base alpha=0.5 mix.vqa=0`. "
            "Keys: see sugar.train.config.TrainConfig. Runs under `accelerate launch` for several processes."
        ),
    )
    parser.add_argument("--config", help="YAML file with TrainConfig keys (default: built-in defaults)")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue from the latest checkpoint in output_dir (an error when there is none, or when the config "
        "differs from the checkpoint's in a key that changes the run)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="config overrides: YAML values converted to the key's type (learning_rate=3e-4, mix.vqa=0)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sugar.checks import check_text, existing_file
    from sugar.train.config import load_config
    from sugar.train.recipe import train

    check_text(args.overrides, "KEY=VALUE")
    if args.config is not None:
        existing_file(args.config, "--config")
    config = load_config(args.config, args.overrides)
    model_dir = train(config, resume=args.resume, show_progress=not args.no_progress)
    print(f"saved model to {model_dir}")
    return 0
