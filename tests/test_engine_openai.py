"""The openai backend and the app's own OpenAI-compatible server: real HTTP, SSE, openai client."""

import json
import threading
import time

import httpx
import pytest

from pulse_app.conversation import Turn
from pulse_app.engine import make_backend
from pulse_app.engine.backend import Backend, GenerationParams, answer, stream_with_reason
from pulse_app.engine.openai_compat import OpenAIBackend, chat_messages, image_data_url
from pulse_app.engine.openai_server import make_server
from pulse_app.errors import BackendUnreachable, PulseError
from pulse_app.settings import Settings
from tests.fixtures_ui import free_port

GREEDY = GenerationParams(temperature=0, max_new_tokens=12)
LONG = GenerationParams(temperature=0, max_new_tokens=400)
KEY = "test-key-123"


def serve(backend, model_name=None, api_key=None, **settings):
    settings = Settings.load(host="127.0.0.1", server_api_key=api_key, **settings)
    server = make_server(backend, settings, 0, model_name=model_name)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


@pytest.fixture(scope="module")
def server_url(tiny_backend):
    server, url = serve(tiny_backend, model_name="pulse-tiny", api_key=KEY)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def remote(server_url):
    return OpenAIBackend(server_url, api_key=KEY, timeout_s=60)


def generating_threads():
    return [t for t in threading.enumerate() if t.name == "pulse-generate" and t.is_alive()]


def wait_until_idle(seconds=20.0):
    deadline = time.monotonic() + seconds
    while generating_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not generating_threads()


def test_answer_equals_local_and_names_the_served_model(remote, tiny_backend, ecg_image,
                                                        server_url):
    assert isinstance(remote, Backend)
    got = answer(remote, ecg_image, [], "What is the rhythm?", GREEDY)
    assert got and got == answer(tiny_backend, ecg_image, [], "What is the rhythm?", GREEDY)
    info = remote.info()
    assert info.model_id == "pulse-tiny" and info.backend == "openai"
    assert info.label == f"{tiny_backend.info().label} via {server_url}"
    assert not info.trained and info.note            # the untrained warning travels too


def test_history_travels_as_messages(remote, tiny_backend, ecg_image):
    history = [Turn("What is the rhythm?", "Sinus rhythm."), Turn("Rate?", "About 70 bpm.")]
    assert answer(remote, ecg_image, history, "Any ST elevation?", GREEDY) == answer(
        tiny_backend, ecg_image, history, "Any ST elevation?", GREEDY)
    messages = chat_messages(ecg_image, history, "Any ST elevation?")
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"][0]["type"] == "image_url"
    assert messages[3]["content"] == "About 70 bpm."


def test_sse_stream_on_the_wire(server_url, ecg_image):
    body = {"model": "pulse-tiny", "stream": True, "temperature": 0, "max_tokens": 40,
            "messages": chat_messages(ecg_image, [], "Describe the ECG.")}
    events = []
    with httpx.stream("POST", f"{server_url}/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "pulse-tiny"
               for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) >= 2


def test_non_streaming_completion_with_the_openai_client(remote, tiny_backend, ecg_image):
    reply = remote.client().chat.completions.create(
        model="pulse-tiny", messages=chat_messages(ecg_image, [], "Rate?"),
        temperature=0, max_tokens=12)
    assert reply.choices[0].message.content == answer(tiny_backend, ecg_image, [], "Rate?", GREEDY)
    reasons = []
    "".join(stream_with_reason(tiny_backend.stream(ecg_image, [], "Rate?", GREEDY), reasons))
    assert reply.choices[0].finish_reason == reasons[0]
    assert [m.id for m in remote.client().models.list()] == ["pulse-tiny"]


