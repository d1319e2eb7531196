"""A small OpenAI-compatible HTTP server in front of any backend: one endpoint for a hospital.

    python -m pulse_app serve-openai --model PULSE-ECG/PULSE-7B --port 8000 [--server-api-key KEY]

Speaks the subset of the OpenAI API that chat clients with images use (standard library only):

- ``GET /v1/models``: the one served model (plus ``pulse_app``: label, trained, note);
- ``POST /v1/chat/completions``: ``messages`` with the ECG in a user message, as a
  ``data:image/...;base64`` ``image_url`` part or as ``file`` parts (``{"file": {"filename",
  "file_data"}}``: a PDF, a DICOM ``.dcm``, or a WFDB ``.hea`` with its ``.dat``/``.mat``),
  ``stream`` (server-sent events, ``data: [DONE]`` at the end), ``temperature``, ``top_p``,
  ``max_tokens`` / ``max_completion_tokens``, ``seed``. The request is checked by
  :func:`pulse_app.answer.prepare` with the settings' limits, like every entry point's.

One answer is generated at a time (the backend's lock); a client that disconnects stops its
answer within a token. Remote image URLs are never fetched. Errors use OpenAI's JSON shape
(401 bad key, 404 unknown model, 400 bad request) so OpenAI clients raise their usual exceptions.

>>> server = make_server(backend, Settings.load(), 8000)  # doctest: +SKIP
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

from pulse_app.answer import AnswerRequest, prepare, stream_request
from pulse_app.engine.backend import stream_with_reason
from pulse_app.errors import ImageRejected, InvalidParameter, PulseError

if TYPE_CHECKING:
    from pulse_app.engine.backend import Backend
    from pulse_app.settings import Settings

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


def _base64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as e:
        raise RequestError(400, f"the {what} is not valid base64") from e


def decode_image_url(url: str) -> tuple[str, bytes]:
    """A ``data:image/...;base64,...`` URL as (name, bytes); remote URLs are refused."""
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url[:100]:
        raise RequestError(400, "only data: URLs with base64 images are accepted (this server "
                                "never fetches remote URLs)")
    return "the image", _base64(url.split(",", 1)[1], "image data URL")


def decode_file_part(part) -> tuple[str, bytes]:
    """An OpenAI ``file`` content part (``{"filename", "file_data"}``) as (name, bytes)."""
    file = part.get("file") if isinstance(part.get("file"), dict) else None
    data = file.get("file_data") if file else None
    if not isinstance(data, str):
        raise RequestError(400, "a file part needs file.file_data (base64, or a data: URL)")
    name = file.get("filename") if isinstance(file.get("filename"), str) else "the file"
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    return name, _base64(data, f"file {name}")


def _text_of(content) -> tuple[str, list[tuple[str, bytes]]]:
    """A message's text and its files (content is a string or a list of parts)."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise RequestError(400, "message content must be a string or a list of parts")
    texts, files = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text", "")
            if not isinstance(text, str):
                raise RequestError(400, "a text part's text must be a string")
            texts.append(text)
        elif kind == "image_url":
            url = part.get("image_url")
            files.append(decode_image_url(url.get("url", "") if isinstance(url, dict) else url))
        elif kind == "file":
            files.append(decode_file_part(part))
        else:
            raise RequestError(400, f"unsupported content part type {kind!r}")
    return "\n".join(t for t in texts if t), files


def parse_messages(messages) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]], str]:
    """OpenAI ``messages`` -> (the ECG's files, earlier [question, answer] pairs, question).

    System messages are ignored: the model's own template supplies its system sentence.
    Turns must alternate user/assistant and end with a user message; the ECG comes in one
    user message (one image, or the files of one record).
    """
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list")
    dialogue, files, carriers = [], [], 0
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            continue
        if role not in ("user", "assistant"):
            raise RequestError(400, f"unsupported message role {role!r}")
        text, attached = _text_of(message.get("content", ""))
        if attached and role != "user":
            raise RequestError(400, "images are only accepted in user messages")
        if attached:
            carriers += 1
            files += attached
        dialogue.append((role, text))
    images = [name for name, _ in files if name == "the image"]
    if carriers > 1 or len(images) > 1:
        raise RequestError(400, "send one ECG per conversation")
    roles = [role for role, _ in dialogue]
    if not roles or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
        raise RequestError(400, "messages must alternate user/assistant and end with a user "
                                "message")
    pairs = [(dialogue[i][1], dialogue[i + 1][1]) for i in range(0, len(dialogue) - 1, 2)]
    return files, pairs, dialogue[-1][1]


def checked_request(settings: "Settings", body: dict) -> AnswerRequest:
    """A chat-completions body as a checked request of the one answer path."""
    files, pairs, question = parse_messages(body.get("messages"))
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    return prepare(settings, files, question, history=pairs,
                   temperature=body.get("temperature"), top_p=body.get("top_p"),
                   max_new_tokens=max_tokens, seed=body.get("seed"))


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
        except ImageRejected as e:
            self._send_json(400, RequestError(400, str(e), code="image_rejected").body())
        except InvalidParameter as e:
            self._send_json(400, RequestError(400, str(e), code="invalid_parameter").body())
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
        checked = checked_request(self.server.settings, request)
        reasons: list[str] = []             # "length" or "stop", once the answer has ended
        stream = stream_with_reason(stream_request(self.server.backend, checked), reasons)
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

    def __init__(self, address, backend: "Backend", settings: "Settings", model_name: str):
        super().__init__(address, OpenAIHandler)
        self.backend, self.settings, self.model_name = backend, settings, model_name
        self.api_key = settings.server_api_key
        self.started = int(time.time())

    def model_card(self) -> dict:
        info = self.backend.info()
        return {"id": self.model_name, "object": "model", "created": self.started,
                "owned_by": "pulse-app", "pulse_app": dataclasses.asdict(info)}


def make_server(backend: "Backend", settings: "Settings", port: int = 8000, *,
                model_name: str | None = None) -> OpenAIServer:
    """A ready server on ``settings.host`` (call ``serve_forever()``); port 0 picks a free port
    (``server_port``). Requests are checked with ``settings``' limits and defaults; the key is
    ``settings.server_api_key``. ``model_name`` defaults to the backend's model id."""
    name = model_name or backend.info().model_id
    return OpenAIServer((settings.host, port), backend, settings, name)
