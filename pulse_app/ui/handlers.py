"""The web app's event handlers: each gets the owner, calls the core, returns component updates.

The owner of a page event is the signed-in user, or the browser's HttpOnly owner cookie
(:func:`pulse_app.ui.owner.request_owner`); the session API takes a token instead. The page keeps
only ids and a draft edit in its ``view`` state — ``{"draft": id or None, "session": id or None,
"edit": {...}, "corner": [x, y] or None, "scale": page pixels per image pixel}`` — and the core
(:class:`pulse_app.chat.ChatService`) keeps everything else: the decoded upload (a draft),
stored sessions, a teaching case's truth, exported reports. The edit is
:data:`pulse_app.intake.NO_EDIT`'s: page corners (straightening, :mod:`pulse_app.ui.phone`),
quarter turns, fine angle, crop box; the picture shown
is the draft with the edit applied, exactly what the model gets and what is stored (scaled down
for the page when it is large: :mod:`pulse_app.ui.components`). Crop = two clicks on the picture
(opposite corners): Gradio 6.31's ImageEditor crop changes the view but not the value the server
receives after a server-side update.

Uploaded files are deleted from Gradio's cache as soon as they are read (:func:`forget_uploads`):
the clean image lives in the draft, a PDF's bytes too when it has other pages. Every handler is
:func:`~pulse_app.ui.guard.guarded`: a visitor sees the core's message or an error reference.

>>> crop_from_clicks({"rotate90": 0, "angle_deg": 0.0, "crop": [100, 50, 900, 650]},
...                  (10, 20), (410, 320))
[110, 70, 510, 370]
>>> literal("![i](http://x/t.png) <img src=x>\\nnext")
'![i](http://x/t.png) &lt;img src=x&gt;<br>next'
"""

from __future__ import annotations

import html
import io
import threading
import time
from pathlib import Path
from typing import Iterator

import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal
from PIL import Image

from pulse_app.answer import check_question
from pulse_app.chat import NO_EDIT, ChatService, clean_edit
from pulse_app.consistency import flag_text
from pulse_app.errors import PulseError
from pulse_app.grounding import CONTEXT_HEAD
from pulse_app.settings import Settings
from pulse_app.teaching import truth_markdown
from pulse_app.ui import texts
from pulse_app.ui.components import shown_scale
from pulse_app.ui.guard import guarded
from pulse_app.ui.owner import owner_for, owner_label, request_owner
from pulse_app.ui.web import UPLOADS

#: The page's state before anything is uploaded.
EMPTY_VIEW = {"draft": None, "session": None, "edit": dict(NO_EDIT), "corner": None,
              "scale": 1.0}
#: The path, relative to the page, where a prepared report is downloaded (pulse_app.ui.web).
REPORT_PATH = "pulse/report/"

HIDDEN = "*Ground truth hidden: discuss the ECG with the model, then press Reveal.*"

try:                                    # `spaces` present: spaces.GPU attaches a GPU per call on
    import spaces                       # ZeroGPU and returns the function unchanged elsewhere
    gpu = spaces.GPU
except ImportError:                     # anywhere else: unchanged

    def gpu(fn):
        return fn

#: ChatService of each app in this process, by id: generation gets plain (picklable) arguments.
_SERVICES: dict[int, ChatService] = {}


# -- small conversions ----------------------------------------------------------------------------

def literal(text: str) -> str:
    """A question or an answer as the chat shows it: plain text (the chat renders no Markdown,
    and HTML is escaped), so ``![i](https://...)`` or ``<img src=...>`` show as typed and load
    nothing; line breaks kept."""
    return html.escape(text, quote=False).replace("\n", "<br>")


