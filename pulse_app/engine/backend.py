"""The one interface every model backend implements.

A backend turns (image, finished turns, new question, generation settings) into a stream of text
chunks. The stream is cancellable two ways: set the ``cancel`` event, or close the iterator
(``gen.close()``, what Gradio does when a visitor presses Stop); either ends generation within
about one token and frees the device.

>>> GenerationParams(temperature=0).greedy
True
>>> GenerationParams(top_p=2.0)
Traceback (most recent call last):
...
pulse_app.errors.InvalidParameter: top_p must be a number above 0 and at most 1 (got 2). 1 keeps every word; 0.7 is the PULSE demo's value
"""

from __future__ import annotations

import math
import numbers
import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence, runtime_checkable

from pulse_app.conversation import Turn
from pulse_app.errors import InvalidParameter
from pulse_app.settings import FIELDS

#: Ranges every entry point enforces (OpenAI's temperature range; 8192 tokens is longer than any
#: report and twice PULSE-7B's 4096-token context).
MAX_TEMPERATURE = 2.0
MAX_NEW_TOKENS = 8192
MAX_SEED = 2**32 - 1


def _number(name: str, value, hint: str) -> float:
    """``value`` as a finite float; bools, strings, NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidParameter(f"{name} must be a number (got {value!r})", hint=hint)
    return float(value)


def _integer(name: str, value, low: int, high: int, hint: str) -> int:
    number = _number(name, value, hint)
    if number != int(number) or not low <= number <= high:
        raise InvalidParameter(f"{name} must be a whole number from {low} to {high} "
                               f"(got {number:g})", hint=hint)
    return int(number)

if TYPE_CHECKING:  # PIL is light, but keep this module free of imports at run time
    from PIL.Image import Image


@dataclass(frozen=True)
class GenerationParams:
    """Checked decoding settings; an out-of-range value raises :class:`InvalidParameter` when the
    object is made, so no backend ever sees one. Defaults are the settings' defaults (the PULSE
    demo's; its evaluation used temperature 0 and 1024 tokens). Build request parameters with
    :meth:`pulse_app.settings.Settings.generation_params`."""

    temperature: float = FIELDS["temperature"].default
    top_p: float = FIELDS["top_p"].default
    max_new_tokens: int = FIELDS["max_new_tokens"].default
    seed: int | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        temperature = _number("temperature", self.temperature, "0 = always the likeliest words")
        if not 0 <= temperature <= MAX_TEMPERATURE:
            raise InvalidParameter(f"temperature must be from 0 to {MAX_TEMPERATURE:g} "
                                   f"(got {temperature:g})",
                                   hint="0 = always the likeliest words; 0.2 is the PULSE demo's")
        top_p = _number("top_p", self.top_p, "1 keeps every word")
        if not 0 < top_p <= 1:
            raise InvalidParameter(f"top_p must be a number above 0 and at most 1 "
                                   f"(got {top_p:g})",
                                   hint="1 keeps every word; 0.7 is the PULSE demo's value")
        set_(self, "temperature", temperature)
        set_(self, "top_p", top_p)
        set_(self, "max_new_tokens", _integer("max_new_tokens", self.max_new_tokens, 1,
                                              MAX_NEW_TOKENS, "about 512 tokens fit a report"))
        if self.seed is not None:
            set_(self, "seed", _integer("seed", self.seed, 0, MAX_SEED, "any whole number"))

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelInfo:
    """What produced an answer: shown next to every answer and stored with every session."""

    model_id: str              # hub id or folder the user asked for
    revision: str | None       # hub commit / folder fingerprint, when known
    backend: str               # "local", "space", "openai"
    label: str                 # short human text, e.g. "PULSE-7B (local, cuda bf16)"
    trained: bool = True       # False for the untrained tiny model: the UI says so loudly
    note: str = ""             # e.g. "demonstration model, not for clinical use"


@runtime_checkable
class Backend(Protocol):
    """A place a PULSE-style model answers questions about an ECG image."""

    name: str

    def info(self) -> ModelInfo:
        """Which model answers (may load or contact the model to find out)."""
        ...

    def stream(self, image: "Image", history: Sequence[Turn], question: str,
               params: GenerationParams = GenerationParams(),
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the answer to ``question`` as text chunks, as soon as they are generated."""
        ...


def stream_with_reason(chunks: Iterator[str], reasons: list) -> Iterator[str]:
    """Pass ``chunks`` through and append why they ended to ``reasons``: ``"length"`` (cut at
    ``max_new_tokens``) or ``"stop"``, from the backend's generator return value when it gives
    one (the local backend does), else ``"stop"``.

    >>> def answer():
    ...     yield "Sinus"
    ...     return "length"
    >>> reasons = []
    >>> "".join(stream_with_reason(answer(), reasons)), reasons
    ('Sinus', ['length'])
    """
    reason = yield from chunks
    reasons.append(reason or "stop")


def answer(backend: Backend, image: "Image", history: Sequence[Turn], question: str,
           params: GenerationParams = GenerationParams()) -> str:
    """The whole answer as one string (for scripts and evaluation)."""
    return "".join(backend.stream(image, history, question, params))
