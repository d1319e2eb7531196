"""The chat service with the real tiny model and a real SQLite file: streaming, stop, regenerate,
errors, isolation, concurrency, and a process killed while it answers."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from PIL import Image

from pulse_app.chat import ChatService, DraftExpired, SessionBusy
from pulse_app.errors import ImageRejected, InvalidParameter, PulseError, SessionNotFound
from pulse_app.settings import Settings
from pulse_app.store import Store

REPO = Path(__file__).resolve().parent.parent
SHORT = {"temperature": 0, "max_new_tokens": 8}
LONG = {"temperature": 0, "max_new_tokens": 600}


class RecordingBackend:
    """The real tiny backend, remembering the history it was given (a spy, not a stand-in)."""

    name = "local"

    def __init__(self, backend, fail_after: int | None = None):
        self.backend, self.fail_after, self.histories = backend, fail_after, []
        self.images = []

    def info(self):
        return self.backend.info()

    def stream(self, image, history, question, params, cancel=None):
        self.histories.append([(t.question, t.answer) for t in history])
        self.images.append(image)
        for n, chunk in enumerate(self.backend.stream(image, history, question, params, cancel)):
            if self.fail_after is not None and n >= self.fail_after:
                raise PulseError("the model server went away", hint="try again")
            yield chunk


@pytest.fixture
def settings(tmp_path):
    return Settings.load(data_dir=str(tmp_path / "data"), temperature=0.0, max_new_tokens=8)


@pytest.fixture
def chat(settings, tiny_backend):
    service = ChatService(settings, backend=RecordingBackend(tiny_backend))
    yield service
    service.store.close()


@pytest.fixture
def photo(shared_data) -> Path:
    return shared_data / "ecg-images" / "ecg00030.jpg"           # a slightly rotated photo


def test_start_session_stores_the_clean_upload(chat, photo, tiny_backend):
    session = chat.start_session_from_upload("user:ana", photo)
    assert session.original_png == session.edited_png
    stored = Image.open(io.BytesIO(session.original_png))
    assert stored.format == "PNG" and stored.size == Image.open(photo).size
    assert session.title.startswith("ecg00030 · ")
    assert session.model_id == tiny_backend.info().model_id
    assert session.params["source"] == {"filename": "ecg00030.jpg", "format": "JPEG",
                                        "page": 1, "pages": 1}
    assert [s.id for s in chat.store.list_sessions("user:ana")] == [session.id]
    with pytest.raises(ImageRejected):
        chat.start_session_from_upload("user:ana", ("notes.png", b"not an image"))
    assert len(chat.store.list_sessions("user:ana")) == 1


def test_ask_streams_and_commits_each_turn_with_its_model(chat, photo, tiny_backend):
    session = chat.start_session_from_upload("user:ana", photo, title="Palpitations")
    first = list(chat.ask("user:ana", session.id, "What is the rhythm?", SHORT))
    assert first and all(isinstance(c, str) for c in first)
    second = "".join(chat.ask("user:ana", session.id, "And the axis?", SHORT))
    turns = chat.store.get_session("user:ana", session.id).turns
    assert [t.question for t in turns] == ["What is the rhythm?", "And the axis?"]
    assert turns[0].answer == "".join(first).strip() and turns[1].answer == second.strip()
    info = tiny_backend.info()
    assert {(t.model_id, t.model_label) for t in turns} == {(info.model_id, info.label)}
    assert turns[1].params["max_new_tokens"] == 8 and turns[1].params["temperature"] == 0
    assert turns[1].params["model_revision"] == info.revision
    assert not any(t.stopped for t in turns)
    stored = chat.store.get_session("user:ana", session.id)
    assert (stored.model_id, stored.model_revision) == (info.model_id, info.revision)
    # the second question was asked with the first turn as history
    assert chat.backend.histories[-1] == [("What is the rhythm?", turns[0].answer)]


def test_cancel_event_stores_the_partial_answer_as_stopped(chat, photo):
    session = chat.start_session_from_upload("user:ana", photo)
    cancel = threading.Event()
    seen = []
    for chunk in chat.ask("user:ana", session.id, "Describe everything.", LONG, cancel=cancel):
        seen.append(chunk)
        if len(seen) == 3:
            cancel.set()
    (turn,) = chat.store.get_session("user:ana", session.id).turns
    assert turn.stopped and turn.answer == "".join(seen).strip()
    assert len(seen) < 20


def test_closing_the_stream_is_stop(chat, photo):
    session = chat.start_session_from_upload("user:ana", photo)
    stream = chat.ask("user:ana", session.id, "Describe everything.", LONG)
    seen = [next(stream), next(stream)]
    stream.close()
    (turn,) = chat.store.get_session("user:ana", session.id).turns
    assert turn.stopped and turn.answer == "".join(seen).strip()
    list(chat.ask("user:ana", session.id, "Still there?", SHORT))    # not left busy


def test_regenerate_replaces_only_the_last_answer(chat, photo):
    session = chat.start_session_from_upload("user:ana", photo)
    list(chat.ask("user:ana", session.id, "Rate?", SHORT))
    list(chat.ask("user:ana", session.id, "Axis?", SHORT))
    before = chat.store.get_session("user:ana", session.id).turns
    new = "".join(chat.regenerate("user:ana", session.id, {"temperature": 1.0, "seed": 3,
                                                          "max_new_tokens": 12}))
    after = chat.store.get_session("user:ana", session.id).turns
    assert [t.question for t in after] == ["Rate?", "Axis?"]
    assert after[0] == before[0]
    assert after[1].answer == new.strip() and after[1].params["temperature"] == 1.0
    assert chat.backend.histories[-1] == [("Rate?", before[0].answer)]
    empty = chat.start_session_from_upload("user:ana", photo)
    with pytest.raises(PulseError, match="no answer to regenerate"):
        chat.regenerate("user:ana", empty.id)


def test_backend_error_propagates_and_keeps_earlier_turns(settings, tiny_backend, photo):
    chat = ChatService(settings, backend=RecordingBackend(tiny_backend))
    session = chat.start_session_from_upload("user:ana", photo)
    list(chat.ask("user:ana", session.id, "Rate?", SHORT))
    chat._backend = RecordingBackend(tiny_backend, fail_after=2)
    with pytest.raises(PulseError, match="went away"):
        list(chat.ask("user:ana", session.id, "Axis?", LONG))
    assert [t.question for t in chat.store.get_session("user:ana", session.id).turns] == ["Rate?"]
    chat._backend = RecordingBackend(tiny_backend)                 # and the session still works
    list(chat.ask("user:ana", session.id, "Axis?", SHORT))
    assert len(chat.store.get_session("user:ana", session.id).turns) == 2


def test_questions_and_settings_are_checked(chat, photo):
    session = chat.start_session_from_upload("user:ana", photo)
    with pytest.raises(PulseError, match="question is empty"):
        chat.ask("user:ana", session.id, "  <image> ")
    with pytest.raises(InvalidParameter, match="top_p must be"):
        chat.ask("user:ana", session.id, "Rate?", {"top_p": 0})
    with pytest.raises(InvalidParameter, match="question must be text"):
        chat.ask("user:ana", session.id, ["Rate?"])
    with pytest.raises(SessionNotFound):
        chat.ask("user:bob", session.id, "Rate?")
    with pytest.raises(SessionNotFound):
        chat.new_chat("user:bob", session.id)
    draft = chat.open_upload("user:ana", photo)
    with pytest.raises(DraftExpired):                   # a draft is its owner's alone
        chat.preview("user:bob", draft.id, {"rotate90": 1})


def test_one_answer_at_a_time_per_session(chat, photo):
    session = chat.start_session_from_upload("user:ana", photo)
    first = chat.ask("user:ana", session.id, "Describe everything.", LONG)
    next(first)
    with pytest.raises(SessionBusy):
        next(chat.ask("user:ana", session.id, "Again?", SHORT))
    first.close()
    assert len(chat.store.get_session("user:ana", session.id).turns) == 1


def test_a_draft_is_edited_from_its_original_and_stored_once(chat, photo):
    width, height = Image.open(photo).size
    draft = chat.open_upload("user:ana", photo)
    assert chat.preview("user:ana", draft.id, {"rotate90": 1, "crop": (0, 0, 300, 500)}
                        ).size == (300, 500)
    tilted = chat.preview("user:ana", draft.id, {"angle_deg": -3})     # from the original
    assert tilted.width > width and tilted.height > height
    assert chat.list_sessions("user:ana") == [], "nothing is stored before a question"

    session = chat.start_session("user:ana", draft.id, {"rotate90": 1, "crop": [0, 0, 300, 500]})
    stored = chat.store.get_session("user:ana", session.id)
    assert Image.open(io.BytesIO(stored.edited_png)).size == (300, 500)
    assert Image.open(io.BytesIO(stored.original_png)).size == (width, height)
    assert stored.params["edit"] == {"rotate90": 1, "angle_deg": 0.0, "crop": [0, 0, 300, 500]}
    list(chat.ask("user:ana", session.id, "Rate?", SHORT))
    assert chat.backend.images[-1].size == (300, 500), "the model reads the edited picture"

    # a new chat on the stored picture keeps its edit; a reset stores the original as shown
    again = chat.new_chat("user:ana", session.id)
    assert again.edit == stored.params["edit"] and again.image.size == (width, height)
    reset = chat.start_session("user:ana", again.id, {})
    reset = chat.store.get_session("user:ana", reset.id)
    assert reset.edited_png == reset.original_png and len(chat.list_sessions("user:ana")) == 2


def test_pdf_upload_page_two(chat, tmp_path, shared_data):
    from reportlab.lib.pagesizes import landscape, letter
    from reportlab.pdfgen import canvas

    path = tmp_path / "two-pages.pdf"
    pdf = canvas.Canvas(str(path), pagesize=landscape(letter))
    pdf.drawString(72, 72, "cover page")
    pdf.showPage()
    pdf.drawImage(str(shared_data / "ecg-images" / "ecg00010.png"), 36, 36, width=720, height=540)
    pdf.showPage()
    pdf.save()
    session = chat.start_session_from_upload("user:ana", path, page=2)
    assert session.params["source"]["pages"] == 2 and "page 2 of 2" in session.title


def test_many_owners_at_once_nothing_lost_or_mixed(chat, photo):
    owners = [f"browser:{n:02d}" for n in range(6)]
    sessions = {owner: chat.start_session_from_upload(owner, photo, title=owner) for owner in owners}
    errors = []

    def visitor(owner):
        try:
            for n in range(3):
                list(chat.ask(owner, sessions[owner].id, f"{owner} question {n}", SHORT))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=visitor, args=(owner,)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    for owner in owners:
        (summary,) = chat.store.list_sessions(owner)
        turns = chat.store.get_session(owner, summary.id).turns
        assert [t.question for t in turns] == [f"{owner} question {n}" for n in range(3)]


WORKER = textwrap.dedent("""
    import sys
    from pulse_app.chat import ChatService
    from pulse_app.engine.local import LocalBackend
    from pulse_app.settings import Settings

    model_dir, db_url, photo = sys.argv[1:4]
    backend = LocalBackend(model_dir, device="cpu", cache_dir=model_dir + "-cache",
                           progress=lambda m: None)
    chat = ChatService(Settings.load(db_url=db_url), backend=backend)
    session = chat.start_session_from_upload("user:ana", photo, title="crash test")
    short = {"temperature": 0, "max_new_tokens": 16}
    for n in (1, 2):
        answer = "".join(chat.ask("user:ana", session.id, f"question {n}", short))
        print(f"DONE {n} {len(answer.strip())}", flush=True)
    for chunk in chat.ask("user:ana", session.id, "question 3",
                          {"temperature": 0, "max_new_tokens": 1800}):
        print("GENERATING 3", flush=True)
    print("DONE 3", flush=True)
