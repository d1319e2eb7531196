"""Converting the published (original LLaVA) layout, end to end on tiny checkpoints."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from pulse_app.engine.checkpoint import checkpoint_layout
from pulse_app.engine.convert import checkpoint_fingerprint, convert_checkpoint, ensure_converted
from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration
from pulse_app.engine.tiny import TinySpec, build_tiny_original, tiny_config
from pulse_app.errors import ModelUnavailable


def load(folder):
    model, info = PulseLlavaNextForConditionalGeneration.from_pretrained(
        folder, output_loading_info=True)
    return model.eval(), info


def converted_tensors(folder):
    tensors = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


def test_layouts_are_recognised(tiny_original, tiny_model_dir):
    assert checkpoint_layout(tiny_original) == "original"
    assert checkpoint_layout(tiny_model_dir) == "transformers"
    original = json.loads((tiny_original / "config.json").read_text())
    assert original["model_type"] == "llava_llama"
    assert not list(tiny_original.glob("*processor*")) and not list(tiny_original.glob("*.jinja"))


def test_converted_model_equals_the_weights_it_came_from(tmp_path):
    """Same logits and image features as the in-memory model the original files were written
    from: every tensor found its place, the tower's heads and the merge type survived."""
    spec = TinySpec()
    original = build_tiny_original(tmp_path / "orig", spec)
    rows = json.loads((original / "config.json").read_text())["vocab_size"]
    torch.manual_seed(spec.seed)
    reference = PulseLlavaNextForConditionalGeneration(tiny_config(spec, rows)).eval()
    model, info = load(convert_checkpoint(original, tmp_path / "hf"))
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])
    ids = torch.tensor([[1, 5, 77, 300, 12, 999]])
    with torch.no_grad():
        ours = model(input_ids=ids).logits[..., :rows]
        theirs = reference(input_ids=ids).logits
        pixels = torch.randn(1, 3, 3, 56, 56)
        sizes = torch.tensor([[100, 50]])
        f_ours = model.model.get_image_features(pixels, sizes).pooler_output[0]
        f_theirs = reference.model.get_image_features(pixels, sizes).pooler_output[0]
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(f_ours, f_theirs, atol=1e-5) and f_ours.shape[0] == 48
    assert model.config.mm_patch_merge_type == "flat"


