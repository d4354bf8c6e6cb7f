"""The balance study's settings: names, folders, overrides, and errors that say what was expected."""

from __future__ import annotations

import pytest

from sugar.balance import parse_schedule, study_settings
from sugar.checks import UsageError
from sugar.cli import main


def test_settings_are_alphas_then_schedules_at_the_demo_alpha() -> None:
    study = study_settings([0.0, 0.3], ["cosine:0.25"])
    assert [s.folder for s in study] == ["alpha-0", "alpha-0.3", "cosine-0.25"]
    assert study[1].overrides == ("alpha=0.3",)
    assert study[2].overrides == ("alpha=0.1", "alpha_schedule=cosine", "alpha_warmup=0.25")
    assert parse_schedule("linear:0") == ("linear", 0.0)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [("linear", "expected NAME:WARMUP"), ("step:0.3", "expected NAME:WARMUP"), ("linear:x", "must be a number"),
     ("cosine:1", r"must be in \[0, 1\)")],
)
def test_schedule_errors(schedule: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_schedule(schedule)


def test_alpha_errors_and_repeats() -> None:
    with pytest.raises(UsageError, match="alpha must be >= 0"):
        study_settings([-0.1], [])
    with pytest.raises(UsageError, match="settings repeat"):
        study_settings([0.1, 0.1], [])


def test_command_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["balance", "--alphas", "0,fast"]) == 2
    assert "--alphas must be comma-separated numbers" in capsys.readouterr().err
    assert main(["balance", "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
