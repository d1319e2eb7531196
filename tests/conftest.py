"""Shared test set-up: where the real fixtures live, and per-area fixture modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Real ECG records and images (../shared/data beside the checkout; see its README).
SHARED_DATA = Path(os.environ.get("PULSE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
#: Screenshots, PDFs and logs tests leave for a human to look at (ignored by git).
ARTIFACTS = REPO / "test-artifacts"

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

pytest_plugins = ["tests.fixtures_engine", "tests.fixtures_ecg", "tests.fixtures_ui"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}: clone the project with ../shared "
                    "beside it, or set PULSE_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

