"""Prompt token ids exactly as LLaVA built them in training (slow Llama tokenizer semantics)."""

import pytest

from pulse_app.conversation import Turn, build_prompt, encode_prompt, format_dialogue
from pulse_app.engine.llama_tokenizer import LlamaChunkEncoder
from tests.fixtures_engine import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    SlowLlamaReference,
    llava_tokenizer_image_token,
    llava_v1_training_targets,
)

TRICKY = [
    "\nWhat is the heart rate?", "plain words", " leading space", "  two  spaces ", "trailing ",
    "tabs\tand\r\nCRLF\n\nblank line", "digits 1234567 and 3.14, QTc=440ms; HR~72/min",
    "unicode: é ü 心电图 — 🫀 µV ±", "a</s>USER: b", "</s>USER: starts with a special",
    "</s> USER", "x</s></s>y", "mid<unk>dle<s>", "▁literal▁underscores▁", "", " ", "\n",
    "ASSISTANT: ", "ST↑ 2 mm in V1–V3", "    indented\n\tcode",
]


@pytest.fixture(scope="module")
def sp_model(tiny_original):
    return tiny_original / "tokenizer.model"


@pytest.mark.parametrize("legacy", [False, True])
def test_chunk_encoder_matches_slow_llama_tokenizer(sp_model, legacy):
    ours = LlamaChunkEncoder(sp_model, legacy=legacy)
    reference = SlowLlamaReference(sp_model, legacy=legacy)
    for text in TRICKY:
        assert [ours.bos_id] + ours.ids(text) == reference(text), repr(text)


def test_tokenizer_actually_has_multi_space_pieces(sp_model):
    """Otherwise the leading-space cases above would not test anything."""
    reference = SlowLlamaReference(sp_model)
    assert any(set(p) == {"▁"} and len(p) > 1
               for p in (reference.sp.id_to_piece(i) for i in range(reference.sp.get_piece_size())))


def test_text_after_turn_end_gets_no_leading_space(sp_model):
    encoder = LlamaChunkEncoder(sp_model)
    pieces = [encoder._sp.id_to_piece(i) for i in encoder.ids("ok</s>USER: hi")]
    after = pieces[pieces.index("</s>") + 1]
    assert not after.startswith("▁")


def test_newline_after_image_is_space_then_newline_byte(sp_model):
    encoder = LlamaChunkEncoder(sp_model)
    ids, _ = encode_prompt(build_prompt([], "Rate?"), encoder, bos_id=1, image_token_id=999,
                           image_token_count=3)
    after_image = ids[ids.index(999) + 3:][:2]
    assert [encoder._sp.id_to_piece(i) for i in after_image] == ["▁", "<0x0A>"]


@pytest.mark.parametrize("history", [[], [Turn("What is the rhythm?", "Sinus rhythm."),
                                          Turn("Is the axis normal?", "Yes, normal. 60°")]])
def test_prompt_ids_match_llava_tokenizer_image_token(sp_model, history):
    encoder, reference = LlamaChunkEncoder(sp_model), SlowLlamaReference(sp_model)
    prompt = build_prompt(history, "Any ST elevation in V1–V4?")
    ids, _ = encode_prompt(prompt, encoder, bos_id=encoder.bos_id, image_token_id=IMAGE_TOKEN_INDEX,
                           image_token_count=1)
    assert ids == llava_tokenizer_image_token(prompt, reference)


def test_training_mask_equals_llava_preprocess_v1(sp_model):
    encoder, reference = LlamaChunkEncoder(sp_model), SlowLlamaReference(sp_model)
    turns = [Turn("What is the rhythm?", "Sinus rhythm at 72 bpm."),
             Turn("Is the axis normal?", "Left axis deviation (-45°)."),
             Turn("Conclusion?", "Abnormal ECG:\n LAFB.")]
    text, spans = format_dialogue(turns)
    ids, trained = encode_prompt(text, encoder, bos_id=encoder.bos_id,
                                 image_token_id=IMAGE_TOKEN_INDEX, image_token_count=1,
                                 train_spans=spans)
    llava_ids, targets = llava_v1_training_targets(text, reference)
    assert ids == llava_ids
    assert trained == [t != IGNORE_INDEX for t in targets]
    answers = encoder.decode([i for i, t in zip(ids, trained) if t and i != encoder.eos_id])
    assert "Sinus rhythm at 72 bpm." in answers and "LAFB." in answers


def test_decode_round_trips_text_with_bytes(sp_model):
    encoder = LlamaChunkEncoder(sp_model)
    text = "Sinus rhythm, 72 bpm; ST ↑ 2 mm — café 心电图"
    assert encoder.decode(encoder.ids(text)) == text


def test_missing_tokenizer_model_is_model_unavailable(tmp_path):
    from pulse_app.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="tokenizer.model"):
        LlamaChunkEncoder.from_folder(tmp_path)