def test_added_image_token_rows_are_never_generated(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    image_id, padded = config["image_token_index"], config["text_config"]["vocab_size"]
    assert padded % 64 == 0 and padded > image_id
    assert generation["suppress_tokens"] == list(range(image_id, padded))
    assert (generation["temperature"], generation["top_p"], generation["max_new_tokens"]) == (
        0.2, 0.7, 512)
    lm_head = converted_tensors(tiny_model_dir)["lm_head.weight"]
    assert not lm_head[image_id:].any() and lm_head[:image_id].abs().sum() > 0


@pytest.mark.parametrize("shards, fmt", [(2, "safetensors"), (3, "bin")])
def test_sharded_checkpoints_convert_to_the_same_weights(tiny_model_dir, tmp_path, shards, fmt):
    original = build_tiny_original(tmp_path / "orig", shards=shards, weights_format=fmt)
    assert len(list(original.glob(f"*.{fmt}"))) == shards
    assert (original / f"{'model' if fmt == 'safetensors' else 'pytorch_model'}.{fmt}.index.json").is_file()
    converted = convert_checkpoint(original, tmp_path / "hf")
    assert len(list(converted.glob("*.safetensors"))) == shards
    ours, expected = converted_tensors(converted), converted_tensors(tiny_model_dir)
    assert ours.keys() == expected.keys()
    assert all(torch.equal(ours[k], expected[k]) for k in ours)
    assert not load(converted)[1]["missing_keys"]


def test_bf16_stays_bf16(tmp_path):
    spec = TinySpec()
    torch.manual_seed(0)
    state = PulseLlavaNextForConditionalGeneration(tiny_config(spec, 1000)).to(
        torch.bfloat16).state_dict()
    original = build_tiny_original(tmp_path / "orig", spec, state_dict=state)
    converted = convert_checkpoint(original, tmp_path / "hf")
    tensors = converted_tensors(converted)
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    key = "model.language_model.layers.0.mlp.up_proj.weight"
    assert torch.equal(tensors[key], state[key])
    assert json.loads((converted / "config.json").read_text())["dtype"] == "bfloat16"


def test_missing_image_newline_is_synthesised_for_flat_only(tmp_path):
    original = build_tiny_original(tmp_path / "orig", image_newline=False)
    converted = convert_checkpoint(original, tmp_path / "hf")
    assert not converted_tensors(converted)["model.image_newline"].any()
    assert json.loads((converted / "config.json").read_text())["pulse_app"]["synthesized"] == [
        "model.image_newline"]
    assert not load(converted)[1]["missing_keys"]
    config = json.loads((original / "config.json").read_text())
    config["mm_patch_merge_type"] = "spatial_unpad"            # there it is needed
    (original / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelUnavailable, match="image_newline"):
        convert_checkpoint(original, tmp_path / "hf2")


def test_incomplete_original_checkpoint_is_refused(tmp_path):
    original = build_tiny_original(tmp_path / "orig")
    tensors = load_file(original / "model.safetensors")
    del tensors["model.layers.1.self_attn.k_proj.weight"]
    save_file(tensors, original / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelUnavailable, match="layers.1.self_attn.k_proj"):
        convert_checkpoint(original, tmp_path / "hf")


def test_checkpoint_without_vision_tower_is_refused(tmp_path):
    original = build_tiny_original(tmp_path / "orig")
    tensors = {k: v for k, v in load_file(original / "model.safetensors").items()
               if "vision_tower" not in k}
    save_file(tensors, original / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelUnavailable, match="no vision tower weights"):
        convert_checkpoint(original, tmp_path / "hf")


def test_tokenizer_model_alone_means_non_legacy(tmp_path):
    original = build_tiny_original(tmp_path / "orig", tokenizer_config=False)
    converted = convert_checkpoint(original, tmp_path / "hf")
    assert json.loads((converted / "tokenizer_config.json").read_text())["legacy"] is False


def test_stock_transformers_reads_the_converted_folder(tiny_model_dir):
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == config["image_token_index"]
    assert processor.image_processor.image_grid_pinpoints == config["image_grid_pinpoints"]
    _, info = LlavaNextForConditionalGeneration.from_pretrained(tiny_model_dir,
                                                                output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"])
    assert "spatial_unpad" in (tiny_model_dir / "README.md").read_text()


@pytest.mark.parametrize("size_wh", [(2200, 1100), (2200, 1700), (768, 420), (300, 900)])
def test_stock_processor_reserves_as_many_image_tokens_as_the_stock_model_makes(
        tiny_model_dir, size_wh):
    """A stock transformers user (or a server reading the folder) gets a consistent pair:
    the processor counts CLIP's CLS token as the stock model does (num_additional_image_tokens)."""
    from PIL import Image
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = LlavaNextForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    inputs = processor(images=Image.new("RGB", size_wh, "white"),
                       text="USER: <image>\nRate? ASSISTANT:", return_tensors="pt")
    with torch.inference_mode():
        model(**inputs)           # raises when tokens and image features do not match


def test_conversion_is_cached_by_content(tiny_original, tmp_path):
    first = ensure_converted(tiny_original, tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert ensure_converted(tiny_original, tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "converted" and first.name == checkpoint_fingerprint(tiny_original)
    copy = shutil.copytree(tiny_original, tmp_path / "copy")
    config = json.loads((copy / "config.json").read_text())
    config["mm_patch_merge_type"] = "spatial"
    (copy / "config.json").write_text(json.dumps(config))
    assert ensure_converted(copy, tmp_path) != first
    assert ensure_converted(first, tmp_path) == first          # already converted: as is


def test_not_a_llava_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelUnavailable, match="not LLaVA-NeXT"):
        checkpoint_layout(tmp_path)
    with pytest.raises(ModelUnavailable, match="no config.json"):
        checkpoint_layout(tmp_path / "nowhere")
