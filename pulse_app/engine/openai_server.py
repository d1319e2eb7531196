"""An OpenAI-compatible HTTP server in front of any backend: FastAPI + uvicorn (both ship with
Gradio; vLLM's OpenAI server is built the same way).

    python -m pulse_app serve-openai --model PULSE-ECG/PULSE-7B --port 8000 [--server-api-key KEY]

Speaks the subset of the OpenAI API that chat clients with images use:

- ``GET /v1/models`` and ``GET /v1/models/{id}``: the one served model (plus ``pulse_app``:
  label, trained, note);
- ``POST /v1/chat/completions``: ``messages`` with the ECG in a user message, as a
  ``data:image/...;base64`` ``image_url`` part or as ``file`` parts (``{"file": {"filename",
  "file_data"}}``: a PDF, a DICOM ``.dcm``, or a WFDB ``.hea`` with its ``.dat``/``.mat``),
  ``stream`` (server-sent events, ``data: [DONE]`` at the end), ``temperature``, ``top_p``,
  ``max_tokens`` / ``max_completion_tokens``, ``seed``, and this server's extensions
  ``straighten`` (straighten a photographed page first,
  :func:`pulse_app.straighten.straightened`) and ``grounded`` (give the model the digitiser's
  measurements as marked context; default: the server's ``grounded`` setting). Each reply (the
  last chunk of a stream) carries ``pulse`` (:class:`PulseFields`): the model's label as the app
  shows it ("· grounded on the digitiser's measurements" when grounded), the context given, and
  the consistency check's contradictions of the measurements.

Every request body is read within :data:`BODY_TIMEOUT_S` and :data:`MAX_REQUEST_BYTES`, its
types validated by the pydantic models below (:class:`ChatCompletionRequest`), then checked by
:func:`pulse_app.answer.prepare` with the settings' limits, like every entry point's: a missing
ECG, an out-of-range or NaN number and an over-limit image are 400s with the same words as in the
web app. Headers must arrive within :data:`HEADER_TIMEOUT_S`; at most :data:`MAX_CONNECTIONS`
connections are served at once (503 beyond). A client that goes away stops its answer within a
token. Remote image URLs are never fetched. Errors use OpenAI's JSON shape (401 bad key, 404
unknown model or path, 400 bad request, 500 with a reference that is in the server's log) so
OpenAI clients raise their usual exceptions.

:func:`build_openai_app` gives the FastAPI app (to mount or deploy elsewhere, e.g. behind Ray
Serve); :func:`make_server` a ready uvicorn server on a bound socket.

>>> app = build_openai_app(backend, Settings.load())                      # doctest: +SKIP
>>> server = make_server(backend, Settings.load(), 8000)                  # doctest: +SKIP
>>> server.serve_forever()                                                # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import json
import logging
import secrets
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any, AsyncIterator, Callable, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from pulse_app.answer import AnswerRequest, prepare, stream_request
from pulse_app.engine.backend import stream_with_reason
from pulse_app.errors import ImageRejected, InvalidParameter, PulseError, ServerBusy

if TYPE_CHECKING:
    from pulse_app.engine.backend import Backend
    from pulse_app.settings import Settings

log = logging.getLogger(__name__)
#: A base64 50 MB image, plus the conversation.
MAX_REQUEST_BYTES = 80_000_000
#: Seconds a client has to send a request's headers, then its body.
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 60.0
#: Connections served at once (uvicorn answers 503 beyond).
MAX_CONNECTIONS = 64
#: How often a running answer checks that its client is still there.
DISCONNECT_POLL_S = 0.25


# -- request models ---------------------------------------------------------------------------------

class _Strict(BaseModel):
    """Types as sent (no "0.5" -> 0.5); fields this server does not use are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL | str


class FileData(_Strict):
    filename: str | None = None
    file_data: str


class FilePart(_Strict):
    type: Literal["file"]
    file: FileData


ContentPart = Annotated[TextPart | ImagePart | FilePart, Field(discriminator="type")]


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ChatCompletionRequest(_Strict):
    """A ``POST /v1/chat/completions`` body. Types are checked here; ranges (temperature, top_p,
    max tokens, seed) by :meth:`pulse_app.settings.Settings.generation_params`, like everywhere."""

    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stream: bool = False
    n: int = 1
    #: this server's extension: straighten a photographed page first (OpenAI clients send it
    #: with ``extra_body={"straighten": True}``)
    straighten: bool = False
    #: this server's extension: a grounded answer (``extra_body={"grounded": True}``); None =
    #: the server's ``grounded`` setting
    grounded: bool | None = None


