"""The openai backend: an OpenAI-compatible chat server with image input answers.

vLLM, SGLang and TGI serve LLaVA-NeXT models this way, and so does this app
(``python -m pulse_app serve-openai``): the path for hospitals that run PULSE on their own GPUs.
The ECG goes as a base64 PNG ``image_url`` part of the first user message, earlier turns as
messages, and the answer streams back (``stream=True``); closing the stream stops it.
(Named ``openai_compat`` so that it is never mistaken for the ``openai`` package.)

Caveat for PULSE-7B: its config says ``mm_patch_merge_type: flat``, but vLLM's LLaVA-NeXT
(``_merge_image_patch_embeddings(..., strategy="spatial_unpad")``) and stock transformers always
unpad and add newline tokens, a token layout PULSE was not trained on (answers degrade silently).
``serve-openai`` runs the app's own flat-aware model, so its answers match ``--backend local``.

>>> backend = OpenAIBackend("http://gpu-host:8000/v1", model="PULSE-ECG/PULSE-7B")  # doctest: +SKIP
>>> print("".join(backend.stream(image, [], "What is the rhythm?")))             # doctest: +SKIP
"""

from __future__ import annotations

import base64
import threading
from typing import TYPE_CHECKING, Iterator, Sequence

from pulse_app.conversation import Turn
from pulse_app.engine.backend import GenerationParams, ModelInfo
from pulse_app.errors import BackendUnreachable, PulseError
from pulse_app.settings import OFFLINE_DEFAULT_MODEL

if TYPE_CHECKING:
    from PIL.Image import Image

    from pulse_app.settings import Settings


def image_data_url(image: "Image") -> str:
    """The image as a ``data:image/png;base64,...`` URL (lossless: thin ECG traces survive)."""
    from pulse_app.intake import png_bytes

    return "data:image/png;base64," + base64.b64encode(png_bytes(image.convert("RGB"))).decode("ascii")


def chat_messages(image: "Image | None", history: Sequence[Turn], question: str) -> list[dict]:
    """OpenAI chat messages for a conversation; the image leads the first user message.

    >>> [m["role"] for m in chat_messages(None, [Turn("Rate?", "70 bpm.")], "Axis?")]
    ['user', 'assistant', 'user']
    """
    questions = [t.question for t in history] + [question]
    answers = [t.answer for t in history]
    messages = []
    for i, text in enumerate(questions):
        content: list[dict] = [{"type": "text", "text": text}]
        if i == 0 and image is not None:
            content.insert(0, {"type": "image_url", "image_url": {"url": image_data_url(image)}})
        messages.append({"role": "user", "content": content})
        if i < len(answers):
            messages.append({"role": "assistant", "content": answers[i]})
    return messages


