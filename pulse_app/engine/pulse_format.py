"""PULSE-7B as published (original LLaVA layout) <-> transformers LLaVA-NeXT, done exactly.

PULSE-ECG/PULSE-7B is a LLaVA-v1.6 checkpoint in the *original* LLaVA repository format
(``model_type: llava_llama``). transformers' ``LlavaNextForConditionalGeneration`` can run the same
weights, but three things must be reproduced by hand or the model silently sees a different input
than it was trained on:

1. **Image token layout** (``mm_patch_merge_type``). PULSE's config says ``flat``: the base image's
   features, then every tile's, concatenated (24x24 = 576 per tile for CLIP ViT-L/14-336), no
   unpadding, no ``image_newline``. transformers always does ``spatial_unpad``.
   :class:`PulseLlavaNextForConditionalGeneration` reads the merge type from the config and does
   what LLaVA's ``llava_arch.py`` does for ``flat``, ``spatial`` and ``spatial_unpad`` (with
   LLaVA's own unpad rounding, which differs from transformers' in edge cases).
2. **Image preprocessing** (LLaVA ``mm_utils.process_anyres_image``): :func:`anyres_pixel_values`.
3. **Prompt encoding** (LLaVA ``tokenizer_image_token`` with the slow, non-legacy Llama
   tokenizer): :class:`LlamaChunkEncoder` + :func:`pulse_app.conversation.encode_prompt`.

:func:`convert_checkpoint` writes a transformers folder from any checkpoint in the original
layout, deriving every shape from the config and the tensors. Geometry conventions: LLaVA writes
sizes and pinpoints as (width, height), transformers as (height, width); every function here says
which it takes.

>>> geo = AnyresGeometry(tile_px=336, patch_px=14, pinpoints_wh=PULSE_PINPOINTS_WH)
>>> geo.best_resolution_wh((1600, 800)), geo.image_token_count((1600, 800))
((672, 336), 1728)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig
from transformers.models.llava_next.modeling_llava_next import (
    LlavaNextForConditionalGeneration,
    LlavaNextModel,
    LlavaNextPreTrainedModel,
)

from pulse_app.conversation import IMAGE_PLACEHOLDER, ROLES, SEP, SEP2, SYSTEM_PROMPT
from pulse_app.errors import ModelUnavailable

log = logging.getLogger(__name__)

#: Bump when converted folders must be rebuilt (it is part of the cache fingerprint).
CONVERTER_VERSION = 2          # 2: processor counts the CLS token (num_additional_image_tokens=1)
#: Where provenance lives in a converted ``config.json``.
PROVENANCE_KEY = "pulse_app"
MERGE_TYPES = ("flat", "spatial", "spatial_unpad")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PULSE_PINPOINTS_WH = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))
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


# ================================================================================================
# Geometry: which tiles an image becomes, and how many image tokens that makes
# ================================================================================================

def select_best_resolution_wh(size_wh: tuple[int, int],
                              pinpoints_wh: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """LLaVA's ``select_best_resolution``: the pinpoint keeping most of the image's pixels
    (effective resolution), ties broken by least padding (waste), then by list order."""
    width, height = size_wh
    best, best_effective, best_waste = None, 0, float("inf")
    for pin_w, pin_h in pinpoints_wh:
        scale = min(pin_w / width, pin_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = pin_w * pin_h - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (pin_w, pin_h), effective, waste
    return best


def unpad_size_original(grid_hw: tuple[int, int], size_wh: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of the feature grid kept by LLaVA's ``unpad_image`` (int() rounding).

    transformers computes ``int(round(x, 7))`` instead of ``int(x)``: where ``x`` lands just
    below an integer in floating point, transformers keeps 2 more rows (or columns).
    """
    rows, cols = grid_hw
    width, height = size_wh
    if width / height > cols / rows:
        new_rows = int(height * (cols / width))
        pad = (rows - new_rows) // 2
        return rows - 2 * pad, cols
    new_cols = int(width * (rows / height))
    pad = (cols - new_cols) // 2
    return rows, cols - 2 * pad


