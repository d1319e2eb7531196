"""The app's handlers on the real core (ChatService, SQLite store, tiny model, renderer,
simulator, PDF report), called the way Gradio calls them, without a browser."""

from __future__ import annotations

import io
import re
import shutil

import gradio as gr
import pytest
from PIL import Image

from pulse_app.auth import new_owner_token
from pulse_app.ui import teaching
from pulse_app.ui.handlers import NO_EDIT, PulseUI


@pytest.fixture
def ui(ui_settings):
    handlers = PulseUI(ui_settings)
    handlers.stream_every_s = 0.0           # every chunk an update: streaming is visible
    return handlers


def request(username=None, session_hash="page-1"):
    return gr.Request(username=username, session_hash=session_hash)


def click(x, y):
    return gr.SelectData(None, {"index": [x, y], "value": None})


def finish(generator) -> list:
    return list(generator)


def test_upload_rotate_crop_ask_stores_what_was_shown(ui, shared_data):
    token, req = new_owner_token(), request()
    picture, original, edit, *_ = ui.upload([str(shared_data / "ecg-images" / "ecg00040.jpg")], 1)
    assert original.size == (1200, 612) and edit == NO_EDIT
    picture, edit, _, _ = ui.rotate(original, edit, 0, -1)          # a quarter turn right
    assert picture.size == (612, 1200) and edit["rotate90"] == 3
    _, edit, _, _ = ui.crop_click(original, edit, None, click(100, 200))
    picture, edit, session, _ = ui.crop_click(original, edit, None, click(400, 800))
    picture, edit, session, _ = ui.crop_click(original, edit, None, click(0, 0))   # crop the crop
    picture, edit, session, _ = ui.crop_click(original, edit, None, click(150, 300))
    assert edit["crop"] == [100, 200, 250, 500] and picture.size == (150, 300)

    shown = []                              # what the chat shows after each update
    for history, session, *_ in ui.ask(token, session, original, edit, "Rhythm?", [], 0.0, 0.7,
                                       12, req):
        shown.append(history[-1]["content"])
    assert shown[0] == "…" and len(set(shown[1:-1])) >= 2, "the answer grows in several updates"
    assert history[-1]["content"].endswith("*— tiny-untrained, UNTRAINED (local, cpu fp32)*")

    stored = ui.chat.store.get_session(f"browser:{token}", session["id"])
    assert Image.open(io.BytesIO(stored.edited_png)).size == (150, 300)
    assert Image.open(io.BytesIO(stored.original_png)).size == (1200, 612)
    assert stored.params["edit"]["crop"] == [100, 200, 250, 500]

    # reopen: the same picture, edit and conversation come back
    picture, original2, edit2, _, session2, messages, title = ui.open_session(
        token, session["id"], req)
    assert picture.size == (150, 300) and edit2["rotate90"] == 3 and session2 == session
    assert messages == history and title == "Rhythm?"


def test_stop_keeps_the_partial_answer_marked_stopped(ui, shared_data):
    token, req = new_owner_token(), request(session_hash="page-stop")
    _, original, edit, *_ = ui.upload([str(shared_data / "ecg-images" / "ecg00010.png")], 1)
    answering = ui.ask(token, {"id": None}, original, edit, "Long report please", [], 0.0, 0.7,
                       2000, req)
    next(answering), next(answering)                 # the question shown, a first chunk
    ui.stop(req)
    history, session = finish(answering)[-1][:2]
    assert history[-1]["content"].split("\n\n*—")[0].endswith("[stopped]")
    turn, = ui.chat.store.get_session(f"browser:{token}", session["id"]).turns
    assert turn.stopped and 0 < len(turn.answer)


def test_regenerate_replaces_the_last_answer(ui, shared_data):
    token, req = new_owner_token(), request()
    _, original, edit, *_ = ui.upload([str(shared_data / "ecg-images" / "ecg00010.png")], 1)
    history, session = finish(ui.ask(token, {"id": None}, original, edit, "Axis?", [], 0.0,
                                     0.7, 6, req))[-1][:2]
    finish(ui.regenerate(token, session, history, 0.0, 0.7, 12, req))
    turn, = ui.chat.store.get_session(f"browser:{token}", session["id"]).turns
    assert turn.question == "Axis?" and turn.params["max_new_tokens"] == 12


