"""Run modes: `python -m pulse_app serve` flags, `make run`, and the Space entry point."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_serve_has_the_documented_flags():
    result = subprocess.run([sys.executable, "-m", "pulse_app", "serve", "--help"], cwd=REPO,
                            capture_output=True, text=True, check=True)
    for flag in ("--host", "--port", "--model", "--backend", "--url", "--data-dir", "--auth",
                 "--share", "--concurrency", "--queue-size"):
        assert flag in result.stdout


def test_a_bad_flag_value_is_one_line_not_a_traceback():
    result = subprocess.run([sys.executable, "-m", "pulse_app", "serve", "--backend", "nope"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_make_run_starts_serve_on_localhost_7860():
    result = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True,
                            check=True)
    assert "-m pulse_app serve --host 127.0.0.1 --port 7860" in result.stdout


def test_space_card_points_at_app_py_and_pulse_7b():
    card = (REPO / "spaces.yaml").read_text()
    for line in ("sdk: gradio", "app_file: app.py", "- PULSE-ECG/PULSE-7B", "suggested_hardware:"):
        assert line in card
    assert "launch(" in (REPO / "app.py").read_text()
