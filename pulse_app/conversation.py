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

from dataclasses import dataclass
from typing import Sequence

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
