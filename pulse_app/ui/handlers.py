"""The web app's event handlers: each gets the owner, calls the core, returns component updates.

The page keeps only ids and a draft edit in its ``view`` state —
``{"draft": id or None, "session": id or None, "edit": {...}, "corner": [x, y] or None}`` —
and the core (:class:`pulse_app.chat.ChatService`) keeps everything else: the decoded upload
(a draft), stored sessions, a teaching case's truth. The edit is ``{"rotate90": quarter turns,
"angle_deg": fine angle, "crop": [left, top, right, bottom] or None}``; the picture shown is the
draft with the edit applied, exactly what the model gets and what is stored. Crop = two clicks
on the picture (opposite corners): Gradio 6.31's ImageEditor crop changes the view but not the
value the server receives after a server-side update.

>>> crop_from_clicks({"rotate90": 0, "angle_deg": 0.0, "crop": [100, 50, 900, 650]},
...                  (10, 20), (410, 320))
[110, 70, 510, 370]
"""

from __future__ import annotations

import html
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import gradio as gr

from pulse_app.answer import check_question
from pulse_app.auth import is_owner_token, new_owner_token
from pulse_app.chat import NO_EDIT, ChatService, clean_edit
from pulse_app.errors import PulseError
from pulse_app.settings import Settings
from pulse_app.teaching import truth_markdown
from pulse_app.ui import texts
from pulse_app.ui.owner import owner_for, owner_label

#: The page's state before anything is uploaded.
EMPTY_VIEW = {"draft": None, "session": None, "edit": dict(NO_EDIT), "corner": None}
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
    """Text shown as typed: markup in a question or an answer is not interpreted as HTML."""
    return html.escape(text, quote=False)


def answer_message(turn) -> dict:
    """The chat message of a stored answer; it ends with the model that wrote it."""
    answer = literal(turn.answer.strip()) or "(no answer)"
    if turn.stopped:
        answer += " [stopped]"
    return {"role": "assistant", "content": f"{answer}\n\n*— {literal(turn.model_label or '')}*"}


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


