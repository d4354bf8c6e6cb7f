"""The `sugar` command line: a thin layer over typed library functions.

Each command lives in the module that owns its concern and exposes `register(subparsers)`;
heavy imports (torch, transformers) happen inside the command functions so `--help` is fast.

Errors: a bad argument or input is reported as one line on stderr (`sugar CMD: error: ...`)
with exit code 2, any other failure as one line with exit code 1; `--debug` anywhere on the
command line (or SUGAR_DEBUG=1) also prints the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

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
    "seeds": "sugar.seeds",
    "balance": "sugar.balance",
    "eval": "sugar.eval.cli",
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors; every subcommand parser inherits it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# errors that mean "the input is wrong", not "the program failed": exit code 2
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    KeyError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def build_parser() -> argparse.ArgumentParser:
    from sugar import __version__

    parser = Parser(
        prog="sugar",
        description="Train one multimodal LLM to both generate and retrieve (the Sugar method).",
    )
    parser.add_argument("--version", action="version", version=f"sugar {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in dict.fromkeys(COMMAND_MODULES.values()):
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments or os.environ.get("SUGAR_DEBUG", "") not in ("", "0")
    arguments = [a for a in arguments if a != "--debug"]
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as stop:  # --help, --version and usage errors end here, also in-process
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    name = " ".join(str(part) for part in (args.command, getattr(args, "action", None), getattr(args, "teachers_command", None)) if part)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print(f"sugar {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`sugar ... | head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as error:  # every failure becomes one line; --debug adds the traceback
        if debug:
            traceback.print_exc()
        code, message = describe_error(error, debug)
        print(f"sugar {name}: error: {message}", file=sys.stderr)
        return code
    return int(result or 0)


def describe_error(error: BaseException, debug: bool = False) -> tuple[int, str]:
    """(exit code, one-line message) for an error that ended a command."""
    from sugar.checks import CommandError

    text = " ".join(str(error.args[0] if isinstance(error, KeyError) and error.args else error).split())
    if isinstance(error, CommandError):
        return error.exit_code, text
    if isinstance(error, INPUT_ERRORS):
        return 2, text or type(error).__name__
    hint = "" if debug else " (unexpected; rerun with --debug for the traceback)"
    return 1, f"{type(error).__name__}: {text}{hint}"


if __name__ == "__main__":
    sys.exit(main())
