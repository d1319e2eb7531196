"""Memory of `python -m pulse_app serve` under the worst small upload: a 7700 x 7700 PNG of a
couple of hundred kB (just under the 60 MP cap), eight at once through ``/session_start`` (no
sign-in needed). Before the decode budget the server went from 1.5 GB to 10.9 GB and stayed at
8.8 GB; now its resident memory stays under :data:`PEAK_BUDGET` and comes back to within
:data:`RETURN_MARGIN` of where it started."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw

from pulse_app.auth import new_owner_token
from tests.fixtures_ui import free_port, serve_process

SIDE = 7700
UPLOADS = 8
#: Resident memory the server may reach (the default image_memory_mb is 1024 MB).
PEAK_BUDGET = 2_000_000_000
RETURN_MARGIN = 200_000_000


def big_small_png(path) -> None:
    """59 megapixels of ECG-like grid that compress to ~200 kB."""
    image = Image.new("RGB", (SIDE, SIDE), "white")
    draw = ImageDraw.Draw(image)
    for at in range(0, SIDE, 200):
        draw.line([(0, at), (SIDE, at)], fill=(255, 180, 180), width=2)
        draw.line([(at, 0), (at, SIDE)], fill=(255, 180, 180), width=2)
    draw.line([(0, 3000), (SIDE, 3100)], fill="black", width=6)
    image.save(path, optimize=True)


def test_eight_huge_uploads_at_once_stay_within_the_memory_budget(tmp_path, ui_cache,
                                                                   shared_data):
    png = tmp_path / "scan.png"
    big_small_png(png)
    assert png.stat().st_size < 400_000
    port = free_port()
    server = serve_process(tmp_path / "data", ui_cache, port, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}/"
    try:
        warm = Client(url, verbose=False, download_files=False)      # model loaded, caches up
        token = new_owner_token()
        session = warm.predict(handle_file(str(shared_data / "ecg-images" / "ecg00010.png")),
                               token, 1, api_name="/session_start")
        warm.predict(token, session, "Rate?", 0.0, 0.7, 4, api_name="/session_ask")
        process = psutil.Process(server.pid)
        time.sleep(1)
        start = peak = process.memory_info().rss
        done = threading.Event()

        def watch():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        def upload(_):
            client = Client(url, verbose=False, download_files=False)
            return client.predict(handle_file(str(png)), new_owner_token(), 1,
                                  api_name="/session_start")

        with ThreadPoolExecutor(UPLOADS) as pool:
            sessions = list(pool.map(upload, range(UPLOADS)))
        time.sleep(2)
        after = process.memory_info().rss
        done.set()
        watcher.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = (f"start {start / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB, "
              f"after {after / 1e6:.0f} MB")
    print(report)
    assert len(set(sessions)) == UPLOADS, "every upload was stored"
    assert peak < PEAK_BUDGET, report
    assert after - start < RETURN_MARGIN, report
