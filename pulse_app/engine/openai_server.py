"""A small OpenAI-compatible HTTP server in front of any backend: one endpoint for a hospital.

    python -m pulse_app serve-openai --model PULSE-ECG/PULSE-7B --port 8000 [--api-key SECRET]

Speaks the subset of the OpenAI API that chat clients with images use (standard library only):

- ``GET /v1/models``: the one served model (plus ``pulse_app``: label, trained, note);
- ``POST /v1/chat/completions``: ``messages`` with the ECG as a ``data:image/...;base64`` ``image_url``
  part in a user message, ``stream`` (server-sent events, ``data: [DONE]`` at the end),
  ``temperature``, ``top_p``, ``max_tokens`` / ``max_completion_tokens``, ``seed``.

One answer is generated at a time (the backend's lock); a client that disconnects stops its
answer within a token. Remote image URLs are never fetched. Errors use OpenAI's JSON shape
(401 bad key, 404 unknown model, 400 bad request) so OpenAI clients raise their usual exceptions.

>>> server = make_server(backend, "127.0.0.1", 8000)     # doctest: +SKIP
>>> server.serve_forever()                                # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import json
import logging
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Iterator

from pulse_app.conversation import Turn
from pulse_app.engine.backend import GenerationParams, stream_with_reason
from pulse_app.errors import ImageRejected, PulseError

if TYPE_CHECKING:
    from pulse_app.engine.backend import Backend

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 80_000_000          # a base64 50 MB image, plus the conversation


class RequestError(Exception):
    """An OpenAI-style error response: HTTP status, message, type and code."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": None,
                          "code": self.code}}


