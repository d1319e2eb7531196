"""The Decks handlers on the real core (ChatService, SQLite, simulator, renderer), called the way
Gradio calls them, without a browser or a model: links with a bad code get a clear message, a
class follows its presenter, answers close at Reveal and vanish when the class ends."""

from __future__ import annotations

import gradio as gr
import pytest

from pulse_app.auth import new_owner_token
from pulse_app.decks import Deck
from pulse_app.settings import Settings
from pulse_app.teaching import Case
from pulse_app.ui import texts
from pulse_app.ui.decks import DecksUI
from pulse_app.ui.handlers import HIDDEN, PulseUI


@pytest.fixture
def dui(tmp_path):
    return DecksUI(PulseUI(Settings.load(data_dir=str(tmp_path / "data"))))


def request(session_hash="page-1", **query):
    return gr.Request(username=None, session_hash=session_hash, query_params=query,
                      headers={"host": "127.0.0.1:7860"})


def test_links_open_cases_and_decks_and_bad_codes_say_what_to_do(dui):
    token = new_owner_token()
    case = Case.make({"qrs": "rbbb"}, seed=4)
    picture, view, *_, truth, tabs, _, _ = dui.open_query(token, request(case=case.code))
    assert picture.size == (2200, 1700) and truth["value"] == HIDDEN
    assert tabs.selected == "teaching" and set(view) >= {"draft", "session"}
    share, check = dui.teaching_notes(token, view, request())
    assert case.code in share and check == ""
    assert dui.check_view(token, view, request()) == texts.CHECK_NOTHING_YET

    deck = Deck.draw("combined", 4, seed=9)
    *_, tabs, code, info = dui.open_query(token, request(deck=deck.code.lower()))
    assert tabs.selected == "decks" and code == deck.code and "4 cases" in info
    assert all(isinstance(x, type(gr.skip())) for x in dui.open_query(token, request()))

    for query, words in (({"case": case.code[:-1] + "Q"}, "mistyped"),
                         ({"deck": case.code}, "case code, not a deck code"),
                         ({"case": "<script>"}, "letters a code never has")):
        with pytest.raises(gr.Error, match=words):
            dui.open_query(token, request(**query))


def test_a_deck_of_chosen_cases_grows_from_the_teaching_tab(dui):
    token = new_owner_token()
    code = ""
    for seed in (1, 2):
        draft = dui.chat.open_teaching_case(f"browser:{token}", {"axis": "left"}, seed=seed)
        code, info = dui.add_case(token, {"draft": draft.id, "session": None}, code, True,
                                  request())
    deck = Deck.from_code(code)
    assert [c.seed for c in deck.cases] == [1, 2] and deck.students and "2 cases" in info
    with pytest.raises(gr.Error, match="not a teaching case"):
        dui.add_case(token, {"draft": None, "session": None}, code, True, request())


def test_a_class_follows_its_presenter_and_ends_with_the_deck(dui):
    teacher, students = new_owner_token(), [new_owner_token() for _ in range(3)]
    deck = Deck.draw("single", 3, seed=2, students=True)
    out = dui.present(teacher, deck.code, request())
    state, view, title = out[4:7]
    assert out[2]["visible"] and title == "### Case 1 of 3" and state["class"]
    assert state["class"] in out[7] and "127.0.0.1:7860/?class=" in out[7]

    pages = []
    for token in students:
        shown = dui.open_class_query(token, request(**{"class": state["class"].lower()}))
        assert shown[2]["visible"] and not shown[0]["visible"]      # only the student's page
        pages.append(shown[4])
    questions = dui.classrooms.get(state["class"]).questions(0)
    rhythm = next(i for i, q in enumerate(questions) if q.kind == "rhythm")
    for number, token in enumerate(students):
        letters = [None] * 5
        letters[rhythm] = questions[rhythm].answer if number < 2 else "A"
        assert dui.send_answers(token, pages[number], *letters, request()) == texts.STUDENT_SENT
    with pytest.raises(gr.Error, match="no answer chosen"):
        dui.send_answers(students[0], pages[0], None, None, None, None, None, request())
    assert "3 answered" in dui.poll_presenter(teacher, state, request())[0]
    assert all(isinstance(x, type(gr.skip())) for x in dui.poll_student(students[0], pages[0],
                                                                        request()))

    state, truth, check, answers, summary = dui.present_reveal(teacher, state, view, request())
    assert "Simulated findings" in truth and "3 answered" in answers
    assert texts.CHECK_NOTHING_YET in check and "No case revealed" not in summary
    again = dui.poll_student(students[0], pages[0], request())
    assert again[-1] == texts.STUDENT_CLOSED and again[2].interactive is False
    with pytest.raises(gr.Error, match="answers are closed"):
        dui.send_answers(students[2], pages[2], "B", None, None, None, None, request())

    state = dui.go(teacher, state, view, 1, request())[0]
    moved = dui.poll_student(students[1], pages[1], request())
    assert moved[0]["case"] == 1 and "case 2 of 3" in moved[1]
    assert dui.go(teacher, state, None, -1, request())[6] != HIDDEN     # case 1 stays revealed
    csv = open(dui.save_answers(teacher, state, request())).read()
    assert "browser" not in csv and csv.count(",True,") == 3 * 5

    with pytest.raises(gr.Error):                       # only the presenter sees the answers
        dui.save_answers(students[0], state, request())
    assert all(isinstance(x, type(gr.skip())) for x in dui.poll_presenter(students[0], state,
                                                                          request()))
    dui.exit(teacher, state, request())
    assert dui.poll_student(students[0], moved[0], request())[1] == texts.STUDENT_ENDED
    with pytest.raises(gr.Error, match="no live class"):
        dui.open_class_query(students[0], request(**{"class": state["class"]}))
