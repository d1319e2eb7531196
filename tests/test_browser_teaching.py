"""Teaching in real headless Chromium against the real server, answered by the shipped mini
model: a case shared by code opens the same image bytes in another browser (and behaves like a
local one: chat, Reveal with the model scored, PDF export); a deck of five presented to a class
of three student browsers, the class's answers shown after Reveal and saved as CSV, the handout
downloaded and parsed back (both through the gate's one-time download links, which a
student's browser cannot take). Screenshots go to test-artifacts/."""

from __future__ import annotations

import base64
import re

import pytest

from tests.test_browser import download, page_ready, wait_for_picture_size

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def teaching_server(tmp_path_factory):
    from pulse_app.settings import REPO_ROOT
    from tests.fixtures_ui import make_ui_settings, start_server

    if not (REPO_ROOT / "assets" / "pulse-mini" / "config.json").is_file():
        pytest.skip("no shipped mini model in assets/pulse-mini")
    server = start_server(make_ui_settings(tmp_path_factory.mktemp("teaching-data"),
                                           tmp_path_factory.mktemp("teaching-cache"),
                                           model="offline-default", max_new_tokens=96))
    yield server
    server.close()


def picture_bytes(page, selector: str) -> bytes:
    """The bytes of the page's picture (sent inline, as a ``data:`` URL: never a cached file)."""
    src = page.locator(selector).get_attribute("src")
    assert src.startswith("data:image/jpeg;base64,"), src[:60]
    return base64.b64decode(src.split(",", 1)[1])


def test_a_shared_case_opens_the_same_image_in_another_browser(browser, teaching_server,
                                                               artifacts, tmp_path):
    from pypdf import PdfReader

    url = teaching_server.url
    teacher = browser.new_context(viewport={"width": 1500, "height": 1100})
    student = browser.new_context(viewport={"width": 1500, "height": 1100},
                                  accept_downloads=True)
    try:
        page = teacher.new_page()
        page.goto(url)
        page_ready(page)
        page.get_by_role("tab", name="Teaching").click()
        page.locator("#teach-rhythm input").click()
        page.get_by_role("option", name="Atrial flutter").click()
        page.locator("#teach-generate").click()
        wait_for_picture_size(page, 2200, 1700)
        share = page.locator("#teach-share")
        share.get_by_text("Share this case").wait_for()
        code = re.search(r"code (\S+)", share.inner_text()).group(1)
        original = picture_bytes(page, "#picture img")

        other = student.new_page()
        other.goto(f"{url}?case={code}")
        page_ready(other)
        wait_for_picture_size(other, 2200, 1700)
        assert picture_bytes(other, "#picture img") == original, "same code, same bytes"
        other.locator("#teach-share").get_by_text(code).wait_for()
        assert "flutter" not in other.locator("#teach-truth").inner_text()

        other.locator("#prompt-1").click()                  # "Rhythm": the mini model answers
        other.locator("#chat").get_by_text("— pulse-mini").wait_for(timeout=60_000)
        other.locator("#teach-reveal").click()
        other.locator("#teach-truth").get_by_text("atrial flutter").wait_for()
        table = other.locator("#teach-check")
        table.get_by_text("Model vs truth").wait_for(timeout=15_000)
        rhythm_row = table.locator("tr").filter(has_text="Rhythm").inner_text()
        assert "atrial flutter" in rhythm_row and ("right" in rhythm_row or "wrong" in rhythm_row)
        other.screenshot(path=str(artifacts / "teaching-shared-case.png"), full_page=True)

        other.locator("#export-pdf").click()                 # the session of a shared case
        text = " ".join(p.extract_text() for p in PdfReader(
            download(other, "#report-file", tmp_path / "case.pdf")).pages)
        assert "pulse-mini" in text and "rhythm" in text.lower()

        bad = student.new_page()                              # a mistyped code: a clear message
        bad.goto(f"{url}?case={code[:-2]}XX")
        page_ready(bad)
        bad.get_by_text("mistyped or incomplete").first.wait_for(timeout=15_000)
    finally:
        teacher.close()
        student.close()


