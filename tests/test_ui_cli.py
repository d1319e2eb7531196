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


def test_python_app_py_serves_like_a_space(tmp_path, ui_cache):
    """`python app.py` with a Space's environment: settings from PULSE_*, listening on 0.0.0.0."""
    import os
    import signal
    import time

    import httpx

    from tests.fixtures_ui import free_port

    port = free_port()
    env = {**os.environ, "SPACE_ID": "someone/pulse", "PULSE_PORT": str(port),
           "PULSE_DATA_DIR": str(tmp_path / "data"), "PULSE_CACHE_DIR": str(ui_cache),
           "PULSE_DEVICE": "cpu", "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.monotonic() + 90, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert page is not None and page.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert f"0.0.0.0:{port}" in output
