"""Fixtures for the ecg tests (registered in conftest.py); other areas may use them too.

- ``cinc_record_paths``: the six real CinC 2021 records of ../shared/data/ecg-records (``.hea``).
- ``cinc_record``: E07509 (RBBB + sinus bradycardia, 71-year-old man) read as a ``Record``.
- ``simulated_record``: a 10 s, 500 Hz, 12-lead simulated sinus rhythm at 75 bpm (seed 0).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cinc_record_paths(shared_data) -> list[Path]:
    paths = sorted((shared_data / "ecg-records").glob("*.hea"))
    assert len(paths) == 6, f"expected the 6 CinC fixtures in {shared_data / 'ecg-records'}"
    return paths


@pytest.fixture(scope="session")
def cinc_record(shared_data):
    from pulse_app.ecg.records import read_record

    return read_record(shared_data / "ecg-records" / "E07509.hea")


@pytest.fixture(scope="session")
def simulated_record():
    from pulse_app.ecg.simulate import ecg_simulate

    return ecg_simulate(seed=0)
