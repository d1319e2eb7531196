"""The space backend against a real Gradio server on 127.0.0.1 serving the model API (tiny model)."""

import http.server
import socket
import threading
import time

import pytest

from pulse_app.conversation import Turn
from pulse_app.engine import make_backend
from pulse_app.engine.backend import Backend, GenerationParams, answer
from pulse_app.engine.space import SpaceBackend, space_stage_problem
from pulse_app.errors import BackendUnreachable, PulseError
from pulse_app.settings import Settings
from tests.fixtures_ui import free_port

GREEDY = GenerationParams(temperature=0, max_new_tokens=12)
LONG = GenerationParams(temperature=0, max_new_tokens=400)


def launch(build):
    """A Gradio Blocks built by ``build()`` inside its context, served on 127.0.0.1."""
    import gradio as gr

    with gr.Blocks() as demo:
        build()
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    return demo, url


@pytest.fixture(scope="module")
def app_url(tiny_backend):
    from pulse_app.ui.api import add_model_api

    demo, url = launch(lambda: add_model_api(lambda: tiny_backend, Settings.load()))
    yield url.rstrip("/")
    demo.close()


@pytest.fixture(scope="module")
def space(app_url):
    return SpaceBackend(app_url, timeout_s=60)


def generating_threads():
    return [t for t in threading.enumerate() if t.name == "pulse-generate" and t.is_alive()]


def test_remote_answer_equals_local_answer_and_names_the_remote_model(space, tiny_backend,
                                                                      ecg_image, app_url):
    assert isinstance(space, Backend)
    chunks = list(space.stream(ecg_image, [], "What is the rhythm?", GREEDY))
    assert "".join(chunks) == answer(tiny_backend, ecg_image, [], "What is the rhythm?", GREEDY)
    info = space.info()
    assert info.backend == "space" and not info.trained and info.note
    assert info.label == f"{tiny_backend.info().label} via {app_url}"
    assert info.model_id == tiny_backend.info().model_id


def test_history_and_sampling_settings_reach_the_remote_model(space, tiny_backend, ecg_image):
    history = [Turn("What is the rhythm?", "Sinus rhythm."), Turn("Rate?", "About 70 bpm.")]
    assert answer(space, ecg_image, history, "Any ST elevation?", GREEDY) == answer(
        tiny_backend, ecg_image, history, "Any ST elevation?", GREEDY)
    assert answer(space, ecg_image, history, "Any ST elevation?", GREEDY) != answer(
        space, ecg_image, [], "Any ST elevation?", GREEDY)
    short = GenerationParams(temperature=0, max_new_tokens=2)
    assert len(answer(space, ecg_image, [], "Rate?", short)) < len(
        answer(space, ecg_image, [], "Rate?", GREEDY))


def test_answer_streams_in_several_chunks(space, ecg_image):
    chunks = list(space.stream(ecg_image, [], "Describe the ECG.", LONG))
    assert len(chunks) >= 2, chunks


def wait_until_idle(seconds=20.0):
    deadline = time.monotonic() + seconds
    while generating_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not generating_threads()


def test_closing_the_stream_stops_the_remote_generation(space, ecg_image):
    stream = space.stream(ecg_image, [], "Describe the ECG.", LONG)
    first = next(stream)
    assert first
    stream.close()
    assert wait_until_idle(), "the server kept generating after the client cancelled"
    # the server is free again: the next question is answered
    assert answer(space, ecg_image, [], "Rate?", GREEDY)


def test_cancel_event_ends_the_stream(space, ecg_image):
    cancel = threading.Event()
    received = []
    for chunk in space.stream(ecg_image, [], "Describe the ECG.", LONG, cancel=cancel):
        received.append(chunk)
        cancel.set()
    assert 1 <= len(received) <= 3
    assert wait_until_idle()


def test_remote_user_errors_come_back_as_one_line(space, ecg_image):
    with pytest.raises(PulseError, match="the question is empty"):
        list(space.stream(ecg_image, [], "   ", GREEDY))


def test_connection_refused():
    backend = SpaceBackend(f"http://127.0.0.1:{free_port()}", timeout_s=5)
    with pytest.raises(BackendUnreachable, match="connection refused") as caught:
        backend.info()
    assert "running" in str(caught.value) and "\n" not in str(caught.value)


def test_server_that_never_answers_times_out():
    with socket.socket() as silent:                  # accepts connections, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        backend = SpaceBackend(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=1)
        start = time.monotonic()
        with pytest.raises(BackendUnreachable, match="did not answer within 1 s"):
            backend.info()
        assert time.monotonic() - start < 15


def test_plain_web_server_is_not_a_gradio_app():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = SpaceBackend(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=5)
        with pytest.raises(BackendUnreachable, match="not a running Gradio app"):
            backend.info()
    finally:
        server.shutdown()
        server.server_close()


def test_gradio_app_without_the_model_api_is_not_a_pulse_app():
    import gradio as gr

    demo, url = launch(lambda: gr.Textbox().submit(lambda s: s[::-1], gr.Textbox(),
                                                   gr.Textbox(), api_name="reverse"))
    try:
        with pytest.raises(BackendUnreachable, match="not a PULSE app"):
            SpaceBackend(url, timeout_s=10).info()
    finally:
        demo.close()


def test_space_stages_and_settings():
    assert "still building" in str(space_stage_problem("org/pulse", "BUILDING"))
    assert "paused" in str(space_stage_problem("org/pulse", "PAUSED"))
    assert space_stage_problem("org/pulse", "RUNNING") is None
    assert space_stage_problem("org/pulse", "SLEEPING") is None      # wakes on first request
    with pytest.raises(BackendUnreachable, match="needs the address"):
        make_backend(Settings.load(backend="space", url=""))
    backend = make_backend(Settings.load(backend="space", url="org/pulse", timeout_s=7.0))
    assert isinstance(backend, SpaceBackend) and backend.is_space_id and backend.timeout_s == 7.0


def test_app_with_accounts_needs_them_in_the_url(tiny_backend, ecg_image):
    import gradio as gr

    from pulse_app.ui.api import add_model_api

    with gr.Blocks() as demo:
        add_model_api(lambda: tiny_backend, Settings.load())
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True,
                            auth=[("doc", "s3cret:!")])
    try:
        with_account = url.replace("http://", "http://doc:s3cret%3A%21@")
        backend = SpaceBackend(with_account, timeout_s=30)
        assert answer(backend, ecg_image, [], "Rate?", GREEDY)
        assert "s3cret" not in backend.info().label and backend.url == url
        wrong = url.replace("http://", "http://doc:nope@")
        with pytest.raises(BackendUnreachable, match="refused the user name or password"):
            SpaceBackend(wrong, timeout_s=30).info()
        with pytest.raises(BackendUnreachable, match="asks for a user name and password"):
            SpaceBackend(url, timeout_s=30).info()
    finally:
        demo.close()


def test_space_backend_against_the_whole_app(ui_server, ecg_image):
    """The real web app (its UI, sessions, and the model API) answers a laptop's space backend."""
    url = ui_server.url.rstrip("/")
    backend = SpaceBackend(url, timeout_s=60)
    app_backend = ui_server.chat.backend
    assert answer(backend, ecg_image, [], "Rate?", GREEDY) == answer(
        app_backend, ecg_image, [], "Rate?", GREEDY)
    assert backend.info().label == f"{app_backend.info().label} via {url}"
