"""The web app against a hostile client, on a real server on 127.0.0.1 (tiny model): what an
attacker probing it found — a published BrowserState secret, out-of-range or mistyped values
accepted or answered with library text, a list stored as its repr, NUL bytes stored, reports and
uploads served by URL to anyone, unlimited sign-in attempts — each refused now."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from pypdf import PdfReader

from pulse_app.auth import hash_password, new_owner_token
from pulse_app.ui.owner import OWNER_COOKIE
from tests.fixtures_ui import make_ui_settings, start_server


@pytest.fixture(scope="module")
def app(tmp_path_factory, ui_cache):
    server = start_server(make_ui_settings(tmp_path_factory.mktemp("web-hardening"), ui_cache))
    yield server
    server.close()


@pytest.fixture(scope="module")
def client(app):
    return Client(app.url, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def session(client, shared_data):
    """(token, session id) of a stored session with no turns."""
    token = new_owner_token()
    session_id = client.predict(handle_file(str(shared_data / "ecg-images" / "ecg00010.png")),
                                token, 1, api_name="/session_start")
    return token, session_id


def call(url: str, api_name: str, data_json: str) -> str:
    """An API call as raw HTTP (Gradio's REST protocol), so values a Python client refuses to
    send (NaN, Infinity) go on the wire as an attacker would send them; returns the error
    message, or "" when the call succeeded."""
    posted = httpx.post(f"{url}gradio_api/call/{api_name}", timeout=30,
                        content=f'{{"data": {data_json}}}'.encode(),
                        headers={"Content-Type": "application/json"})
    assert posted.status_code == 200, posted.text
    event_id = posted.json()["event_id"]
    stream = httpx.get(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=120).text
    events = re.findall(r"event: (\w+)\ndata: (.*)", stream)
    kind, data = events[-1]
    if kind != "error":
        return ""
    error = json.loads(data)
    return error.get("error") if isinstance(error, dict) else str(error)


def upload(url: str, path: Path) -> str:
    """Gradio's upload route, as a browser uses it: the path the server keeps the file at."""
    with open(path, "rb") as file:
        response = httpx.post(f"{url}gradio_api/upload", files={"files": (path.name, file)},
                              timeout=60)
    assert response.status_code == 200, response.text
    return response.json()[0]


def page_request(token=None, username=None) -> gr.Request:
    return gr.Request(session_hash="page", username=username,
                      cookies={OWNER_COOKIE: token} if token else {})


def test_the_owner_token_is_an_httponly_cookie_and_no_secret_is_published(app):
    first = httpx.get(app.url, timeout=30)
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{OWNER_COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    token = cookie.split("=", 1)[1].split(";")[0]
    again = httpx.get(app.url, cookies={OWNER_COOKIE: token}, timeout=30)
    assert "set-cookie" not in again.headers, "a valid cookie is kept"
    for bad in (token + "\n", token[:-1], "x" * 43 + "!"):
        assert OWNER_COOKIE in httpx.get(app.url, cookies={OWNER_COOKIE: bad.strip("\n") + "="},
                                         timeout=30).headers.get("set-cookie", "")
    config = httpx.get(app.url + "config", timeout=30).text
    assert '"secret"' not in config and "browserstate" not in config.lower()
    assert not list(Path(app.settings.data_dir).glob("*.key")), "no key file is made"


@pytest.mark.parametrize("temperature, top_p, tokens, words", [
    ("1e9", "0.7", "8", "temperature must be from 0 to 2"),
    ("NaN", "0.7", "8", "temperature must be a number"),
    ("Infinity", "0.7", "8", "temperature must be a number"),
    ("0.2", "0.7", "0", "max_new_tokens must be a whole number from 1"),
    ("0.2", "0", "8", "top_p must be a number above 0"),
    ("0.2", "2", "8", "top_p must be a number above 0"),
    ("[0.2]", "0.7", "8", "temperature must be a number (got [0.2])"),
    ('"hot"', "0.7", "8", "temperature must be a number (got 'hot')"),
])
def test_out_of_range_and_mistyped_values_get_the_core_words(app, client, session, shared_data,
                                                             temperature, top_p, tokens, words):
    token, session_id = session
    image = json.dumps({"path": upload(app.url, shared_data / "ecg-images" / "ecg00010.png"),
                        "meta": {"_type": "gradio.FileData"}})
    numbers = f"{temperature}, {top_p}, {tokens}"
    for message in (call(app.url, "ask", f'[{image}, "Rate?", "[]", {numbers}, [], false, false]'),
                    call(app.url, "session_ask", f'["{token}", "{session_id}", "Rate?", '
                                                 f'{numbers}]')):
        assert words in message
        assert "float()" not in message and "Error" not in message
    assert app.store.get_session(f"browser:{token}", session_id).turns == []


def test_a_question_must_be_text_without_nul(app, client, session):
    token, session_id = session
    for question, words in ((["Rate?"], "the question must be text (got list)"),
                            ("Rate?\x00", "the question contains a NUL character"),
                            (42, "the question must be text (got int)")):
        with pytest.raises(AppError, match=re.escape(words)):
            client.predict(token, session_id, question, 0.0, 0.7, 8, api_name="/session_ask")
    assert app.store.get_session(f"browser:{token}", session_id).turns == []


def test_a_token_with_a_trailing_newline_is_not_another_owner(client, shared_data, session):
    token, session_id = session
    image = handle_file(str(shared_data / "ecg-images" / "ecg00010.png"))
    with pytest.raises(AppError, match="private space"):
        client.predict(image, token + "\n", 1, api_name="/session_start")
    with pytest.raises(AppError, match="private space"):
        client.predict(token + "\n", session_id, "Rate?", 0.0, 0.7, 8, api_name="/session_ask")
    with pytest.raises(AppError, match="the page must be a whole number"):
        client.predict(image, token, "2", api_name="/session_start")


def test_titles_and_notes_are_text_without_nul(app, session):
    token, session_id = session
    ui, request = app.demo.pulse_ui, page_request(token)
    for title in (["Chest pain"], "Chest\x00pain"):
        with pytest.raises(gr.Error, match="title"):
            ui.rename_session(session_id, title, request)
    with pytest.raises(gr.Error, match="note"):
        ui.export_pdf(session_id, None, "seen\x00", request)
    too_long = "x" * (app.settings.max_note_chars + 1)
    with pytest.raises(gr.Error, match="the note is .* characters long"):
        ui.export_pdf(session_id, None, too_long, request)
    assert app.store.get_session(f"browser:{token}", session_id).title != "Chest pain"


def test_a_report_is_served_once_to_its_owner_only(app, session):
    token, session_id = session
    link = app.demo.pulse_ui.export_pdf(session_id, None, "Seen by Dr. Osei.",
                                        page_request(token))
    path = re.search(r'href="(pulse/report/[\w-]+)"', link).group(1)
    url = app.url + path
    assert httpx.get(url, timeout=30).status_code == 404                    # no cookie
    stranger = {OWNER_COOKIE: new_owner_token()}
    assert httpx.get(url, cookies=stranger, timeout=30).status_code == 404  # another browser
    mine = httpx.get(url, cookies={OWNER_COOKIE: token}, timeout=30)
    assert mine.status_code == 200 and mine.headers["content-type"] == "application/pdf"
    assert mine.headers["cache-control"] == "no-store"
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(mine.content)).pages)
    assert "Seen by Dr. Osei." in text
    assert httpx.get(url, cookies={OWNER_COOKIE: token}, timeout=30).status_code == 404, \
        "one download: the report is gone from the server"