def test_finish_reason_says_when_max_tokens_cut_the_answer(remote, server_url, ecg_image):
    """3 tokens cut any answer ("length"); a model that ends by itself says "stop"."""
    short = remote.client().chat.completions.create(
        model="pulse-tiny", messages=chat_messages(ecg_image, [], "Describe the ECG."),
        temperature=0, max_tokens=3)
    assert short.choices[0].finish_reason == "length"
    body = {"model": "pulse-tiny", "stream": True, "temperature": 0, "max_tokens": 3,
            "messages": chat_messages(ecg_image, [], "Describe the ECG.")}
    with httpx.stream("POST", f"{server_url}/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"


def test_a_local_answer_that_ends_with_eos_reports_stop(tiny_backend, ecg_image):
    reasons = []
    for seed in range(20):       # sampling: some answers of the untrained model end by themselves
        params = GenerationParams(temperature=1.0, top_p=1.0, max_new_tokens=60, seed=seed)
        "".join(stream_with_reason(tiny_backend.stream(ecg_image, [], "Rate?", params), reasons))
        assert reasons[-1] in ("stop", "length")
    assert set(reasons) == {"stop", "length"}, reasons


def test_closing_the_stream_stops_the_server_generation(remote, ecg_image):
    stream = remote.stream(ecg_image, [], "Describe the ECG.", LONG)
    assert next(stream)
    stream.close()
    assert wait_until_idle(), "the server kept generating after the client went away"
    assert answer(remote, ecg_image, [], "Rate?", GREEDY)       # and it still serves


def test_cancel_event_ends_the_stream(remote, ecg_image):
    cancel = threading.Event()
    received = []
    for chunk in remote.stream(ecg_image, [], "Describe the ECG.", LONG, cancel=cancel):
        received.append(chunk)
        cancel.set()
    assert len(received) == 1
    assert wait_until_idle()


def one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text and len(text) < 300, text
    return text


def test_connection_refused():
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", timeout_s=5)
    with pytest.raises(BackendUnreachable, match="cannot connect") as caught:
        backend.info()
    one_line(caught)


def test_wrong_key_unknown_model_wrong_path(server_url, ecg_image):
    with pytest.raises(BackendUnreachable, match="refused the API key") as caught:
        OpenAIBackend(server_url, api_key="wrong").info()
    assert "--api-key" in one_line(caught)
    with pytest.raises(BackendUnreachable, match="has no model 'PULSE-ECG/PULSE-7B'") as caught:
        OpenAIBackend(server_url, model="PULSE-ECG/PULSE-7B", api_key=KEY).info()
    assert "pulse-tiny" in one_line(caught)
    without_v1 = server_url[:-len("/v1")]
    with pytest.raises(BackendUnreachable, match="no OpenAI-compatible API") as caught:
        OpenAIBackend(without_v1, api_key=KEY).info()
    assert "/v1" in one_line(caught)


def test_bad_requests_come_back_as_user_errors(remote, server_url):
    client = remote.client()
    import openai

    with pytest.raises(openai.BadRequestError, match="only data: URLs"):
        client.chat.completions.create(model="pulse-tiny", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.org/ecg.png"}},
            {"type": "text", "text": "Rate?"}]}])
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="other", messages=[{"role": "user",
                                                                 "content": "hi"}])
    not_an_image = "data:image/png;base64,aGVsbG8gd29ybGQ="
    with pytest.raises(openai.BadRequestError, match="image"):
        client.chat.completions.create(model="pulse-tiny", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": not_an_image}},
            {"type": "text", "text": "Rate?"}]}])
    with pytest.raises(openai.BadRequestError, match="alternate"):
        client.chat.completions.create(model="pulse-tiny", messages=[
            {"role": "assistant", "content": "hi"}])


def test_backend_relays_a_rejected_question(remote, ecg_image):
    too_long = "Is the rhythm regular? " * 340    # under 8000 characters, over 2048 positions
    with pytest.raises(PulseError, match="rejected the question: the conversation is too long"):
        answer(remote, ecg_image, [], too_long, GREEDY)


def test_settings_build_the_backend():
    with pytest.raises(BackendUnreachable, match="base URL"):
        make_backend(Settings.load(backend="openai", url=""))
    default = make_backend(Settings.load(backend="openai", url="http://h:8000/v1/"))
    assert isinstance(default, OpenAIBackend) and default.model is None
    assert default.base_url == "http://h:8000/v1"
    named = make_backend(Settings.load(backend="openai", url="http://h/v1", model="m", api_key="k"))
    assert (named.model, named.api_key) == ("m", "k")
    assert image_data_url(__import__("PIL.Image").Image.new("RGB", (2, 2))).startswith(
        "data:image/png;base64,")
