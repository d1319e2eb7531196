"""PULSE-7B as published (original LLaVA layout) -> a transformers LLaVA-NeXT folder, exactly.

PULSE-ECG/PULSE-7B is a LLaVA-v1.6 checkpoint in the *original* LLaVA repository format
(``model_type: llava_llama``). :func:`convert_checkpoint` writes a transformers folder from any
checkpoint in that layout, deriving every shape from the config and the tensors: weights renamed
(dtype kept), ``<image>`` added to the vocabulary, the merge type kept in ``config.json`` (run it
with :class:`~pulse_app.engine.pulse_model.PulseLlavaNextForConditionalGeneration`), processor,
tokenizer with the llava_v1 chat template, generation config and our provenance.
:func:`ensure_converted` does that once per checkpoint, into a cache.

>>> convert_checkpoint("PULSE-7B-download", "PULSE-7B-hf")    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig

from pulse_app.conversation import IMAGE_PLACEHOLDER, llava_v1_chat_template
from pulse_app.engine.anyres import CLIP_MEAN, CLIP_STD, PULSE_PINPOINTS_WH, AnyresGeometry
from pulse_app.engine.checkpoint import (
    PROVENANCE_KEY,
    checkpoint_layout,
    checkpoint_shapes,
    checkpoint_weight_files,
    iter_checkpoint_tensors,
    read_config,
)
from pulse_app.engine.llama_tokenizer import LlamaChunkEncoder
from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration
from pulse_app.errors import ModelUnavailable

log = logging.getLogger(__name__)

#: Bump when converted folders must be rebuilt (it is part of the cache fingerprint).
CONVERTER_VERSION = 2          # 2: processor counts the CLS token (num_additional_image_tokens=1)
#: What the published ``config.json`` of PULSE-ECG/PULSE-7B says, as far as the PULSE and LLaVA
#: sources tell (llava-v1.6-vicuna-7b's config with PULSE's training flags; the published file
#: wins where they differ). Used to build PULSE-7B's exact shapes without the weights.
PULSE_7B_ORIGINAL_CONFIG = {
    "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama",
    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu",
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "rope_scaling": None, "attention_bias": False, "tie_word_embeddings": False,
    "vocab_size": 32000, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    "mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_hidden_size": 1024,
    "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch", "mm_patch_merge_type": "flat",
    "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
    "image_aspect_ratio": "anyres", "image_grid_pinpoints": [list(p) for p in PULSE_PINPOINTS_WH],
    "tokenizer_model_max_length": 4096, "tokenizer_padding_side": "right",
    "torch_dtype": "bfloat16", "use_cache": True,
}
#: Attention heads, activation and epsilon cannot be read from tensor shapes: known towers.
KNOWN_VISION_TOWERS = {
    "openai/clip-vit-large-patch14-336": dict(hidden=1024, heads=16, act="quick_gelu", eps=1e-5),
    "openai/clip-vit-large-patch14": dict(hidden=1024, heads=16, act="quick_gelu", eps=1e-5),
    "openai/clip-vit-base-patch16": dict(hidden=768, heads=12, act="quick_gelu", eps=1e-5),
    "openai/clip-vit-base-patch32": dict(hidden=768, heads=12, act="quick_gelu", eps=1e-5),
}
#: Rule for unknown towers (override with ``vision_heads=``): 64-dimensional heads, like CLIP.
DEFAULT_VISION_HEAD_DIM = 64


# -- names ----------------------------------------------------------------------------------------
# Original (LlavaLlamaForCausalLM)             -> transformers LlavaNextForConditionalGeneration
_RENAMES = (
    (r"^model\.vision_tower\.vision_tower\.vision_model\.", "model.vision_tower.vision_model."),
    (r"^model\.mm_projector\.0\.", "model.multi_modal_projector.linear_1."),
    (r"^model\.mm_projector\.2\.", "model.multi_modal_projector.linear_2."),
    (r"^model\.image_newline$", "model.image_newline"),
    (r"^model\.(embed_tokens|layers|norm)\b", r"model.language_model.\1"),
    (r"^lm_head\.", "lm_head."),
)
#: Buffers older checkpoints saved that carry no learned weights.
_DROPPED = (r"\.rotary_emb\.inv_freq$", r"\.position_ids$")
VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."


def rename_original_key(key: str) -> str | None:
    """Transformers name of an original-layout tensor; None for buffers to drop.

    The vision tower is written as ``model.vision_tower.vision_model.*``: transformers v5
    loads it into its flattened ``CLIPVisionModel`` (``model.vision_tower.embeddings...``) and
    v4.5x reads it natively.
    """
    if any(re.search(p, key) for p in _DROPPED):
        return None
    for pattern, target in _RENAMES:
        if re.search(pattern, key):
            return re.sub(pattern, target, key)
    raise ModelUnavailable(f"unexpected tensor {key!r} in an original-layout LLaVA checkpoint",
                           hint="this converter handles LLaVA-LLaMA (v1.5/v1.6) checkpoints")



# -- configs --------------------------------------------------------------------------------------

def text_config_from_original(config: Mapping, vocab_rows: int) -> LlamaConfig:
    """The Llama half, from the llava_llama config's Llama fields."""
    rope = dict(config.get("rope_scaling") or {})
    rope.setdefault("rope_type", rope.pop("type", "default"))
    rope["rope_theta"] = float(config.get("rope_theta", 10000.0))
    heads = config["num_attention_heads"]
    return LlamaConfig(
        vocab_size=vocab_rows, hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=config.get("num_key_value_heads") or heads,
        hidden_act=config.get("hidden_act", "silu"),
        max_position_embeddings=config.get("max_position_embeddings", 4096),
        rms_norm_eps=config.get("rms_norm_eps", 1e-6), rope_parameters=rope,
        attention_bias=config.get("attention_bias", False), mlp_bias=config.get("mlp_bias", False),
        tie_word_embeddings=config.get("tie_word_embeddings", False),
        bos_token_id=config.get("bos_token_id", 1), eos_token_id=config.get("eos_token_id", 2),
        pad_token_id=config.get("pad_token_id", 0))