# -- response models --------------------------------------------------------------------------------

class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "pulse-app"
    pulse_app: dict


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    finish_reason: str
    logprobs: None = None
    message: AssistantMessage


class PulseFields(BaseModel):
    """This server's extension of a reply (clients of the OpenAI format ignore unknown fields):
    which model answered, as the app labels it (grounded answers say so), the digitiser's
    context the model was given, and what of the answer contradicts the measurements."""

    label: str
    grounded: bool
    context: str | None = None
    consistency: list[dict] = []


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    pulse: PulseFields | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: dict
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    pulse: PulseFields | None = None            # on the last chunk only
    choices: list[ChunkChoice]


# -- errors -----------------------------------------------------------------------------------------

class RequestError(Exception):
    """An OpenAI-style error response: HTTP status, message, type and code."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code

    def body(self) -> dict:
        return ErrorResponse(error=ErrorBody(message=self.message, type=self.kind,
                                             code=self.code)).model_dump()

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def _from_pulse_error(error: PulseError) -> RequestError:
    if isinstance(error, ServerBusy):
        return RequestError(503, str(error), "server_error", "busy")
    code = {ImageRejected: "image_rejected", InvalidParameter: "invalid_parameter"}.get(
        type(error), type(error).__name__)
    return RequestError(400, str(error), code=code)


def _validation_message(error: ValidationError) -> str:
    """The first problems of a request body, one line (``messages.0.role: Input should be...``)."""
    parts = []
    for problem in error.errors()[:3]:
        where = ".".join(str(x) for x in problem["loc"]) or "body"
        parts.append(f"{where}: {problem['msg']}")
    return "invalid request: " + "; ".join(parts)


# -- messages -> a checked request of the one answer path ---------------------------------------

def _base64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as e:
        raise RequestError(400, f"the {what} is not valid base64") from e


def decode_image_url(url: str) -> tuple[str, bytes]:
    """A ``data:image/...;base64,...`` URL as (name, bytes); remote URLs are refused."""
    if not url.startswith("data:") or ";base64," not in url[:100]:
        raise RequestError(400, "only data: URLs with base64 images are accepted (this server "
                                "never fetches remote URLs)")
    return "the image", _base64(url.split(",", 1)[1], "image data URL")


def decode_file_part(part: FilePart) -> tuple[str, bytes]:
    """An OpenAI ``file`` content part (``{"filename", "file_data"}``) as (name, bytes)."""
    name, data = part.file.filename or "the file", part.file.file_data
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    return name, _base64(data, f"file {name}")


def _text_of(content) -> tuple[str, list[tuple[str, bytes]]]:
    """A message's text and its files (content is a string or a list of parts)."""
    if content is None or isinstance(content, str):
        return content or "", []
    texts, files = [], []
    for part in content:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ImagePart):
            url = part.image_url
            files.append(decode_image_url(url.url if isinstance(url, ImageURL) else url))
        else:
            files.append(decode_file_part(part))
    return "\n".join(t for t in texts if t), files


def parse_messages(messages: list[Message]
                   ) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]], str]:
    """OpenAI ``messages`` -> (the ECG's files, earlier [question, answer] pairs, question).

    System messages are ignored: the model's own template supplies its system sentence.
    Turns must alternate user/assistant and end with a user message; the ECG comes in one
    user message (one image, or the files of one record).
    """
    dialogue, files, carriers = [], [], 0
    for message in messages:
        if message.role in ("system", "developer"):
            continue
        text, attached = _text_of(message.content)
        if attached and message.role != "user":
            raise RequestError(400, "images are only accepted in user messages")
        if attached:
            carriers += 1
            files += attached
        dialogue.append((message.role, text))
    images = [name for name, _ in files if name == "the image"]
    if carriers > 1 or len(images) > 1:
        raise RequestError(400, "send one ECG per conversation")
    roles = [role for role, _ in dialogue]
    if not roles or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
        raise RequestError(400, "messages must alternate user/assistant and end with a user "
                                "message")
    pairs = [(dialogue[i][1], dialogue[i + 1][1]) for i in range(0, len(dialogue) - 1, 2)]
    return files, pairs, dialogue[-1][1]


