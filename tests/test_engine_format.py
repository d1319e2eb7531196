"""PULSE-7B's geometry, image preprocessing and image token layout, against LLaVA's code."""

import os
import random
import subprocess
import sys

import pytest
import torch
from PIL import Image

from pulse_app.conversation import Turn, build_prompt
from pulse_app.engine.anyres import PULSE_PINPOINTS_WH, AnyresGeometry, anyres_pixel_values
from pulse_app.engine.convert import VISION_PREFIX, pulse7b_config, vision_config_from_shapes
from pulse_app.engine.pulse_model import (
    PulseLlavaNextForConditionalGeneration,
    merge_image_features,
)
from pulse_app.errors import ModelUnavailable
from tests.conftest import REPO
from tests.fixtures_engine import (
    llava_merge,
    llava_process_anyres_image,
    llava_select_best_resolution,
)

PULSE = AnyresGeometry.from_config(pulse7b_config())
#: an image size choosing each PULSE pinpoint, and the flat token count it gives
PINPOINT_CASES = [((500, 1000), (336, 672), 1728), ((1000, 500), (672, 336), 1728),
                  ((2200, 1700), (672, 672), 2880), ((2000, 600), (1008, 336), 2304),
                  ((600, 2000), (336, 1008), 2304)]


def test_pulse7b_geometry_is_read_from_its_config():
    assert (PULSE.tile_px, PULSE.patch_px, PULSE.merge_type, PULSE.tokens_per_tile) == (
        336, 14, "flat", 576)
    assert set(PULSE.pinpoints_wh) == set(PULSE_PINPOINTS_WH)


@pytest.mark.parametrize("size, pinpoint, tokens", PINPOINT_CASES)
def test_flat_image_token_counts_for_every_pulse_pinpoint(size, pinpoint, tokens):
    assert PULSE.best_resolution_wh(size) == pinpoint
    assert PULSE.image_token_count(size) == tokens


def test_best_resolution_equals_llava_and_transformers_with_swapped_pinpoints():
    from transformers.image_processing_utils import select_best_resolution

    config = pulse7b_config()            # pinpoints stored (height, width) for transformers
    rng = random.Random(0)
    sizes = [(rng.randint(20, 4000), rng.randint(20, 4000)) for _ in range(500)]
    for w, h in sizes + [(300, 300), (200, 100), (336, 336)]:
        ours = PULSE.best_resolution_wh((w, h))
        assert ours == llava_select_best_resolution((w, h), PULSE_PINPOINTS_WH)
        assert select_best_resolution((h, w), config.image_grid_pinpoints) == ours[::-1]


def test_unswapped_pinpoints_pick_another_grid_for_small_images():
    """Why the converter swaps pinpoints: ties go to the first listed one."""
    from transformers.image_processing_utils import select_best_resolution

    assert llava_select_best_resolution((300, 300), PULSE_PINPOINTS_WH) == (336, 672)  # 1x2
    assert select_best_resolution((300, 300), [list(p) for p in PULSE_PINPOINTS_WH]) == (336, 672)
    # ... which transformers reads as (height, width): a 2x1 grid, tiles in another order


@pytest.mark.parametrize("name", ["fullScan.png", "ecg00040.jpg", "ecg00008.jpg"])
def test_preprocessing_equals_llava_on_real_ecgs(shared_data, name):
    image = Image.open(shared_data / "ecg-images" / name).convert("RGB")
    ours = anyres_pixel_values(image, PULSE)
    reference = llava_process_anyres_image(image, 336, PULSE_PINPOINTS_WH)
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(300, 300), (100, 300), (2000, 600), (1001, 333), (57, 1990)])
def test_preprocessing_equals_llava_on_awkward_sizes(ecg_image, size):
    """Upscaled, padded and odd sizes (300 * (336 / 300) rounds up to 337 rows, as in LLaVA)."""
    image = ecg_image.resize(size)
    ours = anyres_pixel_values(image, PULSE)
    reference = llava_process_anyres_image(image, 336, PULSE_PINPOINTS_WH)
    assert torch.allclose(ours, reference, atol=1e-6, rtol=0)


