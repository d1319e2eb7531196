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
from pulse_app.chat import NO_EDIT
from pulse_app.errors import SessionNotFound
from pulse_app.teaching import TRUTH_KEY, simulate_case, truth_markdown
from pulse_app.ui.handlers import EMPTY_VIEW, HIDDEN, PulseUI
from pulse_app.ui.owner import OWNER_COOKIE
from pulse_app.ui.teaching import findings_from_controls


@pytest.fixture
def ui(ui_settings):
    handlers = PulseUI(ui_settings)
    handlers.stream_every_s = 0.0           # every chunk an update: streaming is visible
    return handlers


def request(token=None, username=None, session_hash="page-1"):
    """A page event's request: the browser's owner cookie (``token``) or a signed-in user."""
    cookies = {OWNER_COOKIE: token} if token else {}
    return gr.Request(username=username, session_hash=session_hash, cookies=cookies)


def click(x, y):
    return gr.SelectData(None, {"index": [x, y], "value": None})


def finish(generator) -> list:
    return list(generator)


def upload(ui, token, path, page=1, req=None):
    """The upload event: (picture, view, angle, chat, page note, report)."""
    return ui.upload([str(path)], page, req or request(token))


def test_upload_rotate_crop_ask_stores_what_was_shown(ui, shared_data):
    token = new_owner_token()
    req = request(token)
    picture, view, *_ = upload(ui, token, shared_data / "ecg-images" / "ecg00040.jpg")
    assert picture.size == (1200, 612) and view["edit"] == NO_EDIT and view["draft"]
    assert set(view) == set(EMPTY_VIEW), "the page keeps only ids and the draft edit"
    picture, view, _ = ui.rotate(view, 0, -1, req)              # a quarter turn right
    assert picture.size == (612, 1200) and view["edit"]["rotate90"] == 3
    _, view, _ = ui.crop_click(view, click(100, 200), req)
    picture, view, _ = ui.crop_click(view, click(400, 800), req)
    picture, view, _ = ui.crop_click(view, click(0, 0), req)    # crop the crop
    picture, view, _ = ui.crop_click(view, click(150, 300), req)
    assert view["edit"]["crop"] == [100, 200, 250, 500] and picture.size == (150, 300)
    assert ui.chat.list_sessions(f"browser:{token}") == [], "nothing stored before a question"

    shown = []                              # what the chat shows after each update
    for history, view, *_ in ui.ask(view, "Rhythm?", [], 0.0, 0.7, 12, False, req):
        shown.append(history[-1]["content"])
    assert shown[0] == "…" and len(set(shown[1:-1])) >= 2, "the answer grows in several updates"
    assert history[-1]["content"].endswith(
        "<em>— tiny-untrained, UNTRAINED (local, cpu fp32)</em>")

    stored = ui.chat.store.get_session(f"browser:{token}", view["session"])
    assert Image.open(io.BytesIO(stored.edited_png)).size == (150, 300)
    assert Image.open(io.BytesIO(stored.original_png)).size == (1200, 612)
    assert stored.params["edit"]["crop"] == [100, 200, 250, 500]

    # reopen: the same picture, edit and conversation come back
    picture, view2, _, messages, title = ui.open_session(view["session"], req)
    assert picture.size == (150, 300) and view2["edit"]["rotate90"] == 3
    assert view2["session"] == view["session"]
    assert messages == history and title == "Rhythm?"


def test_stop_keeps_the_partial_answer_marked_stopped(ui, shared_data):
    token = new_owner_token()
    req = request(token, session_hash="page-stop")
    _, view, *_ = upload(ui, token, shared_data / "ecg-images" / "ecg00010.png")
    answering = ui.ask(view, "Long report please", [], 0.0, 0.7, 2000, False, req)
    next(answering), next(answering)                 # the question shown, a first chunk
    ui.stop(req)
    history, view = finish(answering)[-1][:2]
    assert history[-1]["content"].split("<br><br><em>—")[0].endswith("[stopped]")
    turn, = ui.chat.store.get_session(f"browser:{token}", view["session"]).turns
    assert turn.stopped and 0 < len(turn.answer)


