"""The PDF report of a session (reportlab platypus): what a clinician files or hands over.

Contents, in order: title and date, who and which model (id, revision, label, generation
settings), the research-use disclaimer, the edited ECG image across the full page width, the
whole conversation (every answer labelled with the model that wrote it), an optional clinician
note. Every page carries the disclaimer and "Page N of M" in its footer.

User and model text is escaped: a question ``<b>&</b>`` prints literally, never as markup.

>>> pdf = session_pdf(store.get_session(owner, session_id), note="Agree: sinus rhythm.",
...                    owner_label="dr.ana")                                 # doctest: +SKIP
>>> Path("report.pdf").write_bytes(pdf)                                      # doctest: +SKIP
"""

from __future__ import annotations

import functools
import io
import re
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

from pulse_app.store import SessionRecord

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


@functools.cache
def _fonts() -> tuple[str, str]:
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
def _styles() -> dict[str, ParagraphStyle]:
    regular, bold = _fonts()
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


def _when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _settings_text(params: dict) -> str:
    names = (("temperature", "temperature"), ("top_p", "top-p"),
             ("max_new_tokens", "max new tokens"), ("seed", "seed"))
    parts = [f"{label} {params[key]}" for key, label in names if params.get(key) is not None]
    return ", ".join(parts) or "model defaults"


def _numbered_canvas(font: str):
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


def _ecg_image(png: bytes, width: float, max_height: float) -> Image:
    reader = ImageReader(io.BytesIO(png))
    pixels_w, pixels_h = reader.getSize()
    scale = min(width / pixels_w, max_height / pixels_h)
    return Image(io.BytesIO(png), width=pixels_w * scale, height=pixels_h * scale)


def session_pdf(session: SessionRecord, *, note: str | None = None,
                 owner_label: str | None = None, generated_at: datetime | None = None) -> bytes:
    """The session as a PDF (bytes). ``owner_label`` is printed as the owner (never the raw
    owner token); ``note`` is the clinician's free-text note."""
    styles = _styles()
    regular, _bold = _fonts()
    generated_at = generated_at or datetime.now(timezone.utc)
    frame_width = PAGE_SIZE[0] - 2 * MARGIN
    frame_height = PAGE_SIZE[1] - 2 * MARGIN - 0.3 * inch

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
                   for k, v in rows], colWidths=[1.6 * inch, frame_width - 1.6 * inch])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#dddddd")),
                               ("TOPPADDING", (0, 0), (-1, -1), 2),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]))
    story += [table, Paragraph(safe_text(DISCLAIMER), styles["warning"])]

    story += [Paragraph("ECG (as shown to the model)", styles["heading"]),
              _ecg_image(session.edited_png, frame_width, frame_height * 0.62),
              Paragraph("The image after the crop and rotation applied in the app; the original "
                        "upload is kept in the session.", styles["caption"])]

    story.append(Paragraph("Conversation", styles["heading"]))
    if not session.turns:
        story.append(Paragraph("No questions were asked in this session.", styles["base"]))
    for turn in session.turns:
        stopped = " (stopped before the end)" if turn.stopped else ""
        story += [
            CondPageBreak(0.9 * inch),
            KeepTogether([Paragraph(f"Question {turn.index + 1}", styles["label"]),
                          Paragraph(safe_text(turn.question), styles["question"])]),
            Paragraph(safe_text(f"Answer by {turn.model_label or turn.model_id or 'the model'}"
                                f"{stopped}"), styles["label"]),
            Paragraph(safe_text(turn.answer) or "<i>(no text)</i>", styles["answer"]),
        ]

    if note and note.strip():
        story += [Paragraph("Clinician note", styles["heading"]),
                  Paragraph(safe_text(note.strip()), styles["base"])]
    story += [Spacer(1, 8), Paragraph(safe_text(DISCLAIMER), styles["warning"])]

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=PAGE_SIZE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
        bottomMargin=MARGIN + 0.2 * inch, title=f"ECG reading report: {session.title}",
        author="PULSE workbench", subject="AI-assisted ECG reading (research use only)",
        creator="PULSE workbench")
    document.build(story, canvasmaker=_numbered_canvas(regular))
    return buffer.getvalue()
