"""The Decks handlers on the real core (ChatService, SQLite, simulator, renderer), called the way
Gradio calls them (the owner from the browser's cookie), without a browser or a model: links with
a bad code get a clear message, a class follows its presenter, answers close at Reveal and vanish
when the class ends; the handout and the class's answers are kept for one download by their
owner (no file)."""

from __future__ import annotations

import io
import re

import gradio as gr
import pytest
from pypdf import PdfReader

from pulse_app.auth import new_owner_token
from pulse_app.decks import Deck
from pulse_app.errors import SessionNotFound
from pulse_app.settings import Settings
from pulse_app.teaching import Case
from pulse_app.ui import texts
from pulse_app.ui.decks import DecksUI
from pulse_app.ui.handlers import HIDDEN, PulseUI
from pulse_app.ui.owner import OWNER_COOKIE


@pytest.fixture
def dui(tmp_path):
    return DecksUI(PulseUI(Settings.load(data_dir=str(tmp_path / "data"))))


def request(token, session_hash="page-1", **query):
    """A page event from the browser whose owner cookie is ``token``."""
    return gr.Request(username=None, session_hash=session_hash, query_params=query,
                      headers={"host": "127.0.0.1:7860"}, cookies={OWNER_COOKIE: token})


def export_id(link: str) -> str:
    """The export id in a download link (``pulse/report/<id>``, served by the gate)."""
    return re.search(r'href="pulse/report/([\w-]+)"', link).group(1)


def test_links_open_cases_and_decks_and_bad_codes_say_what_to_do(dui):
    token = new_owner_token()
    case = Case.make({"qrs": "rbbb"}, seed=4)
    picture, view, *_, truth, tabs, _, _ = dui.open_query(request(token, case=case.code))
    assert picture.size == (2200, 1700) and truth["value"] == HIDDEN
    assert tabs.selected == "teaching" and set(view) >= {"draft", "session"}
    share, check = dui.teaching_notes(view, request(token))
    assert case.code in share and check == ""
    assert dui.check_view(view, request(token)) == texts.CHECK_NOTHING_YET

    deck = Deck.draw("combined", 4, seed=9)
    *_, tabs, code, info = dui.open_query(request(token, deck=deck.code.lower()))
    assert tabs.selected == "decks" and code == deck.code and "4 cases" in info
    assert all(isinstance(x, type(gr.skip())) for x in dui.open_query(request(token)))

    for query, words in (({"case": case.code[:-1] + "Q"}, "mistyped"),
                         ({"deck": case.code}, "case code, not a deck code"),
                         ({"case": "<script>"}, "letters a code never has")):
        with pytest.raises(gr.Error, match=words):
            dui.open_query(request(token, **query))


def test_a_deck_of_chosen_cases_grows_from_the_teaching_tab(dui):
    token = new_owner_token()
    code = ""
    for seed in (1, 2):
        draft = dui.chat.open_teaching_case(f"browser:{token}", {"axis": "left"}, seed=seed)
        code, info = dui.add_case({"draft": draft.id, "session": None}, code, True,
                                  request(token))
    deck = Deck.from_code(code)
    assert [c.seed for c in deck.cases] == [1, 2] and deck.students and "2 cases" in info

    link = dui.handout(code, request(token))              # made in the export process
    with pytest.raises(SessionNotFound):
        dui.chat.take_export(f"browser:{new_owner_token()}", export_id(link))
    handout = dui.chat.take_export(f"browser:{token}", export_id(link))
    pages = [p.extract_text() for p in PdfReader(io.BytesIO(handout.data)).pages]
    assert "Case 2 of 2" in pages[1] and "Answer key" in pages[-1]
    with pytest.raises(SessionNotFound):                  # one download
        dui.chat.take_export(f"browser:{token}", export_id(link))
    with pytest.raises(gr.Error, match="not a teaching case"):
        dui.add_case({"draft": None, "session": None}, code, True, request(token))


def test_a_class_follows_its_presenter_and_ends_with_the_deck(dui):
    teacher, students = new_owner_token(), [new_owner_token() for _ in range(3)]
    deck = Deck.draw("single", 3, seed=2, students=True)
    out = dui.present(deck.code, request(teacher))
    state, view, title = out[4:7]
    assert out[2]["visible"] and title == "### Case 1 of 3" and state["class"]
    assert state["class"] in out[7] and "127.0.0.1:7860/?class=" in out[7]

    pages = []
    for token in students:
        shown = dui.open_class_query(request(token, **{"class": state["class"].lower()}))
        assert shown[2]["visible"] and not shown[0]["visible"]      # only the student's page
        pages.append(shown[4])
    questions = dui.classrooms.get(state["class"]).questions(0)
    rhythm = next(i for i, q in enumerate(questions) if q.kind == "rhythm")
    for number, token in enumerate(students):
        letters = [None] * 5
        letters[rhythm] = questions[rhythm].answer if number < 2 else "A"
        assert dui.send_answers(pages[number], *letters, request(token)) == texts.STUDENT_SENT
    with pytest.raises(gr.Error, match="no answer chosen"):
        dui.send_answers(pages[0], None, None, None, None, None, request(students[0]))
    assert "3 answered" in dui.poll_presenter(state, request(teacher))[0]
    assert all(isinstance(x, type(gr.skip())) for x in dui.poll_student(pages[0],
                                                                        request(students[0])))

    state, truth, check, answers, summary = dui.present_reveal(state, view, request(teacher))
    assert "Simulated findings" in truth and "3 answered" in answers
    assert texts.CHECK_NOTHING_YET in check and "No case revealed" not in summary
    again = dui.poll_student(pages[0], request(students[0]))
    assert again[-1] == texts.STUDENT_CLOSED and again[2].interactive is False
    with pytest.raises(gr.Error, match="answers are closed"):
        dui.send_answers(pages[2], "B", None, None, None, None, request(students[2]))

    state = dui.go(state, view, 1, request(teacher))[0]
    moved = dui.poll_student(pages[1], request(students[1]))
    assert moved[0]["case"] == 1 and "case 2 of 3" in moved[1]
    assert dui.go(state, None, -1, request(teacher))[6] != HIDDEN     # case 1 stays revealed
    link = dui.save_answers(state, request(teacher))
    with pytest.raises(SessionNotFound):                # kept for the presenter only
        dui.chat.take_export(f"browser:{students[0]}", export_id(link))
    saved = dui.chat.take_export(f"browser:{teacher}", export_id(link))
    csv = saved.data.decode()
    assert saved.media_type == "text/csv" and saved.filename.endswith(".csv")
    assert "browser" not in csv and csv.count(",True,") == 3 * 5

    with pytest.raises(gr.Error):                       # only the presenter sees the answers
        dui.save_answers(state, request(students[0]))
    assert all(isinstance(x, type(gr.skip())) for x in dui.poll_presenter(state,
                                                                          request(students[0])))
    dui.exit(state, request(teacher))
    assert dui.poll_student(moved[0], request(students[0]))[1] == texts.STUDENT_ENDED
    with pytest.raises(gr.Error, match="no live class"):
        dui.open_class_query(request(students[0], **{"class": state["class"]}))