def test_regenerate_replaces_the_last_answer(ui, shared_data):
    token = new_owner_token()
    req = request(token)
    _, view, *_ = upload(ui, token, shared_data / "ecg-images" / "ecg00010.png")
    history, view = finish(ui.ask(view, "Axis?", [], 0.0, 0.7, 6, False, req))[-1][:2]
    finish(ui.regenerate(view, history, 0.0, 0.7, 12, False, req))
    turn, = ui.chat.store.get_session(f"browser:{token}", view["session"]).turns
    assert turn.question == "Axis?" and turn.params["max_new_tokens"] == 12


def test_bad_settings_are_refused_before_anything_is_stored(ui, shared_data):
    token = new_owner_token()
    req = request(token)
    _, view, *_ = upload(ui, token, shared_data / "ecg-images" / "ecg00010.png")
    with pytest.raises(gr.Error, match="temperature must be"):
        finish(ui.ask(view, "Axis?", [], float("nan"), 0.7, 6, False, req))
    assert ui.chat.list_sessions(f"browser:{token}") == []


def test_sessions_rename_search_export_delete_and_isolation(ui, shared_data):
    from pypdf import PdfReader

    alice, bob = new_owner_token(), new_owner_token()
    _, view, *_ = upload(ui, alice, shared_data / "ecg-images" / "ecg00010.png")
    view = finish(ui.ask(view, "Is this normal?", [], 0.0, 0.7, 6, False,
                         request(alice)))[-1][1]
    sid = view["session"]
    renamed = ui.rename_session(sid, "Mrs K, chest pain", request(alice))
    assert [c[1] for c in renamed["choices"]] == [sid]
    assert ui.search_sessions("chest", request(alice))["choices"][0][0].startswith("Mrs K")
    assert ui.search_sessions("nothing like it", request(alice))["choices"] == []

    link = ui.export_pdf(sid, EMPTY_VIEW, "Repeat in 1 h.", request(alice))
    export_id = re.search(r'href="pulse/report/([\w-]+)"', link).group(1)
    with pytest.raises(SessionNotFound):
        ui.chat.take_export(f"browser:{bob}", export_id)        # another owner: as if gone
    pdf = io.BytesIO(ui.chat.take_export(f"browser:{alice}", export_id).data)
    with pytest.raises(SessionNotFound):
        ui.chat.take_export(f"browser:{alice}", export_id)      # one download only
    text = re.sub(r"\s+", " ", "".join(p.extract_text() for p in PdfReader(pdf).pages))
    assert "Is this normal?" in text and "Repeat in 1 h." in text
    assert alice not in text, "the owner token is a secret: never printed"

    assert ui.search_sessions("", request(bob))["choices"] == []
    for attempt in (lambda: ui.open_session(sid, request(bob)),
                    lambda: ui.export_pdf(sid, {}, "", request(bob)),
                    lambda: ui.delete_session(sid, {}, request(bob)),
                    lambda: ui.rotate(view, 0, 1, request(bob)),
                    lambda: ui.new_chat(view, request(bob))):
        with pytest.raises(gr.Error):
            attempt()
    ui.delete_session(sid, view, request(alice))
    assert ui.search_sessions("", request(alice))["choices"] == []


def test_signed_in_users_own_their_sessions_by_name(ui, shared_data):
    ana = request(new_owner_token(), username="ana")      # the account wins over a cookie
    _, view, *_ = upload(ui, None, shared_data / "ecg-images" / "ecg00010.png", req=ana)
    view = finish(ui.ask(view, "Rate?", [], 0.0, 0.7, 4, False, ana))[-1][1]
    assert ui.chat.store.get_session("user:ana", view["session"]).turns
    assert [c[1] for c in ui.on_load(ana)["choices"]] == [view["session"]]
    for token in ("not-a-token", new_owner_token() + "\n", None):
        with pytest.raises(gr.Error, match="private space"):
            ui.search_sessions("", request(token))


def test_wfdb_record_uploaded_as_two_files_is_rendered(ui, shared_data, tmp_path):
    paths = []
    for i, suffix in enumerate((".hea", ".mat")):                 # gradio: one folder per file
        folder = tmp_path / f"upload-{i}"
        folder.mkdir()
        paths.append(shutil.copy(shared_data / "ecg-records" / f"E07509{suffix}", folder))
    token = new_owner_token()
    picture, *_ = ui.upload(paths, 1, request(token))
    assert picture.size == (2200, 1700)
    with pytest.raises(gr.Error, match=r"\.hea|\.mat|record"):
        ui.upload([paths[0]], 1, request(token))