def tagged_features(cols, rows, side, with_base=True):
    """Features whose 3 channels say (tile, patch row, patch column): order is readable."""
    tiles = 1 + cols * rows
    t = torch.arange(tiles).view(tiles, 1, 1).expand(tiles, side, side)
    r = torch.arange(side).view(1, side, 1).expand(tiles, side, side)
    c = torch.arange(side).view(1, 1, side).expand(tiles, side, side)
    return torch.stack((t, r, c), dim=-1).reshape(tiles, side * side, 3).float()


#: Run in a fresh interpreter: preprocessing, then training's whole sample path, then the model.
PREPROCESSING_ONLY = """
import sys
from PIL import Image

from pulse_app.conversation import Turn
from pulse_app.engine import anyres, checkpoint, llama_tokenizer
model_module = "pulse_app.engine.pulse_model"
modeling = "transformers.models.llava_next.modeling_llava_next"
print("light", "torch" in sys.modules, "transformers" in sys.modules)
from training.data import SampleEncoder
sample = SampleEncoder(sys.argv[1])([Turn("Rate?", "70 bpm")], Image.new("RGB", (600, 300)))
loaded = lambda: f"{model_module in sys.modules} {modeling in sys.modules}"
print("data", tuple(sample.pixel_values.shape), loaded())
import pulse_app.engine.pulse_model
print("model", loaded())
"""


