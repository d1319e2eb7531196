"""The chat service: what the web app, the load test and scripts call to read an ECG with a model.

One object ties the pieces together: an upload goes through :mod:`pulse_app.intake` into the
:class:`~pulse_app.store.Store` (original and edited image), questions go to the model
:mod:`backend <pulse_app.engine>` with the session's finished turns as history, and every answer
is committed as soon as it is complete, so a crash loses at most the answer being written.

Streaming: :meth:`ChatService.ask` is a generator of text chunks. Stop it with the ``cancel``
event or by closing the generator (what Gradio does on Stop); the partial answer is then stored
with ``stopped=True``. A backend error (:class:`~pulse_app.errors.PulseError`) propagates and
stores nothing for that question; earlier turns are untouched.

>>> chat = ChatService(Settings.load())                                    # doctest: +SKIP
>>> session = chat.start_session("user:ana", "ecg.jpg")                    # doctest: +SKIP
>>> for chunk in chat.ask("user:ana", session.id, "What is the rhythm?"):  # doctest: +SKIP
...     print(chunk, end="")
"""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from PIL import Image

from pulse_app.conversation import Turn, clean_user_text
from pulse_app.errors import PulseError
from pulse_app.intake import edit_image, load_image, png_bytes
from pulse_app.settings import Settings
from pulse_app.store import SessionRecord, Store

if TYPE_CHECKING:
    from pulse_app.engine.backend import Backend, GenerationParams, ModelInfo

#: Generation settings a caller may pass in ``params`` (others are ignored).
PARAM_NAMES = ("temperature", "top_p", "max_new_tokens", "seed")


class SessionBusy(PulseError):
    """An answer is already being written for this session."""


