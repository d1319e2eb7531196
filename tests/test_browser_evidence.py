"""The digitiser's evidence in the real app, in real headless Chromium, with the shipped mini
model: upload a page, the measurement panel fills, the overlay shows, a grounded answer is
labelled, an answer that contradicts the measurements is flagged, the signals download and the
PDF report carries the measurements.

The contradicting answer is crafted (a model that reads this page right cannot be relied on to
contradict it): :class:`tests.test_grounding.CraftedBackend` writes a fixed text with the mini
model's own identity through the same Backend interface; everything after it — the check, the
stored flag, the chat, the report — is the real thing.
"""

from __future__ import annotations

import re

import pytest

from tests.test_browser import download_from, page_ready
from tests.test_grounding import CraftedBackend

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def evidence_server(tmp_path_factory, ui_cache):
    from tests.fixtures_ui import make_ui_settings, start_server

    settings = make_ui_settings(tmp_path_factory.mktemp("evidence-data"), ui_cache,
                                model="offline-default", max_new_tokens=32)
    server = start_server(settings)
    yield server
    server.close()


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    from pulse_app.ecg.render import render_ecg
    from pulse_app.ecg.simulate import ecg_simulate

    path = tmp_path_factory.mktemp("evidence-page") / "sinus-75.png"
    render_ecg(ecg_simulate({"rate_bpm": 75}, seed=2)).image.save(path)
    return path


def test_evidence_grounding_and_contradiction_in_the_browser(browser, evidence_server, page_file,
                                                              artifacts, tmp_path):
    from pypdf import PdfReader

    context = browser.new_context(viewport={"width": 1500, "height": 1400}, accept_downloads=True)
    page = context.new_page()
    chat = evidence_server.chat
    try:
        page.goto(evidence_server.url)
        page_ready(page)
        page.locator("#upload input[type=file]").set_input_files(str(page_file))

        # the measurement panel fills, the overlay shows when asked for
        evidence = page.locator("#evidence")
        evidence.get_by_text("Heart rate: 75 bpm (lead II").wait_for(timeout=90_000)
        assert "Measured from the image by the digitiser" in evidence.inner_text()
        assert "QRS duration" in evidence.inner_text()
        assert page.locator("#overlay img").count() == 0 or \
            not page.locator("#overlay img").is_visible()
        page.locator("#show-overlay input").check()
        page.locator("#overlay img").wait_for(state="visible", timeout=30_000)
        page.wait_for_function("() => { const i = document.querySelector('#overlay img');"
                               " return i && i.complete && i.naturalWidth > 500; }",
                               timeout=30_000)
        page.screenshot(path=str(artifacts / "browser-evidence-1-overlay.png"), full_page=True)

        # a grounded answer, labelled so
        page.locator("#grounded input").check()
        page.locator("#question textarea").fill("What is the heart rate?")
        page.locator("#ask").click()
        page.locator("#chat").get_by_text("grounded on the digitiser's measurements").wait_for(
            timeout=90_000)

        # an answer that contradicts the measurements is flagged (crafted text, real check)
        real = chat.backend
        chat._backend = CraftedBackend(real)
        try:
            page.locator("#grounded input").uncheck()
            page.locator("#question textarea").fill("Rate and rhythm?")
            page.locator("#ask").click()
            page.locator("#chat").get_by_text("Contradicts the digitiser's measurements").wait_for(
                timeout=90_000)
        finally:
            chat._backend = real
        flagged = page.locator("#chat").inner_text()
        assert "150 bpm; the digitiser measured 75 bpm" in flagged
        page.screenshot(path=str(artifacts / "browser-evidence-2-flagged.png"), full_page=True)

        # the signals, for this browser only
        csv_path = download_from(page, "#signals-csv", "#signals-file", tmp_path / "signals.csv")
        assert csv_path.read_text().splitlines()[0].startswith("time_s,I,II,III")

        # the report carries the measurements, the grounded label and the flag
        pdf_path = download_from(page, "#export-pdf", "#report-file", tmp_path / "report.pdf")
        flat = re.sub(r"\s+", " ", "\n".join(p.extract_text()
                                             for p in PdfReader(pdf_path).pages))
        assert "Heart rate: 75 bpm (lead II" in flat
        assert "grounded on the digitiser's measurements" in flat
        assert "Contradicts the digitiser's measurements" in flat
    finally:
        context.close()
