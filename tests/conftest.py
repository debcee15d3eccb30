"""Shared fixtures: an engine on the simulated board with a virtual clock.

Building the demo database and synthesizing every prompt takes a few seconds, so it happens
once per test session in a template folder; each test gets a copy of the database and shares
the prompt cache (a cache, keyed by text and voice, so sharing it is safe).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from support import REPO, make_config, run_virtual


@pytest.fixture(scope="session")
def engine_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hotline.engine import Engine

    root = tmp_path_factory.mktemp("engine-template")

    async def build() -> None:
        engine = Engine(make_config(root), watch_flows=False)
        await engine.start()
        await engine.stop()

    run_virtual(build)
    return root


@pytest.fixture
def engine_config(engine_template: Path, tmp_path: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    return make_config(tmp_path, cache=engine_template / "cache")


@pytest.fixture
def acd_config(engine_template: Path, tmp_path: Path) -> Any:
    """An engine with the contact centre: the demo queues and agents of ``queues/``."""
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    return make_config(
        tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(REPO / "queues")}
    )
