"""Checks every command runs on its inputs and outputs before it loads a model or starts a loop.

A failed check raises `UsageError` (a ValueError) whose message names the argument, file or key,
what was expected and what was found; the command line prints it as one line and exits with
code 2. Keeping the checks here lets each command state its contract in a few calls, and lets
the library functions reuse them. Heavy imports (torch, safetensors) happen inside the functions
so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MODEL_FILES = ("sugar_config.json", "model.safetensors", "tokenizer_config.json")
TOKENIZER_VOCABULARIES = ("tokenizer.json", "vocab.json", "tokenizer.model", "vocab.txt")
INDEX_FILES = frozenset({"index.faiss", "ids.json", "meta.json"})


class CommandError(Exception):
    """An error the command line reports as one line, without a traceback."""

    exit_code = 1


class UsageError(CommandError, ValueError):
    """A bad argument, file or value, found before any work was done."""

    exit_code = 2


def found(value: Any) -> str:
    """A short description of a found value for messages: its type and (clipped) repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


# --------------------------------------------------------------------------- argparse types
def _number(kind: type, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {name}, found {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, found {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, found {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, found {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(float, text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, found {text}")
    return value


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _number(int, text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, found {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


# --------------------------------------------------------------------------- text
def check_text(values: Iterable[str] | None, argument: str) -> None:
    """Command-line text that was not valid UTF-8 reaches Python as lone surrogates; refuse it
    here rather than deep inside a tokenizer or at the final print."""
    for value in values or []:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            shown = value.encode("utf-8", "surrogateescape")
            raise UsageError(f"{argument}: expected UTF-8 text, found bytes that are not UTF-8: {shown!r}") from None


# --------------------------------------------------------------------------- input paths
def existing_file(path: str | os.PathLike[str], argument: str) -> Path:
    result = Path(path)
    if result.is_dir():
        raise UsageError(f"{argument} {result}: expected a file, found a folder")
    if not result.is_file():
        raise UsageError(f"{argument} {result}: file not found")
    return result


def existing_dir(path: str | os.PathLike[str], argument: str) -> Path:
    result = Path(path)
    if result.is_file():
        raise UsageError(f"{argument} {result}: expected a folder, found a file")
    if not result.is_dir():
        raise UsageError(f"{argument} {result}: folder not found")
    return result


def read_json_file(path: Path, argument: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{argument}: {path} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{argument}: {path}:{error.lineno}: invalid JSON ({error.msg})") from None


def check_model_dir(path: str | os.PathLike[str], argument: str = "--model") -> Path:
    """A folder written by `SugarModel.save_pretrained`: config, weights and tokenizer present
    and readable (the weights' header only; `from_pretrained` checks the values)."""
    from sugar.models.config import SugarConfig

    folder = existing_dir(path, argument)
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in TOKENIZER_VOCABULARIES):
        missing.append(" or ".join(TOKENIZER_VOCABULARIES))
    if missing:
        raise UsageError(f"{argument} {folder}: expected a saved Sugar model folder, missing {', '.join(missing)}")
    config_path = folder / "sugar_config.json"
    values = read_json_file(config_path, argument)
    if not isinstance(values, dict):
        raise UsageError(f"{argument}: {config_path}: expected a JSON object, found {type(values).__name__}")
    try:
        SugarConfig.from_dict(values)
    except (ValueError, TypeError) as error:
        raise UsageError(f"{argument}: {config_path}: {error}") from None
    weights_header(folder / "model.safetensors", argument)
    return folder


def weights_header(path: Path, argument: str) -> dict[str, Any]:
    """The safetensors header of `path`, read without loading the tensors; a truncated or
    corrupt file is named here instead of failing inside the model."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {"keys": list(handle.keys()), "metadata": handle.metadata() or {}}
    except Exception as error:  # safetensors raises its own error types for every corruption
        raise UsageError(f"{argument}: {path} is not a readable safetensors file ({_first_line(error)})") from None


def model_embedding_dim(folder: Path) -> int:
    return int(json.loads((folder / "sugar_config.json").read_text())["head_dim"])


def check_index_dir(path: str | os.PathLike[str], argument: str = "--index") -> dict[str, Any]:
    """A folder written by `VectorIndex.save`; returns its meta.json."""
    folder = existing_dir(path, argument)
    missing = sorted(name for name in INDEX_FILES if not (folder / name).is_file())
    if missing:
        raise UsageError(f"{argument} {folder}: expected a saved index (sugar index build), missing {', '.join(missing)}")
    meta = read_json_file(folder / "meta.json", argument)
    if not isinstance(meta, dict) or not isinstance(meta.get("dim"), int):
        raise UsageError(f"{argument}: {folder / 'meta.json'}: expected an object with an integer 'dim'")
    return meta


def check_world_dir(path: str | os.PathLike[str], argument: str = "--world") -> Path:
    folder = existing_dir(path, argument)
    if not (folder / "world.json").is_file():
        raise UsageError(f"{argument} {folder}: expected a built world (world.json), found none; build one with `sugar world --out {folder}`")
    return folder


def check_teachers_dir(path: str | os.PathLike[str], argument: str = "--teachers") -> Path:
    folder = existing_dir(path, argument)
    if not (folder / "suite.json").is_file():
        raise UsageError(f"{argument} {folder}: expected a fitted teacher folder (suite.json), found none; fit one with `sugar teachers fit`")
    return folder


def check_device(device: str | None, argument: str = "--device") -> None:
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"{argument}: expected a torch device such as cpu or cuda, found {device!r}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{argument} {device}: no CUDA device is available here")


# --------------------------------------------------------------------------- outputs
def creatable(path: Path, argument: str) -> None:
    """`path` can be created: its nearest existing ancestor is a writable folder."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{argument} {path}: cannot be created, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{argument} {path}: cannot be created, {parent} is not writable")


def check_output_file(path: str | os.PathLike[str], argument: str, own: Callable[[Path], bool]) -> Path:
    """A file the command will (re)write: new, or the command's own earlier output (`own`)."""
    result = Path(path)
    if result.is_dir():
        raise UsageError(f"{argument} {result}: expected a file to write, found a folder; name a file inside it")
    if result.exists():
        if not own(result):
            raise UsageError(
                f"{argument} {result}: a file that this command did not write is already there; "
                "choose another path or remove it first"
            )
        if not os.access(result, os.W_OK):
            raise UsageError(f"{argument} {result}: the file is not writable")
    creatable(result, argument)
    return result


def check_output_dir(
    path: str | os.PathLike[str], argument: str, own: Callable[[Path], bool], what: str
) -> Path:
    """A folder the command writes into: new, empty, or holding its own earlier output (`own`).

    Any other folder is refused, so a mistyped --out never mixes into (or replaces) a folder
    the command did not write.
    """
    result = Path(path)
    if result.is_file():
        raise UsageError(f"{argument} {result}: expected a folder, found a file")
    if result.is_dir():
        entries = sorted(p.name for p in result.iterdir())
        if entries and not own(result):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UsageError(
                f"{argument} {result}: expected a new or empty folder or {what}, found a folder holding "
                f"{len(entries)} other entries ({shown}); choose another folder"
            )
        if not os.access(result, os.W_OK | os.X_OK):
            raise UsageError(f"{argument} {result}: the folder is not writable")
        return result
    creatable(result, argument)
    return result


def is_index_dir(path: Path) -> bool:
    """A folder holding a saved index and nothing else: the only folder `index build` replaces."""
    names = {p.name for p in path.iterdir()}
    return bool(names) and names <= INDEX_FILES and "meta.json" in names


# --------------------------------------------------------------------------- weights
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(folder: str | os.PathLike[str]) -> str:
    """Identifies a saved model's weights: an index records it, a search compares it."""
    return file_sha256(Path(folder) / "model.safetensors")


def read_weights(path: Path) -> dict[str, Any]:
    """Tensors of a safetensors file; a truncated or corrupt file raises ValueError naming it."""
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as error:  # SafetensorError, OSError, or a dtype/shape mismatch in the header
        raise ValueError(f"{path} is not a readable safetensors file ({_first_line(error)})") from None


def check_finite_parameters(named: Iterable[tuple[str, Any]], source: Path | str) -> None:
    """Refuse a model whose weights hold NaN or inf: it would embed to NaN and generate nothing."""
    import torch

    bad = [name for name, value in named if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"{source}: weights hold NaN or inf values ({shown}); the file is corrupt or training diverged")


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------- typed config values
def coerce_fields(cls: type, values: dict[str, Any], source: str) -> dict[str, Any]:
    """`values` converted to the declared types of dataclass `cls`'s fields.

    YAML 1.1 reads `3e-4` as a string and `1e3` as a string too; a float field takes both, an
    int field takes integral numbers. A value that cannot be converted raises UsageError naming
    `source`, the key, the expected type and the found value. Unknown keys are left as they are
    (the caller reports them).
    """
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    result = dict(values)
    for key, value in values.items():
        if key in names:
            result[key] = coerce(value, hints[key], f"{source}: {key}")
    return result


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """One value to `annotation` (int, float, bool, str, Literal, X | None, dict, list, Any)."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        options = [a for a in arguments if a is not type(None)]
        errors = []
        for option in options:
            try:
                return coerce(value, option, where)
            except UsageError as error:
                errors.append(error)
        if len(options) == 1:
            raise errors[0]
        raise UsageError(f"{where}: expected {' or '.join(_type_name(o) for o in arguments)}, found {found(value)}")
    if origin is typing.Literal:
        if value in arguments:
            return value
        raise UsageError(f"{where}: expected one of {', '.join(map(repr, arguments))}, found {found(value)}")
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a mapping such as {{a: 1}}, found {found(value)}")
        value_type = arguments[1] if len(arguments) == 2 else Any
        return {k: coerce(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if origin is list or annotation is list:
        if not isinstance(value, list):
            raise UsageError(f"{where}: expected a list such as [a, b], found {found(value)}")
        item_type = arguments[0] if arguments else Any
        return [coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{where}: expected true or false, found {found(value)}")
    if annotation is int:
        number = _as_number(value)
        if number is not None and float(number).is_integer():
            return int(number)
        raise UsageError(f"{where}: expected an integer, found {found(value)}")
    if annotation is float:
        number = _as_number(value)
        if number is not None:
            return float(number)
        raise UsageError(f"{where}: expected a number, found {found(value)}")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise UsageError(f"{where}: expected text, found {found(value)}")
    return value


def _as_number(value: Any) -> int | float | None:
    """An int or float from a number or numeric text; None for anything else (bools included)."""
    import math

    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        text = value.strip()
        return int(text) if text.lstrip("+-").isdigit() else number
    return None


def _type_name(annotation: Any) -> str:
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def read_yaml(path: Path) -> Any:
    """A YAML (or JSON) file; a file in another format names the file and the line."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: expected a YAML file, found bytes that are not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        raise UsageError(f"{where}: expected a YAML mapping of config keys, found invalid YAML ({problem})") from None


def model_overrides(values: dict[str, Any], where: str) -> dict[str, Any]:
    """SugarConfig field overrides, checked by name and coerced to the fields' types now, so a
    typo fails before the world is read rather than when the model is built."""
    from sugar.models.config import SugarConfig

    import dataclasses

    known = {f.name for f in dataclasses.fields(SugarConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{where}: unknown SugarConfig field(s) {unknown}; known fields: {sorted(known)}")
    return coerce_fields(SugarConfig, values, where)


def coerce_override(cls: type, key: str, value: Any, text: str) -> Any:
    """One KEY=VALUE override converted to its field's type; `mix.vqa` and
    `model_overrides.head_dim` address one entry of a mapping field."""
    import dataclasses
    import typing

    where = f"override {text!r}"
    fields = {f.name for f in dataclasses.fields(cls)}
    outer, _, inner = key.partition(".")
    if outer not in fields:
        return value  # the caller reports unknown keys with the list of known ones
    annotation = typing.get_type_hints(cls)[outer]
    if not inner:
        return coerce(value, annotation, where)
    if outer == "model_overrides":
        return model_overrides({inner: value}, where)[inner]
    arguments = typing.get_args(annotation)
    return coerce(value, arguments[1], where) if typing.get_origin(annotation) is dict and len(arguments) == 2 else value


# --------------------------------------------------------------------------- demo and ablation
# what `sugar demo` writes at the top of its output folder
DEMO_ENTRIES = frozenset(
    {"world", "teachers", "base", "sugar", "eval", "vision-cache", "pictures", "stages.json", "metrics.json", "report.md"}
)


def is_demo_dir(folder: Path) -> bool:
    """A folder a demo (or an ablation seed, which adds its variant folders) already wrote into."""
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    return (folder / "stages.json").is_file() or (bool(names) and names <= DEMO_ENTRIES)


def check_training_options(config: str | None, overrides: list[str]) -> None:
    """The config file and KEY=VALUE overrides that a demo or ablation applies to every stage:
    read and type-checked now, not after the world and the teachers were built."""
    from sugar.train.config import load_config

    check_text(overrides, "KEY=VALUE")
    if config is not None:
        existing_file(config, "--config")
    load_config(config, [*overrides, "stage=base"])


def check_demo_arguments(args: argparse.Namespace) -> None:
    for name in ("align_steps", "base_steps", "sugar_steps", "qa_questions"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')}: expected an integer >= 1, found {value}")
    if args.seed < 0:
        raise UsageError(f"--seed: expected an integer >= 0, found {args.seed}")
    check_output_dir(args.out, "--out", own=is_demo_dir, what="an earlier demo")
    check_training_options(args.config, list(args.overrides))
