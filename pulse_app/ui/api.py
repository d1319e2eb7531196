"""The app's model API: two named Gradio endpoints other copies of the app call (``space`` backend).

``add_model_api(get_backend, settings)`` is called inside the app's ``gr.Blocks``; it registers

- ``/ask``: (ECG file, question, history_json ``[[user, assistant], ...]``, temperature, top_p,
  max_new_tokens, more_files, straighten, grounded) -> the answer so far, streamed (each update
  is the whole text up to now); ``straighten`` (default false) straightens a photographed page
  first; ``grounded`` (default: the app's ``grounded`` setting) gives the model the digitiser's
  measurements as marked context.
  The request is checked by :func:`pulse_app.answer.prepare`, like every entry point's;
  the ECG may be a picture, a PDF or a record (a WFDB ``.hea`` with its ``.dat``/``.mat`` in
  ``more_files``, or a DICOM ``.dcm``); grounded or not, through the same :func:`prepare` path;
- ``/model_info``: () -> JSON of :class:`pulse_app.engine.backend.ModelInfo`.

Both run in the ``"gpu"`` concurrency group, so remote questions queue with the app's own.

>>> from gradio_client import Client, handle_file                   # doctest: +SKIP
>>> client = Client("http://127.0.0.1:7860/")                        # doctest: +SKIP
>>> for text in client.submit(handle_file("ecg.png"), "Rhythm?", "[]", 0.2, 0.7, 512,
...                           api_name="/ask"):                      # doctest: +SKIP
...     print(text)
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Callable, Iterator

import gradio as gr

from pulse_app.answer import prepare, stream_request
from pulse_app.errors import InvalidParameter
from pulse_app.ui.components import RawNumber, RawTextbox
from pulse_app.ui.guard import guarded
from pulse_app.ui.handlers import forget_uploads

if TYPE_CHECKING:
    from pulse_app.answer import AnswerRequest
    from pulse_app.engine.backend import Backend
    from pulse_app.settings import Settings

ASK_API = "ask"
MODEL_INFO_API = "model_info"
#: The concurrency group of every GPU job: one answer at a time per model (app setting).
GPU_GROUP = "gpu"


def parse_history(history_json) -> list:
    """``[[user, assistant], ...]`` (JSON) as pairs; the pairs are checked by the answer path.

    >>> parse_history('[["Rate?", "70 bpm."]]')
    [['Rate?', '70 bpm.']]
    """
    if not isinstance(history_json, str):
        raise InvalidParameter("history_json must be a JSON string",
                               hint='send "[]" for a new conversation')
    try:
        pairs = json.loads(history_json or "[]")
    except ValueError as error:
        raise InvalidParameter("history_json is not valid JSON",
                               hint='send "[]" for a new conversation') from error
    if not isinstance(pairs, list):
        raise InvalidParameter("history_json must be a JSON list of [question, answer] pairs",
                               hint='send "[]" for a new conversation')
    return pairs


def ask_request(settings: "Settings", image_path: str | None, question, history_json,
                temperature, top_p, max_new_tokens, more_files: list | None = None,
                straighten=False, grounded=None) -> "AnswerRequest":
    """An ``/ask`` call checked by the one answer path (files read, within the settings'
    limits). ``more_files``: the rest of a WFDB record (``.dat``/``.mat``)."""
    files = [f for f in [image_path, *(more_files or [])] if f]
    return prepare(settings, files, question, history=parse_history(history_json),
                   temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                   straighten=straighten, grounded=grounded)


def answer_so_far(backend: "Backend", request: "AnswerRequest") -> Iterator[str]:
    """The cumulative answer to a checked request (what ``/ask`` streams)."""
    text = ""
    stream = stream_request(backend, request)
    try:
        for chunk in stream:
            text += chunk
            yield text
    finally:
        stream.close()          # Gradio cancelled us (Stop / job.cancel()): stop generating


def model_info_json(backend: "Backend") -> str:
    """The ``/model_info`` endpoint without Gradio."""
    return json.dumps(dataclasses.asdict(backend.info()))


def add_model_api(get_backend: Callable[[], "Backend"], settings: "Settings") -> None:
    """Register ``/ask`` and ``/model_info`` in the current ``gr.Blocks`` (invisible components).

    ``get_backend`` is called per request, so the app may load its model lazily. Values reach
    the answer path as the client sent them; uploaded files are deleted once read.
    """
    @guarded
    def ask(image_path, question, history_json, temperature, top_p, max_new_tokens,
            more_files=None, straighten=False, grounded=None):
        try:
            request = ask_request(settings, image_path, question, history_json, temperature,
                                  top_p, max_new_tokens, more_files, straighten, grounded)
        finally:
            forget_uploads([image_path, *(more_files or [])])
        yield from answer_so_far(get_backend(), request)

    @guarded
    def model_info():
        return model_info_json(get_backend())

    with gr.Group(visible=False):
        image = gr.File(label="ECG image", type="filepath")
        question = RawTextbox(label="question")
        history = RawTextbox(label="history_json", value="[]")
        temperature = RawNumber(label="temperature", value=settings.temperature)
        top_p = RawNumber(label="top_p", value=settings.top_p)
        max_new_tokens = RawNumber(label="max_new_tokens", value=settings.max_new_tokens,
                                   precision=0)
        more_files = gr.File(label="more_files", file_count="multiple", type="filepath")
        straighten = gr.Checkbox(label="straighten", value=False)
        grounded = gr.Checkbox(label="grounded", value=settings.grounded)
        answer = gr.Textbox(label="answer")
        info = gr.Textbox(label="model_info")
        ask_button, info_button = gr.Button("ask"), gr.Button("model_info")
    ask_button.click(ask, [image, question, history, temperature, top_p, max_new_tokens,
                           more_files, straighten, grounded], answer,
                     api_name=ASK_API, concurrency_id=GPU_GROUP, show_progress="hidden")
    info_button.click(model_info, None, info, api_name=MODEL_INFO_API, concurrency_id=GPU_GROUP,
                      show_progress="hidden")
