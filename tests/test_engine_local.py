"""The local backend on the tiny model (CPU): streaming, cancelling, prompts, failures."""

import json
import threading

import pytest
import torch

from pulse_app.conversation import Turn
from pulse_app.engine.backend import Backend, GenerationParams, answer
from pulse_app.engine.local import LocalBackend, choose_precision, resolve_model
from pulse_app.errors import HardwareError, ModelUnavailable, PulseError
from pulse_app.settings import OFFLINE_DEFAULT_MODEL
from tests.fixtures_engine import (
    IMAGE_TOKEN_INDEX,
    SlowLlamaReference,
    llava_select_best_resolution,
    llava_tokenizer_image_token,
)

GREEDY = GenerationParams(temperature=0, max_new_tokens=12)
SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant "
          "gives helpful, detailed, and polite answers to the human's questions.")


class ForwardCalls:
    """Counts the model's forward passes and keeps the first one's input_ids."""

    def __init__(self, model):
        self.count, self.first_ids = 0, None
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.count += 1
        if self.first_ids is None:
            self.first_ids = kwargs["input_ids"][0].tolist()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def generating_threads():
    return [t for t in threading.enumerate() if t.name == "pulse-generate" and t.is_alive()]


def test_streams_text_and_says_which_model(tiny_backend, ecg_image):
    assert isinstance(tiny_backend, Backend)
    chunks = list(tiny_backend.stream(ecg_image, [], "What is the rhythm?", GREEDY))
    assert chunks and all(isinstance(c, str) for c in chunks) and "".join(chunks).strip()
    info = tiny_backend.info()
    assert info.backend == "local" and not info.trained
    assert "UNTRAINED" in info.label and "cpu fp32" in info.label and info.note


def test_greedy_is_deterministic_and_seeded_sampling_repeats(tiny_backend, ecg_image):
    assert answer(tiny_backend, ecg_image, [], "Rate?", GREEDY) == answer(
        tiny_backend, ecg_image, [], "Rate?", GREEDY)
    sampled = GenerationParams(temperature=1.0, top_p=0.9, max_new_tokens=12, seed=7)
    assert answer(tiny_backend, ecg_image, [], "Rate?", sampled) == answer(
        tiny_backend, ecg_image, [], "Rate?", sampled)


