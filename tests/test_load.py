"""Load: 20 visitors at once on one model (concurrency 1), each with their own owner token, each
running a 3-turn chat through gradio_client against the real server. Every answer arrives and
every session is stored complete, in order, under its own owner only."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from gradio_client import Client, handle_file

from pulse_app.auth import new_owner_token
from pulse_app.store import Store

CLIENTS = 20
QUESTIONS = ("What is the rhythm?", "What is the heart rate?", "Is there ST elevation?")
IMAGES = ("ecg00010.png", "ecg00030.jpg", "ecg00040.jpg", "fullScan.png")


def visit(url: str, image: str, number: int) -> tuple[str, str, list[str]]:
    client = Client(url, verbose=False, download_files=False)
    token = new_owner_token()
    session_id = client.predict(handle_file(image), token, 1, api_name="/session_start")
    answers = []
    for question in QUESTIONS:
        job = client.submit(token, session_id, f"{question} (visitor {number})", 0.0, 0.7, 6,
                            api_name="/session_ask")
        answers.append(job.result(timeout=240))
    client.close()
    return token, session_id, answers


def test_twenty_visitors_three_turns_each(ui_server, shared_data):
    images = [str(shared_data / "ecg-images" / IMAGES[i % len(IMAGES)]) for i in range(CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        visits = list(pool.map(visit, [ui_server.url] * CLIENTS, images, range(CLIENTS)))

    store = Store(ui_server.settings.database_url)      # a fresh connection: what is on disk
    try:
        assert len({token for token, _, _ in visits}) == CLIENTS
        for number, (token, session_id, answers) in enumerate(visits):
            assert all(answer.strip() for answer in answers), f"visitor {number}: empty answer"
            owner = f"browser:{token}"
            listed = store.list_sessions(owner)
            assert [s.id for s in listed] == [session_id], f"visitor {number} sees other sessions"
            stored = store.get_session(owner, session_id)
            assert [t.question for t in stored.turns] == [
                f"{q} (visitor {number})" for q in QUESTIONS]
            assert [t.answer for t in stored.turns] == [a.strip() for a in answers]
            assert not any(t.stopped for t in stored.turns)
    finally:
        store.close()
