"""``python -m pulse_app ask | convert`` as real subprocesses (tiny model, offline, CPU)."""

import os
import subprocess
import sys
import threading

import pytest

from pulse_app.engine.backend import GenerationParams, answer
from pulse_app.settings import OFFLINE_DEFAULT_MODEL
from tests.conftest import REPO

QUESTION = "What is the rhythm?"


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """Environment of every CLI run: offline, a shared cache (the tiny model is built once)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update(PULSE_CACHE_DIR=str(tmp_path_factory.mktemp("cli-cache")), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO), PULSE_DATA_DIR=str(tmp_path_factory.mktemp("cli-data")))
    return env


def run_cli(env, *args, timeout=180):
    return subprocess.run([sys.executable, "-m", "pulse_app", *map(str, args)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def error_lines(result) -> list[str]:
    """The error message (after any progress lines): one or two lines, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert starts and len(lines) - starts[0] <= 2, result.stderr
    lines = lines[starts[0]:]
    assert result.stdout == ""
    return lines


@pytest.fixture(scope="module")
def default_backend(cli_env):
    """The offline default model, in this process, with the CLI's cache (builds it once)."""
    from pulse_app.engine.local import LocalBackend

    backend = LocalBackend(OFFLINE_DEFAULT_MODEL, device="cpu",
                           cache_dir=cli_env["PULSE_CACHE_DIR"], progress=lambda m: None)
    backend.load()
    return backend


def test_ask_streams_the_answer_and_names_the_model(cli_env, default_backend, shared_data):
    image = shared_data / "ecg-images" / "ecg00010.png"
    result = run_cli(cli_env, "ask", image, QUESTION, "--temperature", "0",
                     "--max-new-tokens", "10")
    assert result.returncode == 0, result.stderr
    from pulse_app.intake import load_image

    expected = answer(default_backend, load_image(image).image, [], QUESTION,
                      GenerationParams(temperature=0, max_new_tokens=10))
    assert expected and result.stdout == expected + "\n"
    label = default_backend.info().label
    assert f"[{label}]" in result.stderr
    assert "building" not in result.stderr          # the cached model is reused


@pytest.mark.parametrize("case, exit_code, message", [
    ("missing-file", 3, "was not found"),
    ("not-an-image", 3, "ecg.png"),
    ("unknown-model-offline", 4, "cannot download nobody/no-such-model: the HuggingFace hub "
                                 "is unreachable"),
    ("4bit-without-cuda", 5, "4bit loading needs an NVIDIA GPU"),
    ("openai-unreachable", 6, "cannot connect"),
    ("space-without-url", 6, "needs the address"),
])
def test_ask_errors_are_one_or_two_lines(cli_env, shared_data, tmp_path, case, exit_code,
                                         message):
    image = shared_data / "ecg-images" / "ecg00010.png"
    extra = []
    if case == "missing-file":
        image = tmp_path / "no-such-ecg.png"
    elif case == "not-an-image":
        image = tmp_path / "ecg.png"
        image.write_text("this is a text file, not a PNG\n")
    elif case == "unknown-model-offline":
        extra = ["--model", "nobody/no-such-model"]
    elif case == "4bit-without-cuda":
        extra = ["--precision", "4bit", "--device", "cpu"]
    elif case == "openai-unreachable":
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        extra = ["--backend", "openai", "--url", f"http://127.0.0.1:{port}/v1", "--timeout-s", "5"]
    elif case == "space-without-url":
        extra = ["--backend", "space"]
    result = run_cli(cli_env, "ask", image, QUESTION, *extra)
    assert result.returncode == exit_code, result.stderr
    assert message in error_lines(result)[0]


def test_ask_through_a_remote_openai_server(cli_env, tiny_backend, shared_data):
    from pulse_app.engine.openai_server import make_server
    from pulse_app.settings import Settings

    server = make_server(tiny_backend, Settings.load(host="127.0.0.1"), 0,
                         model_name="pulse-tiny")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        result = run_cli(cli_env, "ask", shared_data / "ecg-images" / "ecg00010.png", QUESTION,
                         "--backend", "openai", "--url", url, "--temperature", "0",
                         "--max-new-tokens", "10")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert f"via {url}]" in result.stderr and tiny_backend.info().label in result.stderr


def test_convert_round_trip(cli_env, tiny_original, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    dst = tmp_path / "converted"
    result = run_cli(cli_env, "convert", tiny_original, dst)
    assert result.returncode == 0, result.stderr
    assert f"converted {tiny_original} -> {dst}" in result.stderr
    ours, reference = (load_file(d / "model.safetensors") for d in (dst, tiny_model_dir))
    assert ours.keys() == reference.keys()
    assert all(ours[k].equal(reference[k]) for k in ours)
    for name in ("config.json", "tokenizer.model", "processor_config.json"):
        assert (dst / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name

    again = run_cli(cli_env, "convert", tiny_original, dst)
    assert again.returncode == 1 and "not empty" in error_lines(again)[0]
    nowhere = run_cli(cli_env, "convert", tmp_path / "missing folder", tmp_path / "out")
    assert nowhere.returncode == 4 and "not a hub id" in error_lines(nowhere)[0]


def test_serve_openai_command_serves_the_offline_model(cli_env, default_backend, ecg_image):
    """``serve-openai`` as a real process; the openai backend of this process asks it."""
    import re

    from pulse_app.engine.openai_compat import OpenAIBackend

    process = subprocess.Popen(
        [sys.executable, "-m", "pulse_app", "serve-openai", "--port", "0", "--device", "cpu",
         "--server-api-key", "k3y"], env=cli_env, cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        url, seen = None, []
        for line in process.stderr:                        # ends if the process dies
            seen.append(line)
            if match := re.search(r"at (http://127\.0\.0\.1:\d+/v1)$", line.strip()):
                url = match.group(1)
                break
        assert url, "".join(seen)
        assert f"[{default_backend.info().label}] serving 'offline-default'" in seen[-1]
        remote = OpenAIBackend(url, api_key="k3y", timeout_s=60)
        params = GenerationParams(temperature=0, max_new_tokens=10)
        assert answer(remote, ecg_image, [], QUESTION, params) == answer(
            default_backend, ecg_image, [], QUESTION, params)
        assert remote.info().model_id == OFFLINE_DEFAULT_MODEL
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()