def answer_message(turn) -> dict:
    """The chat message of a stored answer; it ends with the model that wrote it ("grounded"
    when it was given the measurements) and, when it contradicts the digitiser's
    measurements, the warning."""
    answer = literal(turn.answer.strip()) or "(no answer)"
    if turn.stopped:
        answer += " [stopped]"
    content = f"{answer}<br><br><em>— {literal(turn.model_label or '')}</em>"
    flag = flag_text((turn.params or {}).get("consistency"))
    if flag:
        content += f"<br><br><strong>⚠️ {literal(flag)}</strong>"
    return {"role": "assistant", "content": content}


def evidence_html(summary: dict | None) -> str:
    """The measurement panel: the digitiser's evidence lines (layout and calibration, each
    measurement with its lead, confidence and flag, or "not measurable" with the reason),
    escaped."""
    if not summary:
        return ""
    items = "".join(f"<li>{literal(line)}</li>" for line in summary.get("lines") or [])
    return (f"<div class='pulse-evidence'><strong>{literal(CONTEXT_HEAD)}</strong>"
            f"<ul>{items}</ul></div>")


def turn_messages(session) -> list[dict]:
    """Chatbot messages of a stored session."""
    messages = []
    for turn in session.turns:
        messages += [{"role": "user", "content": literal(turn.question)}, answer_message(turn)]
    return messages


def session_choices(summaries) -> list[tuple[str, str]]:
    return [(f"{s.title} · {s.updated_at:%Y-%m-%d %H:%M}", str(s.id)) for s in summaries]


def title_from(question: str) -> str:
    words = " ".join(question.split())
    return words if len(words) <= 60 else words[:57].rstrip() + "..."


def crop_from_clicks(edit: dict, first: tuple, second: tuple) -> list[int]:
    """The crop box (pixels of the rotated image) of two clicks on the picture as shown, which
    may already be cropped (clicks are relative to its top-left corner)."""
    left0, top0 = (edit.get("crop") or [0, 0])[:2]
    (x0, y0), (x1, y1) = first, second
    return [int(left0 + min(x0, x1)), int(top0 + min(y0, y1)),
            int(left0 + max(x0, x1)), int(top0 + max(y0, y1))]


def example_paths(folder: Path) -> list[str]:
    """The pictures of the Examples tab (``Settings.examples_path``)."""
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir()
                  if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def forget_uploads(paths) -> None:
    """Delete uploaded files (and their folders) from Gradio's cache once they are read (and
    no other event waits for the same file: :class:`~pulse_app.ui.web.PendingUploads`): the
    raw upload, EXIF and GPS included, must not stay on disk or be servable."""
    cache = get_upload_folder()
    ours = [str(p) for p in paths or () if p and is_in_or_equal(str(p), cache)]
    for path in map(Path, UPLOADS.done(ours)):      # others: e.g. the app's example images
        if path.is_dir():
            continue
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()                     # Gradio keeps each upload in a folder
        except OSError:
            pass                                    # not empty, or already gone


def report_link(export, label: str = "Download the PDF report") -> str:
    """The HTML link to a prepared export (its owner's browser downloads it once)."""
    return (f'<a href="{REPORT_PATH}{export.id}" download="{html.escape(export.filename)}">'
            f"{html.escape(label)}</a> (one download, kept a few minutes)")


def growing_text(stream: Iterator[str], every_s: float) -> Iterator[str]:
    """The answer so far, at most once every ``every_s`` seconds; always the first chunk and the
    whole answer.

    >>> list(growing_text(iter(["a", "b", "c"]), 3600))
    ['a', 'abc']
    """
    text, shown, last = "", "", float("-inf")
    for chunk in stream:
        text += chunk
        now = time.monotonic()
        if now - last >= every_s:
            shown, last = text, now
            yield text
    if text != shown:
        yield text


def _returning(stream: Iterator[str], box: list) -> Iterator[str]:
    """Pass ``stream`` through and put its return value (the stored turn) in ``box``."""
    box.append((yield from stream))


