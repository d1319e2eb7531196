"""The one path from a question about an ECG to a model's answer.

Every entry point checks a request here, in the same order, with the same limits and the same
messages: the generation parameters (:meth:`Settings.generation_params`), the question, the
earlier turns, then the upload (:func:`pulse_app.intake.load_upload`, the most expensive check
last). :func:`stream_answer` is the only call into a backend: the web app's stored sessions
(:class:`pulse_app.chat.ChatService`), the ``/ask`` endpoint, ``serve-openai`` and the CLI's
``ask`` all go through it.

>>> from pulse_app.settings import Settings
>>> check_question("  What is the rhythm? ")
'What is the rhythm?'
>>> check_question("")
Traceback (most recent call last):
...
pulse_app.errors.InvalidParameter: the question is empty. type a question about the ECG
>>> request = prepare(Settings.load(), ["ecg.png"], "Rate?", temperature=0)  # doctest: +SKIP
>>> for chunk in stream_answer(backend, request):                            # doctest: +SKIP
...     print(chunk, end="")
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pulse_app.conversation import Turn, clean_user_text
from pulse_app.errors import InvalidParameter
from pulse_app.consistency import check_answer
from pulse_app.grounding import grounded_label, grounded_question, read_image, summary_context
from pulse_app.intake import Limits, Upload, UploadFile, load_upload

if TYPE_CHECKING:
    from PIL.Image import Image

    from pulse_app.consistency import Contradiction
    from pulse_app.engine.backend import Backend, GenerationParams
    from pulse_app.settings import Settings
    from pulse_app.straighten import Proposal

#: Longest question accepted, in characters (a long clinical question is a few hundred).
MAX_QUESTION_CHARS = 8000
#: Most earlier turns sent with a one-shot question.
MAX_HISTORY_TURNS = 64


def check_text(value, what: str, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """``value`` when it is text a visitor may send: a string (not a list or a number), no NUL
    character (PostgreSQL refuses them, and no typed text has one), at most ``max_chars``.

    >>> check_text(["Rate?"], "title")
    Traceback (most recent call last):
    ...
    pulse_app.errors.InvalidParameter: the title must be text (got list). send the title as a string
    """
    if not isinstance(value, str):
        raise InvalidParameter(f"the {what} must be text (got {type(value).__name__})",
                               hint=f"send the {what} as a string")
    if "\x00" in value:
        raise InvalidParameter(f"the {what} contains a NUL character",
                               hint=f"send the {what} as plain text")
    if len(value) > max_chars:
        raise InvalidParameter(f"the {what} is {len(value):,} characters long, more than the "
                               f"{max_chars:,} allowed", hint=f"shorten the {what}")
    return value


def check_question(question) -> str:
    """A question as the model gets it; empty or malformed questions are refused."""
    text = clean_user_text(check_text(question, "question"))
    if not text:
        raise InvalidParameter("the question is empty", hint="type a question about the ECG")
    return text


def check_flag(value, what: str) -> bool:
    """``value`` when it is a yes/no flag (``true``/``false``, not ``"yes"`` or 1).

    >>> check_flag("yes", "straighten")
    Traceback (most recent call last):
    ...
    pulse_app.errors.InvalidParameter: straighten must be true or false (got str). send true or false
    """
    if not isinstance(value, bool):
        raise InvalidParameter(f"{what} must be true or false (got {type(value).__name__})",
                               hint="send true or false")
    return value


def check_history(history: Iterable) -> list[Turn]:
    """Earlier (question, answer) pairs as turns; each must be two strings."""
    turns = []
    for pair in history or ():
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise InvalidParameter("each earlier turn must be a [question, answer] pair",
                                   hint="send [] for a new conversation")
        turns.append(Turn(clean_user_text(check_text(pair[0], "earlier question")),
                          clean_user_text(check_text(pair[1], "earlier answer",
                                                     4 * MAX_QUESTION_CHARS))))
    if len(turns) > MAX_HISTORY_TURNS:
        raise InvalidParameter(f"{len(turns)} earlier turns are more than the "
                               f"{MAX_HISTORY_TURNS} allowed",
                               hint="start a new conversation")
    return turns


@dataclass(frozen=True)
class AnswerRequest:
    """A checked one-shot request: everything a backend needs, nothing unchecked."""

    upload: Upload
    question: str
    history: tuple[Turn, ...]
    params: "GenerationParams"
    #: the straightening proposal, when the request asked for it (its picture is the upload's)
    straightening: "Proposal | None" = None
    #: grounded: the digitiser's reading summary of the image and the context made of it
    reading: dict | None = None
    context: str | None = None

    @property
    def grounded(self) -> bool:
        return self.context is not None

    @property
    def image(self) -> "Image":
        return self.upload.image

    def label(self, model_label: str) -> str:
        """The answer's label: the model's, marked when it was given the measurements."""
        return grounded_label(model_label) if self.grounded else model_label

    def contradictions(self, answer: str) -> list["Contradiction"]:
        """What of a grounded ``answer`` contradicts the measurements it was given
        (:func:`pulse_app.consistency.check_answer`); nothing for a plain request, whose
        picture was not read."""
        if not self.grounded:
            return []
        return check_answer(answer, (self.reading or {}).get("measurements"))


def prepare(settings: "Settings", files: UploadFile | Sequence[UploadFile] | None, question,
            *, history: Iterable = (), page: int = 1, straighten: bool = False,
            grounded: bool | None = None, **params) -> AnswerRequest:
    """Check a one-shot request in the order every entry point shares: parameters, question,
    earlier turns, then the upload within the settings' limits. ``straighten``: the picture
    is straightened as :func:`pulse_app.straighten.straightened` proposes (left as it is when
    nothing was found or it is already straight). ``grounded`` (default ``settings.grounded``):
    the (straightened) image is then read by the digitiser and the request carries its
    measurements as context (:mod:`pulse_app.grounding`)."""
    generation = settings.generation_params(**params)
    text = check_question(question)
    turns = check_history(history)
    straighten = check_flag(straighten, "straighten")
    grounded = settings.grounded if grounded is None else check_flag(grounded, "grounded")
    if not files:
        raise InvalidParameter("no ECG was sent", hint="send the ECG image, PDF or record "
                               "with the question")
    upload = load_upload(files, Limits.from_settings(settings), page=page)
    proposal = None
    if straighten:
        from pulse_app.straighten import straightened   # numpy + OpenCV: only when asked

        image, proposal = straightened(upload.image)
        upload = replace(upload, image=image)
    if not grounded:
        return AnswerRequest(upload=upload, question=text, history=tuple(turns),
                             params=generation, straightening=proposal)
    _, summary = read_image(upload.image)
    return AnswerRequest(upload=upload, question=text, history=tuple(turns), params=generation,
                         straightening=proposal, reading=summary,
                         context=summary_context(summary))


def stream_answer(backend: "Backend", image: "Image", history: Sequence[Turn], question: str,
                  params: "GenerationParams", cancel: threading.Event | None = None, *,
                  context: str | None = None) -> Iterator[str]:
    """The model's answer as text chunks: the only call into a backend.

    ``context`` (a grounded answer: :func:`pulse_app.grounding.measurement_context`) goes
    before the question, marked as the digitiser's; the earlier turns are sent as they were.

    The generator's return value is why the answer ended (``"length"`` or ``"stop"``). Closing
    the generator (Stop) closes the backend's stream, which frees the device within a token.
    """
    stream = backend.stream(image, list(history), grounded_question(question, context), params,
                            cancel)
    try:
        reason = yield from stream
    finally:
        stream.close()
    return reason or "stop"


def stream_request(backend: "Backend", request: AnswerRequest,
                   cancel: threading.Event | None = None) -> Iterator[str]:
    """:func:`stream_answer` for a prepared one-shot request (grounded when it carries a
    context)."""
    return stream_answer(backend, request.image, request.history, request.question,
                         request.params, cancel, context=request.context)