@dataclass(frozen=True)
class AnyresGeometry:
    """How a LLaVA-NeXT model cuts an image into tiles and turns them into image tokens.

    ``tile_px`` is the vision tower's input size (336 for CLIP ViT-L/14-336), ``patch_px`` its
    patch size, ``pinpoints_wh`` the allowed grid resolutions as (width, height) in pixels.
    """

    tile_px: int
    patch_px: int
    pinpoints_wh: tuple[tuple[int, int], ...]
    merge_type: str = "flat"
    with_cls: bool = False           # vision_feature_select_strategy "full" keeps the CLS token

    def __post_init__(self):
        if self.merge_type not in MERGE_TYPES:
            raise ModelUnavailable(f"unsupported mm_patch_merge_type {self.merge_type!r}",
                                   hint=f"supported: {', '.join(MERGE_TYPES)}")
        if self.with_cls and self.merge_type != "flat":
            raise ModelUnavailable("the 'cls_patch' feature selection only works with 'flat' merging")

    @property
    def patches_per_side(self) -> int:
        return self.tile_px // self.patch_px

    @property
    def tokens_per_tile(self) -> int:
        return self.patches_per_side ** 2 + int(self.with_cls)

    def best_resolution_wh(self, size_wh: tuple[int, int]) -> tuple[int, int]:
        return select_best_resolution_wh(size_wh, self.pinpoints_wh)

    def grid_cols_rows(self, size_wh: tuple[int, int]) -> tuple[int, int]:
        """Tiles across and down for an image of ``size_wh`` pixels."""
        width, height = self.best_resolution_wh(size_wh)
        return math.ceil(width / self.tile_px), math.ceil(height / self.tile_px)

    def image_token_count(self, size_wh: tuple[int, int]) -> int:
        """Image tokens the model inserts for one image (what the prompt must reserve).

        >>> g = AnyresGeometry(336, 14, PULSE_PINPOINTS_WH)
        >>> [g.image_token_count(s) for s in [(672, 672), (2000, 600), (300, 300)]]
        [2880, 2304, 1728]
        """
        cols, rows = self.grid_cols_rows(size_wh)
        if self.merge_type in ("flat", "spatial"):
            return self.tokens_per_tile * (1 + cols * rows)
        side = self.patches_per_side
        kept_rows, kept_cols = unpad_size_original((rows * side, cols * side), size_wh)
        return side * side + kept_rows * (kept_cols + 1)

    @classmethod
    def from_config(cls, config) -> "AnyresGeometry":
        """From a (converted) ``LlavaNextConfig``; its pinpoints are (height, width)."""
        vision = config.vision_config
        return cls(tile_px=vision.image_size, patch_px=vision.patch_size,
                   pinpoints_wh=tuple((w, h) for h, w in config.image_grid_pinpoints),
                   merge_type=getattr(config, "mm_patch_merge_type", "spatial_unpad"),
                   with_cls=config.vision_feature_select_strategy == "full")


# ================================================================================================
# Image preprocessing (LLaVA mm_utils.process_anyres_image + the CLIP image processor)
# ================================================================================================

