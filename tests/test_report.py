"""The PDF report, parsed back with pypdf: contents, escaping, pages, the image."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from pypdf import PdfReader

from pulse_app.intake import load_image, png_bytes
from pulse_app.report import DISCLAIMER, session_pdf, safe_text
from pulse_app.store import Store

LABEL = "PULSE-7B (local, cuda bf16)"


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'pulse.db'}")
    yield store
    store.close()


@pytest.fixture(scope="module")
def ecg_png(shared_data) -> bytes:
    return png_bytes(load_image(shared_data / "ecg-images" / "fullScan.png").image)  # 2200x1700


def make_session(store, png, turns):
    session = store.create_session("user:ana", title="Chest pain, 54 y <urgent>",
                                   model_id="PULSE-ECG/PULSE-7B", model_revision="3c1b2a9",
                                   original_png=png, edited_png=png,
                                   params={"generation": {"temperature": 0.2}})
    for question, answer, stopped in turns:
        store.add_turn("user:ana", session.id, question=question, answer=answer,
                       model_id="PULSE-ECG/PULSE-7B", model_label=LABEL,
                       params={"temperature": 0.0, "top_p": 0.7, "max_new_tokens": 512},
                       stopped=stopped, model_revision="3c1b2a9")
    return store.get_session("user:ana", session.id)


def pdf_text(pdf: bytes) -> tuple[PdfReader, list[str], str]:
    reader = PdfReader(io.BytesIO(pdf))
    pages = [page.extract_text() for page in reader.pages]
    return reader, pages, " ".join(" ".join(pages).split())


def test_report_holds_everything_a_clinician_needs(store, ecg_png, artifacts):
    turns = [
        ("What is the heart rhythm?", "Sinus rhythm at about 72 beats per minute.", False),
        ("Is it <b>&</b> normal?", "The axis is normal & intervals are within limits.", False),
        ("Any ST elevation?", "There is no ST elevation in the inferior leads", True),
    ]
    session = make_session(store, ecg_png, turns)
    pdf = session_pdf(session, note="Agree with sinus rhythm. Repeat ECG if pain recurs.",
                       owner_label="dr.ana")
    assert pdf.startswith(b"%PDF-")
    (artifacts / "report.pdf").write_bytes(pdf)              # for a human to look at
    reader, pages, text = pdf_text(pdf)
    for question, answer, _ in turns:
        assert question in text and answer in text
    assert "Is it <b>&</b> normal?" in text                  # markup printed literally
    assert "Chest pain, 54 y <urgent>" in text
    assert f"Answer by {LABEL}" in text and "(stopped before the end)" in text
    assert "PULSE-ECG/PULSE-7B" in text and "3c1b2a9" in text
    assert "temperature 0.0, top-p 0.7, max new tokens 512" in text
    assert "dr.ana" in text and "user:ana" not in text
    assert "Agree with sinus rhythm. Repeat ECG if pain recurs." in text
    assert " ".join(DISCLAIMER.split()) in text
    assert all("research tool, not a medical device" in page for page in pages)
    total = len(reader.pages)
    for number in range(1, total + 1):
        assert f"Page {number} of {total}" in pages[number - 1]
    assert reader.metadata.title == "ECG reading report: Chest pain, 54 y <urgent>"
    (image,) = reader.pages[0].images
    assert Image.open(io.BytesIO(image.data)).size == (2200, 1700)
    box = reader.pages[0].mediabox
    drawn = re.findall(rb"([\d.]+) 0 0 ([\d.]+) [\d.]+ [\d.]+ cm", reader.pages[0].get_contents()
                       .get_data())
    widths = [float(w) for w, h in drawn]
    assert max(widths) >= 0.85 * float(box.width)            # full page width, readable


def test_twenty_turn_session_spans_pages_with_numbers(store, ecg_png):
    turns = [(f"Question number {n}: what about lead V{n % 6 + 1}?",
              f"Answer number {n}. " + "The waveform in this lead looks unremarkable. " * 12,
              False) for n in range(1, 21)]
    session = make_session(store, ecg_png, turns)
    reader, pages, text = pdf_text(session_pdf(session))
    total = len(reader.pages)
    assert total >= 4
    assert [f"Page {n} of {total}" in page for n, page in enumerate(pages, 1)] == [True] * total
    for n in range(1, 21):
        assert f"Question number {n}:" in text and f"Answer number {n}." in text
    assert text.index("Question number 2:") < text.index("Question number 19:")
    assert "Owner not recorded" in text


def test_odd_model_output_and_empty_sessions_do_not_break_the_report(store, ecg_png):
    tiny_like = "\x16hond voltageainch\ufffd te\n\x05Parkinson\x13 " + "x" * 400 + " \ud800end"
    session = make_session(store, ecg_png, [("Rate?", tiny_like, False), ("Again?", "", True)])
    _, _, text = pdf_text(session_pdf(session))
    assert "hond voltageainch" in text and "Parkinson" in text and "(no text)" in text
    empty = make_session(store, ecg_png, [])
    _, _, text = pdf_text(session_pdf(empty))
    assert "No questions were asked" in text


def test_safe_text_escapes_markup():
    assert safe_text('<para><font size="40">x</font> & "y"') == \
        '&lt;para&gt;&lt;font size="40"&gt;x&lt;/font&gt; &amp; "y"'
    assert safe_text("a\x00b\r\nc") == "ab<br/>c"
