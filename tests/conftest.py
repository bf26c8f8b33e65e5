"""Shared by every test: pytest's own ``pytester`` (the plugin's end-to-end tests run pytest through it), and the
repository's fixtures by path. pytest puts this folder on ``sys.path``, so helpers here (``attention_setup``) and
in ``unit/`` (``nemolog``) import by name."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