def anyres_crops(image: Image.Image, geometry: AnyresGeometry) -> list[Image.Image]:
    """The base image then the tiles, row by row, as LLaVA cuts them.

    The base image is the *whole* image squashed to tile x tile (aspect ratio not kept). The
    tiles come from the image resized into the best pinpoint keeping its aspect ratio (bicubic,
    size rounded up) and pasted centred on black.
    """
    image = image.convert("RGB")
    target_w, target_h = geometry.best_resolution_wh(image.size)
    width, height = image.size
    scale_w, scale_h = target_w / width, target_h / height    # this float order, as LLaVA:
    if scale_w < scale_h:                                      # 300 * (336/300) -> 337 rows
        new_w, new_h = target_w, min(math.ceil(height * scale_w), target_h)
    else:
        new_w, new_h = min(math.ceil(width * scale_h), target_w), target_h
    canvas = Image.new("RGB", (target_w, target_h), (0, 0, 0))
    canvas.paste(image.resize((new_w, new_h), Image.BICUBIC),
                 ((target_w - new_w) // 2, (target_h - new_h) // 2))
    tile = geometry.tile_px
    tiles = [canvas.crop((x, y, x + tile, y + tile))
             for y in range(0, target_h, tile) for x in range(0, target_w, tile)]
    return [image.resize((tile, tile), Image.BICUBIC)] + tiles


def clip_normalize(crop: Image.Image, mean=CLIP_MEAN, std=CLIP_STD) -> np.ndarray:
    """One tile-sized crop -> float32 (3, H, W), as CLIPImageProcessor computes it.

    (Its resize to the tile size and centre crop are identities here: every crop is tile-sized.)
    """
    pixels = (np.asarray(crop, dtype=np.uint8).astype(np.float64) * (1 / 255)).astype(np.float32)
    pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return pixels.transpose(2, 0, 1)


def anyres_pixel_values(image: Image.Image, geometry: AnyresGeometry,
                        mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """``pixel_values`` for one image: float32 tensor (1 + tiles, 3, tile, tile)."""
    return torch.from_numpy(np.stack([clip_normalize(c, mean, std)
                                      for c in anyres_crops(image, geometry)]))


# ================================================================================================
# Image token layout: LLaVA's merge types inside transformers' LlavaNextModel
# ================================================================================================

def merge_image_features(features: torch.Tensor, size_wh: tuple[int, int],
                         geometry: AnyresGeometry, image_newline: torch.Tensor | None = None
                         ) -> torch.Tensor:
    """One image's projected features (1 + tiles, tokens_per_tile, dim) -> (image_tokens, dim).

    ``flat``: base then tiles, each row-major (LLaVA ``x.flatten(0, 1)``). ``spatial``: base, then
    the tiles' patches as one big grid, row by row. ``spatial_unpad``: that grid with the black
    padding removed (LLaVA rounding) and ``image_newline`` after every row.
    """
    if geometry.merge_type == "flat" or features.shape[0] == 1:
        merged = features.flatten(0, 1)
        if geometry.merge_type == "spatial_unpad" and features.shape[0] == 1:
            merged = torch.cat((merged, image_newline[None].to(merged)), dim=0)
        return merged
    base, tiles = features[0], features[1:]
    side = geometry.patches_per_side
    cols, rows = geometry.grid_cols_rows(size_wh)
    grid = tiles.view(rows, cols, side, side, -1)
    if geometry.merge_type == "spatial":
        return torch.cat((base, grid.permute(0, 2, 1, 3, 4).flatten(0, 3)), dim=0)
    grid = grid.permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)      # (dim, H, W)
    kept_rows, kept_cols = unpad_size_original(tuple(grid.shape[1:]), size_wh)
    top, left = (grid.shape[1] - kept_rows) // 2, (grid.shape[2] - kept_cols) // 2
    grid = grid[:, top:top + kept_rows, left:left + kept_cols]
    newline = image_newline[:, None, None].expand(*grid.shape[:-1], 1).to(grid)
    grid = torch.cat((grid, newline), dim=-1)
    return torch.cat((base, grid.flatten(1, 2).transpose(0, 1)), dim=0)


class PulseLlavaNextModel(LlavaNextModel):
    """``LlavaNextModel`` whose image features are laid out per ``config.mm_patch_merge_type``."""

    def pack_image_features(self, image_features, image_sizes, vision_feature_select_strategy,
                            image_newline=None):
        geometry = AnyresGeometry.from_config(self.config)
        merged = [merge_image_features(feats, (int(size[1]), int(size[0])), geometry,
                                       image_newline)
                  for feats, size in zip(image_features, image_sizes)]   # sizes are (h, w)
        lengths = torch.tensor([m.shape[0] for m in merged], dtype=torch.long,
                               device=image_features[0].device)
        return merged, lengths


class PulseLlavaNextForConditionalGeneration(LlavaNextForConditionalGeneration):
    """Stock LLaVA-NeXT with LLaVA's merge types (see :class:`PulseLlavaNextModel`)."""

    def __init__(self, config: LlavaNextConfig):
        LlavaNextPreTrainedModel.__init__(self, config)
        self.model = PulseLlavaNextModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size,
                                 bias=False)
        self.post_init()


# ================================================================================================
# Prompt encoding: the slow Llama tokenizer LLaVA trained with, on sentencepiece directly
# ================================================================================================

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class LlamaChunkEncoder:
    """Tokenizes prompt chunks like transformers' slow ``LlamaTokenizer`` (what LLaVA used).

    ``legacy=False`` (Vicuna / LLaVA-1.6): every chunk gets one leading ``▁``; text right after a
    special token such as ``</s>`` gets none (``</s>USER`` -> ``</s>``, ``US``, ``ER``).
    ``legacy=True``: every piece of text between special tokens gets a leading ``▁``.
    transformers v5's ``LlamaTokenizer`` is a ``tokenizers`` BPE that differs on leading spaces
    (it never adds a second ``▁``), so prompts are encoded here instead.

    Call it with a chunk to get ``(token_id, char_start)`` pairs (no BOS); see
    :func:`pulse_app.conversation.encode_prompt`.
    """

    def __init__(self, model_file: str | Path, *, legacy: bool = False):
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2

        data = Path(model_file).read_bytes()
        self.legacy = legacy
        self._plain = spm.SentencePieceProcessor(model_proto=data)   # decoding
        proto = sentencepiece_model_pb2.ModelProto.FromString(data)
        if not legacy:
            proto.normalizer_spec.add_dummy_prefix = False
        self._sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        self.unk_id, self.bos_id, self.eos_id = (self._sp.unk_id(), self._sp.bos_id(),
                                                 self._sp.eos_id())
        self.vocab_size = self._sp.get_piece_size()
        self._specials = {self._sp.id_to_piece(i): i
                          for i in (self.unk_id, self.bos_id, self.eos_id) if i >= 0}
        self._split = re.compile("(" + "|".join(map(re.escape, self._specials)) + ")")
        self._unk = self._sp.id_to_piece(self.unk_id)
        self._unk_len = len(self._sp.encode(self._unk, out_type=str))

    def _pieces(self, text: str) -> list[str]:
        if self.legacy or not text.startswith(("▁", " ")):
            return self._sp.encode(text, out_type=str)
        pieces = self._sp.encode(self._unk + text, out_type=str)   # keeps the leading ▁
        return pieces[self._unk_len:] if len(pieces) >= self._unk_len else pieces

    @staticmethod
    def _starts(pieces: list[str], text: str) -> list[int]:
        """Character index in ``text`` where each piece's surface text begins."""
        char_at_byte, pos = {}, 0
        for i, char in enumerate(text):
            char_at_byte[pos] = i
            pos += len(char.encode("utf-8"))
        starts, pos = [], 0
        for piece in pieces:
            starts.append(char_at_byte.get(pos, starts[-1] if starts else 0))
            byte = _BYTE_PIECE.fullmatch(piece)
            pos += 1 if byte else len(piece.replace("▁", " ").encode("utf-8"))
        return starts

    def __call__(self, chunk: str) -> list[tuple[int, int]]:
        text, prefix = chunk, 0
        if not self.legacy and chunk:
            text, prefix = "▁" + chunk.replace("▁", " "), 1
        out: list[tuple[int, int]] = []
        position = 0
        for part in self._split.split(text):
            if part in self._specials:
                out.append((self._specials[part], position))
            elif part:
                pieces = self._pieces(part)
                dummy = " " if self.legacy else ""      # sentencepiece's own dummy prefix
                normal = dummy + part.replace("▁", " ")
                for piece, start in zip(pieces, self._starts(pieces, normal)):
                    out.append((self._sp.piece_to_id(piece), position + max(start - len(dummy), 0)))
            position += len(part)
        if (not self.legacy and len(out) > 1 and self._sp.id_to_piece(out[0][0]) == "▁"
                and self._sp.id_to_piece(out[1][0]) in self._specials):
            out = out[1:]
        return [(token, max(start - prefix, 0)) for token, start in out]

    def ids(self, chunk: str) -> list[int]:
        return [token for token, _ in self(chunk)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids (special and out-of-vocabulary ids skipped)."""
        keep = [i for i in ids if 0 <= i < self.vocab_size and i not in self._specials.values()]
        return self._plain.decode(keep)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "LlamaChunkEncoder":
        """From a checkpoint folder: ``tokenizer.model``, ``legacy`` from ``tokenizer_config.json``
        when present (LLaVA-1.6 / Vicuna say false), otherwise false."""
        folder = Path(folder)
        model_file = folder / "tokenizer.model"
        if not model_file.is_file():
            raise ModelUnavailable(f"{folder} has no sentencepiece tokenizer.model",
                                   hint="PULSE-style models need it to encode prompts exactly "
                                        "as in training")
        legacy = False
        config_file = folder / "tokenizer_config.json"
        if config_file.is_file():
            legacy = bool(json.loads(config_file.read_text()).get("legacy", False))
        return cls(model_file, legacy=legacy)


def llava_v1_chat_template() -> str:
    """Jinja chat template reproducing :func:`pulse_app.conversation.build_prompt` (llava_v1).

    Messages use transformers' format: ``{"role": "user", "content": [{"type": "image"},
    {"type": "text", "text": "..."}]}`` or a plain string. The first image goes to the front of
    its turn as ``<image>\\n``, as LLaVA does.
    """
    user, assistant = ROLES
    return (
        "{%- set ns = namespace(system=" + json.dumps(SYSTEM_PROMPT) + ", image_done=false) -%}"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set ns.system = messages[0]['content'] if messages[0]['content'] is string "
        "else messages[0]['content'][0]['text'] -%}{%- endif -%}"
        "{{- ns.system + " + json.dumps(SEP) + " -}}"
        "{%- for message in messages if message['role'] != 'system' -%}"
        "{%- set ns.text = '' -%}{%- set ns.image = false -%}"
        "{%- if message['content'] is string -%}{%- set ns.text = message['content'] -%}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'text' -%}{%- set ns.text = ns.text + part['text'] -%}"
        "{%- elif part['type'] == 'image' -%}{%- set ns.image = true -%}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{%- if message['role'] == 'user' -%}{{- '" + user + ": ' -}}"
        "{%- if ns.image and not ns.image_done -%}{{- " + json.dumps(IMAGE_PLACEHOLDER + "\n")
        + " -}}{%- set ns.image_done = true -%}{%- endif -%}"
        "{{- ns.text | trim -}}{{- " + json.dumps(SEP) + " -}}"
        "{%- else -%}{{- '" + assistant + ": ' + (ns.text | trim) + " + json.dumps(SEP2)
        + " -}}{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '" + assistant + ":' -}}{%- endif -%}"
    )


# ================================================================================================
# Reading a checkpoint in the original LLaVA layout
# ================================================================================================

def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ModelUnavailable(f"{folder} has no config.json", hint="is it a model folder?")
    return json.loads(path.read_text())


def checkpoint_layout(folder: str | Path) -> str:
    """``"transformers"`` (LLaVA-NeXT) or ``"original"`` (LLaVA repository format)."""
    config = read_config(Path(folder))
    if config.get("model_type") == "llava_next":
        return "transformers"
    if config.get("model_type") == "llava_llama" or "mm_vision_tower" in config:
        return "original"
    raise ModelUnavailable(f"{folder} holds a {config.get('model_type')!r} model, not LLaVA-NeXT "
                           "or PULSE/LLaVA", hint="point --model at a PULSE-style checkpoint")


def checkpoint_weight_files(folder: str | Path) -> list[Path]:
    """The weight files of a checkpoint: one or sharded safetensors, or one or sharded ``.bin``."""
    folder = Path(folder)
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = folder / index_name
        if index.is_file():
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [n for n in names if not (folder / n).is_file()]
            if missing:
                raise ModelUnavailable(f"checkpoint {folder} is incomplete: {missing[0]} is missing",
                                       hint="download it again")
            return [folder / n for n in names]
        if (folder / single).is_file():
            return [folder / single]
    raise ModelUnavailable(f"no weights (*.safetensors or *.bin) in {folder}")


def iter_checkpoint_tensors(folder: str | Path) -> Iterator[tuple[Path, dict[str, torch.Tensor]]]:
    """Each weight file and its tensors, one file in memory at a time."""
    from safetensors.torch import load_file

    for path in checkpoint_weight_files(folder):
        if path.suffix == ".safetensors":
            yield path, load_file(path)
        else:
            yield path, torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def checkpoint_shapes(folder: str | Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, read from headers where the format allows."""
    from safetensors import safe_open

    shapes = {}
    for path in checkpoint_weight_files(folder):
        if path.suffix == ".safetensors":
            with safe_open(path, "pt") as f:
                shapes.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            shapes.update({k: tuple(v.shape) for k, v in state.items()})
    return shapes


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


# ================================================================================================
# Conversion
# ================================================================================================

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
`pulse_app.engine.pulse_format.PulseLlavaNextForConditionalGeneration`, LLaVA's anyres
preprocessing (`anyres_pixel_values`) and prompt encoding (`LlamaChunkEncoder` +
`pulse_app.conversation.encode_prompt`), as `python -m pulse_app ask` does.

Added tokens: `<image>` (id = original vocabulary size) and padding rows up to a multiple of 64;
their output rows are zero and `generation_config.json` suppresses them.
"""


def convert_checkpoint(src: str | Path, dst: str | Path, *, vision_heads: int | None = None,
                       progress: Progress | None = None) -> Path:
    """Write a transformers LLaVA-NeXT folder for an original-layout LLaVA checkpoint.

    Weights are renamed (never cast: bf16 stays bf16), one source shard in memory at a time;
    ``<image>`` is added to the vocabulary; processor, tokenizer (with the llava_v1 chat
    template), generation config, the merge type and our provenance are written.

    >>> convert_checkpoint("PULSE-7B-download", "PULSE-7B-hf")    # doctest: +SKIP
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
