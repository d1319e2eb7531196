"""The app's model API: two named Gradio endpoints other copies of the app call (``space`` backend).

``add_model_api(get_backend)`` is called inside the app's ``gr.Blocks``; it registers

- ``/ask``: (image file, question, history_json ``[[user, assistant], ...]``, temperature, top_p,
  max_new_tokens) -> the answer so far, streamed (each update is the whole text up to now);
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

from pulse_app.conversation import Turn
from pulse_app.engine.backend import GenerationParams
from pulse_app.errors import PulseError

if TYPE_CHECKING:
    from pulse_app.engine.backend import Backend

ASK_API = "ask"
MODEL_INFO_API = "model_info"
#: The concurrency group of every GPU job: one answer at a time per model (app setting).
GPU_GROUP = "gpu"


def parse_history(history_json: str) -> list[Turn]:
    """``[[user, assistant], ...]`` (JSON) as finished turns; an error message for anything else.

    >>> parse_history('[["Rate?", "70 bpm."]]')
    [Turn(question='Rate?', answer='70 bpm.')]
    """
    try:
        pairs = json.loads(history_json or "[]")
        if not isinstance(pairs, list) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2
                and all(isinstance(s, str) for s in p) for p in pairs):
            raise ValueError
    except ValueError as error:
        raise PulseError("history_json must be a JSON list of [question, answer] string pairs",
                         hint='send "[]" for a new conversation') from error
    return [Turn(q, a) for q, a in pairs]


def ask_stream(backend: "Backend", image_path: str | None, question: str, history_json: str,
               temperature: float, top_p: float, max_new_tokens: int) -> Iterator[str]:
    """The ``/ask`` endpoint without Gradio: validates, then yields the cumulative answer."""
    from pulse_app.intake import load_image

    if not image_path:
        raise PulseError("no image was sent", hint="send the ECG image file as the first input")
    if not (question or "").strip():
        raise PulseError("the question is empty", hint="type a question about the ECG")
    history = parse_history(history_json)
    try:
        params = GenerationParams(temperature=max(0.0, float(temperature)),
                                  top_p=float(top_p), max_new_tokens=max(1, int(max_new_tokens)))
    except (TypeError, ValueError) as error:
        raise PulseError("temperature, top_p and max_new_tokens must be numbers") from error
    image = load_image(image_path).image
    text = ""
    stream = backend.stream(image, history, question.strip(), params)
    try:
        for chunk in stream:
            text += chunk
            yield text
    finally:
        stream.close()          # Gradio cancelled us (Stop / job.cancel()): stop generating


def model_info_json(backend: "Backend") -> str:
    """The ``/model_info`` endpoint without Gradio."""
    return json.dumps(dataclasses.asdict(backend.info()))


def add_model_api(get_backend: Callable[[], "Backend"]) -> None:
    """Register ``/ask`` and ``/model_info`` in the current ``gr.Blocks`` (invisible components).

    ``get_backend`` is called per request, so the app may load its model lazily.
    """

    def ask(image_path, question, history_json, temperature, top_p, max_new_tokens):
        try:
            yield from ask_stream(get_backend(), image_path, question, history_json,
                                  temperature, top_p, max_new_tokens)
        except PulseError as error:
            raise gr.Error(str(error)) from error

    def model_info():
        try:
            return model_info_json(get_backend())
        except PulseError as error:
            raise gr.Error(str(error)) from error

    with gr.Group(visible=False):
        image = gr.File(label="ECG image", type="filepath")
        question = gr.Textbox(label="question")
        history = gr.Textbox(label="history_json", value="[]")
        temperature = gr.Number(label="temperature", value=GenerationParams.temperature)
        top_p = gr.Number(label="top_p", value=GenerationParams.top_p)
        max_new_tokens = gr.Number(label="max_new_tokens", value=GenerationParams.max_new_tokens,
                                   precision=0)
        answer = gr.Textbox(label="answer")
        info = gr.Textbox(label="model_info")
        ask_button, info_button = gr.Button("ask"), gr.Button("model_info")
    ask_button.click(ask, [image, question, history, temperature, top_p, max_new_tokens], answer,
                     api_name=ASK_API, concurrency_id=GPU_GROUP, show_progress="hidden")
    info_button.click(model_info, None, info, api_name=MODEL_INFO_API, concurrency_id=GPU_GROUP,
                      show_progress="hidden")
