"""End to end in real headless Chromium (Debian's, through playwright): a clinician's visit.

Upload a phone photo, rotate it, crop it, ask, watch the answer stream in, export the PDF (a real
download, parsed back), reload the page and reopen the session (same browser context = same
owner token). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import io
import re
import threading

import pytest
from PIL import Image

pytestmark = pytest.mark.browser

QUESTION = "Is there <b>ST elevation</b> & what is the rate?"

#: Watches the chat and records every distinct text of the last bot message (streaming proof).
RECORD_STREAM_JS = """() => {
  window.__botTexts = [];
  const chat = document.querySelector('#chat');
  new MutationObserver(() => {
    const bots = chat.querySelectorAll('[data-testid="bot"]');
    if (!bots.length) return;
    const text = bots[bots.length - 1].innerText;
    const seen = window.__botTexts;
    if (seen[seen.length - 1] !== text) seen.push(text);
  }).observe(chat, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory, ui_cache):
    from tests.fixtures_ui import make_ui_settings, start_server

    settings = make_ui_settings(tmp_path_factory.mktemp("browser-data"), ui_cache,
                                max_new_tokens=48)
    server = start_server(settings)
    yield server
    server.close()


def click_picture(page, fx: float, fy: float) -> None:
    """Click the shown picture at a fraction of its width and height."""
    box = page.locator("#picture img").bounding_box()
    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])


def page_ready(page) -> None:
    """The page has loaded its owner, its sessions and the model's name (one load event)."""
    page.locator("#notice").get_by_text("not a medical device").wait_for()
    page.locator("#notice").get_by_text("Model:").wait_for(timeout=60_000)


def choose_session(page, title_part: str) -> None:
    """Pick the saved session whose title holds ``title_part`` in the sidebar's list."""
    page.locator("#session-list input").click()
    page.get_by_role("option").filter(has_text=title_part).first.click()


def wait_for_picture_size(page, width: int, height: int) -> None:
    page.wait_for_function(
        """([w, h]) => { const img = document.querySelector('#picture img');
                        return img && img.complete && Math.abs(img.naturalWidth - w) <= 8
                               && Math.abs(img.naturalHeight - h) <= 8; }""",
        arg=[width, height], timeout=30_000)


def ask_and_see_it_stream(page, question: str, *, touch: bool = False) -> None:
    """Ask ``question``; the answer arrives in several updates and ends with the model's
    name."""
    page.evaluate(RECORD_STREAM_JS)
    page.locator("#question textarea").fill(question)
    ask = page.locator("#ask")
    ask.tap() if touch else ask.click()
    page.locator("#chat").get_by_text("— tiny-untrained").wait_for(timeout=60_000)
    texts = page.evaluate("window.__botTexts")
    assert len([t for t in texts if t.strip()]) >= 2, f"no streaming seen: {texts}"


def outside_requests(page) -> list[str]:
    """The addresses outside 127.0.0.1 that ``page`` asks for from now on (a list it fills)."""
    outside = []
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
    return outside


def keep_original(page) -> None:
    """A straightening is proposed, never forced: keep the picture as uploaded."""
    page.locator("#picture-check").get_by_text("Straightening proposed").wait_for()
    page.locator("#straighten-keep").click()
    page.locator("#picture-tools").wait_for()


def download(page, link_box: str, path):
    """Wait for the one-time link in ``link_box``, download it to ``path``."""
    link = page.locator(f"{link_box} a").first
    link.wait_for(timeout=60_000)
    with page.expect_download() as download_info:
        link.click()
    download_info.value.save_as(path)
    return path


def download_from(page, button: str, link_box: str, path):
    """Click ``button``, then :func:`download` the link it puts in ``link_box``."""
    page.locator(button).click()
    return download(page, link_box, path)


