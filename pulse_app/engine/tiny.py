"""Tiny models of PULSE-7B's exact classes, built offline: for tests, demos and the mini model.

Same architecture as PULSE-7B (a CLIP-style ViT tower, an ``mlp2x_gelu`` projector, a Llama
decoder, anyres tiling, ``flat`` image tokens, a sentencepiece BPE tokenizer with byte fallback
and Llama's special ids <unk>=0, <s>=1, </s>=2), only small. :func:`build_tiny_original` writes
it in the original LLaVA layout, as PULSE ships; :func:`build_tiny` converts that with
:func:`pulse_app.engine.convert.convert_checkpoint`, so both layouts hold the same weights.

Untrained (random) weights answer with random text: their ``config.json`` says
``"pulse_app": {"trained": false}`` and the app labels them "untrained".

>>> path = ensure_tiny("/tmp/pulse-cache")          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig

from pulse_app.conversation import SYSTEM_PROMPT
from pulse_app.engine.checkpoint import PROVENANCE_KEY
from pulse_app.engine.convert import CONVERTER_VERSION, convert_checkpoint
from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration

TINY_NAME = "tiny-untrained"
#: PULSE's grid pinpoints in tiles (width, height): 1x2, 2x1, 2x2, 3x1, 1x3.
PULSE_GRID_TILES = ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))

#: A few hundred words of ECG-report English for the tokenizer (and the template's words).
CORPUS = f"""{SYSTEM_PROMPT}
USER: <image>
What is the heart rate? ASSISTANT: The heart rate is about 72 beats per minute.</s>
USER: What is the rhythm? ASSISTANT: Sinus rhythm with a normal axis.</s>
USER: Is there any ST elevation? ASSISTANT: ST elevation in leads V1 to V4 suggests an anterior myocardial infarction.</s>
USER: Describe the intervals. ASSISTANT: PR interval 160 ms, QRS duration 110 ms, QT 400 ms, QTc 440 ms.</s>
Atrial fibrillation with rapid ventricular response; irregularly irregular rhythm without P waves.
Sinus bradycardia at 48 bpm. Sinus tachycardia at 118 bpm. Normal sinus rhythm at 76 bpm.
Left bundle branch block: broad QRS (140 ms), notched R waves in I, aVL, V5 and V6.
Right bundle branch block with rSR' pattern in V1 and wide S waves in I and V6.
First degree atrioventricular block; PR interval 240 ms. Second degree AV block, Mobitz type I.
Complete heart block with a ventricular escape rhythm at 35 bpm.
Left ventricular hypertrophy by voltage criteria; strain pattern in the lateral leads.
ST depression of 2 mm in II, III and aVF. T wave inversion in V1, V2 and V3.
Premature ventricular complexes, bigeminy. Premature atrial contractions.
Q waves in the inferior leads consistent with an old inferior myocardial infarction.
Left axis deviation (-45 degrees); left anterior fascicular block. Right axis deviation (+120).
Low voltage QRS in the limb leads. Poor R wave progression across the precordial leads.
Wolff-Parkinson-White pattern: short PR, delta wave, wide QRS.
Ventricular tachycardia, monomorphic, rate 180 bpm. Atrial flutter with 2:1 block.
Paced rhythm: atrial and ventricular pacing spikes. Prolonged QT interval (QTc 520 ms).
The 12-lead ECG is recorded at 25 mm/s and 10 mm/mV: leads I, II, III, aVR, aVL, aVF, V1-V6.
Findings: normal ECG.  No acute changes.  Compared with the previous tracing, no change.
    Indented text,	tabs and  double  spaces   keep whitespace pieces in the vocabulary.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 25 50 60 72 80 90 100 120 150 200 250 300 400 500 1000.
