"""Shared test configuration: paths to ../shared, the real-Triton and real-Redis fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["triton_fixtures", "golden", "redis_fixtures", "chart_fixtures", "web_fixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED}")
    return SHARED


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the item (``item.rep_setup``, ``item.rep_call``): fixtures keep artifacts of failed
    tests (tests/web_fixtures.py saves browser screenshots)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