@gpu
def generate(service_id: int, owner: str, session_id: str, question: str | None, params: dict,
             cancel: threading.Event | None = None, grounded: bool | None = None
             ) -> Iterator[str]:
    """Where generation runs: the answer to ``question`` (None = regenerate the last answer) as
    text chunks. On ZeroGPU a GPU is attached for the stream (there Stop closes the stream)."""
    chat = _SERVICES[service_id]
    if question is None:
        stream = chat.regenerate(owner, session_id, params, cancel=cancel, grounded=grounded)
    else:
        stream = chat.ask(owner, session_id, question, params, cancel=cancel,
                          grounded=grounded)
    try:
        return (yield from stream)
    finally:
        stream.close()


# -- the handlers ---------------------------------------------------------------------------------

class PulseUI:
    """Handlers of one app instance; holds the ChatService and the Stop buttons' cancel events."""

    #: Shortest time between two updates of a streaming answer (a small model writes hundreds of
    #: tokens a second; re-drawing the chat for each would lag the browser behind the model).
    stream_every_s = 0.05

    def __init__(self, settings: Settings, chat: ChatService | None = None):
        self.settings = settings
        self.chat = chat if chat is not None else ChatService(settings)
        _SERVICES[id(self.chat)] = self.chat
        self.cancels: dict[str, threading.Event] = {}

    # -- who --
    @staticmethod
    def owner(request: gr.Request | None) -> str:
        """The owner of a page event (signed-in user, else the browser's owner cookie)."""
        return request_owner(request)

    @guarded
    def on_load(self, request: gr.Request):
        """A page load: the visitor's sessions."""
        return self.sessions_update(request, "")

    @guarded
    def model_notice(self) -> str:
        try:
            info = self.chat.model_info()
        except PulseError as error:
            return f"{texts.NOTICE}\n\n**Model unavailable:** {literal(str(error))}"
        line = f"Model: **{literal(info.label)}**"
        if not info.trained:
            line += f"\n\n⚠️ {texts.UNTRAINED}"
        elif info.note:                   # a demonstration model (e.g. assets/pulse-mini)
            line += f"\n\n⚠️ {texts.DEMONSTRATION.format(note=literal(info.note))}"
        return f"{texts.NOTICE}\n\n{line}"

    # -- pictures --
    @staticmethod
    def show_draft(draft, page_note: str = "") -> tuple:
        """Updates for a new draft: its picture, a new view, angle 0, an empty chat, the page
        note and no report."""
        view = {**EMPTY_VIEW, "draft": draft.id, "edit": dict(NO_EDIT),
                "scale": shown_scale(draft.image)}
        return (draft.image, view, gr.update(value=0.0), [],
                gr.update(value=page_note, visible=bool(page_note)), "")

    @staticmethod
    def _page_note(draft) -> str:
        pages = draft.source.get("pages", 1)
        return f"PDF page {draft.source.get('page', 1)} of {pages}" if pages > 1 else ""

    @guarded
    def upload(self, files, page, request: gr.Request):
        """New files: read once into a draft, then deleted from Gradio's cache."""
        paths = [str(f) for f in (files or [])]
        try:
            owner = self.owner(request)
            draft = self.chat.open_upload(owner, paths, page=page or 1)
        finally:
            forget_uploads(paths)
        return self.show_draft(draft, self._page_note(draft))

    @guarded
    def change_page(self, view, page, request: gr.Request):
        """Another page of the shown PDF (kept in the draft: the upload itself is deleted)."""
        view = view or EMPTY_VIEW
        if not view.get("draft"):
            return (gr.skip(),) * 6
        draft = self.chat.open_page(self.owner(request), view["draft"], page or 1)
        return self.show_draft(draft, self._page_note(draft))

    @guarded
    def use_example(self, evt: gr.SelectData, request: gr.Request):
        owner = self.owner(request)
        draft = self.chat.open_upload(
            owner, [example_paths(self.settings.examples_path)[evt.index]])
        return self.show_draft(draft)

    @guarded
    def teaching_case(self, findings: dict, distort: str, seed, request: gr.Request):
        """A simulated teaching ECG as a new draft (the truth stays in the core)."""
        draft = self.chat.open_teaching_case(self.owner(request), findings, distort=distort,
                                             seed=int(seed or 0))
        return (*self.show_draft(draft), gr.update(value=HIDDEN))

    def _edited(self, owner: str, view: dict, edit: dict) -> tuple:
        """Updates after an edit: the new picture; the next question starts a new session on
        it (a stored session's picture is first reopened as a draft, keeping its truth)."""
        view = view or EMPTY_VIEW
        draft_id = view.get("draft")
        if draft_id is None and view.get("session"):
            draft_id = self.chat.new_chat(owner, view["session"]).id
        if draft_id is None:
            gr.Warning("Upload an ECG first.")
            return gr.skip(), gr.skip(), gr.skip()
        image = self.chat.preview(owner, draft_id, edit)
        return image, {**EMPTY_VIEW, "draft": draft_id, "edit": clean_edit(edit),
                       "scale": shown_scale(image)}, []

    @guarded
    def rotate(self, view, angle, step: int, request: gr.Request):
        """Quarter turns (``step``: +1 left, -1 right, 0 = fine angle only) after any
        straightening; the crop starts over because its coordinates belong to the old
        orientation."""
        owner = self.owner(request)
        edit = (view or EMPTY_VIEW)["edit"]
        edit = {**edit, "rotate90": (int(edit.get("rotate90", 0)) + step) % 4,
                "angle_deg": float(angle or 0.0), "crop": None}
        return self._edited(owner, view, edit)

    @guarded
    def crop_click(self, view, evt: gr.SelectData, request: gr.Request):
        """First click: one corner. Second click: the opposite corner; the crop is applied.
        Clicks are in the pixels of the picture as shown (``view["scale"]`` of the image's)."""
        owner = self.owner(request)
        view = view or EMPTY_VIEW
        scale = float(view.get("scale") or 1.0)
        corner = [round(v / scale) for v in evt.index]
        if view.get("corner") is None:
            gr.Info("Now click the opposite corner of the part to keep.")
            return gr.skip(), {**view, "corner": corner}, gr.skip()
        edit = {**view["edit"], "crop": crop_from_clicks(view["edit"], view["corner"], corner)}
        return self._edited(owner, {**view, "corner": None}, edit)

    @guarded
    def reset_image(self, view, request: gr.Request):
        return (*self._edited(self.owner(request), view, dict(NO_EDIT)), gr.update(value=0.0))

    # -- chat --
    @staticmethod
    def params(temperature, top_p, max_new_tokens) -> dict:
        return {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}

    @guarded
    def ask(self, view, question, history, temperature, top_p, max_new_tokens, grounded,
            request: gr.Request) -> Iterator:
        owner = self.owner(request)
        view = view or EMPTY_VIEW
        if not (view.get("draft") or view.get("session")):
            gr.Warning("Upload an ECG image first (or pick an example).")
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        if isinstance(question, str) and not question.strip():
            gr.Warning("Type a question first.")
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        params = self.params(temperature, top_p, max_new_tokens)
        history = list(history or [])
        question = check_question(question)
        self.settings.generation_params(**params)           # refused before anything is stored
        if not view.get("session"):
            stored = self.chat.start_session(owner, view["draft"], view["edit"],
                                             title=title_from(question))
            view = {**view, "session": stored.id}
            history = []
        history += [{"role": "user", "content": literal(question)},
                    {"role": "assistant", "content": "…"}]
        yield history, view, "", gr.skip()
        stream = generate(id(self.chat), owner, view["session"], question, params,
                          cancel=self._cancel_event(request), grounded=bool(grounded))
        yield from self._stream_into(history, stream, owner, view, request)

    @guarded
    def regenerate(self, view, history, temperature, top_p, max_new_tokens, grounded,
                   request: gr.Request) -> Iterator:
        owner = self.owner(request)
        view = view or EMPTY_VIEW
        if not view.get("session") or not history:
            gr.Warning("There is no answer to regenerate yet.")
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        history = list(history)[:-1] + [{"role": "assistant", "content": "…"}]
        yield history, view, gr.skip(), gr.skip()
        stream = generate(id(self.chat), owner, view["session"], None,
                          self.params(temperature, top_p, max_new_tokens),
                          cancel=self._cancel_event(request), grounded=bool(grounded))
        yield from self._stream_into(history, stream, owner, view, request)

    def _cancel_event(self, request) -> threading.Event | None:
        """The event Stop sets (None on ZeroGPU: there generation runs in another process and
        Stop closes the stream instead)."""
        if self.settings.zero_gpu:
            return None
        event = threading.Event()
        self.cancels[request.session_hash] = event
        return event

    def _stream_into(self, history, stream, owner, view, request) -> Iterator:
        """Show the answer as it grows; at the end the stored answer with its model's name."""
        stored: list = []
        try:
            for text in growing_text(_returning(stream, stored), self.stream_every_s):
                history[-1] = {"role": "assistant", "content": literal(text)}
                yield history, view, gr.skip(), gr.skip()
        finally:
            self.cancels.pop(request.session_hash, None)
            stream.close()
        if stored and stored[0] is not None:
            history[-1] = answer_message(stored[0])
        else:                   # ZeroGPU: the turn was stored in the GPU worker; read it back
            history = turn_messages(self.chat.open_session(owner, view["session"]))
        yield history, view, gr.skip(), self.sessions_update(request, "")

    def stop(self, request: gr.Request):
        event = self.cancels.get(request.session_hash)
        if event is not None:
            event.set()

    @guarded
    def new_chat(self, view, request: gr.Request):
        """A new chat on the same picture (a teaching ECG keeps its ground truth)."""
        owner = self.owner(request)
        view = view or EMPTY_VIEW
        if view.get("session"):
            draft = self.chat.new_chat(owner, view["session"])
            return {**EMPTY_VIEW, "draft": draft.id, "edit": draft.edit,
                    "scale": view.get("scale", 1.0)}, []
        return {**view, "session": None, "corner": None}, []

    # -- the digitiser's evidence --
    @guarded
    def evidence(self, view, request: gr.Request):
        """The measurement panel and the overlay of the shown picture: the draft's reading
        (read once per edit) or the stored session's (read once, then stored)."""
        owner = self.owner(request)
        view = view or EMPTY_VIEW
        if view.get("session"):
            stored = self.chat.reading(owner, view["session"])
            overlay = Image.open(io.BytesIO(stored.overlay_png)).convert("RGB")
            return evidence_html(stored.summary), overlay
        if view.get("draft"):
            reading = self.chat.read_draft(owner, view["draft"])
            return (evidence_html(self.chat.draft_reading_summary(owner, view["draft"])),
                    reading.overlay)
        return "", None

    @staticmethod
    def show_overlay(show: bool):
        return gr.update(visible=bool(show))

    @guarded
    def download_signals(self, view, kind: str, request: gr.Request) -> str:
        """A one-time link to the shown session's digitised signals (WFDB zip or CSV)."""
        owner = self.owner(request)
        session_id = (view or {}).get("session")
        if not session_id:
            gr.Warning("Ask a question first (the signals belong to a saved session).")
            return ""
        export = self.chat.prepare_signals(owner, session_id, kind)
        return report_link(export, f"Download the signals ({texts.SIGNAL_FORMATS[kind]})")

    # -- teaching truth --
    def _truth(self, owner: str, view: dict) -> dict | None:
        return self.chat.teaching_case(owner, draft_id=view.get("draft"),
                                       session_id=view.get("session"))[0]

    @guarded
    def reveal(self, view, request: gr.Request) -> str:
        """The Reveal button: the ground truth of the shown (or reopened) teaching ECG."""
        return truth_markdown(self._truth(self.owner(request), view or EMPTY_VIEW))

    def hidden_note(self, view, request: gr.Request) -> str:
        """What the truth box shows until Reveal: a hint for a teaching ECG, else nothing."""
        try:
            truth = self._truth(self.owner(request), view or EMPTY_VIEW)
        except PulseError:
            return ""
        return HIDDEN if truth else ""

    # -- sessions --
    def sessions_update(self, request, search, selected=None):
        summaries = self.chat.list_sessions(self.owner(request), search)
        return gr.update(choices=session_choices(summaries), value=selected)

    @guarded
    def search_sessions(self, search, request: gr.Request):
        return self.sessions_update(request, search)

    @guarded
    def open_session(self, session_id, request: gr.Request):
        """Reopen a stored session: its picture, its edit and its conversation."""
        owner = self.owner(request)
        if not session_id:
            gr.Warning("Choose a session in the list first.")
            return (gr.skip(),) * 5
        stored = self.chat.open_session(owner, session_id)
        edit = clean_edit(stored.params.get("edit"))
        image = ChatService.image_of(stored)
        view = {**EMPTY_VIEW, "session": stored.id, "edit": edit, "scale": shown_scale(image)}
        return (image, view, gr.update(value=edit["angle_deg"]), turn_messages(stored),
                stored.title)

    @guarded
    def rename_session(self, session_id, title, request: gr.Request):
        owner = self.owner(request)
        if not session_id or (isinstance(title, str) and not title.strip()):
            gr.Warning("Choose a session and type its new title.")
            return gr.skip()
        self.chat.rename(owner, session_id, title)
        return self.sessions_update(request, "", selected=session_id)

    @guarded
    def delete_session(self, session_id, view, request: gr.Request):
        owner = self.owner(request)
        if not session_id:
            gr.Warning("Choose a session in the list first.")
            return gr.skip(), gr.skip(), gr.skip()
        self.chat.delete(owner, session_id)
        gr.Info("Session deleted.")
        if str((view or {}).get("session")) == str(session_id):
            return self.sessions_update(request, ""), dict(EMPTY_VIEW), []
        return self.sessions_update(request, ""), gr.skip(), gr.skip()

    @guarded
    def export_pdf(self, session_id, view, note, request: gr.Request) -> str:
        """The chosen (or else the current) session as a PDF: a link that downloads it once,
        for this owner only (the report waits in the database, never in a file)."""
        owner = self.owner(request)
        session_id = session_id or (view or {}).get("session")
        if not session_id:
            gr.Warning("Ask a question first, or choose a saved session.")
            return ""
        export = self.chat.prepare_export(owner, session_id, note=note or None,
                                          owner_label=owner_label(owner))
        return report_link(export)

    # -- programmatic clients (gradio_client): the same core, owner by token --
    @guarded
    def api_start(self, file, token, page, more_files=None, straighten=False,
                  request: gr.Request = None) -> str:
        """Upload an ECG (image, PDF page, DICOM record, or a WFDB ``.hea`` with its signal file
        in ``more_files``) and open a session; returns its id. ``straighten``: the proposed
        straightening is stored as the session's edit."""
        files = [str(f) for f in [file, *(more_files or [])] if f]
        try:
            owner = owner_for(getattr(request, "username", None), token)
            return str(self.chat.start_session_from_upload(owner, files, page=page or 1,
                                                           straighten=straighten).id)
        finally:
            forget_uploads(files)

    @guarded
    def api_ask(self, token, session_id, question, temperature, top_p, max_new_tokens,
                request: gr.Request) -> Iterator[str]:
        """Ask in a stored session; streams the answer so far."""
        owner = owner_for(getattr(request, "username", None), token)
        stream = generate(id(self.chat), owner, session_id, question,
                          self.params(temperature, top_p, max_new_tokens))
        try:
            yield from growing_text(stream, self.stream_every_s)
        finally:
            stream.close()          # Gradio cancelled us: the partial answer is kept, stopped