Which of the following best describes this ECG? A) normal B) abnormal C) borderline D) unknown.
Answer: B. The diagnosis is acute anterior STEMI; urgent reperfusion is indicated.
Écart, naïve, café: accents fall back to bytes when rare. µV, ±, °, →, ≥ and ≤ as well.
"""


@dataclass(frozen=True)
class TinySpec:
    """Geometry and sizes of a tiny model (the defaults run well under 50 ms/token on a CPU).

    The trained "mini model" uses the same builder with larger sizes. Vision heads follow the
    converter's rule for unknown towers (64-wide heads), so the original layout converts back
    exactly.
    """

    name: str = TINY_NAME
    tile_px: int = 56
    patch_px: int = 14
    grid_tiles: tuple[tuple[int, int], ...] = PULSE_GRID_TILES
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_mlp: int = 128
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_mlp: int = 128
    vocab_size: int = 1000         # sentencepiece target; a small corpus may give fewer
    max_positions: int = 2048
    merge_type: str = "flat"
    seed: int = 0
    trained: bool = False
    corpus: str = CORPUS

    @property
    def pinpoints_wh(self) -> list[list[int]]:
        return [[cols * self.tile_px, rows * self.tile_px] for cols, rows in self.grid_tiles]

    def fingerprint(self) -> dict:
        """JSON-ready description (the corpus as a hash) that identifies a build."""
        data = dataclasses.asdict(self)
        data["corpus"] = hash_text(self.corpus)
        data["converter_version"] = CONVERTER_VERSION     # a converter fix rebuilds the cache
        return json.loads(json.dumps(data))


def hash_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_tokenizer(path: str | Path, corpus: str, vocab_size: int) -> Path:
    """Train a Llama-style sentencepiece BPE (byte fallback, split digits, identity
    normalisation, <unk>=0 <s>=1 </s>=2) on ``corpus``; deterministic."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus.splitlines() * 4), model_writer=model, model_type="bpe",
        vocab_size=vocab_size, hard_vocab_limit=False, byte_fallback=True, split_digits=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        character_coverage=1.0, num_threads=1, minloglevel=2)
    Path(path).write_bytes(model.getvalue())
    return Path(path)


