"""The `sugar` command line: a thin layer over typed library functions.

Each command lives in the module that owns its concern and exposes `register(subparsers)`;
heavy imports (torch, transformers) happen inside the command functions so `--help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module that defines `register(subparsers) -> None`
COMMAND_MODULES: dict[str, str] = {
    "world": "sugar.world.cli",
    "teachers": "sugar.teachers.cli",
    "train": "sugar.train.cli",
    "encode": "sugar.retrieval.cli",
    "index": "sugar.retrieval.cli",
    "generate": "sugar.retrieval.cli",
    "demo": "sugar.demo",
    "ablate": "sugar.ablate",
    "curve": "sugar.curve",
    "eval": "sugar.eval.cli",
}


def build_parser() -> argparse.ArgumentParser:
    from sugar import __version__

    parser = argparse.ArgumentParser(
        prog="sugar",
        description="Train one multimodal LLM to both generate and retrieve (the Sugar method).",
    )
    parser.add_argument("--version", action="version", version=f"sugar {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in dict.fromkeys(COMMAND_MODULES.values()):
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"sugar {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