""")


def test_killed_while_answering_keeps_every_finished_turn(tiny_model_dir, tmp_path, photo):
    db_url = f"sqlite:///{tmp_path / 'crash' / 'pulse.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRANSFORMERS_VERBOSITY": "error"}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(tiny_model_dir), db_url,
                               str(photo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=tmp_path)
    lines = []
    try:
        for line in worker.stdout:
            lines.append(line.split())
            if line.startswith("GENERATING 3"):
                worker.send_signal(signal.SIGKILL)                 # mid-answer, no clean-up
                break
    finally:
        worker.kill()
        worker.wait(timeout=30)
    assert ["GENERATING", "3"] in lines, (lines, worker.stderr.read()[-2000:])
    assert ["DONE", "3"] not in lines
    assert worker.returncode == -signal.SIGKILL
    finished = {int(words[1]): int(words[2]) for words in lines if words[0] == "DONE"}
    store = Store(db_url)                                          # "restart": reopen the file
    (summary,) = store.list_sessions("user:ana")
    turns = store.get_session("user:ana", summary.id).turns
    assert [t.question for t in turns] == ["question 1", "question 2"]
    assert [len(t.answer) for t in turns] == [finished[1], finished[2]]
    assert not any(t.stopped for t in turns)
    store.close()


def test_images_kept_in_memory_stay_within_the_budget(tmp_path, tiny_backend):
    """Drafts keep at most half of ``image_memory_mb``, the answer cache an eighth: the oldest
    go first (a draft that went is an honest 'upload again', never a wrong picture)."""
    settings = Settings.load(data_dir=str(tmp_path), image_memory_mb=16)      # 8 MB of drafts
    chat = ChatService(settings, backend=tiny_backend)
    owner, picture = "user:ana", Image.new("RGB", (1000, 1000), "white")      # 4 MB each
    drafts = [chat._new_draft(owner, picture, {}, f"ECG {n}") for n in range(4)]
    assert len(chat.drafts._items) == 2
    with pytest.raises(DraftExpired):
        chat.preview(owner, drafts[0].id, None)
    assert chat.preview(owner, drafts[3].id, None).size == (1000, 1000)
    for draft in drafts[2:]:
        chat.start_session(owner, draft.id)
    assert len(chat._images) == 1, "a 2 MB cache keeps only the last (4 MB) image"
    chat.store.close()
