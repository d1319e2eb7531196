"""The PDF report of a session (reportlab platypus): what a clinician files or hands over.

Contents, in order: title and date, who and which model (id, revision, label, generation
settings), the research-use disclaimer, the edited ECG image across the full page width, the
digitiser's measurements and overlay when the session was read, the whole conversation (every
answer labelled with the model that wrote it, "grounded" when it was given the measurements, and
flagged when it contradicts them), an optional clinician note. Every page carries the disclaimer
and "Page N of M" in its footer.

User and model text is escaped: a question ``<b>&</b>`` prints literally, never as markup.
Long text (a note, an answer) becomes one paragraph per line (:func:`text_flowables`), so the
layout time grows linearly with its length: reportlab re-wraps the rest of a paragraph each time
it splits one across a page, which made a single paragraph of thousands of lines quadratic
(``bench/pdf_export_scaling.py``). Exports run in a separate process (:func:`render_pdf`) so a
long one never holds the web server's interpreter while answers stream. The deck handout
(:mod:`pulse_app.handout`) is made with the same pieces: fonts and styles, the ECG picture, the
pages with their footer (:func:`build_pdf`) and the export process (:func:`in_export_process`).

>>> pdf = session_pdf(store.get_session(owner, session_id), note="Agree: sinus rhythm.",
...                    owner_label="dr.ana")                                 # doctest: +SKIP
>>> pdf = render_pdf(session, note="Agree.", owner_label="dr.ana")        # doctest: +SKIP
>>> Path("report.pdf").write_bytes(pdf)                                      # doctest: +SKIP
"""

from __future__ import annotations

