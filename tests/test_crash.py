"""Crash safety of the real server: `python -m pulse_app serve` on a SQLite file, two finished
turns, a long third answer streaming, SIGKILL, restart: the two finished turns are all there and
the session goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from gradio_client import Client, handle_file

from pulse_app.auth import new_owner_token
from pulse_app.store import Store
from tests.fixtures_ui import free_port, serve_process


def test_sigkill_during_generation_keeps_finished_turns(tmp_path, ui_cache, shared_data):
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "serve.log"
    token = new_owner_token()
    server = serve_process(data_dir, ui_cache, port, log)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        session_id = client.predict(
            handle_file(str(shared_data / "ecg-images" / "ecg00030.jpg")), token, 1,
            api_name="/session_start")
        finished = [client.predict(token, session_id, question, 0.0, 0.7, 6,
                                   api_name="/session_ask")
                    for question in ("What is the rhythm?", "And the axis?")]
        job = client.submit(token, session_id, "Write a very long report.", 0.0, 0.7, 2000,
                            api_name="/session_ask")
        deadline = time.monotonic() + 60
        while len(job.outputs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(job.outputs()) >= 2 and not job.done(), "the third answer was not streaming"
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        client.close()
    finally:
        if server.poll() is None:
            server.kill()

    owner = f"browser:{token}"
    store = Store(f"sqlite:///{data_dir / 'pulse.db'}")
    stored = store.get_session(owner, session_id)
    assert [t.question for t in stored.turns] == ["What is the rhythm?", "And the axis?"]
    assert [t.answer for t in stored.turns] == [a.strip() for a in finished]
    store.close()

    server = serve_process(data_dir, ui_cache, port, log)       # restart on the same files
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        assert client.predict(token, session_id, "Anything else?", 0.0, 0.7, 6,
                              api_name="/session_ask").strip()
        client.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    store = Store(f"sqlite:///{data_dir / 'pulse.db'}")
    assert [t.question for t in store.get_session(owner, session_id).turns] == [
        "What is the rhythm?", "And the axis?", "Anything else?"]
    store.close()
