"""Shared test configuration: paths to ../shared and the real-Triton fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["triton_fixtures", "golden"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED}")
    return SHARED
