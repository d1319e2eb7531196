"""The web app's event handlers: each gets the owner, calls the core, returns component updates.

The picture is described by the original upload and an *edit* — ``{"rotate90": quarter turns,
"angle_deg": fine angle, "crop": [left, top, right, bottom] or None}`` — applied with
:func:`pulse_app.intake.edit_image`; the same edit is stored with the session
(:meth:`ChatService.edit`), so what the visitor sees is exactly what the model gets and what is
kept. Crop = two clicks on the picture (opposite corners). Gradio 6.31's ImageEditor was not
used for cropping: after a server-side update (upload, rotate) its crop changes the view but not
the value the server receives.

>>> crop_from_clicks({"rotate90": 0, "angle_deg": 0.0, "crop": [100, 50, 900, 650]},
...                  (10, 20), (410, 320))
[110, 70, 510, 370]
"""

from __future__ import annotations

import html
import io
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import gradio as gr
from PIL import Image

from pulse_app.auth import is_owner_token, new_owner_token
from pulse_app.errors import ImageRejected, PulseError
from pulse_app.settings import Settings
from pulse_app.ui import texts
from pulse_app.ui.teaching import TRUTH_KEY
from pulse_app.ui.owner import owner_for, owner_label

#: Upload suffixes that are signal recordings (rendered to paper first), not pictures.
RECORD_SUFFIXES = {".hea", ".dat", ".mat", ".dcm"}
NO_EDIT = {"rotate90": 0, "angle_deg": 0.0, "crop": None}
NEW_SESSION = {"id": None}
#: Entries of the page's session state (besides "id") saved in the stored session's params when
#: the first question creates it, and restored when it is reopened.
CARRIED = (TRUTH_KEY,)

#: On ZeroGPU hardware (Hugging Face sets SPACES_ZERO_GPU) generation runs in a GPU worker process.
ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true", "yes")
try:                                    # `spaces` present: spaces.GPU attaches a GPU per call on
    import spaces                       # ZeroGPU and returns the function unchanged elsewhere
    gpu = spaces.GPU
except ImportError:                     # anywhere else: unchanged

    def gpu(fn):
        return fn

#: ChatService of each app in this process, by id: generation gets plain (picklable) arguments.
_SERVICES: dict[int, object] = {}


# -- small conversions ----------------------------------------------------------------------------

def literal(text: str) -> str:
    """Text shown as typed: markup in a question or an answer is not interpreted as HTML."""
    return html.escape(text, quote=False)


def turn_messages(session) -> list[dict]:
    """Chatbot messages of a stored session; each answer ends with the model that wrote it."""
    messages = []
    for turn in session.turns:
        answer = literal(turn.answer.strip()) or "(no answer)"
        if turn.stopped:
            answer += " [stopped]"
        messages.append({"role": "user", "content": literal(turn.question)})
        messages.append({"role": "assistant",
                         "content": f"{answer}\n\n*— {literal(turn.model_label or '')}*"})
    return messages


def carried(values: dict | None) -> dict:
    """The :data:`CARRIED` entries of a session state or of stored params.

    >>> carried({"id": 3, "teaching_truth": {"labels": []}, "edit": {}})
    {'teaching_truth': {'labels': []}}
    """
    return {k: values[k] for k in CARRIED if (values or {}).get(k) is not None}


def next_session(session: dict | None) -> dict:
    """The state of a new, not yet stored session on the same ECG: it keeps the :data:`CARRIED`
    entries (a new chat, a rotation or a crop of a teaching ECG keeps its ground truth).

    >>> next_session({"id": "s1", "teaching_truth": {"labels": []}})
    {'id': None, 'teaching_truth': {'labels': []}}
    """
    return {**NEW_SESSION, **carried(session)}


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


def apply_edit(original: Image.Image, edit: dict) -> Image.Image:
    from pulse_app.intake import edit_image

    return edit_image(original, rotate90=edit.get("rotate90", 0),
                      angle_deg=float(edit.get("angle_deg", 0.0)), crop=edit.get("crop"))


def example_paths(folder: Path) -> list[str]:
    """The pictures of the Examples tab (``Settings.examples_path``)."""
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir()
                  if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def user_error(error: PulseError) -> gr.Error:
    return gr.Error(str(error), print_exception=False)


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