def checked_request(settings: "Settings", body: ChatCompletionRequest) -> AnswerRequest:
    """A chat-completions body as a checked request of the one answer path."""
    files, pairs, question = parse_messages(body.messages)
    max_tokens = body.max_completion_tokens
    if max_tokens is None:
        max_tokens = body.max_tokens
    return prepare(settings, files, question, history=pairs, temperature=body.temperature,
                   top_p=body.top_p, max_new_tokens=max_tokens, seed=body.seed,
                   straighten=body.straighten, grounded=body.grounded)


def pulse_fields(label: str, checked: AnswerRequest, text: str) -> PulseFields:
    """The reply's :class:`PulseFields`: a grounded answer is labelled and checked against the
    measurements it was given (:meth:`pulse_app.answer.AnswerRequest.contradictions`)."""
    return PulseFields(label=checked.label(label), grounded=checked.grounded,
                       context=checked.context,
                       consistency=[c.to_dict() for c in checked.contradictions(text)])


# -- the app ----------------------------------------------------------------------------------------

async def read_body(request: Request, max_bytes: int = MAX_REQUEST_BYTES,
                    timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The request body, within ``max_bytes`` (413) and ``timeout_s`` (408)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"request too large ({int(declared):,} bytes; at most "
                                f"{max_bytes:,})")
    parts, size = [], 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise RequestError(413, f"request too large (more than {max_bytes:,} bytes)")
                parts.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {timeout_s:g} s"
                           ) from None
    return b"".join(parts)


async def _stop_when_gone(request: Request, cancel: threading.Event) -> None:
    """Set ``cancel`` when the client disconnects (the backend stops within a token)."""
    while not cancel.is_set():
        if await request.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(DISCONNECT_POLL_S)


def build_openai_app(backend: "Backend", settings: "Settings", *,
                     model_name: str | None = None,
                     body_timeout_s: float = BODY_TIMEOUT_S) -> FastAPI:
    """The FastAPI app of the OpenAI-compatible API: ``backend`` answers as ``model_name``
    (default: its model id); requests are checked with ``settings``' limits and defaults, the
    key is ``settings.server_api_key``."""
    info = backend.info()
    name, label = model_name or info.model_id, info.label
    started = int(time.time())
    key = (f"Bearer {settings.server_api_key}".encode("utf-8")
           if settings.server_api_key else None)
    app = FastAPI(title="PULSE OpenAI-compatible API", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.model_name, app.state.backend = name, backend

    def check_key(request: Request) -> None:
        sent = request.headers.get("authorization", "").encode("latin-1")   # bytes as sent
        if key and not hmac.compare_digest(sent, key):
            raise RequestError(401, "invalid API key", code="invalid_api_key")

    def card() -> ModelCard:
        return ModelCard(id=name, created=started,
                         pulse_app=dataclasses.asdict(backend.info()))

    def require_model(requested: str) -> None:
        if requested != name:
            raise RequestError(404, f"The model `{requested}` does not exist (this server "
                                    f"serves `{name}`)", code="model_not_found")

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError):
        return error.response()

    @app.exception_handler(PulseError)
    async def pulse_error(request: Request, error: PulseError):
        return _from_pulse_error(error).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        try:
            check_key(request)
        except RequestError as refused:
            return refused.response()
        if error.status_code == 404:
            return RequestError(404, f"no such endpoint: {request.url.path}",
                                code="not_found").response()
        return RequestError(error.status_code, str(error.detail)).response()

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        reference = secrets.token_hex(4)
        log.error("internal error %s answering %s", reference, request.url.path,
                  exc_info=error)
        return RequestError(500, f"internal server error (reference {reference})",
                            "server_error").response()

    @app.get("/v1/models")
    async def list_models(request: Request):
        check_key(request)
        return ModelList(data=[card()]).model_dump()

    @app.get("/v1/models/{model_id:path}")
    async def one_model(model_id: str, request: Request):
        check_key(request)
        require_model(model_id)
        return card().model_dump()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        try:
            body = ChatCompletionRequest.model_validate_json(
                await read_body(request, timeout_s=body_timeout_s) or b"{}")
        except ValidationError as error:
            raise RequestError(400, _validation_message(error)) from None
        require_model(body.model)
        if body.n != 1:
            raise RequestError(400, "only n=1 is supported")
        checked = await anyio.to_thread.run_sync(checked_request, settings, body)
        cancel = threading.Event()
        watcher = asyncio.create_task(_stop_when_gone(request, cancel))
        reasons: list[str] = []             # "length" or "stop", once the answer has ended
        chunks = stream_with_reason(stream_request(backend, checked, cancel), reasons)
        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.stream:
            try:
                text = await anyio.to_thread.run_sync("".join, chunks)
            finally:
                cancel.set()
                watcher.cancel()
                chunks.close()
            return ChatCompletion(id=reply_id, created=created, model=name, choices=[
                Choice(finish_reason=reasons[0] if reasons else "stop",
                       message=AssistantMessage(content=text))],
                pulse=pulse_fields(label, checked, text)).model_dump()
        try:        # errors before the first token are still HTTP errors
            first = await anyio.to_thread.run_sync(next, chunks, None)
        except BaseException:
            cancel.set()
            watcher.cancel()
            chunks.close()
            raise
        return StreamingResponse(
            _events(chunks, first, reasons, cancel, watcher, reply_id, created, name,
                    lambda text: pulse_fields(label, checked, text)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "Connection": "close"})

    return app