def test_clinician_visit(browser, browser_server, shared_data, artifacts, tmp_path):
    from pypdf import PdfReader

    context = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    page = context.new_page()
    outside = outside_requests(page)
    try:
        page.goto(browser_server.url)
        page_ready(page)
        page.locator("#notice").get_by_text("untrained").first.wait_for()

        # upload, rotate a quarter turn left, crop
        page.locator("#upload input[type=file]").set_input_files(
            str(shared_data / "ecg-images" / "ecg00040.jpg"))
        wait_for_picture_size(page, 1200, 612)
        keep_original(page)      # the scan is tilted 3 degrees: straightening is proposed
        page.locator("#rotate-left").click()
        wait_for_picture_size(page, 612, 1200)
        click_picture(page, 0.1, 0.1)                       # crop: two opposite corners
        page.get_by_text("Now click the opposite corner").first.wait_for()   # first one taken
        click_picture(page, 0.6, 0.6)
        wait_for_picture_size(page, 306, 600)
        page.screenshot(path=str(artifacts / "browser-1-edited.png"))

        # ask; the answer streams in and ends with the model's name
        ask_and_see_it_stream(page, QUESTION)
        assert page.locator("#chat").get_by_text(QUESTION).count() == 1, "question not literal"
        page.screenshot(path=str(artifacts / "browser-2-answer.png"))

        owner_sessions = [s for s in _all_sessions(browser_server)]
        assert len(owner_sessions) == 1
        stored = browser_server.store.get_session(*owner_sessions[0])
        edited = Image.open(io.BytesIO(stored.edited_png))
        original = Image.open(io.BytesIO(stored.original_png))
        assert original.size == (1200, 612)
        assert abs(edited.width - 306) <= 8 and abs(edited.height - 600) <= 8, \
            "rotated a quarter turn (portrait), then cropped to half of each side"
        assert stored.params["edit"]["rotate90"] == 1
        assert [t.question for t in stored.turns] == [QUESTION]

        # export the PDF with a clinician note: a real download, parsed back
        page.locator("#report-note textarea").fill("Seen with Dr. Osei; repeat ECG tomorrow.")
        pdf_path = download_from(page, "#export-pdf", "#report-file", tmp_path / "report.pdf")
        text = "\n".join(p.extract_text() for p in PdfReader(pdf_path).pages)
        flat = re.sub(r"\s+", " ", text)
        assert "<b>ST elevation</b> &" in flat
        assert "repeat ECG tomorrow" in flat
        assert "tiny-untrained" in flat

        # reload: same browser = same owner; reopen the session from the sidebar
        page.reload()
        page_ready(page)
        choose_session(page, "Is there")
        page.locator("#session-open").click()
        page.locator("#chat").get_by_text("— tiny-untrained").wait_for(timeout=30_000)
        assert page.locator("#chat").get_by_text(QUESTION).count() == 1
        wait_for_picture_size(page, edited.width, edited.height)
        page.screenshot(path=str(artifacts / "browser-3-reopened.png"), full_page=True)
        assert not outside, f"the page reached outside 127.0.0.1: {outside[:3]}"
    finally:
        context.close()

    # another browser (a fresh context = no stored token) gets its own, empty, private space
    stranger = browser.new_context(viewport={"width": 1500, "height": 1100})
    try:
        other = stranger.new_page()
        other.goto(browser_server.url)
        page_ready(other)
        other.wait_for_timeout(1000)
        other.locator("#session-list input").click()
        other.wait_for_timeout(500)
        assert other.get_by_role("option").filter(has_text="Is there").count() == 0
    finally:
        stranger.close()


