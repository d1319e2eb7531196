"""App cold start: process start -> the server answers HTTP, and -> the first answer streamed.

Ours: ``python -m pulse_app serve`` as a fresh process (offline default model, CPU, an empty data
directory; the tiny model is built once beforehand, as after the first ever start). "Ready" is
the first HTTP 200 on ``/``; "first answer" adds a gradio_client upload + an 8-token question.
Baseline, measured in the same run: ``python -c "import gradio"`` (the floor for any Gradio app).
Medians of ``--runs`` fresh processes.

    python -m bench.cold_start [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO.parent / "shared" / "data" / "ecg-images" / "ecg00010.png"   # read at run time
ENV = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PULSE_DEVICE": "cpu"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def import_gradio_s() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True, env=ENV)
    return time.perf_counter() - start


def serve_s(cache_dir: Path) -> tuple[float, float]:
    """Seconds from process start to HTTP 200, and to the end of the first answer."""
    import httpx
    from gradio_client import Client, handle_file

    from pulse_app.auth import new_owner_token

    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "pulse_app", "serve", "--port", str(port), "--data-dir",
             data_dir, "--cache-dir", str(cache_dir)], cwd=REPO, env=ENV,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"serve exited with {process.returncode}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            ready = time.perf_counter() - start
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
            token = new_owner_token()
            session = client.predict(handle_file(str(IMAGE)), token, 1, api_name="/session_start")
            client.predict(token, session, "What is the rhythm?", 0.0, 0.7, 8,
                           api_name="/session_ask")
            first_answer = time.perf_counter() - start
            client.close()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    return ready, first_answer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    from pulse_app.engine.tiny import ensure_tiny

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        ensure_tiny(cache)
        build = time.perf_counter() - start
        baseline = statistics.median(import_gradio_s() for _ in range(args.runs))
        runs = [serve_s(Path(cache)) for _ in range(args.runs)]
    ready = statistics.median(r for r, _ in runs)
    answer = statistics.median(a for _, a in runs)
    print(f"baseline  python -c 'import gradio':     {baseline:6.2f} s (median of {args.runs})")
    print(f"ours      serve -> HTTP 200:              {ready:6.2f} s  ratio "
          f"{ready / baseline:.2f}x the baseline")
    print(f"ours      serve -> first answer (8 tok):  {answer:6.2f} s  ratio "
          f"{answer / baseline:.2f}x the baseline")
    print(f"(once per machine: building the untrained tiny model took {build:.2f} s)")


if __name__ == "__main__":
    main()