def test_the_file_route_serves_only_the_example_images(app, client, shared_data):
    from pulse_app.ui.handlers import example_paths

    for path in ("/etc/passwd", app.settings.data_dir + "/pulse.db", "http://127.0.0.1/"):
        assert httpx.get(f"{app.url}gradio_api/file={path}", timeout=30).status_code == 404
    raw = upload(app.url, shared_data / "ecg-images" / "ecg00010.png")
    assert Path(raw).is_file(), "Gradio keeps an upload until its event reads it"
    assert httpx.get(f"{app.url}gradio_api/file={raw}", timeout=30).status_code == 404
    examples = example_paths(app.settings.examples_path)
    assert examples, "the project's example pages are committed"
    assert httpx.get(f"{app.url}gradio_api/file={examples[0]}", timeout=30).status_code == 200


# -- accounts ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def accounts_app(tmp_path_factory, ui_cache):
    users = ",".join(f"{name}:{hash_password('right-' + name, n=2**10)}"
                     for name in ("ana", "bob", "cy"))
    server = start_server(make_ui_settings(tmp_path_factory.mktemp("accounts"), ui_cache,
                                           auth=users))
    yield server
    server.close()


def sign_in(url, user, password, address="127.0.0.1") -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30,
                          transport=httpx.HTTPTransport(local_address=address))
    client.response = client.post("login", data={"username": user, "password": password})
    return client


def test_sign_in_attempts_are_limited_per_user_and_per_address(accounts_app):
    url = accounts_app.url
    for attempt in range(10):                      # ana's password guessed from two addresses
        address = "127.0.0.2" if attempt % 2 else "127.0.0.3"
        assert sign_in(url, "ana", f"guess-{attempt}", address).response.status_code == 400
    refused = sign_in(url, "ana", "right-ana", "127.0.0.4").response
    assert refused.status_code == 429 and "too many failed sign-ins" in refused.text
    assert sign_in(url, "bob", "right-bob", "127.0.0.4").response.status_code == 200

    for attempt in range(10):                      # one address trying many accounts
        assert sign_in(url, f"user{attempt}", "guess", "127.0.0.5").response.status_code == 400
    refused = sign_in(url, "cy", "right-cy", "127.0.0.5").response
    assert refused.status_code == 429 and "this address" in refused.text
    assert sign_in(url, "cy", "right-cy", "127.0.0.6").response.status_code == 200


def test_another_signed_in_account_cannot_download_a_report(accounts_app, shared_data):
    ui = accounts_app.demo.pulse_ui
    draft = ui.chat.open_upload("user:bob", [str(shared_data / "ecg-images" / "ecg00010.png")])
    stored = ui.chat.start_session("user:bob", draft.id)
    link = ui.export_pdf(stored.id, None, "", page_request(username="bob"))
    path = re.search(r'href="(pulse/report/[\w-]+)"', link).group(1)
    assert httpx.get(accounts_app.url + path, timeout=30).status_code == 404   # signed out
    cy = sign_in(accounts_app.url, "cy", "right-cy", "127.0.0.7")
    assert cy.response.status_code == 200 and cy.get(path).status_code == 404
    anonymous = {OWNER_COOKIE: new_owner_token()}
    assert httpx.get(accounts_app.url + path, cookies=anonymous, timeout=30).status_code == 404
    bob = sign_in(accounts_app.url, "bob", "right-bob", "127.0.0.7")
    assert bob.get(path).status_code == 200


def test_exports_run_outside_the_model_queue(app):
    """A PDF export has its own concurrency group (and its own process): it never waits for
    an answer, nor holds one up."""
    groups = {fn.name: fn.concurrency_id for fn in app.demo.fns.values()}
    assert groups["export_pdf"] == "export"
    assert groups["ask"] == groups["api_ask"] == "gpu"