def _text_of(content) -> tuple[str, list[str]]:
    """A message's text and its image URLs (content is a string or a list of parts)."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise RequestError(400, "message content must be a string or a list of parts")
    texts, images = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            url = part.get("image_url")
            images.append(url.get("url", "") if isinstance(url, dict) else str(url or ""))
        else:
            raise RequestError(400, f"unsupported content part type {kind!r}")
    return "\n".join(t for t in texts if t), images


def decode_image_url(url: str):
    """A ``data:image/...;base64,...`` URL as a clean RGB image (through the app's intake)."""
    from pulse_app.intake import load_image

    if not url.startswith("data:") or ";base64," not in url[:100]:
        raise RequestError(400, "only data: URLs with base64 images are accepted (this server "
                                "never fetches remote URLs)")
    try:
        data = base64.b64decode(url.split(",", 1)[1], validate=False)
    except (binascii.Error, ValueError) as e:
        raise RequestError(400, "the image data URL is not valid base64") from e
    try:
        return load_image(data, filename="the image").image
    except ImageRejected as e:
        raise RequestError(400, str(e), code="image_rejected") from e


def parse_messages(messages) -> tuple[object, list[Turn], str]:
    """OpenAI ``messages`` -> (image or None, finished turns, question).

    System messages are ignored: the model's own template supplies its system sentence.
    Turns must alternate user/assistant and end with a user message.
    """
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list")
    dialogue, image_urls = [], []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            continue
        if role not in ("user", "assistant"):
            raise RequestError(400, f"unsupported message role {role!r}")
        text, images = _text_of(message.get("content", ""))
        if images and role != "user":
            raise RequestError(400, "images are only accepted in user messages")
        image_urls += images
        dialogue.append((role, text))
    if len(image_urls) > 1:
        raise RequestError(400, "send one ECG image per conversation")
    roles = [role for role, _ in dialogue]
    if not roles or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
        raise RequestError(400, "messages must alternate user/assistant and end with a user "
                                "message")
    turns = [Turn(dialogue[i][1], dialogue[i + 1][1]) for i in range(0, len(dialogue) - 1, 2)]
    image = decode_image_url(image_urls[0]) if image_urls else None
    return image, turns, dialogue[-1][1]


def generation_params(request: dict) -> GenerationParams:
    """Sampling settings from a chat-completions request (OpenAI defaults: the app's)."""
    defaults = GenerationParams()
    try:
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
        params = GenerationParams(
            temperature=float(request.get("temperature", defaults.temperature)),
            top_p=float(request.get("top_p", defaults.top_p)),
            max_new_tokens=int(max_tokens or defaults.max_new_tokens),
            seed=None if request.get("seed") is None else int(request["seed"]))
    except (TypeError, ValueError) as e:
        raise RequestError(400, "temperature, top_p, max_tokens and seed must be numbers") from e
    if params.temperature < 0 or not 0 < params.top_p <= 1 or params.max_new_tokens < 1:
        raise RequestError(400, "need temperature >= 0, 0 < top_p <= 1 and max_tokens >= 1")
    return params


class OpenAIHandler(BaseHTTPRequestHandler):
    """One HTTP request. The server carries ``backend``, ``model_name`` and ``api_key``."""

    server: "OpenAIServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):          # noqa: A002 - the base class's name
        log.info("%s %s", self.address_string(), format % args)

    # -- plumbing --
    def _send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _check_key(self) -> None:
        key = self.server.api_key
        if key and not hmac.compare_digest(self.headers.get("Authorization", ""),
                                           f"Bearer {key}"):
            raise RequestError(401, "invalid API key", "invalid_request_error", "invalid_api_key")

    def _handle(self, action) -> None:
        try:
            self._check_key()
            action()
        except RequestError as e:
            self._send_json(e.status, e.body())
        except PulseError as e:
            self._send_json(400, RequestError(400, str(e), code=type(e).__name__).body())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - log it, answer 500, keep serving
            log.exception("error answering %s", self.path)
            self._send_json(500, RequestError(500, "internal server error",
                                              "server_error").body())

    # -- routes --
    def do_GET(self):                                    # noqa: N802 - http.server's name
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/models":
            self._handle(lambda: self._send_json(200, {"object": "list",
                                                       "data": [self.server.model_card()]}))
        elif path.startswith("/v1/models/"):
            self._handle(lambda: self._one_model(path[len("/v1/models/"):]))
        else:
            self._handle(self._not_found)

    def do_POST(self):                                   # noqa: N802
        if self.path.split("?")[0].rstrip("/") == "/v1/chat/completions":
            self._handle(self._chat)
        else:
            self._handle(self._not_found)

    def _not_found(self):
        self._read_body()
        raise RequestError(404, f"no such endpoint: {self.path}", code="not_found")

    def _one_model(self, name: str):
        self._require_model(name)
        self._send_json(200, self.server.model_card())

    def _require_model(self, name) -> None:
        if name != self.server.model_name:
            raise RequestError(404, f"The model `{name}` does not exist (this server serves "
                                    f"`{self.server.model_name}`)", code="model_not_found")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            raise RequestError(413, f"request too large ({length} bytes)")
        return self.rfile.read(length) if length else b""

    def _chat(self):
        try:
            request = json.loads(self._read_body() or b"{}")
        except ValueError as e:
            raise RequestError(400, "the request body is not JSON") from e
        if not isinstance(request, dict):
            raise RequestError(400, "the request body must be a JSON object")
        self._require_model(request.get("model"))
        if request.get("n", 1) != 1:
            raise RequestError(400, "only n=1 is supported")
        image, turns, question = parse_messages(request.get("messages"))
        params = generation_params(request)
        reasons: list[str] = []             # "length" or "stop", once the answer has ended
        stream = stream_with_reason(self.server.backend.stream(image, turns, question, params),
                                    reasons)
        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        try:
            if request.get("stream"):
                self._stream_reply(stream, reply_id, created, reasons)
            else:
                text = "".join(stream)
                self._send_json(200, {
                    "id": reply_id, "object": "chat.completion", "created": created,
                    "model": self.server.model_name,
                    "choices": [{"index": 0, "finish_reason": reasons[0], "logprobs": None,
                                 "message": {"role": "assistant", "content": text}}]})
        finally:
            stream.close()                  # a vanished client stops the generation here

    def _stream_reply(self, chunks: Iterator[str], reply_id: str, created: int,
                      reasons: list[str]) -> None:
        first = next(chunks, None)          # errors before the first token are still HTTP errors
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def event(delta: dict, finish: str | None = None) -> None:
            chunk = {"id": reply_id, "object": "chat.completion.chunk", "created": created,
                     "model": self.server.model_name,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                  "logprobs": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

        event({"role": "assistant", "content": ""})
        try:
            if first is not None:
                event({"content": first})
            for text in chunks:
                event({"content": text})
        except PulseError as e:             # mid-answer: the stream's own error event
            self.wfile.write(f"data: {json.dumps(RequestError(500, str(e)).body())}\n\n".encode())
            return
        event({}, reasons[0] if reasons else "stop")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class OpenAIServer(ThreadingHTTPServer):
    """The HTTP server: ``backend`` answers under the name ``model_name``."""

    daemon_threads = True

    def __init__(self, address, backend: "Backend", model_name: str, api_key: str | None = None):
        super().__init__(address, OpenAIHandler)
        self.backend, self.model_name, self.api_key = backend, model_name, api_key
        self.started = int(time.time())

    def model_card(self) -> dict:
        info = self.backend.info()
        return {"id": self.model_name, "object": "model", "created": self.started,
                "owned_by": "pulse-app", "pulse_app": dataclasses.asdict(info)}


def make_server(backend: "Backend", host: str = "127.0.0.1", port: int = 8000, *,
                model_name: str | None = None, api_key: str | None = None) -> OpenAIServer:
    """A ready server (call ``serve_forever()``); port 0 picks a free port (``server_port``).

    ``model_name`` defaults to the backend's model id ("offline-default" for the tiny model).
    """
    name = model_name or backend.info().model_id
    return OpenAIServer((host, port), backend, name, api_key)
