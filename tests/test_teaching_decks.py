"""Teaching cases you can share, decks, the students' questions and a live class, on the real
core: codes read back (or refused with a clear message), the same code drawing the same bytes,
drawn decks showing what their level says, questions whose right option is the truth, a class
keeping one answer per browser for its lifetime only."""

from __future__ import annotations

import io
import random

import pytest

from pulse_app.chat import ChatService
from pulse_app.classroom import ClassNotFound, Classrooms
from pulse_app.codes import CodeInvalid
from pulse_app.decks import CLEAR, LEVELS, SUBTLE, Deck
from pulse_app.errors import FindingsInvalid, PulseError
from pulse_app.intake import png_bytes
from pulse_app.quiz import KINDS, case_quiz
from pulse_app.settings import Settings
from pulse_app.teaching import TRUTH_KEY, Case, _page_of, case_page, case_truth

AFIB = {"rhythm": "afib", "rate_bpm": 112.4, "qrs": "rbbb", "st": {"inferior": 0.2001},
        "t_inversion": ["lateral", "anterior"]}


def test_a_case_code_reads_back_and_a_bad_one_gets_a_clear_message():
    case = Case.make(AFIB, seed=41, distort="photo")
    assert case.findings["rate_bpm"] == 112.0 and case.findings["st"] == {"inferior": 0.2}
    assert case.findings["t_inversion"] == ["anterior", "lateral"]
    code = case.code
    assert len(code.replace("-", "")) == 24
    for written in (code, code.lower(), code.replace("-", " "), f"https://host/?case={code}&x=1",
                    code.replace("O", "0").replace("I", "1").replace("B", "8")):
        assert Case.from_code(written) == case, written
    typo = code[:5] + ("A" if code[5] != "A" else "B") + code[6:]
    with pytest.raises(CodeInvalid, match="mistyped or incomplete"):
        Case.from_code(typo)
    with pytest.raises(CodeInvalid, match="mistyped or incomplete"):
        Case.from_code(code[:-5])
    with pytest.raises(CodeInvalid, match="no code given"):
        Case.from_code("  ")
    with pytest.raises(CodeInvalid, match="letters a code never has"):
        Case.from_code("ECG#1")
    with pytest.raises(CodeInvalid, match="deck code, not a case code"):
        Case.from_code(Deck.draw("single", 2).code)
    with pytest.raises(FindingsInvalid, match="cannot be shared"):
        Case.make({"st": {"inferior": 1.5}})
    with pytest.raises(FindingsInvalid, match="not a finding we simulate"):
        Case.make({"rhythm": "vt"})
    assert str(CodeInvalid("x", hint="y")) == "x. y"          # one line: what, then what to do


def test_the_same_code_draws_the_same_image_bytes_and_truth():
    case = Case.make({"qrs": "lbbb", "axis": "left"}, seed=7)
    first_image, first_truth = case_page(case)
    first = png_bytes(first_image)
    _page_of.cache_clear()                                  # drawn again from scratch
    again_image, again_truth = case_page(Case.from_code(case.code))
    assert png_bytes(again_image) == first and again_truth == first_truth
    assert case_truth(case) == first_truth
    other_seed = Case.make({"qrs": "lbbb", "axis": "left"}, seed=8)
    assert png_bytes(case_page(other_seed)[0]) != first


def test_a_case_opened_by_code_is_a_teaching_draft_with_its_truth(tmp_path):
    chat = ChatService(Settings.load(data_dir=str(tmp_path)))      # no model needed
    owner = "browser:" + "t" * 43
    local = chat.open_teaching_case(owner, {"rhythm": "aflutter", "rate_bpm": 100.0}, seed=2)
    code = local.source["case"]
    shared = chat.open_case("browser:" + "s" * 43, code)
    assert png_bytes(shared.image) == png_bytes(local.image)
    assert shared.extra[TRUTH_KEY] == local.extra[TRUTH_KEY]
    assert chat.teaching_case("browser:" + "s" * 43, draft_id=shared.id) == \
        (local.extra[TRUTH_KEY], code)

    session = chat.start_session(owner, local.id)
    assert chat.check_teaching_answers(owner, session.id)[0].said is None   # nothing asked
    for answer in ("Atrial fibrillation.", "Atrial flutter with 2:1 block, rate 100 bpm."):
        chat.store.add_turn(owner, session.id, question="?", answer=answer, model_id="m",
                            model_label="model-x", params={})
    rows = {r.item: r for r in chat.check_teaching_answers(owner, session.id)}
    assert rows["rhythm"].said == "atrial flutter" and rows["rhythm"].correct
    assert rows["rate"].said == "100 bpm" and rows["rate"].correct and rows["rate"].turn == 1
    assert rows["axis"].correct is None
    assert chat.teaching_case(owner, session_id=session.id)[1] == code
    stranger = "browser:" + "x" * 43
    with pytest.raises(PulseError):
        chat.check_teaching_answers(stranger, session.id)


def _findings_of(truth) -> list[str]:
    return [label for label in truth["labels"] if label != "sinus rhythm"]