def test_preprocessing_and_training_data_load_no_model_class(tiny_model_dir):
    result = subprocess.run([sys.executable, "-c", PREPROCESSING_ONLY, str(tiny_model_dir)],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    light, data, model = result.stdout.splitlines()
    assert light == "light False False"            # anyres, tokenizer, checkpoint: no torch
    assert data.startswith("data (3, 3,") and data.endswith("False False"), data
    assert model == "model True True"              # the names checked above are the right ones


@pytest.mark.parametrize("merge", ["flat", "spatial", "spatial_unpad"])
@pytest.mark.parametrize("size", [s for s, _, _ in PINPOINT_CASES] + [(176, 110), (94, 2256)])
def test_image_token_order_equals_llava(merge, size):
    geometry = AnyresGeometry(336, 14, PULSE_PINPOINTS_WH, merge_type=merge)
    cols, rows = geometry.grid_cols_rows(size)
    features = tagged_features(cols, rows, 24)
    newline = torch.tensor([-1.0, -1.0, -1.0])
    ours = merge_image_features(features, size, geometry, newline)
    reference = llava_merge(features, size, merge, PULSE_PINPOINTS_WH, 336, 24, newline)
    assert torch.equal(ours, reference)
    assert ours.shape[0] == geometry.image_token_count(size)


def test_flat_is_base_then_tiles_row_major():
    features = tagged_features(cols=2, rows=2, side=24)
    merged = merge_image_features(features, (2200, 1700), PULSE)
    tiles = merged[:, 0].view(5, 576)
    assert [int(t[0]) for t in tiles] == [0, 1, 2, 3, 4] and bool((tiles == tiles[:, :1]).all())
    first_tile = merged[576:1152, 1:]
    assert first_tile[:3].tolist() == [[0, 0], [0, 1], [0, 2]] and first_tile[24].tolist() == [1, 0]


def test_spatial_unpad_keeps_llava_rounding_where_transformers_differs():
    """176x110: LLaVA's int() keeps 14 feature rows (926 tokens), transformers' round(., 7)
    keeps 16 (976): a model trained with LLaVA would see 50 unexpected tokens."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig
    from transformers.models.llava_next.modeling_llava_next import LlavaNextModel

    geometry = AnyresGeometry(336, 14, PULSE_PINPOINTS_WH, merge_type="spatial_unpad")
    assert geometry.image_token_count((176, 110)) == 926
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                       num_attention_heads=1, image_size=336, patch_size=14),
        text_config=LlamaConfig(vocab_size=8, hidden_size=3, intermediate_size=4,
                                num_hidden_layers=1, num_attention_heads=1),
        image_grid_pinpoints=[[h, w] for w, h in PULSE_PINPOINTS_WH], image_token_index=7)
    stock = LlavaNextModel(config)
    features = tagged_features(*geometry.grid_cols_rows((176, 110)), 24)
    newline = torch.zeros(3)
    stock_merged, _ = stock.pack_image_features([features], torch.tensor([[110, 176]]),
                                                "default", newline)
    assert stock_merged[0].shape[0] == 976
    config.mm_patch_merge_type = "spatial_unpad"
    ours = PulseLlavaNextForConditionalGeneration(config).model
    ours_merged, lengths = ours.pack_image_features([features], torch.tensor([[110, 176]]),
                                                    "default", newline)
    assert ours_merged[0].shape[0] == 926 and lengths.tolist() == [926]


@pytest.mark.parametrize("merge", ["flat", "spatial", "spatial_unpad"])
def test_model_features_match_prompt_token_count(tiny_backend, merge):
    """Through the real (tiny) vision tower: as many features as the prompt reserves."""
    model = tiny_backend._model
    saved = model.config.mm_patch_merge_type
    model.config.mm_patch_merge_type = merge
    try:
        geometry = AnyresGeometry.from_config(model.config)
        for size in [(500, 1000), (2200, 1700), (2000, 600), (90, 90)]:
            image = Image.new("RGB", size, (200, 30, 30))
            pixels = anyres_pixel_values(image, geometry)[None]
            with torch.no_grad():
                out = model.model.get_image_features(pixels, torch.tensor([[size[1], size[0]]]))
            assert out.pooler_output[0].shape[0] == geometry.image_token_count(size)
    finally:
        model.config.mm_patch_merge_type = saved


def test_chat_template_reproduces_llava_v1(tiny_model_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is the rhythm?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Sinus rhythm."}]},
        {"role": "user", "content": "Is the axis normal?"},
        {"role": "assistant", "content": " Yes, the axis is normal. "},
        {"role": "user", "content": [{"type": "text", "text": "Any ST elevation?"}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    history = [Turn("What is the rhythm?", "Sinus rhythm."),
               Turn("Is the axis normal?", " Yes, the axis is normal. ")]
    assert text == build_prompt(history, "Any ST elevation?")


def test_pulse7b_exact_shapes_on_meta_device():
    config = pulse7b_config()
    with torch.device("meta"):
        model = PulseLlavaNextForConditionalGeneration(config)
    params = sum(p.numel() for p in model.parameters())
    assert 7.05e9 < params < 7.07e9, params
    vision, text = config.vision_config, config.text_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads,
            vision.intermediate_size, vision.image_size, vision.patch_size) == (
        1024, 24, 16, 4096, 336, 14)
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads,
            text.intermediate_size, text.vocab_size) == (4096, 32, 32, 11008, 32064)
    assert (config.image_token_index, config.vision_feature_layer,
            config.vision_feature_select_strategy) == (32000, -2, "default")
    assert model.model.multi_modal_projector.linear_1.weight.shape == (4096, 1024)


def clip_shapes(hidden, layers, patch=14, positions=577, mlp=None):
    shapes = {VISION_PREFIX + "embeddings.patch_embedding.weight": (hidden, 3, patch, patch),
              VISION_PREFIX + "embeddings.position_embedding.weight": (positions, hidden)}
    for layer in range(layers):
        shapes[VISION_PREFIX + f"encoder.layers.{layer}.mlp.fc1.weight"] = (mlp or 4 * hidden, hidden)
    return shapes


def test_vision_config_from_shapes_table_rule_and_override():
    known = vision_config_from_shapes(clip_shapes(1024, 24), "openai/clip-vit-large-patch14-336")
    assert (known.num_attention_heads, known.image_size, known.num_hidden_layers,
            known.hidden_act) == (16, 336, 24, "quick_gelu")
    unknown = vision_config_from_shapes(clip_shapes(768, 12, patch=16, positions=197), "my/vit")
    assert (unknown.num_attention_heads, unknown.image_size, unknown.patch_size) == (12, 224, 16)
    assert vision_config_from_shapes(clip_shapes(768, 2), "my/vit", heads=8).num_attention_heads == 8
    with pytest.raises(ModelUnavailable, match="not divisible"):
        vision_config_from_shapes(clip_shapes(768, 2), "my/vit", heads=7)
    with pytest.raises(ModelUnavailable, match="no vision tower"):
        vision_config_from_shapes({}, "openai/clip-vit-large-patch14-336")