def test_two_turn_chat_token_ids_reaching_the_model(tiny_backend, tiny_original, ecg_image):
    """The ids equal LLaVA's tokenizer_image_token on the exact llava_v1 text, with the image
    placeholder expanded to the number of image features (flat: 16 per tile + base)."""
    history = [Turn("What is the rhythm?", "Sinus rhythm."),
               Turn("Is the axis normal?", " Yes, the axis is normal. ")]
    prompt = (SYSTEM + " USER: <image>\nWhat is the rhythm? ASSISTANT: Sinus rhythm.</s>"
              "USER: Is the axis normal? ASSISTANT: Yes, the axis is normal.</s>"
              "USER: Any ST elevation? ASSISTANT:")
    original = json.loads((tiny_original / "config.json").read_text())
    w, h = llava_select_best_resolution(ecg_image.size, original["image_grid_pinpoints"])
    n_image = 16 * (1 + (w // 56) * (h // 56))
    reference = llava_tokenizer_image_token(prompt, SlowLlamaReference(
        tiny_original / "tokenizer.model"))
    at = reference.index(IMAGE_TOKEN_INDEX)
    image_id = tiny_backend._model.config.image_token_index
    expected = reference[:at] + [image_id] * n_image + reference[at + 1:]
    with ForwardCalls(tiny_backend._model) as calls:
        list(tiny_backend.stream(ecg_image, history, "Any ST elevation?", GREEDY))
    assert calls.first_ids == expected
    assert n_image == 80                 # ecg00010.png (768x420) -> 2x2 tiles


def test_cancel_event_stops_generation_within_a_token(tiny_backend, ecg_image):
    cancel = threading.Event()
    long = GenerationParams(temperature=0, max_new_tokens=300)
    with ForwardCalls(tiny_backend._model) as calls:
        chunks = []
        for chunk in tiny_backend.stream(ecg_image, [], "Describe it.", long, cancel=cancel):
            chunks.append(chunk)
            if len(chunks) == 3:
                cancel.set()
                at_cancel = calls.count
    assert calls.count <= at_cancel + 1 < 300
    assert not generating_threads() and not tiny_backend._generate_lock.locked()


def test_closing_the_stream_stops_the_worker(tiny_backend, ecg_image):
    long = GenerationParams(temperature=0, max_new_tokens=300)
    with ForwardCalls(tiny_backend._model) as calls:
        stream = tiny_backend.stream(ecg_image, [], "Describe it.", long)
        next(stream), next(stream)
        assert tiny_backend._generate_lock.locked()          # one answer at a time
        stream.close()
        after_close = calls.count
        assert not generating_threads() and not tiny_backend._generate_lock.locked()
        assert after_close < 300
        list(tiny_backend.stream(ecg_image, [], "Again?", GREEDY))    # usable afterwards
    assert calls.count <= after_close + GREEDY.max_new_tokens


def test_text_only_question_has_no_image_tokens(tiny_backend):
    with ForwardCalls(tiny_backend._model) as calls:
        text = answer(tiny_backend, None, [], "Hello?", GREEDY)
    assert isinstance(text, str)
    assert tiny_backend._model.config.image_token_index not in calls.first_ids


def test_conversation_longer_than_the_context_is_refused(tiny_backend, ecg_image):
    history = [Turn("word " * 200, "answer " * 200)] * 6
    with pytest.raises(PulseError, match="too long"):
        list(tiny_backend.stream(ecg_image, history, "More?", GREEDY))
    assert not tiny_backend._generate_lock.locked()


def test_refuses_a_checkpoint_with_a_missing_tensor(tiny_model_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    tensors = load_file(broken / "model.safetensors")
    del tensors["model.language_model.layers.0.mlp.down_proj.weight"]
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    backend = LocalBackend(str(broken), device="cpu", cache_dir=tmp_path / "cache",
                           progress=lambda m: None)
    with pytest.raises(ModelUnavailable, match="refusing to run.*down_proj.*random"):
        backend.load()


def test_original_layout_folder_is_converted_once_and_cached(tiny_original, tmp_path):
    messages = []
    folder, revision = resolve_model(str(tiny_original), None, tmp_path, messages.append)
    assert folder.parent == tmp_path / "converted" and revision == folder.name
    assert any("converting" in m for m in messages)
    messages.clear()
    assert resolve_model(str(tiny_original), None, tmp_path, messages.append)[0] == folder
    assert not messages


def test_tiny_untrained_is_built_deterministically(tmp_path):
    a, _ = resolve_model("tiny-untrained", None, tmp_path / "a", lambda m: None)
    b, _ = resolve_model("tiny-untrained", None, tmp_path / "b", lambda m: None)
    assert a == tmp_path / "a" / "tiny-untrained"
    for name in ("model.safetensors", "tokenizer.model", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_offline_default_is_the_shipped_mini_model_else_the_tiny_one(tmp_path, monkeypatch):
    import pulse_app.engine.local as local

    folder, _ = resolve_model(OFFLINE_DEFAULT_MODEL, None, tmp_path / "a", lambda m: None)
    if (local.MINI_MODEL_DIR / "config.json").is_file():
        assert json.loads((folder / "config.json").read_text())["pulse_app"]["trained"] is True
    monkeypatch.setattr(local, "MINI_MODEL_DIR", tmp_path / "no-mini")
    folder, _ = resolve_model(OFFLINE_DEFAULT_MODEL, None, tmp_path / "b", lambda m: None)
    assert folder == tmp_path / "b" / "tiny-untrained"


def test_unreachable_hub_id_is_a_clear_model_unavailable(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelUnavailable) as error:
        resolve_model("PULSE-ECG/PULSE-7B", None, tmp_path, lambda m: None)
    message = str(error.value)
    assert "PULSE-ECG/PULSE-7B" in message and "--model" in message and "\n" not in message


def test_not_a_folder_nor_a_hub_id(tmp_path):
    with pytest.raises(ModelUnavailable, match="not a hub id"):
        resolve_model("no such thing", None, tmp_path, lambda m: None)


def test_4bit_and_8bit_need_cuda():
    for precision in ("4bit", "8bit"):
        with pytest.raises(HardwareError, match=f"{precision}.*NVIDIA GPU"):
            choose_precision(precision, torch.device("cpu"))
    with pytest.raises(HardwareError, match="4bit"):
        LocalBackend(device="cpu", precision="4bit")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_a_gpu_is_a_hardware_error():
    with pytest.raises(HardwareError, match="no CUDA GPU"):
        LocalBackend(device="cuda")


def test_auto_precision_on_cpu_is_fp32():
    assert choose_precision("auto", torch.device("cpu")) == "fp32"


def test_make_backend_builds_local_from_settings(tiny_model_dir, tmp_path):
    from pulse_app.engine import make_backend
    from pulse_app.settings import Settings

    backend = make_backend(Settings.load(model=str(tiny_model_dir), device="cpu",
                                         cache_dir=str(tmp_path)))
    assert isinstance(backend, LocalBackend) and backend._model is None      # lazy
    assert backend.info().model_id == str(tiny_model_dir)
