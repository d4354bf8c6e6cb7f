"""Which seed a curve or balance study trains with: the folder's base, or the one asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sugar.checks import UsageError
from sugar.cli import main
from sugar.curve import demo_seed


def _base_with_seed(demo: Path, seed: int) -> None:
    (demo / "base").mkdir(parents=True)
    (demo / "base" / "config.json").write_text(json.dumps({"seed": seed}))


def test_an_empty_folder_takes_the_requested_seed_or_zero(tmp_path: Path) -> None:
    assert demo_seed(tmp_path / "new") == 0
    assert demo_seed(tmp_path / "new", 2) == 2


def test_an_existing_base_keeps_its_seed_and_refuses_another(tmp_path: Path) -> None:
    _base_with_seed(tmp_path, 2)
    assert demo_seed(tmp_path) == 2
    assert demo_seed(tmp_path, 2) == 2
    with pytest.raises(UsageError, match=r"config\.json: the base model .* seed 2, not the requested 1"):
        demo_seed(tmp_path, 1)


@pytest.mark.parametrize("command", ["curve", "balance"])
def test_the_command_line_refuses_a_seed_the_folder_was_not_built_with(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _base_with_seed(tmp_path, 0)
    assert main([command, "--demo", str(tmp_path), "--seed", "2", "--no-progress"]) == 2
    assert "seed 0, not the requested 2" in capsys.readouterr().err
