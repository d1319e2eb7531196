"""PDF export of a 20-turn session: our report vs a naive reportlab canvas dump, same content.

Baseline, measured in the same run: the same text and image written straight onto a
``reportlab.pdfgen.canvas`` (drawString line by line with a fixed-width wrap, the image drawn
once, new page when full): the cheapest PDF a person would write first, with no layout
engine, no escaping and no page totals. The ratio is what platypus layout, escaping, styled
paragraphs and "Page N of M" cost on top of it.

    python -m bench.pdf_export [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

from pulse_app.intake import load_image, png_bytes
from pulse_app.report import DISCLAIMER, session_pdf
from pulse_app.store import Store

REPO = Path(__file__).resolve().parent.parent
ECG = REPO.parent / "shared" / "data" / "ecg-images" / "fullScan.png"
ANSWER = ("The rhythm is sinus at about 72 beats per minute with a normal axis. PR, QRS and QT "
          "intervals are within normal limits. There is no ST elevation or depression, and the "
          "T waves are upright in the lateral leads. ")


def twenty_turn_session(store: Store):
    png = png_bytes(load_image(ECG).image)
    session = store.create_session("user:bench", title="Benchmark session", model_id="PULSE-7B",
                                   model_revision="main", original_png=png, edited_png=png)
    for n in range(1, 21):
        store.add_turn("user:bench", session.id, question=f"Question {n}: what do you see in "
                       f"lead V{n % 6 + 1}? <b>&</b>", answer=f"Answer {n}. " + ANSWER * 3,
                       model_id="PULSE-7B", model_label="PULSE-7B (local, cuda bf16)",
                       params={"temperature": 0.2, "top_p": 0.7, "max_new_tokens": 512},
                       model_revision="main")
    return store.get_session("user:bench", session.id)


def naive_canvas_dump(session) -> bytes:
    """The baseline: text lines and the image drawn directly on a canvas."""
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=letter)
    width, height = letter
    y = height - 50

    def line(text: str) -> None:
        nonlocal y
        if y < 50:
            pdf.showPage()
            y = height - 50
        pdf.drawString(36, y, text)
        y -= 13

    line(f"ECG reading report: {session.title}")
    line(f"Model {session.model_id} {session.model_revision}")
    for text in textwrap.wrap(DISCLAIMER, 100):
        line(text)
    image = ImageReader(io.BytesIO(session.edited_png))
    w, h = image.getSize()
    shown_h = (width - 72) * h / w
    pdf.drawImage(image, 36, y - shown_h, width=width - 72, height=shown_h)
    y -= shown_h + 20
    for turn in session.turns:
        for text in textwrap.wrap(f"Q{turn.index + 1}: {turn.question}", 100):
            line(text)
        for text in textwrap.wrap(f"{turn.model_label}: {turn.answer}", 100):
            line(text)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def timed(function, runs: int) -> tuple[float, bytes]:
    times, result = [], b""
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'bench.db'}")
        session = twenty_turn_session(store)
        session_pdf(session)                                   # warm-up: fonts, imports
        naive_canvas_dump(session)
        ours, pdf = timed(lambda: session_pdf(session, note="Benchmark note."), args.runs)
        base, naive = timed(lambda: naive_canvas_dump(session), args.runs)
        store.close()
    from pypdf import PdfReader

    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    naive_pages = len(PdfReader(io.BytesIO(naive)).pages)
    print(f"PDF export, 20-turn session, ECG image {ECG.name}, median of {args.runs} runs")
    print(f"  session_pdf (platypus):  {ours * 1000:7.1f} ms  {pages} pages, "
          f"{len(pdf) / 1000:.0f} kB")
    print(f"  naive canvas dump:        {base * 1000:7.1f} ms  {naive_pages} pages, "
          f"{len(naive) / 1000:.0f} kB")
    print(f"  ratio ours / naive: {ours / base:.2f}x")


if __name__ == "__main__":
    main()