class ChatService:
    """Sessions and streamed answers for many owners at once (thread-safe).

    ``store`` defaults to ``Store(settings.database_url)``; ``backend`` to the one
    ``settings.backend`` names, made on first use (so the app starts before the model loads).
    """

    def __init__(self, settings: Settings, store: Store | None = None,
                 backend: "Backend | None" = None,
                 progress: Callable[[str], None] | None = None):
        self.settings = settings
        self.store = store if store is not None else Store(settings.database_url)
        self._backend = backend
        self._progress = progress
        self._backend_lock = threading.Lock()
        self._busy: set[tuple[str, str]] = set()
        self._busy_lock = threading.Lock()

    # -- the model ---------------------------------------------------------------------------------

    @property
    def backend(self) -> "Backend":
        """The model backend, created on first use."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    from pulse_app.engine import make_backend

                    self._backend = make_backend(self.settings, progress=self._progress)
        return self._backend

    def model_info(self) -> "ModelInfo":
        """Which model answers (the UI shows its label before the first answer)."""
        return self.backend.info()

    def generation_params(self, params: dict | None = None) -> "GenerationParams":
        """The settings' generation defaults, overridden by the known keys of ``params``."""
        from pulse_app.engine.backend import GenerationParams

        values = {"temperature": self.settings.temperature, "top_p": self.settings.top_p,
                  "max_new_tokens": self.settings.max_new_tokens, "seed": None}
        values.update({k: v for k, v in (params or {}).items()
                       if k in PARAM_NAMES and v is not None})
        try:
            result = GenerationParams(temperature=float(values["temperature"]),
                                      top_p=float(values["top_p"]),
                                      max_new_tokens=int(values["max_new_tokens"]),
                                      seed=None if values["seed"] is None else int(values["seed"]))
        except (TypeError, ValueError) as error:
            raise PulseError("a generation setting is not a number",
                             hint="use numbers for temperature, top-p and max tokens") from error
        if result.temperature < 0 or not 0 < result.top_p <= 1 or result.max_new_tokens < 1:
            raise PulseError("generation settings out of range",
                             hint="temperature >= 0, 0 < top-p <= 1, max tokens >= 1")
        return result

    # -- sessions ----------------------------------------------------------------------------------

    def start_session(self, owner: str, upload: bytes | str | Path, *, filename: str | None = None,
                      page: int = 1, title: str | None = None,
                      extra_params: dict | None = None) -> SessionRecord:
        """Read the upload through intake and store it as a new session (original = edited);
        ``extra_params``: more JSON-able entries for its params (e.g. a teaching ECG's truth)."""
        if filename is None and isinstance(upload, (str, Path)):
            filename = Path(upload).name
        intake = load_image(upload, filename=filename, page=page,
                            max_pixels=self.settings.max_pixels,
                            max_bytes=int(self.settings.max_upload_mb * 1_000_000))
        png = png_bytes(intake.image)
        if not title:
            stem = Path(filename).stem if filename else "ECG"
            title = f"{stem} (page {intake.page} of {intake.pages})" if intake.pages > 1 else stem
            title = f"{title} · {datetime.now():%Y-%m-%d %H:%M}"
        model_id, revision = self._session_model()
        return self.store.create_session(
            owner, title=title, model_id=model_id, model_revision=revision,
            original_png=png, edited_png=png,
            params={"source": {"filename": filename, "format": intake.format,
                               "page": intake.page, "pages": intake.pages},
                    "generation": self.generation_params().as_dict(), **(extra_params or {})})

    def new_chat(self, owner: str, session_id: str, *, title: str | None = None) -> SessionRecord:
        """A fresh session on the same images (the 'new chat' button)."""
        old = self.store.get_session(owner, session_id)
        model_id, revision = self._session_model()
        return self.store.create_session(owner, title=title or old.title, model_id=model_id,
                                         model_revision=revision, original_png=old.original_png,
                                         edited_png=old.edited_png, params=old.params)

    def edit(self, owner: str, session_id: str, rotate90: int = 0, angle_deg: float = 0.0,
             crop: tuple[float, float, float, float] | None = None) -> Image.Image:
        """Rebuild the edited image from the original (rotate, then crop) and store it.

        All zeros / ``None`` = reset to the original. Returns the new edited image.
        """
        session = self.store.get_session(owner, session_id)
        original = Image.open(io.BytesIO(session.original_png)).convert("RGB")
        edited = edit_image(original, rotate90=rotate90, angle_deg=angle_deg, crop=crop)
        self.store.update_images(owner, session_id, edited_png=png_bytes(edited))
        params = dict(session.params)
        params["edit"] = {"rotate90": int(rotate90) % 4, "angle_deg": float(angle_deg),
                          "crop": list(crop) if crop else None}
        self.store.update_params(owner, session_id, params)
        return edited

    @staticmethod
    def image_of(session: SessionRecord, *, original: bool = False) -> Image.Image:
        """The session's edited (or original) image as a PIL RGB image."""
        data = session.original_png if original else session.edited_png
        return Image.open(io.BytesIO(data)).convert("RGB")

    # -- answers -----------------------------------------------------------------------------------

    def ask(self, owner: str, session_id: str, question: str, params: dict | None = None,
            cancel: threading.Event | None = None) -> Iterator[str]:
        """Stream the answer to ``question``; the turn is committed when the stream ends."""
        question = clean_user_text(question or "")
        if not question:
            raise PulseError("the question is empty", hint="type a question about the ECG")
        return self._answer(owner, session_id, question, params, cancel, regenerate=False)

    def regenerate(self, owner: str, session_id: str, params: dict | None = None,
                   cancel: threading.Event | None = None) -> Iterator[str]:
        """Stream a new answer to the last question; it replaces the last answer when done."""
        return self._answer(owner, session_id, None, params, cancel, regenerate=True)

    def _answer(self, owner, session_id, question, params, cancel, *, regenerate):
        session = self.store.get_session(owner, session_id)       # SessionNotFound at once
        turns = [Turn(t.question, t.answer) for t in session.turns]
        if regenerate:
            if not turns:
                raise PulseError("there is no answer to regenerate yet",
                                 hint="ask a question first")
            question, turns = turns[-1].question, turns[:-1]
        generation = self.generation_params(params)
        return self._stream(owner, session, turns, question, generation, cancel, regenerate)

    def _stream(self, owner, session, history, question, generation, cancel, regenerate):
        with self._one_answer_at_a_time(owner, session.id):
            backend = self.backend
            info = backend.info()
            image = self.image_of(session)
            parts: list[str] = []
            stream = backend.stream(image, history, question, generation, cancel)
            try:
                for chunk in stream:
                    parts.append(chunk)
                    yield chunk
            except GeneratorExit:                  # the caller closed us: the user pressed Stop
                stream.close()
                self._save(owner, session.id, question, parts, info, generation, True, regenerate)
                raise
            finally:
                stream.close()
            stopped = cancel is not None and cancel.is_set()
            self._save(owner, session.id, question, parts, info, generation, stopped, regenerate)

    def _save(self, owner, session_id, question, parts, info, generation, stopped, regenerate):
        answer = "".join(parts).strip()
        params = {**generation.as_dict(), "backend": info.backend,
                  "model_revision": info.revision}
        if regenerate:
            self.store.replace_last_turn(owner, session_id, answer=answer, model_id=info.model_id,
                                         model_label=info.label, params=params, stopped=stopped,
                                         model_revision=info.revision)
        else:
            self.store.add_turn(owner, session_id, question=question, answer=answer,
                                model_id=info.model_id, model_label=info.label, params=params,
                                stopped=stopped, model_revision=info.revision)

    @contextmanager
    def _one_answer_at_a_time(self, owner: str, session_id: str):
        key = (owner, session_id)
        with self._busy_lock:
            if key in self._busy:
                raise SessionBusy("an answer is still being written for this session",
                                  hint="wait for it to finish or press Stop")
            self._busy.add(key)
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy.discard(key)

    def _session_model(self) -> tuple[str | None, str | None]:
        """Model id + revision recorded on a new session (the backend's, once it exists)."""
        if self._backend is not None:
            info = self._backend.info()
            return info.model_id, info.revision
        return self.settings.model, self.settings.revision