def test_bad_upload_is_a_clear_message(ui, tmp_path):
    fake = tmp_path / "ecg.png"
    fake.write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(gr.Error) as error:
        upload(ui, new_owner_token(), fake)
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
    findings = findings_from_controls(120, "afib", "none", 160, "rbbb", "left", "inferior", 0.2,
                                      [], False, False, False)
    image, truth = simulate_case(findings, seed=3)
    assert image.size == (2200, 1700)
    revealed = truth_markdown(truth)
    for label in ("atrial fibrillation", "right bundle branch block", "left axis deviation",
                  "inferior st elevation"):
        assert label in revealed
    assert "Heart rate" in revealed


def test_a_pdf_page_is_picked(ui, shared_data, tmp_path):
    first = Image.open(shared_data / "ecg-images" / "ecg00010.png").convert("RGB")
    second = Image.open(shared_data / "ecg-images" / "fullScan.png").convert("RGB")
    pdf = tmp_path / "two-pages.pdf"
    first.save(pdf, save_all=True, append_images=[second], resolution=200)
    token = new_owner_token()
    picture, view, *_, page_note, _ = upload(ui, token, pdf, page=2)
    assert page_note["value"] == "PDF page 2 of 2"
    assert abs(picture.width / picture.height - 2200 / 1700) < 0.02, "page 2 is the landscape scan"
    picture, view, *_, page_note, _ = ui.change_page(view, 1, request(token))    # file kept
    assert page_note["value"] == "PDF page 1 of 2" and picture.size[0] < picture.size[1] * 2


def test_a_reopened_teaching_session_still_reveals_its_ground_truth(ui):
    token = new_owner_token()
    req = request(token)
    findings = findings_from_controls(120, "afib", "none", 160, "rbbb", "left", "inferior", 0.2,
                                      [], False, False, False)
    image, view, *_, note = ui.teaching_case(findings, "none", 3, req)
    assert note["value"] == HIDDEN and ui.hidden_note(view, req) == HIDDEN
    assert "truth" not in str(view), "the truth stays in the core, not in the page's state"
    revealed = ui.reveal(view, req)
    assert "atrial fibrillation" in revealed and "Heart rate" in revealed
    history, view = finish(ui.ask(view, "Rhythm?", [], 0.0, 0.7, 4, False, req))[-1][:2]
    stored = ui.chat.store.get_session(f"browser:{token}", view["session"])
    assert stored.params[TRUTH_KEY]["findings"]["rhythm"] == "afib"

    # a fresh page (another tab, same browser token) reopens it: hidden until Reveal
    fresh = request(token, session_hash="page-2")
    assert ui.reveal(EMPTY_VIEW, fresh) == "Generate an ECG first."
    reopened = ui.open_session(view["session"], fresh)[1]
    assert reopened["session"] == view["session"]
    assert ui.hidden_note(reopened, fresh) == HIDDEN
    assert ui.reveal(reopened, fresh) == revealed
    assert ui.reveal(ui.new_chat(reopened, fresh)[0], fresh) == revealed

    # rotating or cropping the teaching ECG starts a new chat about the same ECG: truth kept
    _, rotated, _ = ui.rotate(reopened, 0, 1, fresh)
    assert rotated["session"] is None and ui.reveal(rotated, fresh) == revealed
    _, rotated, _ = ui.crop_click(rotated, click(10, 10), fresh)
    _, cropped, _ = ui.crop_click(rotated, click(300, 320), fresh)
    assert cropped["edit"]["crop"] and ui.reveal(cropped, fresh) == revealed
    assert ui.reveal(ui.reset_image(cropped, fresh)[1], fresh) == revealed

    # an uploaded ECG has no truth to reveal, in the page or once stored
    plain = ui.show_draft(ui.chat._new_draft(f"browser:{token}", image, {}, "plain"))[1]
    plain = finish(ui.ask(plain, "Axis?", [], 0.0, 0.7, 4, False, req))[-1][1]
    assert TRUTH_KEY not in ui.chat.store.get_session(f"browser:{token}",
                                                      plain["session"]).params
    assert ui.hidden_note(ui.open_session(plain["session"], fresh)[1], fresh) == ""
