"""The one interface every model backend implements.

A backend turns (image, finished turns, new question, generation settings) into a stream of text
chunks. The stream is cancellable two ways: set the ``cancel`` event, or close the iterator
(``gen.close()``, what Gradio does when a visitor presses Stop); either ends generation within
about one token and frees the device.

>>> GenerationParams(temperature=0).greedy
True
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence, runtime_checkable

from pulse_app.conversation import Turn

if TYPE_CHECKING:  # PIL is light, but keep this module free of imports at run time
    from PIL.Image import Image


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings. Defaults follow the PULSE demo (its evaluation: temperature 0, 1024)."""

    temperature: float = 0.2
    top_p: float = 0.7
    max_new_tokens: int = 512
    seed: int | None = None

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