def _returning(stream: Iterator[str], box: list) -> Iterator[str]:
    """Pass ``stream`` through and put its return value (the stored turn) in ``box``."""
    box.append((yield from stream))


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
    def owner(self, request: gr.Request | None, token) -> str:
        try:
            return owner_for(getattr(request, "username", None), token)
        except PulseError as error:
            raise user_error(error) from None

    def on_load(self, token, request: gr.Request):
        """First visit: create this browser's token; list its sessions; show which model
        answers (one event, so the page's notice appears once the browser has its owner)."""
        if not getattr(request, "username", None) and not is_owner_token(token):
            token = new_owner_token()
        return token, self.sessions_update(request, token, ""), self.model_notice()

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
        view = {**EMPTY_VIEW, "draft": draft.id, "edit": dict(NO_EDIT)}
        return (draft.image, view, gr.update(value=0.0), [],
                gr.update(value=page_note, visible=bool(page_note)), None)

    def upload(self, token, files, page, request: gr.Request):
        owner = self.owner(request, token)
        try:
            draft = self.chat.open_upload(owner, [str(f) for f in (files or [])],
                                          page=int(page or 1))
        except PulseError as error:
            raise user_error(error) from None
        pages = draft.source.get("pages", 1)
        page_note = f"PDF page {draft.source.get('page', 1)} of {pages}" if pages > 1 else ""
        return self.show_draft(draft, page_note)

    def use_example(self, token, evt: gr.SelectData, request: gr.Request):
        return self.upload(token, [example_paths(self.settings.examples_path)[evt.index]], 1,
                           request)

    def teaching_case(self, token, findings: dict, distort: str, seed, request: gr.Request):
        """A simulated teaching ECG as a new draft (the truth stays in the core)."""
        owner = self.owner(request, token)
        try:
            draft = self.chat.open_teaching_case(owner, findings, distort=distort,
                                                 seed=int(seed or 0))
        except PulseError as error:
            raise user_error(error) from None
        return (*self.show_draft(draft), gr.update(value=HIDDEN))

    def _edited(self, owner: str, view: dict, edit: dict) -> tuple:
        """Updates after an edit: the new picture; the next question starts a new session on
        it (a stored session's picture is first reopened as a draft, keeping its truth)."""
        view = view or EMPTY_VIEW
        try:
            draft_id = view.get("draft")
            if draft_id is None and view.get("session"):
                draft_id = self.chat.new_chat(owner, view["session"]).id
            if draft_id is None:
                gr.Warning("Upload an ECG first.")
                return gr.skip(), gr.skip(), gr.skip()
            image = self.chat.preview(owner, draft_id, edit)
        except PulseError as error:
            raise user_error(error) from None
        return image, {**EMPTY_VIEW, "draft": draft_id, "edit": clean_edit(edit)}, []

    def rotate(self, token, view, angle, step: int, request: gr.Request):
        """Quarter turns (``step``: +1 left, -1 right, 0 = fine angle only); the crop starts over
        because its coordinates belong to the old orientation."""
        owner = self.owner(request, token)
        edit = (view or EMPTY_VIEW)["edit"]
        edit = {"rotate90": (int(edit.get("rotate90", 0)) + step) % 4,
                "angle_deg": float(angle or 0.0), "crop": None}
        return self._edited(owner, view, edit)

    def crop_click(self, token, view, evt: gr.SelectData, request: gr.Request):
        """First click: one corner. Second click: the opposite corner; the crop is applied."""
        owner = self.owner(request, token)
        view = view or EMPTY_VIEW
        if view.get("corner") is None:
            gr.Info("Now click the opposite corner of the part to keep.")
            return gr.skip(), {**view, "corner": list(evt.index)}, gr.skip()
        edit = {**view["edit"], "crop": crop_from_clicks(view["edit"], view["corner"],
                                                         evt.index)}
        return self._edited(owner, {**view, "corner": None}, edit)

    def reset_image(self, token, view, request: gr.Request):
        owner = self.owner(request, token)
        return (*self._edited(owner, view, dict(NO_EDIT)), gr.update(value=0.0))

    # -- chat --
    @staticmethod
    def params(temperature, top_p, max_new_tokens) -> dict:
        return {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}

    def ask(self, token, view, question, history, temperature, top_p, max_new_tokens,
            request: gr.Request) -> Iterator:
        owner = self.owner(request, token)
        view = view or EMPTY_VIEW
        if not (question or "").strip() or not (view.get("draft") or view.get("session")):
            gr.Warning("Type a question first." if view.get("draft") or view.get("session")
                       else "Upload an ECG image first (or pick an example).")
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        params = self.params(temperature, top_p, max_new_tokens)
        history = list(history or [])
        try:
            question = check_question(question)
            self.settings.generation_params(**params)       # refused before anything is stored
            if not view.get("session"):
                stored = self.chat.start_session(owner, view["draft"], view["edit"],
                                                 title=title_from(question))
                view = {**view, "session": stored.id}
                history = []
        except PulseError as error:
            raise user_error(error) from None
        history += [{"role": "user", "content": literal(question)},
                    {"role": "assistant", "content": "…"}]
        yield history, view, "", gr.skip()
        stream = generate(id(self.chat), owner, view["session"], question, params,
                          cancel=self._cancel_event(request))
        yield from self._stream_into(history, stream, owner, view, token, request)

    def regenerate(self, token, view, history, temperature, top_p, max_new_tokens,
                   request: gr.Request) -> Iterator:
        owner = self.owner(request, token)
        view = view or EMPTY_VIEW
        if not view.get("session") or not history:
            gr.Warning("There is no answer to regenerate yet.")
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        history = list(history)[:-1] + [{"role": "assistant", "content": "…"}]
        yield history, view, gr.skip(), gr.skip()
        stream = generate(id(self.chat), owner, view["session"], None,
                          self.params(temperature, top_p, max_new_tokens),
                          cancel=self._cancel_event(request))
        yield from self._stream_into(history, stream, owner, view, token, request)

    def _cancel_event(self, request) -> threading.Event | None:
        """The event Stop sets (None on ZeroGPU: there generation runs in another process and
        Stop closes the stream instead)."""
        if self.settings.zero_gpu:
            return None
        event = threading.Event()
        self.cancels[request.session_hash] = event
        return event

    def _stream_into(self, history, stream, owner, view, token, request) -> Iterator:
        """Show the answer as it grows; at the end the stored answer with its model's name."""
        stored: list = []
        try:
            for text in growing_text(_returning(stream, stored), self.stream_every_s):
                history[-1] = {"role": "assistant", "content": literal(text)}
                yield history, view, gr.skip(), gr.skip()
        except PulseError as error:
            raise user_error(error) from None
        finally:
            self.cancels.pop(request.session_hash, None)
            stream.close()
        if stored and stored[0] is not None:
            history[-1] = answer_message(stored[0])
        else:                   # ZeroGPU: the turn was stored in the GPU worker; read it back
            history = turn_messages(self.chat.open_session(owner, view["session"]))
        yield history, view, gr.skip(), self.sessions_update(request, token, "")

    def stop(self, request: gr.Request):
        event = self.cancels.get(request.session_hash)
        if event is not None:
            event.set()

    def new_chat(self, token, view, request: gr.Request):
        """A new chat on the same picture (a teaching ECG keeps its ground truth)."""
        owner = self.owner(request, token)
        view = view or EMPTY_VIEW
        try:
            if view.get("session"):
                draft = self.chat.new_chat(owner, view["session"])
                return {**EMPTY_VIEW, "draft": draft.id, "edit": draft.edit}, []
        except PulseError as error:
            raise user_error(error) from None
        return {**view, "session": None, "corner": None}, []

    # -- teaching truth --
    def _truth(self, owner: str, view: dict) -> dict | None:
        return self.chat.teaching_case(owner, draft_id=view.get("draft"),
                                       session_id=view.get("session"))[0]

    def reveal(self, token, view, request: gr.Request) -> str:
        """The Reveal button: the ground truth of the shown (or reopened) teaching ECG."""
        try:
            return truth_markdown(self._truth(self.owner(request, token), view or EMPTY_VIEW))
        except PulseError as error:
            raise user_error(error) from None

    def hidden_note(self, token, view, request: gr.Request) -> str:
        """What the truth box shows until Reveal: a hint for a teaching ECG, else nothing."""
        try:
            truth = self._truth(self.owner(request, token), view or EMPTY_VIEW)
        except PulseError:
            return ""
        return HIDDEN if truth else ""

    # -- sessions --
    def sessions_update(self, request, token, search, selected=None):
        owner = self.owner(request, token)
        summaries = self.chat.list_sessions(owner, search)
        return gr.update(choices=session_choices(summaries), value=selected)

    def search_sessions(self, token, search, request: gr.Request):
        return self.sessions_update(request, token, search)

    def open_session(self, token, session_id, request: gr.Request):
        """Reopen a stored session: its picture, its edit and its conversation."""
        owner = self.owner(request, token)
        if not session_id:
            gr.Warning("Choose a session in the list first.")
            return (gr.skip(),) * 5
        try:
            stored = self.chat.open_session(owner, session_id)
        except PulseError as error:
            raise user_error(error) from None
        edit = clean_edit(stored.params.get("edit"))
        view = {**EMPTY_VIEW, "session": stored.id, "edit": edit}
        return (ChatService.image_of(stored), view, gr.update(value=edit["angle_deg"]),
                turn_messages(stored), stored.title)

    def rename_session(self, token, session_id, title, request: gr.Request):
        owner = self.owner(request, token)
        if not session_id or not (title or "").strip():
            gr.Warning("Choose a session and type its new title.")
            return gr.skip()
        try:
            self.chat.rename(owner, session_id, title.strip())
        except PulseError as error:
            raise user_error(error) from None
        return self.sessions_update(request, token, "", selected=session_id)

    def delete_session(self, token, session_id, view, request: gr.Request):
        owner = self.owner(request, token)
        if not session_id:
            gr.Warning("Choose a session in the list first.")
            return gr.skip(), gr.skip(), gr.skip()
        try:
            self.chat.delete(owner, session_id)
        except PulseError as error:
            raise user_error(error) from None
        gr.Info("Session deleted.")
        if str((view or {}).get("session")) == str(session_id):
            return self.sessions_update(request, token, ""), dict(EMPTY_VIEW), []
        return self.sessions_update(request, token, ""), gr.skip(), gr.skip()

    def export_pdf(self, token, session_id, view, note, request: gr.Request):
        """The chosen (or else the current) session as a PDF file to download."""
        owner = self.owner(request, token)
        session_id = session_id or (view or {}).get("session")
        if not session_id:
            gr.Warning("Ask a question first, or choose a saved session.")
            return None
        try:
            pdf = self.chat.export_pdf(owner, session_id, note=(note or "").strip() or None,
                                       owner_label=owner_label(owner))
        except PulseError as error:
            raise user_error(error) from None
        path = Path(tempfile.mkdtemp(prefix="pulse-report-")) / f"pulse-session-{session_id}.pdf"
        path.write_bytes(pdf)
        return str(path)

    # -- programmatic clients (gradio_client): the same core, owner by token --
    def api_start(self, file, token, page, more_files=None, request: gr.Request = None) -> str:
        """Upload an ECG (image, PDF page, DICOM record, or a WFDB ``.hea`` with its signal file
        in ``more_files``) and open a session; returns its id."""
        owner = self.owner(request, token)
        files = [f for f in [file, *(more_files or [])] if f]
        try:
            return str(self.chat.start_session_from_upload(owner, [str(f) for f in files],
                                                           page=int(page or 1)).id)
        except PulseError as error:
            raise user_error(error) from None

    def api_ask(self, token, session_id, question, temperature, top_p, max_new_tokens,
                request: gr.Request) -> Iterator[str]:
        """Ask in a stored session; streams the answer so far."""
        owner = self.owner(request, token)
        stream = generate(id(self.chat), owner, session_id, question,
                          self.params(temperature, top_p, max_new_tokens))
        try:
            yield from growing_text(stream, self.stream_every_s)
        except PulseError as error:
            raise user_error(error) from None
        finally:
            stream.close()          # Gradio cancelled us: the partial answer is kept, stopped