def test_sessions_rename_search_export_delete_and_isolation(ui, shared_data):
    from pypdf import PdfReader

    alice, bob = new_owner_token(), new_owner_token()
    _, original, edit, *_ = ui.upload([str(shared_data / "ecg-images" / "ecg00010.png")], 1)
    session = finish(ui.ask(alice, {"id": None}, original, edit, "Is this normal?", [], 0.0,
                            0.7, 6, request()))[-1][1]
    sid = session["id"]
    renamed = ui.rename_session(alice, sid, "Mrs K, chest pain", request())
    assert [c[1] for c in renamed["choices"]] == [sid]
    assert ui.search_sessions(alice, "chest", request())["choices"][0][0].startswith("Mrs K")
    assert ui.search_sessions(alice, "nothing like it", request())["choices"] == []

    pdf = ui.export_pdf(alice, sid, {"id": None}, "Repeat in 1 h.", request())
    text = re.sub(r"\s+", " ", "".join(p.extract_text() for p in PdfReader(pdf).pages))
    assert "Is this normal?" in text and "Repeat in 1 h." in text
    assert alice not in text, "the owner token is a secret: never printed"

    assert ui.search_sessions(bob, "", request())["choices"] == []
    for attempt in (lambda: ui.open_session(bob, sid, request()),
                    lambda: ui.export_pdf(bob, sid, {}, "", request()),
                    lambda: ui.delete_session(bob, sid, {}, request())):
        with pytest.raises(gr.Error):
            attempt()
    ui.delete_session(alice, sid, session, request())
    assert ui.search_sessions(alice, "", request())["choices"] == []


def test_signed_in_users_own_their_sessions_by_name(ui, shared_data):
    _, original, edit, *_ = ui.upload([str(shared_data / "ecg-images" / "ecg00010.png")], 1)
    ana = request(username="ana")
    session = finish(ui.ask(None, {"id": None}, original, edit, "Rate?", [], 0.0, 0.7, 4,
                            ana))[-1][1]
    assert ui.chat.store.get_session("user:ana", session["id"]).turns
    assert ui.on_load(None, ana)[0] is None, "no browser token is made for signed-in users"
    with pytest.raises(gr.Error, match="private space"):
        ui.search_sessions("not-a-token", "", request())


def test_wfdb_record_uploaded_as_two_files_is_rendered(ui, shared_data, tmp_path):
    paths = []
    for i, suffix in enumerate((".hea", ".mat")):                 # gradio: one folder per file
        folder = tmp_path / f"upload-{i}"
        folder.mkdir()
        paths.append(shutil.copy(shared_data / "ecg-records" / f"E07509{suffix}", folder))
    picture, *_ = ui.upload(paths, 1)
    assert picture.size == (2200, 1700)
    with pytest.raises(gr.Error, match=r"\.hea|\.mat|record"):
        ui.upload([paths[0]], 1)


def test_bad_upload_is_a_clear_message(ui, tmp_path):
    fake = tmp_path / "ecg.png"
    fake.write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(gr.Error) as error:
        ui.upload([str(fake)], 1)
    assert "ecg.png" in str(error.value)


def test_model_notice_says_untrained_plainly(ui):
    notice = ui.model_notice()
    assert "not a medical device" in notice and "untrained" in notice


def test_model_notice_says_a_demonstration_model_is_one(tmp_path, ui_cache):
    from pulse_app.engine.local import MINI_MODEL_DIR
    from tests.fixtures_ui import make_ui_settings

    if not (MINI_MODEL_DIR / "config.json").is_file():
        pytest.skip("no shipped mini model in assets/pulse-mini")
    notice = PulseUI(make_ui_settings(tmp_path, ui_cache, model="offline-default")).model_notice()
    assert "pulse-mini" in notice and "demonstration model" in notice
    assert "not PULSE-7B" in notice and "not a medical device" in notice


