"""What a training run checks before it starts and at every step, so it never silently changes
meaning or keeps going on garbage.

- Before any work: the folders the config names exist and hold what they should, and `--resume`
  has something to resume whose config agrees with this one (`resume_point`).
- Every step: the losses are finite; a NaN or inf loss stops the run before it touches the
  weights, so the last checkpoint stays the last good state (`check_finite_losses`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from sugar.checks import CommandError, UsageError, check_model_dir, check_teachers_dir, check_world_dir, creatable
from sugar.train.checkpoint import latest_checkpoint
from sugar.train.config import TrainConfig

# Keys that change where a run writes or how often, not what it computes: they may differ on resume.
RUN_NEUTRAL_KEYS = frozenset({"output_dir", "vision_cache_dir", "log_every", "checkpoint_every", "keep_checkpoints"})
# Keys naming files or folders: the same place written two ways (relative, absolute, through a
# symlink) is no change.
PATH_KEYS = frozenset({"world", "teachers", "init_from", "model_path"})


class TrainingDiverged(CommandError, RuntimeError):
    """A step's loss was NaN or inf; the run stopped before updating the weights with it."""


def check_paths(config: TrainConfig) -> None:
    """The config's inputs exist and its output folder can be written, before anything loads."""
    check_world_dir(config.world, "world")
    if config.stage == "sugar" and config.teachers is not None:
        check_teachers_dir(config.teachers, "teachers")
    if config.init_from is not None:
        check_model_dir(config.init_from, "init_from")
    output = Path(config.output_dir)
    if output.is_file():
        raise UsageError(f"output_dir {output}: expected a folder, found a file")
    if not output.exists():
        creatable(output, "output_dir")


def _same(key: str, saved: Any, current: Any) -> bool:
    if saved == current:
        return True
    if key in PATH_KEYS and isinstance(saved, str) and isinstance(current, str):
        return os.path.realpath(saved) == os.path.realpath(current)
    if isinstance(saved, (int, float)) and isinstance(current, (int, float)) and not isinstance(saved, bool):
        return float(saved) == float(current)
    return False


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: saved -> current' for every run-changing key on which the two configs differ.

    A key the saved config lacks (written before the key existed) counts as its default value.
    """
    defaults = TrainConfig().to_dict()
    differences = []
    for key in sorted(set(saved) | set(current)):
        if key in RUN_NEUTRAL_KEYS:
            continue
        before = saved.get(key, defaults.get(key))
        after = current.get(key, defaults.get(key))
        if not _same(key, before, after):
            differences.append(f"{key}: {before!r} -> {after!r}")
    return differences


def resume_point(checkpoints: Path, config: TrainConfig, resume: bool) -> Path | None:
    """The checkpoint to continue from (None: a fresh run); every ambiguity is an error.

    Without --resume, existing checkpoints are refused (a new run would mix with them); with it,
    there must be one, and its config must match this one in every run-changing key.
    """
    latest = latest_checkpoint(checkpoints)
    if not resume:
        if latest is not None:
            raise UsageError(
                f"output_dir {checkpoints.parent} already holds checkpoints: pass --resume to continue, or choose another output_dir"
            )
        return None
    if latest is None:
        raise UsageError(
            f"--resume: nothing to resume, no checkpoint in {checkpoints}; run without --resume to start a new run"
        )
    try:
        saved = json.loads((latest / "state.json").read_text()).get("config", {})
    except ValueError as error:
        raise UsageError(f"--resume: {latest / 'state.json'} is not valid JSON ({error})") from None
    differences = config_differences(saved, config.to_dict())
    if differences:
        raise UsageError(
            f"--resume: the config differs from the checkpoint's ({latest}) in {len(differences)} key(s) that change "
            f"the run: {'; '.join(differences)}; use the checkpoint's values, or a new output_dir"
        )
    return latest


def check_finite_losses(losses: Any, step: int, checkpoints: Path) -> None:
    """Stop on a NaN or inf loss, naming the last good checkpoint (the weights are untouched)."""
    values = {
        name: float(value.detach().item())
        for name, value in (("L_g", losses.generative), ("L_d", losses.discriminative))
        if value is not None
    }
    if all(math.isfinite(v) for v in values.values()):
        return
    latest = latest_checkpoint(checkpoints) if checkpoints.is_dir() else None
    kept = f"the last good checkpoint is {latest}" if latest is not None else "no checkpoint had been written yet"
    shown = ", ".join(f"{name}={value}" for name, value in values.items())
    raise TrainingDiverged(
        f"training stopped at step {step}: the loss is not finite ({shown}); the weights were not updated with it "
        f"and no model was saved; {kept}"
    )
