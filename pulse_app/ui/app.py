"""The Gradio web app: layout and event wiring over the core (intake, ChatService, store, report).

Nothing here decides anything a test could not check without a browser: every handler gets the
owner (:mod:`pulse_app.ui.owner`), calls one core function and turns its result (or its
:class:`~pulse_app.errors.PulseError`) into component updates. Model events share the ``"gpu"``
concurrency group (``settings.concurrency`` at a time); the queue shows each visitor's position.

>>> from pulse_app.settings import Settings
>>> demo, launch_kwargs = build_app(Settings.load(data_dir="/tmp/pulse-doc"))  # doctest: +SKIP
>>> demo.launch(**launch_kwargs)                                                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import gradio as gr
from PIL import Image

from pulse_app.errors import ImageRejected, PulseError
from pulse_app.settings import ASSETS_DIR, Settings
from pulse_app.ui import texts
from pulse_app.auth import is_owner_token, new_owner_token
from pulse_app.ui.owner import browser_secret, owner_for, owner_label

log = logging.getLogger(__name__)

EXAMPLES_DIR = ASSETS_DIR / "examples"
GPU_GROUP = "gpu"
#: Upload suffixes that are signal recordings (rendered to paper first), not pictures.
RECORD_SUFFIXES = {".hea", ".dat", ".mat", ".dcm"}
UPLOAD_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic",
                ".heif", ".pdf", *sorted(RECORD_SUFFIXES)]

try:                                    # ZeroGPU Spaces: a GPU is attached per generation call
    import spaces                       # type: ignore[import-not-found]
    gpu, ZERO_GPU = spaces.GPU, True
except ImportError:                     # anywhere else: unchanged
    ZERO_GPU = False

    def gpu(fn):
        return fn

#: ChatService of each app in this process, by id: generation gets plain (picklable) arguments.
_SERVICES: dict[int, object] = {}


# -- small conversions between components and the core ----------------------------------------------

def editor_value(image: Image.Image | None) -> dict | None:
    """An ImageEditor value showing ``image`` with nothing drawn or cropped yet."""
    if image is None:
        return None
    return {"background": image, "layers": [], "composite": image}


def edited_image(value) -> Image.Image | None:
    """The picture the visitor sees in the editor (crop applied), as RGB on white."""
    if isinstance(value, dict):
        value = value.get("composite") or value.get("background")
    if value is None:
        return None
    if value.mode in ("RGBA", "LA", "P"):
        value = value.convert("RGBA")
        canvas = Image.new("RGB", value.size, (255, 255, 255))
        canvas.paste(value, mask=value.split()[-1])
        return canvas
    return value.convert("RGB")


def turn_messages(session) -> list[dict]:
    """Chatbot messages of a stored session; each answer ends with the model that wrote it."""
    messages = []
    for turn in session.turns:
        answer = turn.answer.strip() or "(no answer)"
        if turn.stopped:
            answer += " [stopped]"
        messages.append({"role": "user", "content": turn.question})
        messages.append({"role": "assistant", "content": f"{answer}\n\n*— {turn.model_label}*"})
    return messages


def session_choices(summaries) -> list[tuple[str, str]]:
    return [(f"{s.title} · {s.updated_at:%Y-%m-%d %H:%M}", str(s.id)) for s in summaries]


def title_from(question: str) -> str:
    words = " ".join(question.split())
    return words if len(words) <= 60 else words[:57].rstrip() + "..."


def _user_error(error: PulseError) -> gr.Error:
    return gr.Error(str(error), print_exception=False)


# -- the handlers ---------------------------------------------------------------------------------------

class PulseUI:
    """Handlers of one app instance; holds the ChatService and the Stop buttons' cancel events."""

    def __init__(self, settings: Settings, chat=None):
        if chat is None:
            from pulse_app.chat import ChatService

            chat = ChatService(settings)
        self.settings = settings
        self.chat = chat
        _SERVICES[id(self.chat)] = self.chat
        self.cancels: dict[str, threading.Event] = {}

    # -- who --
    def owner(self, request: gr.Request | None, token) -> str:
        username = getattr(request, "username", None) if request is not None else None
        try:
            return owner_for(username, token)
        except PulseError as error:
            raise _user_error(error) from None

    def on_load(self, token, request: gr.Request):
        """First visit: create this browser's token; then list its sessions."""
        if not getattr(request, "username", None) and not is_owner_token(token):
            token = new_owner_token()
        return token, self.sessions_update(request, token, "")

    def model_notice(self) -> str:
        try:
            info = self.chat.model_info()
        except PulseError as error:
            return f"{texts.NOTICE}\n\n**Model unavailable:** {error}"
        line = f"Model: **{info.label}**"
        if not info.trained:
            line += f"\n\n⚠️ {texts.UNTRAINED}"
        return f"{texts.NOTICE}\n\n{line}"

    # -- images --
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
        """Gradio stores each upload in its own folder: put a record's files side by side."""
        from pulse_app.ecg.records import find_records, read_record
        from pulse_app.ecg.render import render_ecg

        with tempfile.TemporaryDirectory(prefix="pulse-record-") as folder:
            for path in paths:
                shutil.copy(path, Path(folder) / path.name)
            found = find_records([folder])
            if not found:
                raise ImageRejected("a WFDB record needs its .hea header and its .dat or .mat "
                                    "signal file", hint="select both files together and upload "
                                    "them at once")
            try:
                record = read_record(found[0])
            except PulseError:
                raise
            except Exception as error:  # noqa: BLE001 - a broken file, told plainly
                raise ImageRejected(f"the record {found[0].name} cannot be read "
                                    f"({type(error).__name__})",
                                    hint="check that the header and signal files match") from error
            return render_ecg(record).image

    def upload(self, files, page):
        """New picture: shown in the editor, kept as the original; the next question starts a
        new session."""
        try:
            image, pages = self.open_upload(files, page)
        except PulseError as error:
            raise _user_error(error) from None
        page_note = f"PDF page {int(page or 1)} of {pages}" if pages > 1 else ""
        return self.show_image(image, page_note)

    @staticmethod
    def show_image(image: Image.Image, page_note: str = "") -> tuple:
        """Updates of the image outputs for a new picture (the next question starts a new
        session)."""
        return (editor_value(image), image, 0, gr.update(value=0.0), {"id": None}, [],
                gr.update(value=page_note, visible=bool(page_note)), None)

    def use_example(self, evt: gr.SelectData):
        path = example_paths()[evt.index]
        return self.upload([path], 1)

    def rotate(self, original, quarter_turns, angle, step):
        """Rotate the original by quarter turns and the fine angle (the crop starts over)."""
        from pulse_app.intake import edit_image

        if original is None:
            gr.Warning("Upload an ECG first.")
            return gr.skip(), quarter_turns, {"id": None}, gr.skip()
        quarter_turns = (int(quarter_turns) + step) % 4
        try:
            image = edit_image(original, rotate90=quarter_turns, angle_deg=float(angle or 0))
        except PulseError as error:
            raise _user_error(error) from None
        return editor_value(image), quarter_turns, {"id": None}, []

    def reset_image(self, original):
        return editor_value(original), 0, gr.update(value=0.0), {"id": None}, []

    @staticmethod
    def image_edited(session):
        """A crop or drawing in the editor: a new picture, so the next question starts anew."""
        return {"id": None}, ([] if session.get("id") else gr.skip())

    # -- chat --
    def params(self, temperature, top_p, max_new_tokens) -> dict:
        return {"temperature": float(temperature), "top_p": float(top_p),
                "max_new_tokens": int(max_new_tokens)}

    def begin_session(self, owner: str, original, image: Image.Image, question: str) -> str:
        """Create the stored session for the picture in the editor (original kept beside it)."""
        from pulse_app.intake import png_bytes

        record = self.chat.start_session(owner, png_bytes(original or image), filename="ecg.png",
                                         title=title_from(question))
        if original is not None and (original.size != image.size or original is not image):
            self.chat.store.update_images(owner, record.id, edited_png=png_bytes(image))
        return record.id

    def ask(self, token, session, editor, original, question, history, temperature, top_p,
            max_new_tokens, request: gr.Request) -> Iterator:
        owner = self.owner(request, token)
        question = (question or "").strip()
        if not question:
            gr.Warning("Type a question first.")
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        image = edited_image(editor)
        if image is None:
            gr.Warning("Upload an ECG image first (or pick an example).")
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        history = list(history or [])
        try:
            if not session.get("id"):
                session = {"id": self.begin_session(owner, original, image, question)}
                history = []
        except PulseError as error:
            raise _user_error(error) from None
        history += [{"role": "user", "content": question},
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

    def _cancel_event(self, request) -> threading.Event:
        event = threading.Event()
        self.cancels[request.session_hash] = event
        return event

    def _stream_into(self, history, stream, owner, session, token, request) -> Iterator:
        """Show the answer as it grows; at the end show the stored turns (with the model name)."""
        text = ""
        try:
            for chunk in stream:
                text += chunk
                history[-1] = {"role": "assistant", "content": text}
                yield history, session, gr.skip(), gr.skip()
        except PulseError as error:
            raise _user_error(error) from None
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
    def new_chat():
        return {"id": None}, []

    # -- sessions --
    def sessions_update(self, request, token, search, selected=None):
        owner = self.owner(request, token)
        summaries = self.chat.store.list_sessions(owner, search=(search or "").strip() or None)
        return gr.update(choices=session_choices(summaries), value=selected)

    def search_sessions(self, token, search, request: gr.Request):
        return self.sessions_update(request, token, search)

    def open_session(self, token, session_id, request: gr.Request):
        owner = self.owner(request, token)
        if not session_id:
            gr.Warning("Choose a session in the list first.")
            return (gr.skip(),) * 7
        try:
            stored = self.chat.store.get_session(owner, session_id)
        except PulseError as error:
            raise _user_error(error) from None
        import io

        edited = Image.open(io.BytesIO(stored.edited_png)).convert("RGB")
        original = Image.open(io.BytesIO(stored.original_png)).convert("RGB")
        return (editor_value(edited), original, 0, gr.update(value=0.0), {"id": stored.id},
                turn_messages(stored), stored.title)

    def rename_session(self, token, session_id, title, request: gr.Request):
        owner = self.owner(request, token)
        if not session_id or not (title or "").strip():
            gr.Warning("Choose a session and type its new title.")
            return gr.skip()
        try:
            self.chat.store.rename(owner, session_id, title.strip())
        except PulseError as error:
            raise _user_error(error) from None
        return self.sessions_update(request, token, "", selected=session_id)

    def delete_session(self, token, session_id, session, request: gr.Request):
        owner = self.owner(request, token)
        if not session_id:
            gr.Warning("Choose a session in the list first.")
            return gr.skip(), gr.skip(), gr.skip()
        try:
            self.chat.store.delete(owner, session_id)
        except PulseError as error:
            raise _user_error(error) from None
        gr.Info("Session deleted.")
        if str(session.get("id")) == str(session_id):
            return self.sessions_update(request, token, ""), {"id": None}, []
        return self.sessions_update(request, token, ""), gr.skip(), gr.skip()

    def export_pdf(self, token, session_id, session, note, request: gr.Request):
        """The chosen (or current) session as a PDF file to download."""
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
            raise _user_error(error) from None
        folder = Path(tempfile.mkdtemp(prefix="pulse-report-"))
        path = folder / f"pulse-session-{stored.id}.pdf"
        path.write_bytes(pdf)
        return str(path)

    # -- programmatic clients (gradio_client): the same core, owner by token --
    def api_start(self, file, token, page, request: gr.Request) -> str:
        """Upload an ECG (image, PDF, record file) and open a session; returns its id."""
        owner = self.owner(request, token)
        try:
            image, _ = self.open_upload([file] if file else [], page)
            return str(self.begin_session(owner, None, image, Path(file).name))
        except PulseError as error:
            raise _user_error(error) from None

    def api_ask(self, token, session_id, question, temperature, top_p, max_new_tokens,
                request: gr.Request) -> Iterator[str]:
        """Ask in a stored session; streams the answer so far."""
        owner = self.owner(request, token)
        if not (question or "").strip():
            raise gr.Error("The question is empty. Type a question about the ECG.")
        stream = generate(id(self.chat), owner, session_id, question.strip(),
                          self.params(temperature, top_p, max_new_tokens))
        text = ""
        try:
            for chunk in stream:
                text += chunk
                yield text
        except PulseError as error:
            raise _user_error(error) from None
        finally:
            stream.close()


@gpu
def generate(service_id: int, owner: str, session_id, question: str | None, params: dict,
             cancel: threading.Event | None = None) -> Iterator[str]:
    """Where generation runs: the answer to ``question`` (None = regenerate the last answer) as
    text chunks. On ZeroGPU a GPU is attached for the stream (there Stop closes the stream)."""
    chat = _SERVICES[service_id]
    cancel = None if ZERO_GPU else cancel
    if question is None:
        stream = chat.regenerate(owner, session_id, params, cancel=cancel)
    else:
        stream = chat.ask(owner, session_id, question, params, cancel=cancel)
    try:
        yield from stream
    finally:
        stream.close()


def example_paths() -> list[str]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir()
                  if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


# -- layout and wiring -------------------------------------------------------------------------------

def build_app(settings: Settings, *, chat=None) -> tuple[gr.Blocks, dict]:
    """The app's Blocks and the keyword arguments for ``launch()``."""
    from pulse_app.ui import teaching

    ui = PulseUI(settings, chat)
    private = {"api_visibility": "private"}
    model_event = {"concurrency_limit": settings.concurrency, "concurrency_id": GPU_GROUP}

    with gr.Blocks(title="PULSE ECG workbench") as demo:
        token = gr.BrowserState(None, storage_key="pulse-owner",
                                secret=browser_secret(settings.data_dir))
        session = gr.State({"id": None})          # {"id": stored session id or None}
        original = gr.State(None)                 # the uploaded picture, unedited (PIL)
        quarter_turns = gr.State(0)

        notice = gr.Markdown(texts.NOTICE, elem_id="notice")

        with gr.Sidebar(label="Sessions", open=True, elem_id="sidebar"):
            gr.Markdown("### Your sessions")
            search = gr.Textbox(label="Search titles", elem_id="session-search")
            sessions = gr.Dropdown(label="Saved sessions", choices=[], elem_id="session-list")
            open_button = gr.Button("Open", elem_id="session-open")
            title = gr.Textbox(label="Title", elem_id="session-title")
            with gr.Row():
                rename_button = gr.Button("Rename", size="sm", elem_id="session-rename")
                delete_button = gr.Button("Delete", size="sm", variant="stop",
                                          elem_id="session-delete")
            note = gr.Textbox(label="Clinician note (printed in the PDF)", lines=3,
                              elem_id="report-note")
            export_button = gr.Button("Export PDF", elem_id="export-pdf")
            report_file = gr.File(label="PDF report", interactive=False, elem_id="report-file")

        with gr.Row():
            with gr.Column(scale=5):
                with gr.Tab("Upload"):
                    upload = gr.File(label="ECG file", file_count="multiple",
                                     file_types=UPLOAD_TYPES, elem_id="upload")
                    gr.Markdown(texts.UPLOAD_HELP)
                    page = gr.Number(label="PDF page", value=1, precision=0, minimum=1,
                                     elem_id="page")
                    page_note = gr.Markdown(visible=False)
                    examples = gr.Gallery(value=example_paths(), label="Examples", columns=4,
                                          height=160, allow_preview=False, elem_id="examples")
                with gr.Tab("Teaching", elem_id="teaching-tab"):
                    teach = teaching.build_panel()
                editor = gr.ImageEditor(label="ECG (crop tool in the toolbar)", type="pil",
                                        format="png", transforms=("crop",), layers=False,
                                        sources=(), elem_id="editor", height=520)
                with gr.Row():
                    left_button = gr.Button("⟲ 90°", size="sm", elem_id="rotate-left")
                    right_button = gr.Button("⟳ 90°", size="sm", elem_id="rotate-right")
                    reset_button = gr.Button("Reset", size="sm", elem_id="reset-image")
                angle = gr.Slider(-15, 15, value=0, step=0.5, label="Fine rotation (degrees, "
                                  "counter-clockwise)", elem_id="angle")
            with gr.Column(scale=6):
                chatbot = gr.Chatbot(label="Conversation", height=560, elem_id="chat")
                question = gr.Textbox(label="Question", placeholder="Ask about this ECG…",
                                      elem_id="question", submit_btn=False)
                with gr.Row():
                    send_button = gr.Button("Ask", variant="primary", elem_id="ask")
                    stop_button = gr.Button("Stop", elem_id="stop")
                    regenerate_button = gr.Button("Regenerate", elem_id="regenerate")
                    new_button = gr.Button("New chat", elem_id="new-chat")
                with gr.Row():
                    prompt_buttons = [(gr.Button(label, size="sm",
                                                 elem_id="prompt-" + str(i)), text)
                                      for i, (label, text) in enumerate(texts.PROMPTS.items())]
                with gr.Accordion("Generation settings", open=False):
                    temperature = gr.Slider(0, 1.5, value=settings.temperature, step=0.05,
                                            label="Temperature (0 = always the likeliest words)")
                    top_p = gr.Slider(0.05, 1, value=settings.top_p, step=0.05, label="Top-p")
                    max_new_tokens = gr.Slider(1, 2048, value=settings.max_new_tokens, step=1,
                                               label="Longest answer (tokens)")

        # -- programmatic session API (hidden components; owner by token) --
        with gr.Group(visible=False):
            api_file = gr.File(type="filepath")
            api_token, api_session, api_question = gr.Textbox(), gr.Textbox(), gr.Textbox()
            api_page = gr.Number(value=1, precision=0)
            api_out = gr.Textbox()
            api_start_button, api_ask_button = gr.Button(), gr.Button()
        api_start_button.click(ui.api_start, [api_file, api_token, api_page], api_out,
                               api_name="session_start")
        api_ask_button.click(ui.api_ask, [api_token, api_session, api_question, temperature,
                                          top_p, max_new_tokens], api_out,
                             api_name="session_ask", **model_event)
        try:
            from pulse_app.ui.api import add_model_api
        except ImportError:                     # the engine's API module is not there yet
            add_model_api = None
        if add_model_api is not None:
            add_model_api(lambda: ui.chat.backend)

        # -- wiring (internal events: private) --
        demo.load(ui.on_load, [token], [token, sessions], **private)
        demo.load(ui.model_notice, None, notice, **private)

        image_outputs = [editor, original, quarter_turns, angle, session, chatbot, page_note,
                         report_file]
        upload.upload(ui.upload, [upload, page], image_outputs, **private)
        page.submit(ui.upload, [upload, page], image_outputs, **private)
        examples.select(ui.use_example, None, image_outputs, **private)
        teaching.wire(teach, ui, image_outputs, private)

        left_button.click(lambda o, q, a: ui.rotate(o, q, a, 1), [original, quarter_turns, angle],
                          [editor, quarter_turns, session, chatbot], **private)
        right_button.click(lambda o, q, a: ui.rotate(o, q, a, -1),
                           [original, quarter_turns, angle],
                           [editor, quarter_turns, session, chatbot], **private)
        angle.release(lambda o, q, a: ui.rotate(o, q, a, 0), [original, quarter_turns, angle],
                      [editor, quarter_turns, session, chatbot], **private)
        reset_button.click(ui.reset_image, [original],
                           [editor, quarter_turns, angle, session, chatbot], **private)
        editor.input(ui.image_edited, [session], [session, chatbot], queue=False, **private)

        ask_inputs = [token, session, editor, original, question, chatbot, temperature, top_p,
                      max_new_tokens]
        ask_outputs = [chatbot, session, question, sessions]
        send_button.click(ui.ask, ask_inputs, ask_outputs, **model_event, **private)
        question.submit(ui.ask, ask_inputs, ask_outputs, **model_event, **private)
        for button, text in prompt_buttons:
            button.click(lambda t=text: t, None, question, queue=False, **private).then(
                ui.ask, ask_inputs, ask_outputs, **model_event, **private)
        regenerate_button.click(ui.regenerate, [token, session, chatbot, temperature, top_p,
                                                max_new_tokens], ask_outputs, **model_event,
                                **private)
        stop_button.click(ui.stop, None, None, queue=False, **private)
        new_button.click(ui.new_chat, None, [session, chatbot], queue=False, **private)

        search.submit(ui.search_sessions, [token, search], sessions, **private)
        open_button.click(ui.open_session, [token, sessions],
                          [editor, original, quarter_turns, angle, session, chatbot, title],
                          **private)
        rename_button.click(ui.rename_session, [token, sessions, title], sessions, **private)
        delete_button.click(ui.delete_session, [token, sessions, session],
                            [sessions, session, chatbot], **private)
        export_button.click(ui.export_pdf, [token, sessions, session, note], report_file,
                            **private)

    demo.queue(max_size=settings.queue_size, default_concurrency_limit=8)
    demo.pulse_ui = ui                          # for tests and launch(): the handlers' core
    launch_kwargs = {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "max_file_size": f"{settings.max_upload_mb:g}mb",
        "allowed_paths": [str(EXAMPLES_DIR)],
        "theme": gr.themes.Soft(),
        "show_error": True,
    }
    if settings.auth:
        from pulse_app.auth import Accounts

        accounts = Accounts.parse(settings.auth)
        if accounts:
            launch_kwargs["auth"] = accounts.verify
            launch_kwargs["auth_message"] = "PULSE ECG workbench: sign in with your account."
    return demo, launch_kwargs


def launch(settings: Settings, **overrides) -> gr.Blocks:
    """Build and serve the app (blocks until the server stops, like ``demo.launch()``)."""
    demo, launch_kwargs = build_app(settings)
    threading.Thread(target=_warm_up, args=(demo.pulse_ui,), daemon=True).start()
    launch_kwargs.update(overrides)
    demo.launch(**launch_kwargs)
    return demo


def _warm_up(ui: PulseUI) -> None:
    """Find (and for the local backend, load) the model while the first visitor reads the page."""
    try:
        backend = ui.chat.backend
        backend.info()
        if hasattr(backend, "load"):
            backend.load()
    except Exception as error:  # noqa: BLE001 - shown to visitors by model_notice instead
        log.warning("model warm-up failed: %s", error)