def test_teaching_generates_and_reveals_ground_truth():
    image, truth = teaching.generate(120, "afib", "none", 160, "rbbb", "left", "inferior", 0.2,
                                     [], False, False, False, "none", 3)
    assert image.size == (2200, 1700)
    revealed = teaching.truth_markdown(truth)
    for label in ("atrial fibrillation", "right bundle branch block", "left axis deviation",
                  "inferior st elevation"):
        assert label in revealed
    assert "Heart rate" in revealed


def test_a_pdf_page_is_picked(ui, shared_data, tmp_path):
    first = Image.open(shared_data / "ecg-images" / "ecg00010.png").convert("RGB")
    second = Image.open(shared_data / "ecg-images" / "fullScan.png").convert("RGB")
    pdf = tmp_path / "two-pages.pdf"
    first.save(pdf, save_all=True, append_images=[second], resolution=200)
    picture, *_, page_note, _ = ui.upload([str(pdf)], 2)
    assert page_note["value"] == "PDF page 2 of 2"
    assert abs(picture.width / picture.height - 2200 / 1700) < 0.02, "page 2 is the landscape scan"


def test_the_browser_token_secret_survives_restarts(tmp_path):
    from pulse_app.ui.owner import browser_secret

    first = browser_secret(tmp_path / "data")
    assert browser_secret(tmp_path / "data") == first and len(first) >= 32
    assert (tmp_path / "data" / "browser-state.key").stat().st_mode & 0o077 == 0
    assert browser_secret(tmp_path / "other") != first


def test_a_reopened_teaching_session_still_reveals_its_ground_truth(ui):
    token = new_owner_token()
    image, truth = teaching.generate(120, "afib", "none", 160, "rbbb", "left", "inferior", 0.2,
                                     [], False, False, False, "none", 3)
    *_, session = ui.show_image(image, session={"id": None, teaching.TRUTH_KEY: truth})[:5]
    assert teaching.hidden_note(session) == teaching.HIDDEN
    history, session = finish(ui.ask(token, session, image, dict(NO_EDIT), "Rhythm?", [], 0.0,
                                     0.7, 4, request()))[-1][:2]
    stored = ui.chat.store.get_session(f"browser:{token}", session["id"])
    assert stored.params[teaching.TRUTH_KEY] == truth and truth["findings"]["rhythm"] == "afib"

    # a fresh page (another tab, same browser token) reopens it: hidden until Reveal
    fresh = request(session_hash="page-2")
    assert teaching.reveal(PulseUI.new_chat()[0]) == "Generate an ECG first."
    reopened = ui.open_session(token, session["id"], fresh)[4]
    assert reopened["id"] == session["id"]
    assert teaching.hidden_note(reopened) == teaching.HIDDEN
    revealed = teaching.reveal(reopened)
    assert "atrial fibrillation" in revealed and "Heart rate" in revealed
    assert teaching.reveal(ui.new_chat(reopened)[0]) == revealed    # a new chat keeps it

    # rotating or cropping the teaching ECG starts a new chat about the same ECG: truth kept
    _, edit, rotated, _ = ui.rotate(image, dict(NO_EDIT), 0, 1, reopened)
    assert rotated["id"] is None and teaching.reveal(rotated) == revealed
    _, edit, _, _ = ui.crop_click(image, edit, rotated, click(10, 10))
    _, edit, cropped, _ = ui.crop_click(image, edit, rotated, click(300, 320))
    assert edit["crop"] and teaching.reveal(cropped) == revealed
    assert teaching.reveal(ui.reset_image(image, cropped)[2]) == revealed

    # an uploaded ECG has no truth to reveal, in the page or once stored
    _, original, edit, _, plain, *_ = ui.show_image(image)
    plain = finish(ui.ask(token, plain, original, edit, "Axis?", [], 0.0, 0.7, 4,
                          request()))[-1][1]
    assert teaching.TRUTH_KEY not in ui.chat.store.get_session(f"browser:{token}",
                                                               plain["id"]).params
    assert teaching.hidden_note(ui.open_session(token, plain["id"], fresh)[4]) == ""
