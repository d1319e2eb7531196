"""One core path: every way of asking the model (web session, ``/ask``, ``/session_start`` +
``/session_ask``, ``serve-openai``, the CLI) takes the same upload and the same request values
to the same outcome — the same error message, or, for a WFDB record at temperature 0, the same
answer — and the settings are read and documented in one place."""

from __future__ import annotations

import ast
import base64
import html
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from pulse_app.auth import new_owner_token
from pulse_app.ui.owner import OWNER_COOKIE
from tests.conftest import REPO
from tests.fixtures_ui import make_ui_settings, start_server

MAX_PIXELS = 1_000_000
QUESTION = "What is the rhythm?"


@pytest.fixture(scope="module")
def app(tmp_path_factory, ui_cache):
    server = start_server(make_ui_settings(tmp_path_factory.mktemp("one-core"), ui_cache,
                                           max_pixels=MAX_PIXELS))
    yield server
    server.close()


@pytest.fixture(scope="module")
def openai_url(app):
    from pulse_app.engine.openai_server import make_server

    server = make_server(app.chat.backend, app.settings, 0, model_name="pulse")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture(scope="module")
def uploads(tmp_path_factory, shared_data) -> dict[str, list[Path]]:
    """The same four uploads for every entry point (each file in a folder of its own)."""
    folder = tmp_path_factory.mktemp("uploads")
    (folder / "bad").mkdir()
    (folder / "bad" / "ecg.png").write_bytes(b"this is not an image at all")
    (folder / "big").mkdir()
    Image.new("RGB", (1500, 1000), "white").save(folder / "big" / "ecg-big.png")
    record = []
    for suffix in (".hea", ".mat"):
        (folder / suffix[1:]).mkdir()
        record.append(Path(shutil.copy(shared_data / "ecg-records" / f"E07509{suffix}",
                                       folder / suffix[1:])))
    good = shared_data / "ecg-images" / "ecg00010.png"
    return {"bad": [folder / "bad" / "ecg.png"], "big": [folder / "big" / "ecg-big.png"],
            "record": record, "good": [good]}


def outcome(call) -> str:
    """The answer, or the error message, of one entry point."""
    try:
        return "answer: " + call().strip()
    except Exception as error:  # noqa: BLE001 - each entry point has its own exception type
        return "error: " + str(getattr(error, "message", None) or error).strip()


# -- the five entry points: (files, temperature) -> answer text -----------------------------------

def via_web_session(app, files, temperature):
    ui, token = app.demo.pulse_ui, new_owner_token()
    request = gr.Request(session_hash=f"page-{token[:6]}", cookies={OWNER_COOKIE: token})
    _, view, *_ = ui.upload([str(f) for f in files], 1, request)
    updates = list(ui.ask(view, QUESTION, [], temperature, 0.7, 8, False, request))
    shown = updates[-1][0][-1]["content"].split("<br><br><em>—")[0]
    return html.unescape(shown.replace("<br>", "\n"))              # the chat shows plain text


def via_ask_endpoint(app, files, temperature):
    client = Client(app.url, verbose=False)
    return client.predict(handle_file(str(files[0])), QUESTION, "[]", temperature, 0.7, 8,
                          [handle_file(str(f)) for f in files[1:]], api_name="/ask")


def via_session_api(app, files, temperature):
    client, token = Client(app.url, verbose=False), new_owner_token()
    session_id = client.predict(handle_file(str(files[0])), token, 1,
                                [handle_file(str(f)) for f in files[1:]],
                                api_name="/session_start")
    return client.predict(token, session_id, QUESTION, temperature, 0.7, 8,
                          api_name="/session_ask")


def via_serve_openai(url, files, temperature):
    parts = [{"type": "file", "file": {"filename": f.name,
                                       "file_data": base64.b64encode(f.read_bytes()).decode()}}
             for f in files]
    reply = httpx.post(f"{url}/chat/completions", timeout=120, json={
        "model": "pulse", "temperature": temperature, "max_tokens": 8,
        "messages": [{"role": "user", "content": [*parts, {"type": "text", "text": QUESTION}]}]})
    body = reply.json()
    if reply.status_code != 200:
        raise RuntimeError(body["error"]["message"])
    return body["choices"][0]["message"]["content"]


def via_cli(app, files, temperature):
    """One file on the command line: a record's ``.hea`` with its signal file beside it."""
    if len(files) > 1:
        together = files[0].parent.parent / "record-together"
        together.mkdir(exist_ok=True)
        files = [Path(shutil.copy(f, together)) for f in files]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "PULSE_CACHE_DIR": app.settings.cache_dir, "PULSE_DATA_DIR": app.settings.data_dir}
    result = subprocess.run([sys.executable, "-m", "pulse_app", "ask", str(files[0]), QUESTION,
                             "--model", "tiny-untrained", "--device", "cpu", "--temperature",
                             str(temperature), "--max-new-tokens", "8", "--max-pixels",
                             str(MAX_PIXELS)], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    if result.returncode:
        raise RuntimeError(result.stderr.strip().splitlines()[-1].removeprefix("error: "))
    return result.stdout


@pytest.fixture(scope="module")
def entry_points(app, openai_url):
    return {"web session": lambda f, t: via_web_session(app, f, t),
            "/ask": lambda f, t: via_ask_endpoint(app, f, t),
            "/session_start + /session_ask": lambda f, t: via_session_api(app, f, t),
            "serve-openai": lambda f, t: via_serve_openai(openai_url, f, t),
            "CLI ask": lambda f, t: via_cli(app, f, t)}


@pytest.mark.parametrize("case, temperature, expected", [
    ("bad", 0.0, "error: ecg.png is not an image this app can read"),
    ("big", 0.0, "error: ecg-big.png is 1500 x 1000 pixels, more than the 1 megapixel limit"),
    ("good", 5.0, "error: temperature must be from 0 to 2 (got 5)"),
    ("record", 0.0, "answer: "),
])
def test_every_entry_point_has_the_same_outcome(entry_points, uploads, case, temperature,
                                                 expected):
    outcomes = {name: outcome(lambda call=call: call(uploads[case], temperature))
                for name, call in entry_points.items()}
    assert all(text.startswith(expected) for text in outcomes.values()), outcomes
    assert len(set(outcomes.values())) == 1, outcomes     # word for word, answers included


# -- settings: read in one place, documented from one table ---------------------------------------

def test_the_readme_settings_table_is_generated_from_the_settings():
    from pulse_app.settings import README, TABLE_END, TABLE_START, markdown_table

    text = README.read_text(encoding="utf-8")
    table = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert table == markdown_table(), "run: python -m pulse_app.settings --write-readme"


def test_only_settings_reads_the_environment():
    readers = []
    for path in [REPO / "app.py", *sorted((REPO / "pulse_app").rglob("*.py"))]:
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            reads = (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
                     and isinstance(node.value, ast.Name) and node.value.id == "os")
            if reads and not _sets_only(node, path):
                readers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert readers == []


def _sets_only(node: ast.Attribute, path: Path) -> bool:
    """``os.environ.setdefault(...)`` and ``os.environ[NAME] = ...`` tell libraries something;
    they read no setting."""
    line = path.read_text(encoding="utf-8").splitlines()[node.lineno - 1].strip()
    return "os.environ.setdefault(" in line or re.match(r"os\.environ\[[^]]+\] = ", line) is not None