def test_drawn_decks_show_what_their_level_says_and_read_back_from_16_letters():
    single = Deck.draw("single", len(CLEAR), seed=3, students=True)
    shown = [_findings_of(case_truth(c)) for c in single.cases]
    assert all(len(f) <= 1 for f in shown), shown
    assert len({tuple(f) for f in shown}) == len(CLEAR), "no finding twice while some are left"
    combined = Deck.draw("combined", 12, seed=4)
    assert all(2 <= len(_findings_of(case_truth(c))) <= 4 for c in combined.cases)
    subtle = Deck.draw("subtle", len(SUBTLE), seed=5)
    assert {c.distort for c in subtle.cases} == {"none", "photo"}
    for deck in (single, combined, subtle):
        assert len(deck.code.replace("-", "")) == 16
        assert Deck.from_code(deck.code) == deck
    assert Deck.draw("single", 5, seed=3) != Deck.draw("single", 5, seed=4)
    assert set(LEVELS) == {"single", "combined", "subtle"}

    chosen = Deck.of([Case.make(AFIB, seed=1), Case.make({}, seed=2, distort="all")])
    assert Deck.from_code(chosen.code) == chosen and chosen.level is None
    with pytest.raises(CodeInvalid, match="case code, not a deck code"):
        Deck.from_code(chosen.cases[0].code)
    with pytest.raises(CodeInvalid, match="1 to 30 cases"):
        Deck.draw("single", 31)
    with pytest.raises(CodeInvalid, match="1 to 30 cases"):
        Deck.of([])


def test_the_students_right_option_is_the_truth():
    rng = random.Random(0)
    for number in range(40):
        case = Deck.draw(rng.choice(list(LEVELS)), 1, seed=number).cases[0]
        truth = case_truth(case)
        quiz = case_quiz(truth, key=case.code)
        assert [q.kind for q in quiz] == list(KINDS)
        right = {q.kind: q.options[q.answer] for q in quiz}
        rhythm = next(l for l in truth["labels"] if l in ("sinus rhythm", "sinus bradycardia",
                      "sinus tachycardia", "sinus arrhythmia", "atrial fibrillation",
                      "atrial flutter"))
        assert right["rhythm"].lower() == rhythm
        assert all(len(set(q.options.values())) == 4 for q in quiz)
        assert case_quiz(truth, key=case.code) == quiz, "the same letters for every student"


def test_a_class_keeps_one_answer_per_browser_until_reveal_and_only_while_it_lives():
    rooms = Classrooms()
    deck = Deck.draw("single", 3, seed=2, students=True)
    room = rooms.open("teacher", deck)
    assert rooms.get(room.id.lower()) is room
    rhythm = next(q for q in room.questions(0) if q.kind == "rhythm")
    wrong = next(letter for letter in rhythm.options if letter != rhythm.answer)
    room.answer("browser-a", 0, "rhythm", wrong)
    room.answer("browser-a", 0, "rhythm", rhythm.answer)        # changed: still one answer
    room.answer("browser-b", 0, "rhythm", wrong)
    room.answer("browser-c", 0, "rate", "A")
    assert room.counts(0)["rhythm"][rhythm.answer] == 1 and sum(
        room.counts(0)["rhythm"].values()) == 2
    assert room.answered(0) == 3 and room.mine("browser-a", 0) == {"rhythm": rhythm.answer}
    with pytest.raises(PulseError, match="not one of the options"):
        room.answer("browser-a", 0, "rhythm", "E")
    room.revealed.add(0)
    with pytest.raises(PulseError, match="answers are closed"):
        room.answer("browser-d", 0, "rhythm", "A")
    shown = room.distribution_markdown(0)
    assert "3 answered" in shown and "browser" not in shown
    table = room.results_csv().decode()
    assert "browser" not in table and deck.code in table and table.count("\n") == 1 + 3 * 5 * 4

    with pytest.raises(ClassNotFound, match="another browser"):
        rooms.presented_by("someone else", room.id)
    rooms.end("teacher", room.id)
    with pytest.raises(ClassNotFound, match="no live class"):
        rooms.get(room.id)
    old = Classrooms(max_age_s=0.0)
    gone = old.open("teacher", deck)
    with pytest.raises(ClassNotFound):
        old.get(gone.id)


def test_the_handout_has_the_answer_key_on_its_last_pages_only():
    from pypdf import PdfReader

    from pulse_app.handout import KEY_TITLE, deck_pdf

    deck = Deck.of([Case.make(AFIB, seed=1), Case.make({"qrs": "lbbb"}, seed=2)], students=True)
    pages = [p.extract_text() for p in PdfReader(io.BytesIO(deck_pdf(deck))).pages]
    key_from = next(i for i, text in enumerate(pages) if KEY_TITLE in text)
    assert key_from >= len(deck.cases), "one page (at least) per case first"
    assert all("Case 1 of 2" in pages[0] and "Answer:" not in text and "Simulated" not in text
               for text in pages[:key_from])
    key = " ".join(pages[key_from:])
    for case in deck.cases:
        for label in case_truth(case)["labels"]:
            assert label in key
        assert case.code in key