def tiny_config(spec: TinySpec, vocab_rows: int) -> LlavaNextConfig:
    """The transformers config of the tiny model before conversion (no ``<image>`` row yet)."""
    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden, intermediate_size=spec.vision_mlp,
        num_hidden_layers=spec.vision_layers, num_attention_heads=max(1, spec.vision_hidden // 64),
        image_size=spec.tile_px, patch_size=spec.patch_px, hidden_act="quick_gelu",
        layer_norm_eps=1e-5)
    text = LlamaConfig(
        vocab_size=vocab_rows, hidden_size=spec.text_hidden, intermediate_size=spec.text_mlp,
        num_hidden_layers=spec.text_layers, num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_heads, max_position_embeddings=spec.max_positions,
        rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = LlavaNextConfig(
        vision_config=vision, text_config=text, image_token_index=vocab_rows,
        image_grid_pinpoints=[[h, w] for w, h in spec.pinpoints_wh], vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
        image_seq_length=(spec.tile_px // spec.patch_px) ** 2)
    config.mm_patch_merge_type = spec.merge_type
    return config


def original_key(name: str) -> str:
    """transformers tensor name -> original LLaVA layout name (inverse of the converter)."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.vision_tower."):
        rest = name[len("model.vision_tower."):]
        rest = rest[len("vision_model."):] if rest.startswith("vision_model.") else rest
        return "model.vision_tower.vision_tower.vision_model." + rest
    for index, linear in ((0, "linear_1"), (2, "linear_2")):
        prefix = f"model.multi_modal_projector.{linear}."
        if name.startswith(prefix):
            return f"model.mm_projector.{index}." + name[len(prefix):]
    return name                     # lm_head.weight, model.image_newline


def original_config(spec: TinySpec, config: LlavaNextConfig) -> dict:
    """A ``llava_llama`` config.json like PULSE-7B's, for the tiny sizes."""
    text = config.text_config
    return {
        "_name_or_path": f"pulse-app/{spec.name}", "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava_llama", "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size, "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads, "hidden_act": "silu",
        "max_position_embeddings": text.max_position_embeddings, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False,
        "tie_word_embeddings": False, "vocab_size": text.vocab_size, "bos_token_id": 1,
        "eos_token_id": 2, "pad_token_id": 0, "initializer_range": 0.02,
        "mm_vision_tower": f"pulse-app/{spec.name}-vit", "mm_hidden_size": spec.vision_hidden,
        "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch", "mm_patch_merge_type": spec.merge_type,
        "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
        "image_aspect_ratio": "anyres", "image_grid_pinpoints": spec.pinpoints_wh,
        "image_crop_resolution": 224, "image_split_resolution": 224,
        "tokenizer_model_max_length": text.max_position_embeddings,
        "tokenizer_padding_side": "right", "torch_dtype": "float32", "use_cache": True,
        PROVENANCE_KEY: {"name": spec.name, "trained": spec.trained},
    }


def build_tiny_original(dst: str | Path, spec: TinySpec = TinySpec(), *, shards: int = 1,
                        weights_format: str = "safetensors", image_newline: bool = True,
                        tokenizer_config: bool = True, state_dict: dict | None = None) -> Path:
    """Write a tiny checkpoint in the original LLaVA layout (as PULSE-ECG/PULSE-7B ships).

    ``shards`` > 1 writes an index json; ``weights_format`` is ``"safetensors"`` or ``"bin"``;
    ``image_newline=False`` leaves out the (for ``flat``, unused) newline vector;
    ``tokenizer_config=False`` ships ``tokenizer.model`` alone. ``state_dict`` (transformers
    names, no ``<image>`` row) writes given weights instead of a seeded random init.
    """
    from safetensors.torch import save_file

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    train_tokenizer(dst / "tokenizer.model", spec.corpus, spec.vocab_size)
    import sentencepiece as spm

    rows = spm.SentencePieceProcessor(model_file=str(dst / "tokenizer.model")).get_piece_size()
    config = tiny_config(spec, rows)
    if state_dict is None:
        torch.manual_seed(spec.seed)
        state_dict = PulseLlavaNextForConditionalGeneration(config).state_dict()
    tensors = {original_key(k): v.detach().clone().contiguous() for k, v in state_dict.items()}
    if not image_newline:
        tensors.pop("model.image_newline")
    names = sorted(tensors)
    groups = [names[i::shards] for i in range(shards)]
    ext = "safetensors" if weights_format == "safetensors" else "bin"
    stem = "model" if ext == "safetensors" else "pytorch_model"
    weight_map = {}
    for number, group in enumerate(groups, start=1):
        file = f"{stem}.{ext}" if shards == 1 else f"{stem}-{number:05d}-of-{shards:05d}.{ext}"
        part = {k: tensors[k] for k in group}
        if ext == "safetensors":
            save_file(part, dst / file, metadata={"format": "pt"})
        else:
            torch.save(part, dst / file)
        weight_map.update({k: file for k in group})
    if shards > 1:
        (dst / f"{stem}.{ext}.index.json").write_text(json.dumps(
            {"metadata": {"total_size": sum(t.numel() * t.element_size()
                                            for t in tensors.values())},
             "weight_map": weight_map}, indent=2))
    (dst / "config.json").write_text(json.dumps(original_config(spec, config), indent=2))
    if tokenizer_config:
        (dst / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True,
            "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
            "unk_token": "<unk>", "pad_token": None, "padding_side": "right",
            "model_max_length": spec.max_positions}, indent=2))
    return dst


def build_tiny(dst: str | Path, spec: TinySpec = TinySpec(), **original_options) -> Path:
    """Build the tiny model in the transformers layout (through the original layout)."""
    dst = Path(dst)
    with tempfile.TemporaryDirectory(prefix="pulse-tiny-original-") as tmp:
        build_tiny_original(tmp, spec, **original_options)
        convert_checkpoint(tmp, dst, progress=lambda message: None)
    (dst / "tiny_spec.json").write_text(json.dumps(spec.fingerprint(), indent=2))
    return dst


def ensure_tiny(cache_dir: str | Path, spec: TinySpec = TinySpec(),
                progress: Callable[[str], None] | None = None) -> Path:
    """``<cache_dir>/<spec.name>``, built on first use (deterministic; rebuilt if the spec
    changed). ``progress`` hears one line when a build starts."""
    target = Path(cache_dir) / spec.name
    marker = target / "tiny_spec.json"
    if marker.is_file() and json.loads(marker.read_text()) == spec.fingerprint():
        return target
    if progress:
        progress(f"building the {spec.name} model (first use only)")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    try:
        build_tiny(work, spec)
        shutil.rmtree(target, ignore_errors=True)
        try:
            work.rename(target)
        except OSError:           # built by another process meanwhile
            if not marker.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
