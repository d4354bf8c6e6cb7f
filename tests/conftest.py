"""Fixtures shared by the training tests: a small world and toy-expert teachers, built once per module."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sugar.world import build_world

    root = tmp_path_factory.mktemp("world")
    build_world(root, seed=0, scale="small", progress=False)
    return root


@pytest.fixture(scope="module")
def teachers(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sugar.teachers.fit import FitConfig, fit_teachers
    from sugar.teachers.toy import ToyImageExpert, ToyTextExpert

    out = tmp_path_factory.mktemp("teachers")
    fit_teachers(
        out, world=world, image_expert=ToyImageExpert(), text_expert=ToyTextExpert(),
        config=FitConfig(epochs=3), progress=False, log=None,
    )
    return out
