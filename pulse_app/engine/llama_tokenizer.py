"""Prompt encoding with the tokenizer LLaVA trained with: transformers' slow ``LlamaTokenizer``,
reproduced on sentencepiece directly (LLaVA ``tokenizer_image_token`` = :class:`LlamaChunkEncoder`
+ :func:`pulse_app.conversation.encode_prompt`).

Light: sentencepiece only, no torch or transformers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from pulse_app.errors import ModelUnavailable

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