def _event(reply_id: str, created: int, model: str, delta: dict,
           finish: str | None = None, pulse: PulseFields | None = None) -> bytes:
    chunk = ChatCompletionChunk(id=reply_id, created=created, model=model, pulse=pulse,
                                choices=[ChunkChoice(delta=delta, finish_reason=finish)])
    return f"data: {json.dumps(chunk.model_dump())}\n\n".encode()


async def _events(chunks, first: str | None, reasons: list, cancel: threading.Event,
                  watcher: asyncio.Task, reply_id: str, created: int, model: str,
                  fields: Callable[[str], PulseFields]) -> AsyncIterator[bytes]:
    """The answer as server-sent events, the last one with ``fields`` of the whole text; a
    vanished client stops the generation."""
    try:
        yield _event(reply_id, created, model, {"role": "assistant", "content": ""})
        text, parts = first, []
        while text is not None:
            parts.append(text)
            yield _event(reply_id, created, model, {"content": text})
            try:
                text = await anyio.to_thread.run_sync(next, chunks, None)
            except PulseError as error:     # mid-answer: the stream's own error event
                body = RequestError(500, str(error), "server_error").body()
                yield f"data: {json.dumps(body)}\n\n".encode()
                return
        yield _event(reply_id, created, model, {}, reasons[0] if reasons else "stop",
                     fields("".join(parts)))
        yield b"data: [DONE]\n\n"
    finally:
        cancel.set()
        watcher.cancel()
        chunks.close()


# -- the server ------------------------------------------------------------------------------------

class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request's headers (a connection that
    opens and sends nothing, or half a request line, is closed after :data:`HEADER_TIMEOUT_S`;
    uvicorn itself only times out idle keep-alive connections)."""

    header_timeout_s = HEADER_TIMEOUT_S
    _header_timer: Any = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()                  # a request's headers are in

    def on_response_complete(self) -> None:
        self._arm()                         # the next request's headers, if any
        super().on_response_complete()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class OpenAIServer:
    """A uvicorn server for :func:`build_openai_app` on an already bound socket (so port 0
    gives its port at once): ``serve_forever()`` blocks, ``shutdown()`` stops it from another
    thread and waits, ``server_close()`` closes the socket."""

    def __init__(self, app: FastAPI, host: str, port: int, *,
                 header_timeout_s: float = HEADER_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS):
        import uvicorn

        self.app, self.model_name = app, app.state.model_name
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.socket.listen(128)
        self.server_address = self.socket.getsockname()
        protocol = type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,),
                        {"header_timeout_s": header_timeout_s})
        config = uvicorn.Config(app, http=protocol, lifespan="off",
                                limit_concurrency=max_connections, timeout_keep_alive=5,
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        self._stopped.wait(timeout_s)

    def server_close(self) -> None:
        self.socket.close()


def make_server(backend: "Backend", settings: "Settings", port: int = 8000, *,
                model_name: str | None = None, header_timeout_s: float = HEADER_TIMEOUT_S,
                body_timeout_s: float = BODY_TIMEOUT_S,
                max_connections: int = MAX_CONNECTIONS) -> OpenAIServer:
    """A ready server on ``settings.host`` (call ``serve_forever()``); port 0 picks a free port
    (``server_address``). See :func:`build_openai_app`; the timeouts and the connection bound
    default to this module's constants."""
    app = build_openai_app(backend, settings, model_name=model_name,
                           body_timeout_s=body_timeout_s)
    return OpenAIServer(app, settings.host, port, header_timeout_s=header_timeout_s,
                        max_connections=max_connections)
