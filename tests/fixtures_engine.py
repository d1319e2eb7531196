"""Fixtures for the engine tests (registered in conftest.py), and references for them.

The references re-state what the original LLaVA code (haotian-liu/LLaVA 1.2.2, transformers
4.37's slow ``LlamaTokenizer``) does, step by step in its own terms, independently of
``pulse_app.engine``; the tests compare our implementation against them.

Fixtures other areas may use: ``tiny_original`` (a tiny checkpoint in PULSE's published layout),
``tiny_model_dir`` (the same, converted), ``tiny_backend`` (a loaded ``LocalBackend`` on it, CPU),
``ecg_image`` (a real ECG printout, PIL RGB).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

IMAGE_TOKEN_INDEX = -200      # LLaVA's placeholder id for <image>
IGNORE_INDEX = -100


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_original(tmp_path_factory) -> Path:
    from pulse_app.engine.tiny import build_tiny_original

    return build_tiny_original(tmp_path_factory.mktemp("tiny") / "original")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_original, tmp_path_factory) -> Path:
    from pulse_app.engine.convert import convert_checkpoint

    return convert_checkpoint(tiny_original, tmp_path_factory.mktemp("tiny") / "converted")


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir, tmp_path_factory):
    from pulse_app.engine.local import LocalBackend

    backend = LocalBackend(str(tiny_model_dir), device="cpu",
                           cache_dir=tmp_path_factory.mktemp("cache"), progress=lambda m: None)
    backend.load()
    return backend


@pytest.fixture(scope="session")
def ecg_image(shared_data):
    from PIL import Image

    return Image.open(shared_data / "ecg-images" / "ecg00010.png").convert("RGB")


# -- reference: transformers 4.37 slow LlamaTokenizer (legacy flag), on sentencepiece ------------

class SlowLlamaReference:
    """``LlamaTokenizer(use_fast=False)`` as LLaVA used it: ``tokenize`` adds ``▁`` in front of
    the text (non-legacy), splits on special tokens, and ``_tokenize`` encodes each piece with a
    sentencepiece model whose dummy prefix is off (non-legacy), through the ``<unk>`` trick."""

    SPECIALS = ("<unk>", "<s>", "</s>")

    def __init__(self, model_file, legacy=False):
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(Path(model_file).read_bytes())
        if not legacy:
            proto.normalizer_spec.add_dummy_prefix = False
        self.sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        self.legacy = legacy
        self.unk_token_length = len(self.sp.encode("<unk>", out_type=str))
        self.bos_token_id = self.sp.bos_id()

    def _tokenize(self, text):
        if self.legacy or not text.startswith(("▁", " ")):
            return self.sp.encode(text, out_type=str)
        tokens = self.sp.encode("<unk>" + text, out_type=str)
        return tokens[self.unk_token_length:] if len(tokens) >= self.unk_token_length else tokens

    def tokenize(self, text):
        if not self.legacy and len(text) > 0:
            text = "▁" + text.replace("▁", " ")
        pieces = re.split("(" + "|".join(map(re.escape, self.SPECIALS)) + ")", text)
        tokens = []
        for piece in pieces:
            if piece in self.SPECIALS:
                tokens.append(piece)
            elif piece:
                tokens.extend(self._tokenize(piece))
        if (not self.legacy and len(tokens) > 1 and tokens[0] == "▁"
                and tokens[1] in self.SPECIALS):
            tokens = tokens[1:]
        return tokens

    def __call__(self, text):
        """``tokenizer(text).input_ids``: BOS + ids."""
        return [self.bos_token_id] + [self.sp.piece_to_id(t) for t in self.tokenize(text)]


def llava_tokenizer_image_token(prompt, tokenizer, image_token_index=IMAGE_TOKEN_INDEX):
    """LLaVA ``mm_utils.tokenizer_image_token``: one placeholder id per ``<image>``."""
    prompt_chunks = [tokenizer(chunk) for chunk in prompt.split("<image>")]
    input_ids, offset = [], 0
    if prompt_chunks and prompt_chunks[0] and prompt_chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])
    separated = []
    for chunk in prompt_chunks:
        separated += [chunk, [image_token_index] * (offset + 1)]
    for part in separated[:-1]:
        input_ids.extend(part[offset:])
    return input_ids


def llava_round_adjustment(tokenizer):
    """Tokens a later round gains when tokenized on its own (``▁USER...``) instead of after
    ``</s>`` (``USER...``). LLaVA hard-codes 1, its value for the Llama/Vicuna vocabulary
    (``▁US`` ``ER`` vs ``USER``); another vocabulary (our tiny one has ``▁USER``) needs its own."""
    alone = tokenizer.tokenize("USER: a")
    in_context = tokenizer.tokenize("x</s>USER: a")
    return len(alone) - (len(in_context) - in_context.index("</s>") - 1)


def llava_v1_training_targets(conversation, tokenizer):
    """LLaVA ``train.preprocess_v1`` masking for one conversation (with an image):
    token ids and targets, ``IGNORE_INDEX`` where no loss is computed (its ``- 1`` for later
    rounds generalised by :func:`llava_round_adjustment`)."""
    adjust = llava_round_adjustment(tokenizer)
    input_ids = llava_tokenizer_image_token(conversation, tokenizer)
    target = list(input_ids)
    sep = " " + "ASSISTANT" + ": "
    cur_len = 1
    target[:cur_len] = [IGNORE_INDEX] * cur_len
    for i, rou in enumerate(conversation.split("</s>")):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) != 2:
            break
        parts[0] += sep
        round_len = len(llava_tokenizer_image_token(rou, tokenizer))
        instruction_len = len(llava_tokenizer_image_token(parts[0], tokenizer)) - 2
        if i != 0 and not tokenizer.legacy:
            round_len -= adjust
            instruction_len -= adjust
        target[cur_len:cur_len + instruction_len] = [IGNORE_INDEX] * instruction_len
        cur_len += round_len
    target[cur_len:] = [IGNORE_INDEX] * (len(target) - cur_len)
    assert cur_len == len(input_ids), "LLaVA would have flagged a tokenization mismatch"
    return input_ids, target


# -- reference: LLaVA mm_utils anyres preprocessing ----------------------------------------------

def llava_select_best_resolution(original_size, possible_resolutions):
    original_width, original_height = original_size
    best_fit, max_effective_resolution, min_wasted_resolution = None, 0, float("inf")
    for width, height in possible_resolutions:
        scale = min(width / original_width, height / original_height)
        downscaled_width = int(original_width * scale)
        downscaled_height = int(original_height * scale)
        effective_resolution = min(downscaled_width * downscaled_height,
                                   original_width * original_height)
        wasted_resolution = (width * height) - effective_resolution
        if effective_resolution > max_effective_resolution or (
                effective_resolution == max_effective_resolution
                and wasted_resolution < min_wasted_resolution):
            max_effective_resolution = effective_resolution
            min_wasted_resolution = wasted_resolution
            best_fit = (width, height)
    return best_fit


def llava_process_anyres_image(image, tile, grid_pinpoints):
    """``process_anyres_image`` with openai/clip-vit-large-patch14-336's CLIPImageProcessor
    settings scaled to ``tile``; returns a float32 torch tensor (1 + tiles, 3, tile, tile)."""
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": tile},
                                   crop_size={"height": tile, "width": tile})
    best_resolution = llava_select_best_resolution(image.size, grid_pinpoints)
    # resize_and_pad_image
    original_width, original_height = image.size
    target_width, target_height = best_resolution
    scale_w = target_width / original_width
    scale_h = target_height / original_height
    if scale_w < scale_h:
        new_width = target_width
        new_height = min(math.ceil(original_height * scale_w), target_height)
    else:
        new_height = target_height
        new_width = min(math.ceil(original_width * scale_h), target_width)
    resized_image = image.resize((new_width, new_height))      # Pillow's default: bicubic
    image_padded = Image.new("RGB", (target_width, target_height), (0, 0, 0))
    image_padded.paste(resized_image, ((target_width - new_width) // 2,
                                       (target_height - new_height) // 2))
    # divide_to_patches
    patches = []
    width, height = image_padded.size
    for i in range(0, height, tile):
        for j in range(0, width, tile):
            patches.append(image_padded.crop((j, i, j + tile, i + tile)))
    image_original_resize = image.resize((tile, tile))
    image_patches = [image_original_resize] + patches
    return torch.stack([processor.preprocess(p, return_tensors="pt")["pixel_values"][0]
                        for p in image_patches])


# -- reference: LLaVA llava_arch.py image feature merging ----------------------------------------

def llava_unpad_image(tensor, original_size):
    original_width, original_height = original_size
    current_height, current_width = tensor.shape[1:]
    if original_width / original_height > current_width / current_height:
        scale_factor = current_width / original_width
        new_height = int(original_height * scale_factor)
        padding = (current_height - new_height) // 2
        return tensor[:, padding:current_height - padding, :]
    scale_factor = current_height / original_height
    new_width = int(original_width * scale_factor)
    padding = (current_width - new_width) // 2
    return tensor[:, :, padding:current_width - padding]


def llava_merge(image_feature, image_size_wh, merge_type, grid_pinpoints, tile, patches_per_side,
                image_newline):
    """The per-image branch of ``prepare_inputs_labels_for_multimodal`` (anyres)."""
    import torch

    if merge_type == "flat":
        return image_feature.flatten(0, 1)
    base_image_feature, image_feature = image_feature[0], image_feature[1:]
    height = width = patches_per_side
    best_w, best_h = llava_select_best_resolution(image_size_wh, grid_pinpoints)
    num_patch_width, num_patch_height = best_w // tile, best_h // tile
    image_feature = image_feature.view(num_patch_height, num_patch_width, height, width, -1)
    if "unpad" in merge_type:
        image_feature = image_feature.permute(4, 0, 2, 1, 3).contiguous()
        image_feature = image_feature.flatten(1, 2).flatten(2, 3)
        image_feature = llava_unpad_image(image_feature, image_size_wh)
        image_feature = torch.cat((image_feature, image_newline[:, None, None].expand(
            *image_feature.shape[:-1], 1)), dim=-1)
        image_feature = image_feature.flatten(1, 2).transpose(0, 1)
    else:
        image_feature = image_feature.permute(0, 2, 1, 3, 4).contiguous().flatten(0, 3)
    return torch.cat((base_image_feature, image_feature), dim=0)
