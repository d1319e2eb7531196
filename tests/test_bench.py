"""The bench runner and the GPU bench's CPU-checkable parts (no GPU needed)."""

import pytest
import torch

from bench import gpu_pulse7b
from bench.__main__ import bench_modules
from tests.fixtures_engine import llava_select_best_resolution


def test_runner_finds_the_bench_modules():
    names = bench_modules()
    assert {"local_speed", "gpu_pulse7b"} <= set(names)
    assert "__main__" not in names and "__init__" not in names


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour")
def test_gpu_bench_skips_with_a_message_on_cpu(capsys):
    gpu_pulse7b.main([])
    assert "skipped, no CUDA GPU" in capsys.readouterr().out


def test_pulse7b_prompt_for_an_ecg_page_has_llava_image_token_count(ecg_image):
    from pulse_app.engine.anyres import PULSE_PINPOINTS_WH
    from pulse_app.engine.convert import pulse7b_config

    config = pulse7b_config()
    page = ecg_image.resize((2200, 1700))
    inputs = gpu_pulse7b.prompt_inputs(config, page)
    w, h = llava_select_best_resolution(page.size, [list(p) for p in PULSE_PINPOINTS_WH])
    expected = 576 * (1 + (w // 336) * (h // 336))            # flat: base + every tile
    ids = inputs["input_ids"][0]
    assert int((ids == config.image_token_index).sum()) == expected == 2880
    assert ids.shape[0] == 1 + gpu_pulse7b.PROMPT_TEXT_TOKENS + expected
    assert inputs["pixel_values"].shape == (1, 5, 3, 336, 336)


def test_pulse7b_weights_read_per_decoded_token():
    from pulse_app.engine.convert import pulse7b_config
    from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            model = PulseLlavaNextForConditionalGeneration(pulse7b_config())
    finally:
        torch.set_default_dtype(previous)
    # Llama-2-7B: 6.74 B parameters, minus the 131 M embedding rows (gathered, not read)
    assert 13.1e9 < gpu_pulse7b.decode_weight_bytes(model) < 13.3e9
    assert gpu_pulse7b.datasheet_bandwidth_gbs("NVIDIA H100 80GB HBM3") == 3350
    assert gpu_pulse7b.datasheet_bandwidth_gbs("NVIDIA H200") == 4800
    assert gpu_pulse7b.datasheet_bandwidth_gbs("Some new card") is None


def test_timing_path_runs_on_a_tiny_random_model(tiny_model_dir, ecg_image):
    from transformers import LlavaNextConfig

    config = LlavaNextConfig.from_pretrained(tiny_model_dir)
    model = gpu_pulse7b.random_model(config, "bf16", "cpu")
    assert next(model.parameters()).dtype == torch.bfloat16
    inputs = gpu_pulse7b.prompt_inputs(config, ecg_image)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    ttft, tokens_per_s = gpu_pulse7b.time_generation(model, inputs, 5)
    assert ttft > 0 and tokens_per_s > 0