class OpenAIBackend:
    """A model behind an OpenAI-compatible ``/v1`` URL. Without ``model``, the server's first."""

    name = "openai"

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0):
        self.base_url = base_url.rstrip("/")
        self.model, self.api_key, self.timeout_s = model, api_key, float(timeout_s)
        self._client = None
        self._info: ModelInfo | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: "Settings") -> "OpenAIBackend":
        if not settings.url:
            raise BackendUnreachable("the openai backend needs the server's base URL",
                                     hint="pass --url, e.g. http://gpu-host:8000/v1")
        model = None if settings.model == OFFLINE_DEFAULT_MODEL else settings.model
        return cls(settings.url, model, settings.api_key, settings.timeout_s)

    def client(self):
        with self._lock:
            if self._client is None:
                from openai import OpenAI

                # servers without keys (vLLM's default) accept any; the client requires one
                self._client = OpenAI(base_url=self.base_url, api_key=self.api_key or "none",
                                      timeout=self.timeout_s, max_retries=0)
            return self._client

    # -- errors --
    def _error(self, error: Exception) -> PulseError:
        """One actionable line for an exception of the openai package."""
        import openai

        url = self.base_url
        if isinstance(error, openai.APITimeoutError):
            return BackendUnreachable(f"{url} did not answer within {self.timeout_s:g} s",
                                      hint="the server may be busy; retry, or raise --timeout-s")
        if isinstance(error, openai.APIConnectionError):
            return BackendUnreachable(f"cannot connect to {url} (connection refused or no "
                                      "route)", hint="check the URL and that the server runs")
        if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return BackendUnreachable(f"{url} refused the API key (HTTP {error.status_code})",
                                      hint="set --api-key / PULSE_API_KEY to a valid key")
        if isinstance(error, openai.NotFoundError):
            if (getattr(error, "code", None) == "model_not_found"
                    or "does not exist" in _message(error)):
                return BackendUnreachable(f"{url} has no model {self.model!r}",
                                          hint="pass one of its models with --model "
                                               "(see GET /v1/models)")
            return BackendUnreachable(f"no OpenAI-compatible API at {url} (HTTP 404)",
                                      hint="the URL usually ends in /v1")
        if isinstance(error, openai.BadRequestError):
            return PulseError(f"{url} rejected the question: {_message(error)}")
        if isinstance(error, openai.APIStatusError):
            return BackendUnreachable(f"{url} failed (HTTP {error.status_code}: "
                                      f"{_message(error)})", hint="retry later, or check the "
                                                                  "server's logs")
        return BackendUnreachable(f"{url} failed: {error}")

    # -- the Backend interface --
    def info(self) -> ModelInfo:
        """The served model ("<model> via <url>"); checks that the server has it."""
        if self._info is None:
            import openai

            try:
                models = list(self.client().models.list())
            except openai.OpenAIError as error:
                raise self._error(error) from error
            by_id = {m.id: m for m in models}
            if self.model is None:
                if not models:
                    raise BackendUnreachable(f"{self.base_url} serves no model")
                self.model = models[0].id
            elif self.model not in by_id:
                raise BackendUnreachable(f"{self.base_url} has no model {self.model!r} (it "
                                         f"serves {', '.join(sorted(by_id)) or 'none'})",
                                         hint="pass one of those with --model")
            about = (getattr(by_id[self.model], "model_extra", None) or {}).get("pulse_app") or {}
            label = about.get("label") or self.model
            self._info = ModelInfo(model_id=self.model, revision=about.get("revision"),
                                   backend=self.name, label=f"{label} via {self.base_url}",
                                   trained=about.get("trained", True), note=about.get("note", ""))
        return self._info

    def stream(self, image: "Image", history: Sequence[Turn], question: str,
               params: GenerationParams = GenerationParams(),
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the answer as the server streams it; closing the stream closes the request."""
        import openai

        info = self.info()
        extra = {"seed": params.seed} if params.seed is not None else {}
        try:
            response = self.client().chat.completions.create(
                model=info.model_id, messages=chat_messages(image, history, question),
                stream=True, temperature=params.temperature, top_p=params.top_p,
                max_tokens=params.max_new_tokens, **extra)
        except openai.OpenAIError as error:
            raise self._error(error) from error
        try:
            for chunk in response:
                if cancel is not None and cancel.is_set():
                    return
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        yield choice.delta.content
        except openai.OpenAIError as error:
            raise self._error(error) from error
        finally:
            response.close()

    def complete(self, prompt: str, params: GenerationParams = GenerationParams(), *,
                 json_object: bool = False, image: "Image | None" = None) -> str:
        """One question, answered in one piece (not streamed): e.g. an LLM judge. Text only,
        unless ``image`` is given (a server that answers only about an ECG, such as this app's
        ``serve-openai``, refuses a request without one).

        ``json_object`` asks for OpenAI's JSON mode (``response_format``); servers that do not
        know it (this app's ``serve-openai``) ignore it, so callers still parse defensively.
        """
        import openai

        info = self.info()
        extra = {"seed": params.seed} if params.seed is not None else {}
        if json_object:
            extra["response_format"] = {"type": "json_object"}
        try:
            response = self.client().chat.completions.create(
                model=info.model_id, messages=chat_messages(image, [], prompt),
                temperature=params.temperature, top_p=params.top_p,
                max_tokens=params.max_new_tokens, **extra)
        except openai.OpenAIError as error:
            raise self._error(error) from error
        return response.choices[0].message.content or ""


def _message(error: Exception) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:200]
    return str(getattr(error, "message", error))[:200]