import functools
import io
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import letter
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas
from reportlab.platypus import (
    CondPageBreak,
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from pulse_app.consistency import flag_text
from pulse_app.errors import PulseError
from pulse_app.intake import describe_edit
from pulse_app.store import ReadingRecord, SessionRecord

DISCLAIMER = ("Research tool, not a medical device. The answers in this report were written by an "
              "AI model and can be wrong; they are not a diagnosis. A qualified clinician must "
              "read the ECG and decide.")
FOOTER = "PULSE workbench · research tool, not a medical device"
PAGE_SIZE = letter                          # 8.5 x 11 in, portrait
MARGIN = 0.5 * inch
#: Unicode fonts (Debian's DejaVu) when present, else the PDF base fonts (Latin-1 only).
FONT_FILES = {"regular": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
              "bold": "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: The page's frame inside the margins (the footer below), in points.
FRAME_WIDTH = PAGE_SIZE[0] - 2 * MARGIN
FRAME_HEIGHT = PAGE_SIZE[1] - 2 * MARGIN - 0.3 * inch
#: A line longer than this is cut into paragraphs of about this many characters (at a space).
LINE_CHUNK_CHARS = 2000


@functools.cache
def report_fonts() -> tuple[str, str]:
    """(regular, bold) font names, registering DejaVu once when it is installed."""
    if all(Path(path).is_file() for path in FONT_FILES.values()):
        try:
            pdfmetrics.registerFont(TTFont("PulseSans", FONT_FILES["regular"]))
            pdfmetrics.registerFont(TTFont("PulseSans-Bold", FONT_FILES["bold"]))
            return "PulseSans", "PulseSans-Bold"
        except Exception:  # noqa: BLE001 - a broken font file: fall back to the base fonts
            pass
    return "Helvetica", "Helvetica-Bold"


@functools.cache
def report_styles() -> dict[str, ParagraphStyle]:
    """The paragraph styles of the report (and of the deck handout), by name."""
    regular, bold = report_fonts()
    base = ParagraphStyle("base", fontName=regular, fontSize=10, leading=13.5, spaceAfter=4)
    return {
        "base": base,
        "title": ParagraphStyle("title", base, fontName=bold, fontSize=17, leading=21,
                                spaceAfter=2),
        "subtitle": ParagraphStyle("subtitle", base, fontSize=11, textColor=colors.HexColor(
            "#444444"), spaceAfter=8),
        "heading": ParagraphStyle("heading", base, fontName=bold, fontSize=12, leading=15,
                                  spaceBefore=10, spaceAfter=4, keepWithNext=1),
        "label": ParagraphStyle("label", base, fontName=bold, fontSize=9, leading=11,
                                textColor=colors.HexColor("#555555"), spaceAfter=1),
        "question": ParagraphStyle("question", base, fontName=bold),
        "answer": ParagraphStyle("answer", base, leftIndent=10, spaceAfter=8),
        "cell": ParagraphStyle("cell", base, fontSize=9, leading=11.5, spaceAfter=0),
        "warning": ParagraphStyle("warning", base, fontName=bold, fontSize=9.5, leading=12.5,
                                  textColor=colors.HexColor("#8a1c1c"), borderPadding=6,
                                  borderColor=colors.HexColor("#8a1c1c"), borderWidth=0.8,
                                  backColor=colors.HexColor("#fff4f2"), spaceBefore=6,
                                  spaceAfter=12),
        "caption": ParagraphStyle("caption", base, fontSize=8.5, alignment=TA_CENTER,
                                  textColor=colors.HexColor("#555555")),
    }


def safe_text(text: str | None) -> str:
    """``text`` as paragraph markup that prints literally: escaped, control characters dropped,
    line breaks kept.

    >>> safe_text("<b>&</b>\\nnext")
    '&lt;b&gt;&amp;&lt;/b&gt;<br/>next'
    """
    text = _CONTROL.sub("", text or "").replace("\r\n", "\n").replace("\r", "\n")
    return escape(text).replace("\t", "    ").replace("\n", "<br/>")


@functools.cache
def _line_style(style: ParagraphStyle) -> ParagraphStyle:
    """``style`` for the inner lines of a multi-line text: no space between them."""
    return ParagraphStyle(f"{style.name}-line", style, spaceBefore=0, spaceAfter=0)


def _lines(text: str) -> list[str]:
    """``text``'s lines, each cut at spaces into pieces of about :data:`LINE_CHUNK_CHARS`."""
    lines = []
    for line in _CONTROL.sub("", text).replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        while len(line) > LINE_CHUNK_CHARS:
            cut = line.rfind(" ", LINE_CHUNK_CHARS // 2, LINE_CHUNK_CHARS)
            cut = cut if cut > 0 else LINE_CHUNK_CHARS
            lines.append(line[:cut])
            line = line[cut:].lstrip(" ")
        lines.append(line)
    return lines


def text_flowables(text: str | None, style: ParagraphStyle) -> list:
    """``text`` printed literally as one paragraph per line (blank lines as space): layout
    time linear in its length, where one paragraph of many lines is quadratic.

    >>> [type(f).__name__ for f in text_flowables("a\\n\\nb <c>", report_styles()["base"])]
    ['Paragraph', 'Spacer', 'Paragraph']
    """
    lines = _lines(text or "")
    inner = _line_style(style)
    flowables: list = []
    for number, line in enumerate(lines):
        line_style = style if number == len(lines) - 1 else inner
        if line.strip():
            flowables.append(Paragraph(safe_text(line), line_style))
        else:
            flowables.append(Spacer(1, style.leading))
    return flowables


def _when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _settings_text(params: dict) -> str:
    names = (("temperature", "temperature"), ("top_p", "top-p"),
             ("max_new_tokens", "max new tokens"), ("seed", "seed"))
    parts = [f"{label} {params[key]}" for key, label in names if params.get(key) is not None]
    return ", ".join(parts) or "model defaults"


def numbered_canvas(font: str):
    """A canvas class that writes the footer with "Page N of M" once M is known."""

    class NumberedCanvas(canvas.Canvas):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []

        def showPage(self):  # noqa: N802 - reportlab's name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._pages)
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self.setFont(font, 8)
                self.setFillColor(colors.HexColor("#555555"))
                self.drawString(MARGIN, 0.3 * inch, FOOTER)
                self.drawRightString(PAGE_SIZE[0] - MARGIN, 0.3 * inch,
                                     f"Page {number} of {total}")
                super().showPage()
            super().save()

    return NumberedCanvas


def ecg_flowable(png: bytes, width: float, max_height: float) -> Image:
    """An ECG picture (PNG or JPEG bytes) as large as fits ``width`` x ``max_height`` points."""
    reader = ImageReader(io.BytesIO(png))
    pixels_w, pixels_h = reader.getSize()
    scale = min(width / pixels_w, max_height / pixels_h)
    return Image(io.BytesIO(png), width=pixels_w * scale, height=pixels_h * scale)


def reading_flowables(reading: ReadingRecord, width: float, max_height: float) -> list:
    """The digitiser's reading: its evidence lines (layout, calibration, each measurement with
    lead, confidence and flag, or "not measurable") and the overlay of what was read."""
    styles = report_styles()
    story = [Paragraph("Measurements (read from the image by the digitiser, not by the model)",
                       styles["heading"])]
    for line in reading.summary.get("lines") or ["No reading."]:
        story += text_flowables(line, styles["cell"])
    if reading.overlay_png:
        story += [Spacer(1, 6), ecg_flowable(reading.overlay_png, width, max_height),
                  Paragraph("What the digitiser read: extracted traces (blue), beats (marks), "
                            "lead panels framed by status.", styles["caption"])]
    return story


def session_pdf(session: SessionRecord, *, note: str | None = None,
                 owner_label: str | None = None, generated_at: datetime | None = None,
                 reading: ReadingRecord | None = None) -> bytes:
    """The session as a PDF (bytes). ``owner_label`` is printed as the owner (never the raw
    owner token); ``note`` is the clinician's free-text note; ``reading`` the digitiser's
    stored reading (measurements and overlay), when the session has one."""
    styles = report_styles()
    generated_at = generated_at or datetime.now(timezone.utc)

    story: list = [
        Paragraph("ECG reading report", styles["title"]),
        Paragraph(safe_text(session.title), styles["subtitle"]),
    ]
    labels = list(dict.fromkeys(t.model_label for t in session.turns if t.model_label))
    last_params = session.turns[-1].params if session.turns else \
        session.params.get("generation", {})
    rows = [
        ("Report generated", _when(generated_at)),
        ("Session", f"started {_when(session.created_at)}, last change "
                    f"{_when(session.updated_at)}"),
        ("Owner", owner_label or "not recorded"),
        ("Model", session.model_id or "unknown"),
        ("Model revision", session.model_revision or "not recorded"),
        ("Answered by", "; ".join(labels) or "no answers yet"),
        ("Generation settings", _settings_text(last_params)),
    ]
    table = Table([[Paragraph(safe_text(k), styles["label"]), Paragraph(safe_text(v),
                                                                        styles["cell"])]
                   for k, v in rows], colWidths=[1.6 * inch, FRAME_WIDTH - 1.6 * inch])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#dddddd")),
                               ("TOPPADDING", (0, 0), (-1, -1), 2),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]))
    story += [table, Paragraph(safe_text(DISCLAIMER), styles["warning"])]

    story += [Paragraph("ECG (as shown to the model)", styles["heading"]),
              ecg_flowable(session.edited_png, FRAME_WIDTH, FRAME_HEIGHT * 0.62),
              Paragraph(safe_text(f"Edits applied in the app: "
                                  f"{describe_edit((session.params or {}).get('edit'))}. The "
                                  "original upload is kept in the session."), styles["caption"])]
    if reading is not None:
        story += reading_flowables(reading, FRAME_WIDTH, FRAME_HEIGHT * 0.62)

    story.append(Paragraph("Conversation", styles["heading"]))
    if not session.turns:
        story.append(Paragraph("No questions were asked in this session.", styles["base"]))
    for turn in session.turns:
        stopped = " (stopped before the end)" if turn.stopped else ""
        question = text_flowables(turn.question, styles["question"])
        story += [
            CondPageBreak(0.9 * inch),
            KeepTogether([Paragraph(f"Question {turn.index + 1}", styles["label"]),
                          *question[:1]]),
            *question[1:],
            Paragraph(safe_text(f"Answer by {turn.model_label or turn.model_id or 'the model'}"
                                f"{stopped}"), styles["label"]),
            *(text_flowables(turn.answer, styles["answer"]) if turn.answer.strip()
              else [Paragraph("<i>(no text)</i>", styles["answer"])]),
        ]
        flag = flag_text((turn.params or {}).get("consistency"))
        if flag:
            story.append(Paragraph(safe_text(flag), styles["warning"]))

    if note and note.strip():
        story += [Paragraph("Clinician note", styles["heading"]),
                  *text_flowables(note.strip(), styles["base"])]
    story += [Spacer(1, 8), Paragraph(safe_text(DISCLAIMER), styles["warning"])]

    return build_pdf(story, title=f"ECG reading report: {session.title}",
                     subject="AI-assisted ECG reading (research use only)")


