"""serve-openai under hostile clients, on a real uvicorn server on 127.0.0.1 (tiny model): the
failures found when it was a hand-written ``http.server`` — an invented answer without an image,
500s for NaN numbers and non-ASCII headers, connections that never send their body holding a
thread, internal text in errors — answered with the OpenAI error shape instead."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from pulse_app.engine.openai_compat import chat_messages
from pulse_app.engine.openai_server import make_server
from pulse_app.settings import Settings

KEY = "key-123"
TIMEOUT_S = 1.0                             # header and body deadlines of the test server


@pytest.fixture(scope="module")
def server(tiny_backend):
    settings = Settings.load(host="127.0.0.1", server_api_key=KEY, max_new_tokens=8)
    server = make_server(tiny_backend, settings, 0, model_name="pulse",
                         header_timeout_s=TIMEOUT_S, body_timeout_s=TIMEOUT_S,
                         max_connections=6)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def url(server):
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def post(url, body, headers=None, raw: bytes | None = None):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json",
               **(headers or {})}
    return httpx.post(f"{url}/chat/completions", content=raw or json.dumps(body).encode(),
                      headers=headers, timeout=60)


def error_of(response) -> str:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"])
    return body["error"]["message"]


def test_a_request_without_an_image_is_a_400_not_an_invented_reading(url):
    response = post(url, {"model": "pulse", "messages": [{"role": "user", "content": "Rate?"}]})
    assert response.status_code == 400
    assert "no ECG was sent" in error_of(response)


@pytest.mark.parametrize("field, raw_value, words", [
    ("temperature", "NaN", "temperature must be a number"),
    ("temperature", "Infinity", "temperature must be a number"),
    ("temperature", "1e9", "temperature must be from 0 to 2"),
    ("top_p", "0", "top_p must be a number above 0"),
    ("top_p", "2", "top_p must be a number above 0"),
    ("max_tokens", "0", "max_new_tokens must be a whole number"),
    ("temperature", '"0.5"', "temperature: Input should be a valid number"),
    ("max_tokens", "[8]", "max_tokens: Input should be a valid integer"),
])
def test_bad_numbers_are_400_with_the_core_words(url, ecg_image, field, raw_value, words):
    body = json.dumps({"model": "pulse", "messages": chat_messages(ecg_image, [], "Rate?")})
    raw = body[:-1] + f', "{field}": {raw_value}}}'
    response = post(url, None, raw=raw.encode())
    assert response.status_code == 400, response.text
    assert words in error_of(response)


def test_malformed_bodies_are_400(url, ecg_image):
    assert post(url, None, raw=b"{not json").status_code == 400
    assert post(url, None, raw=b"[1, 2]").status_code == 400
    wrong_role = {"model": "pulse", "messages": [{"role": "robot", "content": "hi"}]}
    assert "messages.0.role" in error_of(post(url, wrong_role))
    listed = {"model": "pulse", "messages": [{"role": "user", "content": [
        {"type": "text", "text": ["Rate?"]}]}]}
    assert post(url, listed).status_code == 400


def test_non_ascii_and_missing_authorization_are_401_not_500(url):
    with socket.create_connection(("127.0.0.1", int(url.split(":")[2].split("/")[0]))) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe9\xe8\r\n"
                  b"Connection: close\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    assert httpx.get(f"{url}/models", timeout=10).status_code == 401
    assert httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"},
                     timeout=10).status_code == 200


def _port(url) -> int:
    return int(url.split(":")[2].split("/")[0])


def test_a_client_that_never_sends_its_headers_is_closed(url):
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as s:
        s.sendall(b"POST /v1/chat/com")                    # half a request line, then nothing
        start = time.monotonic()
        assert s.recv(1024) == b"", "the server should close the connection"
        assert time.monotonic() - start < 10


def test_a_client_that_never_sends_its_body_gets_408(url):
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


def test_connections_are_bounded(url):
    idle = [socket.create_connection(("127.0.0.1", _port(url)), timeout=10) for _ in range(6)]
    try:
        for s in idle:
            s.sendall(b"GET /v1/mod")                      # held open, headers unfinished
        time.sleep(0.2)
        response = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"},
                             timeout=10)
        assert response.status_code == 503
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:                     # served again once they are gone
        response = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"},
                             timeout=10)
        if response.status_code == 200:
            break
        time.sleep(0.2)
    assert response.status_code == 200


def test_an_internal_error_shows_a_reference_not_its_text(tiny_backend, ecg_image, caplog):
    class Broken:
        name = "broken"

        def info(self):
            return tiny_backend.info()

        def stream(self, *args, **kwargs):
            raise RuntimeError("/srv/secret/weights.bin is corrupt")
            yield ""

    server = make_server(Broken(), Settings.load(host="127.0.0.1"), 0, model_name="pulse")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        response = httpx.post(
            f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions", timeout=60,
            json={"model": "pulse", "messages": chat_messages(ecg_image, [], "Rate?")})
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 500
    message = error_of(response)
    assert "/srv/secret" not in message and "reference" in message
    reference = message.split("reference ")[1].rstrip(")")
    assert any(reference in r.getMessage() for r in caplog.records), "logged with its reference"