@gpu
def generate(service_id: int, owner: str, session_id: str, question: str | None, params: dict,
             cancel: threading.Event | None = None) -> Iterator[str]:
    """Where generation runs: the answer to ``question`` (None = regenerate the last answer) as
    text chunks. On ZeroGPU a GPU is attached for the stream (there Stop closes the stream)."""
    chat = _SERVICES[service_id]
    if question is None:
        stream = chat.regenerate(owner, session_id, params, cancel=cancel)
    else:
        stream = chat.ask(owner, session_id, question, params, cancel=cancel)
    try:
        yield from stream
    finally:
        stream.close()


# -- the handlers ---------------------------------------------------------------------------------

class PulseUI:
    """Handlers of one app instance; holds the ChatService and the Stop buttons' cancel events."""

    #: Shortest time between two updates of a streaming answer (a small model writes hundreds of
    #: tokens a second; re-drawing the chat for each would lag the browser behind the model).
    stream_every_s = 0.05

    def __init__(self, settings: Settings, chat=None):
        if chat is None:
            from pulse_app.chat import ChatService

            chat = ChatService(settings)
        self.settings = settings
        self.chat = chat
        _SERVICES[id(chat)] = chat
        self.cancels: dict[str, threading.Event] = {}

    # -- who --
    def owner(self, request: gr.Request | None, token) -> str:
        try:
            return owner_for(getattr(request, "username", None), token)
        except PulseError as error:
            raise user_error(error) from None

    def on_load(self, token, request: gr.Request):
        """First visit: create this browser's token; then list its sessions."""
        if not getattr(request, "username", None) and not is_owner_token(token):
            token = new_owner_token()
        return token, self.sessions_update(request, token, "")

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
    def open_upload(self, files, page) -> tuple[Image.Image, int]:
        """The picture of an upload (image, PDF page, or a signal record rendered to paper)."""
        from pulse_app.intake import load_image

        paths = [Path(f) for f in (files or [])]
        if not paths:
            raise ImageRejected("no file was uploaded", hint="choose an ECG image, PDF or record")
        records = [p for p in paths if p.suffix.lower() in RECORD_SUFFIXES]
        if records:
            return self.render_record(records), 1
        intake = load_image(paths[0], filename=paths[0].name, page=int(page or 1),
                            max_pixels=self.settings.max_pixels,
                            max_bytes=int(self.settings.max_upload_mb * 1_000_000))
        return intake.image, intake.pages

    @staticmethod
    def render_record(paths: list[Path]) -> Image.Image:
        """A signal record as a paper ECG. Gradio keeps each uploaded file in its own folder, so
        a record's files (.hea + .dat/.mat) are first put side by side."""
        from pulse_app.ecg.records import find_records, read_record
        from pulse_app.ecg.render import render_ecg

        with tempfile.TemporaryDirectory(prefix="pulse-record-") as folder:
            for path in paths:
                shutil.copy(path, Path(folder) / path.name)
            found = find_records([folder])
            if not found:
                raise ImageRejected("a WFDB record needs its .hea header and its .dat or .mat "
                                    "signal file", hint="select both files and upload them "
                                    "together")
            return render_ecg(read_record(found[0])).image

    @staticmethod
    def show_image(image: Image.Image, page_note: str = "", session: dict | None = None) -> tuple:
        """Updates for a new picture: shown unedited, kept as the original; new chat (``session``:
        its state, e.g. carrying a teaching ECG's ground truth)."""
        return (image, image, dict(NO_EDIT), gr.update(value=0.0), dict(session or NEW_SESSION), [],
                gr.update(value=page_note, visible=bool(page_note)), None)

    def upload(self, files, page):
        try:
            image, pages = self.open_upload(files, page)
        except PulseError as error:
            raise user_error(error) from None
        page_note = f"PDF page {int(page or 1)} of {pages}" if pages > 1 else ""
        return self.show_image(image, page_note)

    def use_example(self, evt: gr.SelectData):
        return self.upload([example_paths(self.settings.examples_path)[evt.index]], 1)

    def _edited(self, original, edit: dict, session: dict | None = None) -> tuple:
        """Updates after an edit: the new picture; the next question starts a new session,
        which keeps what belongs to the ECG itself (a teaching ECG's ground truth)."""
        if original is None:
            gr.Warning("Upload an ECG first.")
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            image = apply_edit(original, edit)
        except PulseError as error:
            raise user_error(error) from None
        return image, edit, next_session(session), []

    def rotate(self, original, edit, angle, step: int, session: dict | None = None):
        """Quarter turns (``step``: +1 left, -1 right, 0 = fine angle only); the crop starts over
        because its coordinates belong to the old orientation."""
        edit = {"rotate90": (int(edit.get("rotate90", 0)) + step) % 4,
                "angle_deg": float(angle or 0.0), "crop": None}
        return self._edited(original, edit, session)

    def crop_click(self, original, edit, session, evt: gr.SelectData):
        """First click: one corner. Second click: the opposite corner; the crop is applied."""
        corner = edit.get("corner")
        if corner is None:
            gr.Info("Now click the opposite corner of the part to keep.")
            return gr.skip(), {**edit, "corner": list(evt.index)}, gr.skip(), gr.skip()
        edit = {k: v for k, v in edit.items() if k != "corner"}
        edit["crop"] = crop_from_clicks(edit, corner, evt.index)
        return self._edited(original, edit, session)

    def reset_image(self, original, session: dict | None = None):
        return (*self._edited(original, dict(NO_EDIT), session), gr.update(value=0.0))

    # -- chat --
    @staticmethod
    def params(temperature, top_p, max_new_tokens) -> dict:
        return {"temperature": float(temperature), "top_p": float(top_p),
                "max_new_tokens": int(max_new_tokens)}

    def begin_session(self, owner: str, original: Image.Image, edit: dict, title: str,
                      extra: dict | None = None) -> str:
        """Store a new session: the original picture and its edit (what the model sees), and
        ``extra`` params (see :data:`CARRIED`)."""
        from pulse_app.intake import png_bytes

        record = self.chat.start_session(owner, png_bytes(original), filename="ecg.png",
                                         title=title, extra_params=extra)
        edit = {k: edit.get(k, v) for k, v in NO_EDIT.items()}
        if edit != NO_EDIT:
            self.chat.edit(owner, record.id, edit["rotate90"], edit["angle_deg"], edit["crop"])
        return record.id

    def ask(self, token, session, original, edit, question, history, temperature, top_p,
            max_new_tokens, request: gr.Request) -> Iterator:
        owner = self.owner(request, token)
        question = (question or "").strip()
        if not question or original is None:
            gr.Warning("Type a question first." if original is not None
                       else "Upload an ECG image first (or pick an example).")
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        history = list(history or [])
        if not session.get("id"):
            try:
                extra = carried(session)
                session = {**extra, "id": self.begin_session(owner, original, edit,
                                                             title_from(question), extra)}
            except PulseError as error:
                raise user_error(error) from None
            history = []
        history += [{"role": "user", "content": literal(question)},
                    {"role": "assistant", "content": "…"}]
        yield history, session, "", gr.skip()
        stream = generate(id(self.chat), owner, session["id"], question,
                          self.params(temperature, top_p, max_new_tokens),
                          cancel=self._cancel_event(request))
        yield from self._stream_into(history, stream, owner, session, token, request)

    def regenerate(self, token, session, history, temperature, top_p, max_new_tokens,
                   request: gr.Request) -> Iterator:
        owner = self.owner(request, token)
        if not session.get("id") or not history:
            gr.Warning("There is no answer to regenerate yet.")
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        history = list(history)[:-1] + [{"role": "assistant", "content": "…"}]
        yield history, session, gr.skip(), gr.skip()
        stream = generate(id(self.chat), owner, session["id"], None,
                          self.params(temperature, top_p, max_new_tokens),
                          cancel=self._cancel_event(request))
        yield from self._stream_into(history, stream, owner, session, token, request)

    def _cancel_event(self, request) -> threading.Event | None:
        """The event Stop sets (None on ZeroGPU: there generation runs in another process and
        Stop closes the stream instead)."""
        if ZERO_GPU:
            return None
        event = threading.Event()
        self.cancels[request.session_hash] = event
        return event

    def _stream_into(self, history, stream, owner, session, token, request) -> Iterator:
        """Show the answer as it grows; at the end show the stored turns (with the model name)."""
        try:
            for text in growing_text(stream, self.stream_every_s):
                history[-1] = {"role": "assistant", "content": literal(text)}
                yield history, session, gr.skip(), gr.skip()
        except PulseError as error:
            raise user_error(error) from None
        finally:
            self.cancels.pop(request.session_hash, None)
            stream.close()
        stored = self.chat.store.get_session(owner, session["id"])
        yield (turn_messages(stored), session, gr.skip(),
               self.sessions_update(request, token, ""))

    def stop(self, request: gr.Request):
        event = self.cancels.get(request.session_hash)
        if event is not None:
            event.set()

    @staticmethod
    def new_chat(session: dict | None = None):
        """A new chat on the same picture (a teaching ECG keeps its ground truth)."""
        return next_session(session), []

    # -- sessions --
    def sessions_update(self, request, token, search, selected=None):
        owner = self.owner(request, token)
        summaries = self.chat.store.list_sessions(owner, search=(search or "").strip() or None)
        return gr.update(choices=session_choices(summaries), value=selected)

    def search_sessions(self, token, search, request: gr.Request):
        return self.sessions_update(request, token, search)

    def open_session(self, token, session_id, request: gr.Request):
        """Reopen a stored session: its picture, its edit and its conversation."""
        owner = self.owner(request, token)
        if not session_id:
            gr.Warning("Choose a session in the list first.")
            return (gr.skip(),) * 7
        try:
            stored = self.chat.store.get_session(owner, session_id)
        except PulseError as error:
            raise user_error(error) from None
        edit = {**NO_EDIT, **(stored.params.get("edit") or {})}
        original = Image.open(io.BytesIO(stored.original_png)).convert("RGB")
        picture = Image.open(io.BytesIO(stored.edited_png)).convert("RGB")
        return (picture, original, edit, gr.update(value=edit["angle_deg"]),
                {"id": stored.id, **carried(stored.params)}, turn_messages(stored), stored.title)

    def rename_session(self, token, session_id, title, request: gr.Request):
        owner = self.owner(request, token)
        if not session_id or not (title or "").strip():
            gr.Warning("Choose a session and type its new title.")
            return gr.skip()
        try:
            self.chat.store.rename(owner, session_id, title.strip())
        except PulseError as error:
            raise user_error(error) from None
        return self.sessions_update(request, token, "", selected=session_id)

    def delete_session(self, token, session_id, session, request: gr.Request):
        owner = self.owner(request, token)
        if not session_id:
            gr.Warning("Choose a session in the list first.")
            return gr.skip(), gr.skip(), gr.skip()
        try:
            self.chat.store.delete(owner, session_id)
        except PulseError as error:
            raise user_error(error) from None
        gr.Info("Session deleted.")
        if str(session.get("id")) == str(session_id):
            return self.sessions_update(request, token, ""), dict(NEW_SESSION), []
        return self.sessions_update(request, token, ""), gr.skip(), gr.skip()

    def export_pdf(self, token, session_id, session, note, request: gr.Request):
        """The chosen (or else the current) session as a PDF file to download."""
        from pulse_app.report import build_report

        owner = self.owner(request, token)
        session_id = session_id or session.get("id")
        if not session_id:
            gr.Warning("Ask a question first, or choose a saved session.")
            return None
        try:
            stored = self.chat.store.get_session(owner, session_id)
            pdf = build_report(stored, note=(note or "").strip() or None,
                               owner_label=owner_label(owner))
        except PulseError as error:
            raise user_error(error) from None
        path = Path(tempfile.mkdtemp(prefix="pulse-report-")) / f"pulse-session-{stored.id}.pdf"
        path.write_bytes(pdf)
        return str(path)

    # -- programmatic clients (gradio_client): the same core, owner by token --
    def api_start(self, file, token, page, request: gr.Request) -> str:
        """Upload an ECG (image, PDF page, DICOM record) and open a session; returns its id."""
        owner = self.owner(request, token)
        try:
            image, _ = self.open_upload([file] if file else [], page)
            return str(self.begin_session(owner, image, NO_EDIT, Path(file).name))
        except PulseError as error:
            raise user_error(error) from None

    def api_ask(self, token, session_id, question, temperature, top_p, max_new_tokens,
                request: gr.Request) -> Iterator[str]:
        """Ask in a stored session; streams the answer so far."""
        owner = self.owner(request, token)
        stream = generate(id(self.chat), owner, session_id, question or "",
                          self.params(temperature, top_p, max_new_tokens))
        try:
            yield from growing_text(stream, self.stream_every_s)
        except PulseError as error:
            raise user_error(error) from None
        finally:
            stream.close()
