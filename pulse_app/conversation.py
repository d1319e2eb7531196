"""The conversation template PULSE-7B was trained with: LLaVA's ``llava_v1`` — the one definition.

PULSE was fine-tuned with ``--version llava_v1`` (LLaVA ``conv_llava_v1``, separator style TWO):
the system sentence, then ``USER: ... ASSISTANT: ...`` turns, ``" "`` after a user turn and
``"</s>"`` after an assistant turn, and ``<image>\\n`` at the start of the first user turn. The
app (prompting) and ``training/`` (loss masks) both use this module.

>>> build_prompt([], "What is the rhythm?")[-44:]
'USER: <image>\\nWhat is the rhythm? ASSISTANT:'
>>> build_prompt([Turn("Rate?", "About 70 bpm.")], "Axis?")[-56:]
'Rate? ASSISTANT: About 70 bpm.</s>USER: Axis? ASSISTANT:'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence, Tuple

SYSTEM_PROMPT = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's "
                 "questions.")
ROLES = ("USER", "ASSISTANT")
SEP = " "            # after a user turn (and after the system sentence)
SEP2 = "</s>"        # after an assistant turn: the EOS token of the Llama tokenizer
IMAGE_PLACEHOLDER = "<image>"

#: Text that would change the structure of the prompt if a user typed it.
_RESERVED = (IMAGE_PLACEHOLDER, SEP2, "<s>")


@dataclass(frozen=True)
class Turn:
    """One finished exchange: the user's question and the model's answer."""

    question: str
    answer: str


def clean_user_text(text: str) -> str:
    """Strip whitespace and the template's reserved markers from text a person typed.

    A question that contains ``<image>`` or ``</s>`` must not add an image or end a turn.

    >>> clean_user_text("  is this <image> normal?</s> ")
    'is this  normal?'
    """
    for marker in _RESERVED:
        text = text.replace(marker, "")
    return text.strip()


def _first_user_message(question: str, with_image: bool) -> str:
    # LLaVA moves the image to the front of the first turn: "<image>\n" + text.strip().
    return f"{IMAGE_PLACEHOLDER}\n{question}" if with_image else question


def format_dialogue(turns: Sequence[Turn], *, with_image: bool = True,
                    clean: bool = True) -> tuple[str, list[tuple[int, int]]]:
    """Full text of finished turns and the character spans the model is trained to produce.

    Each span covers an answer and its ``</s>`` (LLaVA computes the loss on exactly those
    tokens: the answer after ``"ASSISTANT:"``, including the separator and EOS).

    >>> text, spans = format_dialogue([Turn("Rate?", "70 bpm.")])
    >>> [text[a:b] for a, b in spans]
    [' 70 bpm.</s>']
    """
    text = SYSTEM_PROMPT + SEP
    spans: list[tuple[int, int]] = []
    for i, turn in enumerate(turns):
        question = clean_user_text(turn.question) if clean else turn.question.strip()
        if i == 0:
            question = _first_user_message(question, with_image)
        text += f"{ROLES[0]}: {question}{SEP}{ROLES[1]}:"
        start = len(text)
        text += f" {turn.answer.strip()}{SEP2}"
        spans.append((start, len(text)))
    return text, spans


def build_prompt(history: Sequence[Turn], question: str, *, with_image: bool = True) -> str:
    """The text the model continues to answer ``question`` after the finished ``history``.

    Ends with ``"ASSISTANT:"``; the model's answer starts with a space and ends with ``</s>``.
    """
    text, _ = format_dialogue(history, with_image=with_image)
    question = clean_user_text(question)
    if not history:
        question = _first_user_message(question, with_image)
    return f"{text}{ROLES[0]}: {question}{SEP}{ROLES[1]}:"


def llava_v1_chat_template() -> str:
    """The same template as Jinja, for transformers' ``apply_chat_template`` (what converted
    folders ship): it reproduces :func:`build_prompt` and :func:`format_dialogue`.

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


# -- prompt text -> token ids (LLaVA's ``tokenizer_image_token``, image placeholder expanded) ------

#: A chunk encoder tokenizes one piece of prompt text (no BOS) into ``(token_id, char_start)``
#: pairs; ``char_start`` is where the token's text begins inside the piece. The engine builds one
#: from the checkpoint's sentencepiece model (``engine.llama_tokenizer.LlamaChunkEncoder``).
ChunkEncoder = Callable[[str], Sequence[Tuple[int, int]]]


def encode_prompt(text: str, encode_chunk: ChunkEncoder, *, bos_id: int, image_token_id: int,
                  image_token_count: int, train_spans: Sequence[tuple[int, int]] = ()
                  ) -> tuple[list[int], list[bool]]:
    """Token ids of ``text`` exactly as LLaVA builds them, and which tokens are trained on.

    LLaVA splits the prompt on ``<image>``, tokenizes every chunk on its own (so each chunk gets
    the tokenizer's leading ``▁``: the ``"\\n"`` after the image becomes ``▁`` + ``<0x0A>``), keeps
    only the first chunk's BOS and puts the image between the chunks. Here the image is
    ``image_token_count`` copies of ``image_token_id`` (one per image feature the model inserts).

    ``train_spans`` are character spans of ``text`` (``format_dialogue``'s answer spans); a token
    is trained on when its text starts inside one of them. BOS and image tokens never are.

    >>> enc = lambda s: [(ord(c), i) for i, c in enumerate(s)]     # a toy 1-char tokenizer
    >>> ids, train = encode_prompt("ab<image>c", enc, bos_id=1, image_token_id=9,
    ...                            image_token_count=2, train_spans=[(9, 10)])
    >>> ids, train
    ([1, 97, 98, 9, 9, 99], [False, False, False, False, False, True])
    """
    ids, trained = [bos_id], [False]
    offset = 0
    for index, chunk in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if index > 0:
            ids += [image_token_id] * image_token_count
            trained += [False] * image_token_count
            offset += len(IMAGE_PLACEHOLDER)
        for token_id, start in encode_chunk(chunk):
            at = offset + start
            ids.append(token_id)
            trained.append(any(a <= at < b for a, b in train_spans))
        offset += len(chunk)
    return ids, trained
