"""Several app replicas on one PostgreSQL database behave as one app for every owner.

Two ``python -m pulse_app serve`` processes share a real PostgreSQL server: 20 visitors x 3 turns
through gradio_client, each visitor starting on one replica and alternating between both, every
turn stored once, in order, under its owner; a report prepared elsewhere is downloaded once
through a replica by the browser that owns it. Two apps with accounts in this process show that
a sign-in made on one replica holds on the other (and a sign-out everywhere), and that a session
started in one is listed, continued and exported in the other.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from gradio_client import Client, handle_file

from pulse_app.auth import hash_password, new_owner_token
from pulse_app.chat import ChatService
from pulse_app.settings import Settings
from pulse_app.store import Store
from pulse_app.ui.owner import OWNER_COOKIE
from tests.fixtures_ui import free_port, make_ui_settings, serve_process, start_server

VISITORS = 20
QUESTIONS = ("What is the rhythm?", "What is the heart rate?", "Is there ST elevation?")
IMAGES = ("ecg00010.png", "ecg00030.jpg", "ecg00040.jpg", "fullScan.png")


def visit(urls: list[str], image: str, number: int) -> tuple[str, str, list[str]]:
    """Start on replica ``number % 2``, then ask each question on the other one in turn."""
    clients = [Client(url, verbose=False, download_files=False,
                      httpx_kwargs={"timeout": 300}) for url in urls]     # a loaded 2-core CI
    token = new_owner_token()
    first = number % 2
    session_id = clients[first].predict(handle_file(image), token, 1, api_name="/session_start")
    answers = []
    for turn, question in enumerate(QUESTIONS):
        client = clients[(first + 1 + turn) % 2]
        job = client.submit(token, session_id, f"{question} (visitor {number})", 0.0, 0.7, 6,
                            api_name="/session_ask")
        answers.append(job.result(timeout=300))
    for client in clients:
        client.close()
    return token, session_id, answers


def test_two_serve_processes_on_one_postgresql_are_one_app(pg_url, ui_cache, tmp_path,
                                                           shared_data):
    Store(pg_url).close()                                  # migrated once, before the replicas
    ports = [free_port(), free_port()]
    replicas = [serve_process(tmp_path / f"replica-{n}", ui_cache, port, tmp_path / f"{n}.log",
                              "--db-url", pg_url, "--db-pool-size", "3")
                for n, port in enumerate(ports)]
    try:
        urls = [f"http://127.0.0.1:{port}/" for port in ports]
        images = [str(shared_data / "ecg-images" / IMAGES[i % len(IMAGES)])
                  for i in range(VISITORS)]
        with ThreadPoolExecutor(VISITORS) as pool:
            visits = list(pool.map(visit, [urls] * VISITORS, images, range(VISITORS)))
        report_from_another_replica(pg_url, urls, *visits[0][:2])
    finally:
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            replica.wait(timeout=30)

    store = Store(pg_url)
    try:
        assert len({token for token, _, _ in visits}) == VISITORS
        for number, (token, session_id, answers) in enumerate(visits):
            owner = f"browser:{token}"
            assert all(answer.strip() for answer in answers), f"visitor {number}: empty answer"
            assert [s.id for s in store.list_sessions(owner)] == [session_id]
            stored = store.get_session(owner, session_id)
            assert [t.question for t in stored.turns] == [
                f"{q} (visitor {number})" for q in QUESTIONS]
            assert [t.index for t in stored.turns] == [0, 1, 2]
            assert [t.answer for t in stored.turns] == [a.strip() for a in answers]
            assert not any(t.stopped for t in stored.turns)
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM turns").scalar() == \
                VISITORS * len(QUESTIONS)
            assert connection.exec_driver_sql(
                "SELECT count(*) FROM sessions WHERE answering_by IS NOT NULL").scalar() == 0
    finally:
        store.close()


def report_from_another_replica(db_url: str, urls: list[str], token: str, session_id: str):
    """A report prepared by a third replica (the core, in this process) is downloaded through
    a serve process, once, by the browser that owns it."""
    from pypdf import PdfReader

    chat = ChatService(Settings.load(db_url=db_url))
    owner = f"browser:{token}"
    path = f"pulse/report/{chat.prepare_export(owner, session_id).id}"
    chat.store.close()
    stranger = {OWNER_COOKIE: new_owner_token()}
    assert httpx.get(urls[1] + path, cookies=stranger, timeout=60).status_code == 404
    pdf = httpx.get(urls[1] + path, cookies={OWNER_COOKIE: token}, timeout=60)
    assert pdf.status_code == 200
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert all(question in " ".join(text.split()) for question in QUESTIONS)
    assert httpx.get(urls[0] + path, cookies={OWNER_COOKIE: token},
                     timeout=60).status_code == 404                      # once, anywhere


@pytest.fixture(scope="module")
def two_apps(tmp_path_factory, ui_cache, postgres):
    """Two apps (replicas) in this process on one PostgreSQL database, with accounts."""
    url = postgres.create_database("two_apps")
    users = ",".join(f"{name}:{hash_password('right-' + name, n=2**10)}"
                     for name in ("ana", "bob"))
    apps = [start_server(make_ui_settings(tmp_path_factory.mktemp(f"app-{n}"), ui_cache,
                                          db_url=url, auth=users)) for n in range(2)]
    yield apps
    for app in apps:
        app.close()
    postgres.drop_database("two_apps")


def report_path(chat, owner: str, session_id: str) -> str:
    return f"pulse/report/{chat.prepare_export(owner, session_id).id}"


def test_a_sign_in_and_a_report_hold_on_every_replica(two_apps, shared_data):
    first, second = two_apps
    ana = httpx.Client(base_url=first.url, timeout=60)
    assert ana.post("login", data={"username": "ana", "password": "right-ana"}).status_code == 200
    on_second = httpx.Client(base_url=second.url, timeout=60, cookies=ana.cookies)
    assert on_second.get("gradio_api/user").json() == "ana"          # signed in there too

    # started in one replica; listed, continued and exported in the other
    draft = first.chat.open_upload("user:ana", [str(shared_data / "ecg-images" / "ecg00010.png")])
    session = first.chat.start_session("user:ana", draft.id)
    assert [s.id for s in second.chat.list_sessions("user:ana")] == [session.id]
    list(second.chat.ask("user:ana", session.id, "Rate?", {"max_new_tokens": 4}))
    assert len(first.chat.open_session("user:ana", session.id).turns) == 1
    path = report_path(first.chat, "user:ana", session.id)
    assert httpx.get(second.url + path, timeout=60).status_code == 404    # nobody signed in
    pdf = on_second.get(path)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert ana.get(path).status_code == 404                               # once, anywhere

    bob = httpx.Client(base_url=second.url, timeout=60)
    assert bob.post("login", data={"username": "bob", "password": "right-bob"}).status_code == 200
    assert bob.get(report_path(second.chat, "user:ana", session.id)).status_code == 404

    on_second.get("logout", follow_redirects=False)                        # signs ana out
    assert ana.get("gradio_api/user").json() is None                       # everywhere

