"""Fixtures for the ecg tests (registered in conftest.py); other areas may use them too.

- ``cinc_record_paths``: the six real CinC 2021 records of ../shared/data/ecg-records (``.hea``).
- ``cinc_record``: E07509 (RBBB + sinus bradycardia, 71-year-old man) read as a ``Record``.
- ``simulated_record``: a 10 s, 500 Hz, 12-lead simulated sinus rhythm at 75 bpm (seed 0).
- ``phone_photo``: E07509 drawn as a hand-held phone photo (JPEG; tilted, seen at an angle).
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
def phone_photo(tmp_path_factory, cinc_record) -> Path:
    """A real record drawn by the project's renderer as a hand-held phone photo (26.9 degrees,
    perspective, table around the page), saved as a JPEG like a phone's."""
    from pulse_app.ecg.render import render_ecg

    path = tmp_path_factory.mktemp("phone-photo") / "IMG_0001.jpg"
    render_ecg(cinc_record, distort="phone", seed=2, dpi=150).image.save(path, quality=92)
    return path


@pytest.fixture(scope="session")
def simulated_record():
    from pulse_app.ecg.simulate import ecg_simulate

    return ecg_simulate(seed=0)