def test_a_deck_presented_to_a_class_of_three(browser, teaching_server, artifacts, tmp_path):
    from pypdf import PdfReader

    from pulse_app.decks import Deck
    from pulse_app.handout import KEY_TITLE
    from pulse_app.teaching import case_truth

    url = teaching_server.url
    presenter = browser.new_context(viewport={"width": 1500, "height": 1100},
                                    accept_downloads=True)
    students = [browser.new_context(viewport={"width": 420, "height": 900}) for _ in range(3)]
    try:
        page = presenter.new_page()
        page.goto(url)
        page_ready(page)
        page.get_by_role("tab", name="Decks").click()
        page.locator("#deck-students input").check()
        page.locator("#deck-draw").click()
        page.locator("#deck-info").get_by_text("5 cases").wait_for()
        deck = Deck.from_code(page.locator("#deck-code textarea").input_value())
        assert len(deck.cases) == 5 and deck.students

        page.locator("#deck-present").click()
        page.locator("#present-title").get_by_text("Case 1 of 5").wait_for(timeout=30_000)
        assert not page.locator("#sidebar").is_visible(), "a clean presenter view"
        page.locator("#present-class").get_by_text("answered this case").wait_for()
        class_code = re.search(r"class (\w{6})", page.locator("#present-class").inner_text())[1]

        # three students answer the rhythm question of case 1 from their own browsers
        rhythm = next(q for q in deck_questions(deck, 0) if q.kind == "rhythm")
        picks = [rhythm.answer, rhythm.answer, next(l for l in "ABCD" if l != rhythm.answer)]
        phones = [context.new_page() for context in students]
        for phone in phones:
            phone.goto(f"{url}?class={class_code}", wait_until="commit")
        for phone, letter in zip(phones, picks):
            phone.locator("#student-title").get_by_text("case 1 of 5").wait_for(timeout=60_000)
            assert not phone.locator("#picture").is_visible(), "students see their questions only"
            phone.locator("#student-q1").get_by_text(f"{letter}. ", exact=False).first.click()
            phone.locator("#student-send").click()
            phone.locator("#student-status").get_by_text("Your answers are in").wait_for()
        page.locator("#present-class").get_by_text("3 answered").wait_for(timeout=15_000)
        assert "✅" not in page.locator("#present-answers").inner_text(), "nothing before Reveal"

        # the model answers, Reveal: truth, the model vs the truth, the class's answers
        page.locator("#present-prompt-1").click()                 # "Rhythm"
        page.locator("#present-chat").get_by_text("— pulse-mini").wait_for(timeout=60_000)
        page.locator("#present-reveal").click()
        page.locator("#present-truth").get_by_text("Simulated findings").wait_for()
        table = page.locator("#present-check")
        table.get_by_text("Model vs truth").wait_for()
        assert table.locator("tr").count() == 6                     # header + 5 items
        answers = page.locator("#present-answers")
        answers.get_by_text("3 answered").wait_for()
        right = f"{rhythm.answer}. {rhythm.options[rhythm.answer]}"
        assert "2" in answers.locator("li").filter(has_text=right).first.inner_text()
        page.screenshot(path=str(artifacts / "teaching-presenter.png"), full_page=True)
        phones[0].locator("#student-status").get_by_text("answers are closed").wait_for(
            timeout=15_000)

        page.locator("#present-next").click()
        page.locator("#present-title").get_by_text("Case 2 of 5").wait_for()
        phones[1].locator("#student-title").get_by_text("case 2 of 5").wait_for(
            timeout=15_000)
        page.locator("#present-summary-box").click()
        assert "over 1 revealed case" in page.locator("#present-summary").inner_text()

        # the class's answers, saved before the class ends: a one-time download, no browser id
        page.locator("#present-save").click()
        link = page.locator("#present-saved a").first
        link.wait_for(timeout=60_000)
        href = url.rstrip("/") + "/" + link.get_attribute("href")
        stranger = phones[0].request.get(href)
        assert stranger.status == 404, "a student's browser cannot take the presenter's file"
        taken = page.request.get(href)                    # the presenter's cookie: the file
        assert taken.status == 200 and taken.headers["content-type"].startswith("text/csv")
        assert page.request.get(href).status == 404, "one download only"
        saved = taken.text()
        assert saved.startswith("deck,case,question") and "browser" not in saved
        assert saved.count(",True,2") == 1, "the two right rhythm answers of case 1"

        # back to the workbench: the handout of the same deck, answer key on its last pages
        page.locator("#present-exit").click()
        page.locator("#deck-handout").click()
        pages = [p.extract_text() for p in PdfReader(
            download(page, "#deck-handout-file", tmp_path / "deck.pdf")).pages]
        key_from = next(i for i, text in enumerate(pages) if KEY_TITLE in text)
        assert key_from >= 5 and all(f"Case {n} of 5" in " ".join(pages[:key_from])
                                     for n in range(1, 6))
        assert not any("Simulated findings" in text for text in pages[:key_from])
        key = " ".join(pages[key_from:])
        assert all(label in key for case in deck.cases for label in case_truth(case)["labels"])
    finally:
        presenter.close()
        for context in students:
            context.close()


def deck_questions(deck, index: int):
    from pulse_app.quiz import case_quiz
    from pulse_app.teaching import case_truth

    case = deck.cases[index]
    return case_quiz(case_truth(case), key=case.code)