def _all_sessions(server):
    """(owner, session id) of every stored session (the test owns the whole database)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server.settings.database_url)
    with engine.connect() as db:
        rows = db.execute(text("SELECT owner, id FROM sessions")).all()
    engine.dispose()
    return [(owner, sid) for owner, sid in rows]


def test_teaching_panel_generates_then_reveals(browser, browser_server):
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = context.new_page()
    try:
        page.goto(browser_server.url)
        page_ready(page)
        page.get_by_role("tab", name="Teaching").click()
        page.locator("#teach-rhythm input").click()
        page.get_by_role("option", name="Atrial fibrillation").click()
        page.locator("#teach-generate").click()
        wait_for_picture_size(page, 2200, 1700)
        truth = page.locator("#teach-truth")
        assert "atrial fibrillation" not in truth.inner_text(), "ground truth shown too early"
        page.locator("#teach-reveal").click()
        truth.get_by_text("atrial fibrillation").wait_for()
    finally:
        context.close()


def hold_first_answer(monkeypatch, backend) -> threading.Event:
    """Hold the first answer the real model streams after its first chunk until the returned
    event is set, so a second visitor's question meets a busy model however fast or loaded this
    machine is (the model's own tokens still come from the model; later answers pass through)."""
    release, calls, stream = threading.Event(), [], backend.stream

    def held(*args, **kwargs):
        calls.append(1)
        chunks = stream(*args, **kwargs)
        if len(calls) == 1:
            first = next(chunks, None)
            if first is not None:
                yield first
            release.wait(timeout=120)
        return (yield from chunks)

    monkeypatch.setattr(backend, "stream", held)
    return release


def test_queue_position_shown_and_stop_keeps_the_partial_answer(browser, browser_server,
                                                                 shared_data, artifacts,
                                                                 monkeypatch):
    """Two visitors, one model: the second sees its place in the queue; Stop ends the first
    answer early and it is kept, marked [stopped]."""
    release = hold_first_answer(monkeypatch, browser_server.chat.backend)
    contexts = [browser.new_context(viewport={"width": 1500, "height": 1100}) for _ in range(2)]
    pages = [context.new_page() for context in contexts]
    try:
        for page in pages:
            page.goto(browser_server.url)
            page_ready(page)
            page.locator("#upload input[type=file]").set_input_files(
                str(shared_data / "ecg-images" / "ecg00010.png"))
            wait_for_picture_size(page, 768, 420)
        first, second = pages
        first.locator("#question textarea").fill("Write a long report.")
        first.locator("#ask").click()
        first.locator("#chat [data-testid=bot]").wait_for()
        second.locator("#question textarea").fill("And the rate?")
        second.locator("#ask").click()
        queue_line = second.locator("#chat").get_by_text(re.compile(r"queue: \d+/\d+"))
        queue_line.wait_for(timeout=30_000)
        second.screenshot(path=str(artifacts / "browser-queue.png"))
        first.locator("#stop").click()
        release.set()                                   # the held answer goes on, sees Stop
        first.locator("#chat").get_by_text("[stopped]").wait_for(timeout=30_000)
        second.locator("#chat").get_by_text("— tiny-untrained").wait_for(timeout=60_000)
    except Exception:
        for number, page in enumerate(pages, 1):      # what each visitor saw, for the log
            page.screenshot(path=str(artifacts / f"browser-queue-failed-{number}.png"))
        raise
    finally:
        release.set()
        for context in contexts:
            context.close()


def test_markdown_and_html_in_questions_and_answers_load_nothing(browser, browser_server,
                                                                  shared_data):
    """A question and an answer with a Markdown image, an HTML image, a link and a bare URL
    pointing at a tracker on 127.0.0.1: the chat shows them as text and the browser never asks
    the tracker for anything."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits = []

    class Tracker(BaseHTTPRequestHandler):
        def do_GET(self):                                 # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    tracker = ThreadingHTTPServer(("127.0.0.1", 0), Tracker)
    threading.Thread(target=tracker.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{tracker.server_address[1]}"
    question = (f"Look ![q]({base}/question.png) <img src=\"{base}/question-html.png\"> "
                f"[here]({base}/question-link) {base}/question-bare")
    answer = f"See ![a]({base}/answer.png) and <img src=\"{base}/answer-html.png\">"
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    try:
        page = context.new_page()
        page.goto(browser_server.url)
        page.locator("#notice").get_by_text("not a medical device").wait_for()
        page.locator("#upload input[type=file]").set_input_files(
            str(shared_data / "ecg-images" / "ecg00010.png"))
        wait_for_picture_size(page, 768, 420)
        page.locator("#question textarea").fill(question)
        page.locator("#ask").click()
        page.locator("#chat").get_by_text("— tiny-untrained").wait_for(timeout=60_000)

        token = next(c["value"] for c in context.cookies() if c["name"] == "pulse-owner")
        owner = f"browser:{token}"
        session_id = browser_server.store.list_sessions(owner)[0].id
        browser_server.store.add_turn(owner, session_id, question="And now?", answer=answer,
                                      model_id="tiny", model_label="tiny-untrained",
                                      params={})
        page.reload()
        page.locator("#notice").get_by_text("not a medical device").wait_for()
        choose_session(page, "Look")
        page.locator("#session-open").click()
        page.locator("#chat").get_by_text("See ![a](").wait_for(timeout=30_000)
        assert page.locator("#chat").get_by_text(f"Look ![q]({base}/question.png)").count() == 1
        assert page.locator("#chat img").count() == 0 and page.locator("#chat a").count() == 0
        page.wait_for_timeout(1000)
    finally:
        context.close()
        tracker.shutdown()
    assert hits == [], f"the chat loaded {hits}"
