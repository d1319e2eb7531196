"""The PDF handout of a deck (reportlab, the session report's fonts and footer): one page per
case (its ECG, the students' questions when the deck has them, room for notes), then the answer
key on separate final pages, so the key can be kept back or torn off.

Nothing on a case page is derived from the truth: the ECG is the case's neutral page (checked
by :func:`pulse_app.ecg.render.revealing_texts` when drawn) and the questions list four options.
The app makes handouts in the reports' export process (:func:`render_handout`).

>>> from pulse_app.decks import Deck
>>> pdf = deck_pdf(Deck.draw("single", 2, seed=1, students=True))          # doctest: +SKIP
>>> pdf = render_handout(Deck.draw("single", 2, seed=1), base_url="https://host/")  # doctest: +SKIP
"""

from __future__ import annotations

import io
from datetime import datetime, timezone

from reportlab.platypus import KeepTogether, PageBreak, Paragraph, Spacer

from pulse_app.decks import Deck
from pulse_app.report import (FRAME_HEIGHT, FRAME_WIDTH, build_pdf, ecg_flowable,
                              in_export_process, report_styles)
from pulse_app.report import safe_text as _t

#: Pixel width of the ECG pictures in the handout (~200 dpi across the page).
IMAGE_WIDTH_PX = 1600
KEY_TITLE = "Answer key"
NOTE = ("Simulated ECGs drawn by the PULSE workbench's simulator for teaching: no patient data. "
        "Open the deck in the app with its code to discuss each case with the model.")


def _picture(image, photo: bool) -> bytes:
    """A page as a small file: a clean printout as 32-colour PNG (~130 kB), a photo as JPEG."""
    scale = IMAGE_WIDTH_PX / image.width
    small = image.resize((IMAGE_WIDTH_PX, round(image.height * scale)))
    buffer = io.BytesIO()
    if photo:
        small.save(buffer, "JPEG", quality=80)
    else:
        small.quantize(32).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _question(number: int, question) -> Paragraph:
    options = "   ".join(f"{letter}. {text}" for letter, text in question.options.items())
    return Paragraph(f"<b>{_t(f'{number}. {question.text}')}</b><br/>{_t(options)}",
                     report_styles()["answer"])


def deck_pdf(deck: Deck, *, base_url: str = "", generated_at: datetime | None = None) -> bytes:
    """The handout of ``deck`` (bytes). ``base_url`` (e.g. ``https://host/``) prints a link
    that opens the deck; without it only the code is printed."""
    from pulse_app.quiz import case_quiz
    from pulse_app.teaching import MEASUREMENT_NAMES, case_page

    styles = report_styles()
    when = (generated_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
    where = f"{base_url.rstrip('/')}/?deck={deck.code}" if base_url else f"deck code {deck.code}"
    story, key = [], [Paragraph(KEY_TITLE, styles["title"]),
                      Paragraph(_t(f"{deck.title()} · {where}"), styles["subtitle"])]
    for number, case in enumerate(deck.cases, start=1):
        image, truth = case_page(case)
        quiz = case_quiz(truth, key=case.code) if deck.students else []
        story += [Paragraph(f"Case {number} of {len(deck.cases)}", styles["title"]),
                  Paragraph(_t(f"{deck.title()} · {where} · {when}"), styles["subtitle"]),
                  ecg_flowable(_picture(image, case.distort != "none"), FRAME_WIDTH,
                               FRAME_HEIGHT * (0.45 if quiz else 0.7)),
                  Spacer(1, 6), *[_question(i, q) for i, q in enumerate(quiz, start=1)],
                  Spacer(1, 6), Paragraph("Notes:", styles["label"]), PageBreak()]

        labels = ", ".join(truth["labels"]) or "(no labelled finding)"
        measured = ", ".join(f"{MEASUREMENT_NAMES.get(k, (k, ''))[0]} "
                             f"{v:.0f} {MEASUREMENT_NAMES.get(k, ('', ''))[1]}".strip()
                             for k, v in truth["measurements"].items() if v is not None)
        block = [Paragraph(f"Case {number}", styles["heading"]),
                 Paragraph(_t(f"Simulated findings: {labels}"), styles["base"]),
                 Paragraph(_t(f"Measured on the simulated signal: {measured}"), styles["base"])]
        block += [Paragraph(_t(f"{i}. {q.text} {q.answer}. {q.options[q.answer]} "
                               f"({q.explanation.rsplit(' Answer:', 1)[0]})"), styles["answer"])
                  for i, q in enumerate(quiz, start=1)]
        block.append(Paragraph(_t(f"Case code {case.code}"), styles["caption"]))
        key.append(KeepTogether(block))
    story += key + [Spacer(1, 10), Paragraph(_t(NOTE), styles["warning"])]

    return build_pdf(story, title=f"ECG teaching deck {deck.code}",
                     subject="Simulated ECG cases for teaching")


def render_handout(deck: Deck, *, base_url: str = "") -> bytes:
    """:func:`deck_pdf` in the export process (drawing and laying out every case never holds the
    web server's interpreter)."""
    return in_export_process(deck_pdf, deck, base_url=base_url, what="the handout",
                             shorter="use a smaller deck")
