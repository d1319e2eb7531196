"""The Gradio web app: layout and event wiring. The handlers are in :mod:`pulse_app.ui.handlers`.

Model events share the ``"gpu"`` concurrency group (``settings.concurrency`` at a time) and the
queue shows each visitor's position; PDF exports have a group of their own (and run in the export
process), so they never wait for, or slow, an answer; every other event is private (no API
endpoint). Public endpoints: ``session_start`` / ``session_ask`` (sessions for programmatic
clients, owner by token) and the engine's ``ask`` / ``model_info`` (:mod:`pulse_app.ui.api`).

Privacy by construction: the owner token is an HttpOnly cookie (:mod:`pulse_app.ui.web`, which
also serves reports to their owner and keeps Gradio's file route to the example images);
uploads are deleted from Gradio's cache once read, and whatever Gradio still caches for this app
is deleted after :data:`CACHE_TTL_S`; the picture travels inline (:mod:`pulse_app.ui.components`);
old sessions are purged on schedule (:mod:`pulse_app.retention`).

>>> from pulse_app.settings import Settings
>>> demo, launch_kwargs = build_app(Settings.load(data_dir="/tmp/pulse-doc"))  # doctest: +SKIP
>>> demo.launch(**launch_kwargs)                                                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import gradio as gr
from fastapi import HTTPException
from starlette.middleware import Middleware

from pulse_app.errors import ServerBusy
from pulse_app.intake import RECORD_SUFFIXES
from pulse_app.settings import Settings
from pulse_app.ui import decks, phone, style, teaching, texts
from pulse_app.ui.api import GPU_GROUP, add_model_api
from pulse_app.ui.components import PrivateImage, RawNumber, RawTextbox
from pulse_app.ui.handlers import EMPTY_VIEW, PulseUI, example_paths
from pulse_app.ui.web import CLIENT_ADDRESS, PulseGate

log = logging.getLogger(__name__)

#: The concurrency group of PDF exports (they run in the export process: pulse_app.report).
EXPORT_GROUP = "export"
#: The concurrency group of the digitiser's readings and signal downloads (CPU, seconds).
EVIDENCE_GROUP = "evidence"
#: Gradio deletes what it cached for this app (uploads not yet read, e.g.) after this long.
CACHE_TTL_S = 600
UPLOAD_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic",
                ".heif", ".pdf", *RECORD_SUFFIXES]


def build_app(settings: Settings, *, chat=None) -> tuple[gr.Blocks, dict]:
    """The app's Blocks and the keyword arguments for ``launch()``."""
    ui = PulseUI(settings, chat)
    private = {"api_visibility": "private"}
    model_event = {"concurrency_limit": settings.concurrency, "concurrency_id": GPU_GROUP}

    examples_dir = settings.examples_path
    gr.set_static_paths([str(examples_dir)])    # served where they are, not copied to cache
    with gr.Blocks(title="PULSE ECG workbench", delete_cache=(60, CACHE_TTL_S)) as demo:
        view = gr.State(dict(EMPTY_VIEW))       # ids (draft, session) and the draft edit

        notice = gr.Markdown(texts.NOTICE, elem_id="notice")

        with gr.Sidebar(label="Sessions", open=True, width=style.SIDEBAR_WIDTH,
                        elem_id="sidebar") as sidebar:
            gr.Markdown("### Your sessions")
            search = RawTextbox(label="Search titles", elem_id="session-search")
            sessions = gr.Dropdown(label="Saved sessions", choices=[], elem_id="session-list")
            open_button = gr.Button("Open", elem_id="session-open")
            title = RawTextbox(label="Title", elem_id="session-title")
            with gr.Row():
                rename_button = gr.Button("Rename", size="sm", elem_id="session-rename")
                delete_button = gr.Button("Delete", size="sm", variant="stop",
                                          elem_id="session-delete")
            note = RawTextbox(label="Clinician note (printed in the PDF)", lines=3,
                              max_length=settings.max_note_chars, elem_id="report-note")
            export_button = gr.Button("Export PDF", elem_id="export-pdf")
            report_file = gr.HTML(elem_id="report-file")

        with gr.Row(elem_id="main-row") as workspace:
            with gr.Column(scale=5, elem_id="picture-column"):
                with gr.Tabs(elem_id="source-tabs") as tabs:
                    with gr.Tab("Upload", id="upload"):
                        take_photo = phone.build_take_photo()
                        with gr.Row(equal_height=True):
                            upload = gr.File(label="ECG file", file_count="multiple",
                                             file_types=UPLOAD_TYPES, height=120, scale=4,
                                             elem_id="upload")
                            page = gr.Number(label="PDF page", value=1, precision=0, minimum=1,
                                             scale=1, min_width=90, elem_id="page")
                        page_note = gr.Markdown(visible=False, elem_id="page-note")
                        gr.Markdown(texts.UPLOAD_HELP)
                    with gr.Tab("Camera", id="camera", elem_id="camera-tab"):
                        camera = phone.build_camera()
                    with gr.Tab("Examples", id="examples"):
                        examples = gr.Gallery(value=example_paths(examples_dir),
                                              show_label=False, columns=4, height=140,
                                              allow_preview=False, elem_id="examples")
                        gr.Markdown(texts.EXAMPLES_NOTE)
                    with gr.Tab("Teaching", id="teaching", elem_id="teaching-tab"):
                        teach = teaching.build_panel()
                    with gr.Tab("Decks", id="decks", elem_id="decks-tab"):
                        deck_tab = decks.build_decks_tab()
                check_note = phone.build_check_note()
                card = phone.build_straighten_card()
                with gr.Column(elem_id="picture-tools") as picture_tools:
                    picture = PrivateImage(label="ECG as the model sees it", type="pil",
                                           interactive=False, elem_id="picture", height=520,
                                           buttons=["download", "fullscreen"])  # no Share
                    gr.Markdown(texts.CROP_HELP)
                    with gr.Row(elem_id="edit-buttons"):
                        left_button = gr.Button("⟲ 90°", size="sm", elem_id="rotate-left")
                        right_button = gr.Button("⟳ 90°", size="sm", elem_id="rotate-right")
                        reset_button = gr.Button("Reset", size="sm", elem_id="reset-image")
                        adjust_button = phone.build_adjust_button()
                    angle = gr.Slider(-15, 15, value=0, step=0.5, label="Fine rotation "
                                      "(degrees, counter-clockwise)", elem_id="angle")
            with gr.Column(scale=6, elem_id="chat-column"):
                # plain text only: no Markdown, no LaTeX, HTML escaped (handlers.literal), so
                # nothing in a question or an answer loads anything
                chatbot = gr.Chatbot(label="Conversation", height=560, elem_id="chat",
                                     render_markdown=False, latex_delimiters=[],
                                     sanitize_html=True)
                question = RawTextbox(label="Question", placeholder="Ask about this ECG…",
                                      elem_id="question", submit_btn=False)
                grounded = gr.Checkbox(value=settings.grounded, elem_id="grounded",
                                       label="Grounded: give the model the digitiser's "
                                             "measurements (the answer is labelled so)")
                with gr.Row():
                    send_button = gr.Button("Ask", variant="primary", elem_id="ask")
                    stop_button = gr.Button("Stop", elem_id="stop")
                    regenerate_button = gr.Button("Regenerate", elem_id="regenerate")
                    new_button = gr.Button("New chat", elem_id="new-chat")
                with gr.Row():
                    prompt_buttons = [(gr.Button(label, size="sm",
                                                 elem_id="prompt-" + str(i)), text)
                                      for i, (label, text) in enumerate(texts.PROMPTS.items())]
                gr.Markdown(texts.ANSWER_DISCLAIMER, elem_id="answer-disclaimer")
                with gr.Accordion("Evidence: the digitiser's reading", open=True,
                                  elem_id="evidence-panel"):
                    evidence = gr.HTML(elem_id="evidence")
                    show_overlay = gr.Checkbox(value=False, elem_id="show-overlay",
                                               label="Show what was read on the image (overlay)")
                    overlay = PrivateImage(label="Overlay: extracted traces and beats",
                                           type="pil", interactive=False, visible=False,
                                           elem_id="overlay", height=420)
                    with gr.Row():
                        wfdb_button = gr.Button("Signals (WFDB)", size="sm",
                                                elem_id="signals-wfdb")
                        csv_button = gr.Button("Signals (CSV)", size="sm", elem_id="signals-csv")
                    signals_file = gr.HTML(elem_id="signals-file")
                    gr.Markdown(texts.EVIDENCE_HELP)
                with gr.Accordion("Generation settings", open=False, elem_id="generation"):
                    temperature = gr.Slider(0, 1.5, value=settings.temperature, step=0.05,
                                            label="Temperature (0 = always the likeliest words)",
                                            elem_id="temperature")
                    top_p = gr.Slider(0.05, 1, value=settings.top_p, step=0.05, label="Top-p",
                                      elem_id="top-p")
                    max_new_tokens = gr.Slider(1, 2048, value=settings.max_new_tokens, step=1,
                                               label="Longest answer (tokens)",
                                               elem_id="max-new-tokens")

        presenter, student = decks.build_presenter(), decks.build_student()

        # -- programmatic session API (hidden components; owner by token) --
        with gr.Group(visible=False):
            api_file = gr.File(type="filepath")
            api_token, api_session, api_question = RawTextbox(), RawTextbox(), RawTextbox()
            api_page = RawNumber(value=1, precision=0)
            api_more = gr.File(file_count="multiple", type="filepath")   # rest of a WFDB record
            api_straighten = gr.Checkbox(value=False)
            # values as sent, not the page's sliders: the core checks types and ranges (the
            # same words everywhere)
            api_temperature = RawNumber(value=settings.temperature)
            api_top_p = RawNumber(value=settings.top_p)
            api_max_new_tokens = RawNumber(value=settings.max_new_tokens, precision=0)
            api_out = gr.Textbox()
            api_start_button, api_ask_button = gr.Button(), gr.Button()
        api_start_button.click(ui.api_start, [api_file, api_token, api_page, api_more,
                                              api_straighten], api_out,
                               api_name="session_start")
        api_ask_button.click(ui.api_ask, [api_token, api_session, api_question, api_temperature,
                                          api_top_p, api_max_new_tokens], api_out,
                             api_name="session_ask", **model_event)
        add_model_api(lambda: ui.chat.backend, settings)

        # -- wiring (internal events: private) --
        demo.load(ui.on_load, None, sessions, **private)
        demo.load(ui.model_notice, None, notice, **private)

        image_outputs = [picture, view, angle, chatbot, page_note, report_file]
        # the evidence of the shown picture is read after it is shown (its own group: never
        # in the way of an answer); every event that shows a new picture or edit is followed
        # by it
        read_evidence = {"fn": ui.evidence, "inputs": [view], "outputs": [evidence, overlay],
                         "concurrency_id": EVIDENCE_GROUP, "concurrency_limit": 2,
                         "show_progress_on": [evidence], **private}
        new_pictures = [
            upload.upload(ui.upload, [upload, page], image_outputs, **private),
            gr.on([page.submit, page.blur], ui.change_page, [view, page], image_outputs,
                  **private),
            examples.select(ui.use_example, None, image_outputs, **private),
            teaching.wire(teach, ui, image_outputs, view, private)]
        show_overlay.change(ui.show_overlay, [show_overlay], overlay, queue=False, **private)

        def signals(kind):
            def handler(view_value, request: gr.Request):
                return ui.download_signals(view_value, kind, request)
            return handler

        wfdb_button.click(signals("wfdb"), [view], signals_file, concurrency_id=EVIDENCE_GROUP,
                          **private)
        csv_button.click(signals("csv"), [view], signals_file, concurrency_id=EVIDENCE_GROUP,
                         **private)

        edited_outputs = [picture, view, chatbot]
        edit_inputs = [view, angle]

        def rotate(step):
            def handler(view_value, angle_value, request: gr.Request):
                return ui.rotate(view_value, angle_value, step, request)
            return handler

        left_button.click(rotate(1), edit_inputs, edited_outputs, **private).then(
            **read_evidence)
        right_button.click(rotate(-1), edit_inputs, edited_outputs, **private).then(
            **read_evidence)
        angle.release(rotate(0), edit_inputs, edited_outputs, **private).then(**read_evidence)
        picture.select(ui.crop_click, [view], edited_outputs, **private).then(**read_evidence)
        reset_button.click(ui.reset_image, [view], [*edited_outputs, angle], **private).then(
            **read_evidence)

        ask_inputs = [view, question, chatbot, temperature, top_p, max_new_tokens, grounded]
        ask_outputs = [chatbot, view, question, sessions]
        chat_event = {**model_event, **private, "show_progress_on": [chatbot]}  # queue position
        send_button.click(ui.ask, ask_inputs, ask_outputs, **chat_event)
        question.submit(ui.ask, ask_inputs, ask_outputs, **chat_event)
        for button, text in prompt_buttons:
            button.click(lambda t=text: t, None, question, queue=False, **private).then(
                ui.ask, ask_inputs, ask_outputs, **chat_event)
        regenerate_button.click(ui.regenerate, [view, chatbot, temperature, top_p,
                                                max_new_tokens, grounded], ask_outputs,
                                **chat_event)
        stop_button.click(ui.stop, None, None, queue=False, **private)
        new_button.click(ui.new_chat, [view], [view, chatbot], **private)

        search.submit(ui.search_sessions, [search], sessions, **private)
        reopened = open_button.click(ui.open_session, [sessions],
                                     [picture, view, angle, chatbot, title], **private)
        reopened.then(ui.hidden_note, [view], teach.truth_view, **private).then(**read_evidence)
        rename_button.click(ui.rename_session, [sessions, title], sessions, **private)
        delete_button.click(ui.delete_session, [sessions, view],
                            [sessions, view, chatbot], **private)
        export_button.click(ui.export_pdf, [sessions, view, note], report_file,
                            concurrency_id=EXPORT_GROUP, concurrency_limit=2, **private)
        phone.wire(SimpleNamespace(take_photo=take_photo, camera=camera, note=check_note,
                                   card=card, tools=picture_tools, adjust=adjust_button,
                                   reopened=[reopened]),
                   ui, new_pictures, image_outputs, view, picture, chatbot, angle, private,
                   then=read_evidence)

        # -- sharing, decks, presenter view, students (pulse_app.ui.decks) --
        decks.wire(deck_tab, presenter, student, teach, decks.DecksUI(ui), demo=demo,
                   view=view, image_outputs=image_outputs, tabs=tabs, sidebar=sidebar,
                   workspace=workspace, sessions=sessions,
                   generation=[temperature, top_p, max_new_tokens, grounded], private=private,
                   chat_event=chat_event, evidence_event=read_evidence,
                   export_event={"concurrency_id": EXPORT_GROUP, "concurrency_limit": 2,
                                 **private})

    demo.queue(max_size=settings.queue_size, default_concurrency_limit=8)
    demo.pulse_ui = ui                          # for tests and launch(): the handlers' core
    launch_kwargs = {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "max_file_size": f"{settings.max_upload_mb:g}mb",
        "allowed_paths": [str(examples_dir)],
        "theme": gr.themes.Soft(),
        "css": style.CSS,
        "head": style.HEAD,
        "show_error": False,            # only gr.Error text (pulse_app.ui.guard) reaches a page
        "app_kwargs": {"middleware": [Middleware(PulseGate, chat=ui.chat,
                                                 served=[examples_dir])]},
    }
    if settings.auth:
        from pulse_app.auth import Accounts, SignIn

        accounts = Accounts.parse(settings.auth)
        if accounts:
            launch_kwargs["auth"] = sign_in_check(SignIn(accounts))
            launch_kwargs["auth_message"] = "PULSE ECG workbench: sign in with your account."
    return demo, launch_kwargs


def sign_in_check(sign_in):
    """Gradio's ``auth`` callable: the password check with its per-user and per-address
    limits (a refused attempt is HTTP 429 with the core's message)."""

    def check(user, password) -> bool:
        try:
            return sign_in.verify(user, password, CLIENT_ADDRESS.get())
        except ServerBusy as error:
            raise HTTPException(status_code=429, detail=str(error)) from None

    return check


def launch(settings: Settings, **overrides) -> gr.Blocks:
    """Build and serve the app (blocks until the server stops, like ``demo.launch()``); old
    sessions are purged hourly when ``settings.retention_days`` is set."""
    from pulse_app.retention import purge_on_schedule

    demo, launch_kwargs = build_app(settings)
    threading.Thread(target=_warm_up, args=(demo.pulse_ui,), daemon=True).start()
    purge_on_schedule(settings, demo.pulse_ui.chat.store)
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