def build_pdf(story: list, *, title: str, subject: str) -> bytes:
    """``story`` laid out on the report's pages (margins, fonts, footer with "Page N of M")."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=PAGE_SIZE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
        bottomMargin=MARGIN + 0.2 * inch, title=title, author="PULSE workbench",
        subject=subject, creator="PULSE workbench")
    document.build(story, canvasmaker=numbered_canvas(report_fonts()[0]))
    return buffer.getvalue()


#: Longest wait for a report from the export process.
RENDER_TIMEOUT_S = 120.0


@functools.cache
def _export_process() -> ProcessPoolExecutor:
    """One worker process for every export of this process (started on the first export;
    "spawn": a fresh interpreter, never a fork of a server with threads and a model)."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def in_export_process(make, /, *args, what: str = "the report",
                      shorter: str = "shorten the note", **kwargs) -> bytes:
    """``make(*args, **kwargs)`` (a module-level function returning the bytes of a PDF) in the
    export process; ``what`` and ``shorter`` word the messages when it fails or takes too long."""
    try:
        future = _export_process().submit(make, *args, **kwargs)
        return future.result(timeout=RENDER_TIMEOUT_S)
    except BrokenProcessPool as error:              # the worker died (killed, out of memory)
        _export_process.cache_clear()
        raise PulseError(f"{what} could not be made", hint="try the export again") from error
    except FutureTimeout as error:
        raise PulseError(f"{what} took more than {RENDER_TIMEOUT_S:g} s",
                         hint=f"{shorter}, or export again later") from error


def render_pdf(session: SessionRecord, *, note: str | None = None,
               owner_label: str | None = None, reading: ReadingRecord | None = None) -> bytes:
    """:func:`session_pdf` in the export process: the web server's interpreter (and the
    answers it streams) never waits for reportlab's layout."""
    return in_export_process(session_pdf, session, note=note, owner_label=owner_label,
                             reading=reading)