def vision_config_from_shapes(shapes: Mapping[str, Sequence[int]], tower_name: str | None,
                              *, heads: int | None = None) -> CLIPVisionConfig:
    """The CLIP tower's config from its tensors' shapes (original-layout names).

    Heads, activation and epsilon are not in the shapes: ``heads`` if given, else the
    :data:`KNOWN_VISION_TOWERS` entry for ``tower_name`` (when its width matches), else
    ``hidden / 64`` heads, ``quick_gelu`` and 1e-5 (CLIP's choices).
    """
    def shape(name):
        if VISION_PREFIX + name not in shapes:
            raise ModelUnavailable(f"the checkpoint has no vision tower weights ({name} missing)",
                                   hint="PULSE checkpoints carry their own tuned CLIP tower; "
                                        "a tower downloaded separately would not match")
        return tuple(shapes[VISION_PREFIX + name])

    hidden, channels, patch, _ = shape("embeddings.patch_embedding.weight")
    positions = shape("embeddings.position_embedding.weight")[0]
    side = math.isqrt(positions - 1)
    if side * side != positions - 1:
        raise ModelUnavailable(f"vision tower has {positions} positions, not a square grid + CLS")
    layers = {int(m.group(1)) for k in shapes
              if (m := re.match(re.escape(VISION_PREFIX) + r"encoder\.layers\.(\d+)\.", k))}
    known = KNOWN_VISION_TOWERS.get(tower_name or "")
    if known and known["hidden"] != hidden:
        known = None
    heads = heads or (known["heads"] if known else max(1, hidden // DEFAULT_VISION_HEAD_DIM))
    if hidden % heads:
        raise ModelUnavailable(f"vision width {hidden} is not divisible by {heads} heads",
                               hint="pass the tower's head count (convert --vision-heads N)")
    return CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=shape("encoder.layers.0.mlp.fc1.weight")[0],
        num_hidden_layers=len(layers), num_attention_heads=heads, num_channels=channels,
        image_size=side * patch, patch_size=patch,
        hidden_act=known["act"] if known else "quick_gelu",
        layer_norm_eps=known["eps"] if known else 1e-5)


def padded_vocab(rows: int, multiple: int = 64) -> int:
    """Embedding rows after adding ``<image>`` (id ``rows``), rounded up for fast matmuls."""
    return -(-(rows + 1) // multiple) * multiple


def transformers_config_from_original(config: Mapping, shapes: Mapping[str, Sequence[int]], *,
                                      vision_heads: int | None = None) -> LlavaNextConfig:
    """The full LLaVA-NeXT config for an original-layout checkpoint (names -> shapes given)."""
    if config.get("image_aspect_ratio", "anyres") != "anyres":
        raise ModelUnavailable(f"image_aspect_ratio {config.get('image_aspect_ratio')!r} is not "
                               "supported", hint="only LLaVA-NeXT 'anyres' checkpoints run here")
    projector = config.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise ModelUnavailable(f"projector {projector!r} is not supported (only mlp2x_gelu)")
    if config.get("mm_use_im_start_end") or config.get("mm_use_im_patch_token"):
        raise ModelUnavailable("checkpoints with image start/end/patch tokens are not supported")
    select = config.get("mm_vision_select_feature", "patch")
    if select not in ("patch", "cls_patch"):
        raise ModelUnavailable(f"mm_vision_select_feature {select!r} is not supported")
    rows = shapes["model.embed_tokens.weight"][0]
    vision = vision_config_from_shapes(shapes, config.get("mm_vision_tower"), heads=vision_heads)
    merge = config.get("mm_patch_merge_type", "flat")     # LLaVA's train.py default
    AnyresGeometry(vision.image_size, vision.patch_size, ((1, 1),), merge,  # validates the pair
                   with_cls=select == "cls_patch")
    llava = LlavaNextConfig(
        vision_config=vision, text_config=text_config_from_original(config, padded_vocab(rows)),
        image_token_index=rows, projector_hidden_act="gelu",
        multimodal_projector_bias="model.mm_projector.0.bias" in shapes,
        vision_feature_layer=config.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="default" if select == "patch" else "full",
        image_grid_pinpoints=[[h, w] for w, h in config["image_grid_pinpoints"]],
        image_seq_length=(vision.image_size // vision.patch_size) ** 2,
        tie_word_embeddings=config.get("tie_word_embeddings", False))
    llava.mm_patch_merge_type = merge
    return llava


def pulse7b_config() -> LlavaNextConfig:
    """PULSE-7B's exact transformers config, from :data:`PULSE_7B_ORIGINAL_CONFIG` and the shapes
    of CLIP ViT-L/14-336 and Llama-2-7B (no weights needed)."""
    shapes = {"model.embed_tokens.weight": (32000, 4096), "model.mm_projector.0.bias": (4096,),
              VISION_PREFIX + "embeddings.patch_embedding.weight": (1024, 3, 14, 14),
              VISION_PREFIX + "embeddings.position_embedding.weight": (577, 1024)}
    for layer in range(24):
        shapes[VISION_PREFIX + f"encoder.layers.{layer}.mlp.fc1.weight"] = (4096, 1024)
    return transformers_config_from_original(PULSE_7B_ORIGINAL_CONFIG, shapes)


# -- conversion -----------------------------------------------------------------------------------

Progress = Callable[[str], None]


def _expected_keys(config: LlavaNextConfig) -> set[str]:
    """Tensor names a converted folder must hold (the model built on the meta device)."""
    with torch.device("meta"):
        model = PulseLlavaNextForConditionalGeneration(config)
    keys = set(model.state_dict())
    return {k.replace("model.vision_tower.", "model.vision_tower.vision_model.", 1)
            if k.startswith("model.vision_tower.") else k for k in keys}


def _extend_vocab(name: str, tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Add the rows of ``<image>`` and padding. Embeddings: the mean row (never read: image
    features replace it). lm_head: zeros (and generation_config suppresses those ids)."""
    extra = rows - tensor.shape[0]
    if name.endswith("embed_tokens.weight"):
        fill = tensor.float().mean(0, keepdim=True).to(tensor.dtype).expand(extra, -1)
    else:
        fill = tensor.new_zeros(extra, tensor.shape[1])
    return torch.cat((tensor, fill), dim=0).contiguous()


def _write_tokenizer_and_processor(src: Path, dst: Path, config: LlavaNextConfig) -> None:
    from transformers import LlamaTokenizer, LlavaNextImageProcessor, LlavaNextProcessor

    encoder = LlamaChunkEncoder.from_folder(src)      # checks tokenizer.model, reads legacy
    rows = config.image_token_index
    if encoder.vocab_size > rows:
        raise ModelUnavailable(f"tokenizer has {encoder.vocab_size} tokens but the embeddings "
                               f"only {rows} rows")
    shutil.copy(src / "tokenizer.model", dst / "tokenizer.model")
    # transformers v5 builds a `tokenizers` BPE from the sentencepiece file (for stock users)
    tokenizer = LlamaTokenizer.from_pretrained(str(dst), legacy=encoder.legacy)
    if rows > encoder.vocab_size:          # tokens the original added (e.g. [PAD]): keep the ids
        tokenizer.add_tokens([f"<extra_{i}>" for i in range(rows - encoder.vocab_size)])
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_PLACEHOLDER]})
    tokenizer.pad_token = tokenizer.unk_token              # LLaVA v1 pads with <unk>
    if tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER) != rows:
        raise ModelUnavailable("could not give <image> the id the converted model expects")
    tokenizer.chat_template = llava_v1_chat_template()
    side = config.vision_config.image_size
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side},
        image_grid_pinpoints=config.image_grid_pinpoints, image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD))
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,          # CLIP's CLS token ("default" drops it again)
        chat_template=tokenizer.chat_template)
    processor.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    config_file = dst / "tokenizer_config.json"      # keep the flag our encoder reads
    saved = json.loads(config_file.read_text())
    saved["legacy"] = encoder.legacy
    config_file.write_text(json.dumps(saved, indent=2))


def _write_generation_config(dst: Path, config: LlavaNextConfig, original: Mapping) -> None:
    from transformers import GenerationConfig

    rows = config.image_token_index
    GenerationConfig(
        bos_token_id=original.get("bos_token_id", 1), eos_token_id=original.get("eos_token_id", 2),
        pad_token_id=original.get("pad_token_id", 0), do_sample=True, temperature=0.2, top_p=0.7,
        max_new_tokens=512, suppress_tokens=list(range(rows, config.text_config.vocab_size)),
    ).save_pretrained(dst)


def _model_card(src_name: str, merge: str, dtype: str) -> str:
    return f"""# {src_name} (transformers LLaVA-NeXT layout)

Converted by `python -m pulse_app convert` from the original LLaVA layout (converter version
{CONVERTER_VERSION}); weights kept in {dtype}, the vision tower taken from the checkpoint.

**Image token layout: `mm_patch_merge_type = {merge}`** (stored in `config.json`). Stock
`LlavaNextForConditionalGeneration` and `LlavaNextProcessor` always lay image tokens out as
`spatial_unpad`; for a `flat` model that is not what it was trained on. Run it with
`pulse_app.engine.pulse_model.PulseLlavaNextForConditionalGeneration`, LLaVA's anyres
preprocessing (`pulse_app.engine.anyres.anyres_pixel_values`) and prompt encoding
(`pulse_app.engine.llama_tokenizer.LlamaChunkEncoder` + `pulse_app.conversation.encode_prompt`),
as `python -m pulse_app ask` does.

Added tokens: `<image>` (id = original vocabulary size) and padding rows up to a multiple of 64;
their output rows are zero and `generation_config.json` suppresses them.
"""


def convert_checkpoint(src: str | Path, dst: str | Path, *, vision_heads: int | None = None,
                       progress: Progress | None = None) -> Path:
    """Write a transformers LLaVA-NeXT folder for an original-layout LLaVA checkpoint.

    Weights are renamed (never cast: bf16 stays bf16), one source shard in memory at a time;
    ``<image>`` is added to the vocabulary; processor, tokenizer (with the llava_v1 chat
    template), generation config, the merge type and our provenance are written.

    """
    src, dst = Path(src), Path(dst)
    say = progress or (lambda message: log.info(message))
    original = read_config(src)
    if checkpoint_layout(src) != "original":
        raise ModelUnavailable(f"{src} is already in the transformers layout")
    shapes = checkpoint_shapes(src)
    if "model.embed_tokens.weight" not in shapes:
        raise ModelUnavailable(f"{src} has no model.embed_tokens.weight: not a LLaVA-LLaMA model")
    config = transformers_config_from_original(original, shapes, vision_heads=vision_heads)
    merge = config.mm_patch_merge_type
    rows, padded = config.image_token_index, config.text_config.vocab_size

    renamed = {rename_original_key(k) for k in shapes} - {None}
    expected = _expected_keys(config)
    synthesized = []
    if "model.image_newline" not in renamed and merge != "spatial_unpad":
        synthesized.append("model.image_newline")           # unused by flat / spatial
    missing = sorted(expected - renamed - set(synthesized))
    if missing:
        raise ModelUnavailable(f"checkpoint {src} lacks {len(missing)} tensors (e.g. {missing[0]})",
                               hint="it is incomplete or not a LLaVA-NeXT checkpoint")
    unknown = sorted(renamed - expected)
    if unknown:
        raise ModelUnavailable(f"checkpoint {src} has tensors this model has no place for "
                               f"(e.g. {unknown[0]})", hint="check --vision-heads and the config")

    dst.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    files = checkpoint_weight_files(src)
    weight_map, dtypes = {}, set()
    for number, (path, tensors) in enumerate(iter_checkpoint_tensors(src), start=1):
        say(f"converting weights {number}/{len(files)} ({path.name})")
        out = {}
        for key, tensor in tensors.items():
            new = rename_original_key(key)
            if new is None:
                continue
            if new in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
                tensor = _extend_vocab(new, tensor, padded)
            out[new] = tensor.contiguous()
            dtypes.add(tensor.dtype)
        if number == len(files):
            dtype = next(iter(dtypes)) if len(dtypes) == 1 else torch.float32
            for key in synthesized:
                out[key] = torch.zeros(config.text_config.hidden_size, dtype=dtype)
        name = ("model.safetensors" if len(files) == 1
                else f"model-{number:05d}-of-{len(files):05d}.safetensors")
        save_file(out, dst / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in out})
        del tensors, out
    if len(files) > 1:
        total = sum((dst / n).stat().st_size for n in set(weight_map.values()))
        (dst / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
            indent=2))

    dtype_name = str(dtype).replace("torch.", "")
    config.dtype = dtype_name
    setattr(config, PROVENANCE_KEY, {
        "converted_from": original.get("_name_or_path") or src.name,
        "converter_version": CONVERTER_VERSION, "source_layout": "llava_llama",
        "mm_patch_merge_type": merge, "added_tokens": {IMAGE_PLACEHOLDER: rows},
        "synthesized": synthesized,
        **{k: v for k, v in original.get(PROVENANCE_KEY, {}).items() if k in ("name", "trained")},
    })
    config.save_pretrained(dst)
    _write_generation_config(dst, config, original)
    say("writing tokenizer and processor")
    _write_tokenizer_and_processor(src, dst, config)
    (dst / "README.md").write_text(_model_card(original.get("_name_or_path") or src.name, merge,
                                               dtype_name))
    return dst


def checkpoint_fingerprint(folder: str | Path) -> str:
    """Short hash identifying a checkpoint's content (configs, tokenizer, weight files' names,
    sizes and first and last MiB) and the converter version."""
    folder = Path(folder)
    digest = hashlib.sha256(f"converter {CONVERTER_VERSION}".encode())
    for name in ("config.json", "tokenizer.model", "tokenizer_config.json"):
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
    for path in checkpoint_weight_files(folder):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as f:
            digest.update(f.read(1 << 20))
            f.seek(max(size - (1 << 20), 0))
            digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]


def ensure_converted(src: str | Path, cache_dir: str | Path, *,
                     progress: Progress | None = None) -> Path:
    """The transformers folder for ``src``: ``src`` itself if already converted, else a cached
    conversion in ``<cache_dir>/converted/<fingerprint>`` (built once, atomically)."""
    src = Path(src)
    if checkpoint_layout(src) == "transformers":
        return src
    target = Path(cache_dir) / "converted" / checkpoint_fingerprint(src)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    (progress or log.info)(f"converting {src} to the transformers layout (once)")
    work = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        convert_checkpoint(src, work, progress=progress)
        try:
            work.rename(target)
        except OSError:                 # another process finished first: use theirs
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
