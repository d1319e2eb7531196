"""Fixtures for the web-app tests (registered in conftest.py): real servers on 127.0.0.1.

``ui_cache`` holds the untrained tiny model (built once per test run); ``ui_settings`` is a fresh
data directory with short answers; ``ui_server`` is the real app serving on a free port in this
process (``.url``, ``.demo``, ``.settings``, ``.store``); :func:`serve_process` runs
``python -m pulse_app serve`` as a process of its own (crash, memory and privacy tests);
``browser`` is Debian's headless Chromium.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest


#: Debian's chromium, driven by playwright (never `playwright install`).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ui_cache(tmp_path_factory) -> Path:
    """A cache directory with the untrained tiny model already built (``model="tiny-untrained"``:
    its long random answers exercise streaming and Stop; the shipped mini model stops early)."""
    from pulse_app.engine.tiny import ensure_tiny

    cache = tmp_path_factory.mktemp("ui-cache")
    ensure_tiny(cache)
    return cache


def make_ui_settings(data_dir: Path, cache: Path, **overrides):
    from pulse_app.settings import Settings

    values = dict(model="tiny-untrained", data_dir=str(data_dir), cache_dir=str(cache),
                  device="cpu", temperature=0.0,
                  max_new_tokens=8, port=free_port(), host="127.0.0.1")
    values.update(overrides)
    return Settings.load(**values)


@pytest.fixture
def ui_settings(tmp_path, ui_cache):
    return make_ui_settings(tmp_path / "data", ui_cache)


def start_server(settings) -> SimpleNamespace:
    """Build the app and serve it in this process (a thread); ``.close()`` stops it."""
    from pulse_app.ui.app import build_app

    demo, launch_kwargs = build_app(settings)
    launch_kwargs.pop("theme", None)
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs)
    chat = demo.pulse_ui.chat
    return SimpleNamespace(url=f"http://127.0.0.1:{settings.port}/", demo=demo,
                           settings=settings, chat=chat, store=chat.store, close=demo.close)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (one per test module)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory, ui_cache):
    server = start_server(make_ui_settings(tmp_path_factory.mktemp("ui-data"), ui_cache))
    yield server
    server.close()


def serve_process(data_dir, cache_dir, port, log_path, *extra_args: str,
                  env: dict | None = None) -> subprocess.Popen:
    """``python -m pulse_app serve`` (tiny model, CPU) on ``port``, once it answers."""
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PULSE_DEVICE": "cpu",
           **(env or {})}
    command = [sys.executable, "-m", "pulse_app", "serve", "--model", "tiny-untrained",
               "--port", str(port), "--data-dir", str(data_dir), "--cache-dir", str(cache_dir),
               "--temperature", "0", *extra_args]
    process = subprocess.Popen(command, cwd=repo, env=env, stdout=open(log_path, "ab"),
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}: "
                        f"{Path(log_path).read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    pytest.fail(f"serve did not answer within 120 s: {Path(log_path).read_text()[-2000:]}")
