"""ECGInstruct samples -> model inputs for training: anyres pixels, LLaVA token ids, masked labels.

Each sample becomes exactly what the app feeds the model at answer time (the same image tiles,
:func:`pulse_app.engine.anyres.anyres_pixel_values`; the same prompt encoding,
:func:`pulse_app.conversation.format_dialogue` + :func:`~pulse_app.conversation.encode_prompt`),
plus ``labels``: the token id where the model is trained to produce the token (every answer and
its ``</s>``), ``-100`` everywhere else (BOS, system sentence, questions, ``ASSISTANT:``, image
positions, padding). That is LLaVA's loss on the response only.

>>> data = InstructDataset.from_file("train.json", "assets/pulse-mini")        # doctest: +SKIP
>>> batch = Collator(pad_id=0)([data[0], data[1]])                            # doctest: +SKIP
>>> sorted(batch)                                                             # doctest: +SKIP
['attention_mask', 'image_sizes', 'input_ids', 'labels', 'pixel_values']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from PIL import Image

from pulse_app.conversation import IMAGE_PLACEHOLDER, Turn, encode_prompt, format_dialogue
from pulse_app.engine.anyres import AnyresGeometry, anyres_pixel_values
from pulse_app.engine.checkpoint import read_config
from pulse_app.engine.llama_tokenizer import LlamaChunkEncoder
from pulse_app.errors import PulseError

IGNORE_INDEX = -100          # what torch's cross-entropy (and LLaVA) skip


class DataError(PulseError):
    """A training sample that cannot be turned into model inputs."""


# -- one sample -----------------------------------------------------------------------------------

def _field(sample: Any, name: str, default=None):
    """``sample.name`` or ``sample[name]``: reader objects and plain JSON dicts both work."""
    if isinstance(sample, Mapping):
        return sample.get(name, default)
    return getattr(sample, name, default)


def sample_turns(conversations: Sequence[Mapping[str, str]]) -> list[Turn]:
    """LLaVA ``conversations`` (alternating ``human``/``gpt``) -> finished turns.

    The ``<image>`` marker is dropped from the text: :func:`format_dialogue` puts ``<image>\\n``
    back at the front of the first question, where LLaVA puts it.

    >>> sample_turns([{"from": "human", "value": "<image>\\nRate?"}, {"from": "gpt", "value": "70"}])
    [Turn(question='Rate?', answer='70')]
    """
    turns = []
    if len(conversations) % 2:
        raise DataError(f"a conversation has {len(conversations)} messages; expected "
                        "human/gpt pairs")
    for human, gpt in zip(conversations[0::2], conversations[1::2]):
        if human.get("from") != "human" or gpt.get("from") != "gpt":
            raise DataError("conversations must alternate 'human' and 'gpt' messages, "
                            f"got {human.get('from')!r} then {gpt.get('from')!r}")
        question = human["value"].replace(IMAGE_PLACEHOLDER, "").strip()
        turns.append(Turn(question, gpt["value"].strip()))
    return turns


@dataclass
class TokenizedSample:
    """One sample as tensors: ``input_ids``/``labels`` (L,), ``pixel_values`` (tiles, 3, H, W),
    ``image_size`` (height, width) in pixels."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor
    image_size: tuple[int, int]


class SampleEncoder:
    """Builds training inputs for one model folder (its tokenizer, tile geometry, ``<image>`` id).

    ``max_length`` cuts long conversations at the end (LLaVA's ``model_max_length``); the image
    tokens themselves are never cut.
    """

    def __init__(self, model_dir: str | Path, max_length: int = 4096):
        from transformers import LlavaNextConfig

        config = LlavaNextConfig.from_dict(read_config(Path(model_dir)))
        self.geometry = AnyresGeometry.from_config(config)
        self.image_token_id = config.image_token_index
        self.encoder = LlamaChunkEncoder.from_folder(model_dir)
        self.max_length = min(max_length, config.text_config.max_position_embeddings)

    def __call__(self, turns: Sequence[Turn], image: Image.Image) -> TokenizedSample:
        image = image.convert("RGB")
        count = self.geometry.image_token_count(image.size)
        text, spans = format_dialogue(turns, with_image=True)
        ids, trained = encode_prompt(text, self.encoder, bos_id=self.encoder.bos_id,
                                     image_token_id=self.image_token_id, image_token_count=count,
                                     train_spans=spans)
        last_image = max(i for i, t in enumerate(ids) if t == self.image_token_id)
        if last_image >= self.max_length:
            raise DataError(f"the image alone takes {count} tokens, more than max_length "
                            f"{self.max_length}", hint="raise max_length or use smaller images")
        ids, trained = ids[:self.max_length], trained[:self.max_length]
        labels = [t if keep else IGNORE_INDEX for t, keep in zip(ids, trained)]
        return TokenizedSample(torch.tensor(ids), torch.tensor(labels),
                               anyres_pixel_values(image, self.geometry),
                               (image.height, image.width))


# -- a data set -----------------------------------------------------------------------------------

class InstructDataset(torch.utils.data.Dataset):
    """ECGInstruct samples (reader objects or dicts) with images under ``image_root``.

    Images are read and tiled on access (render them at the resolution you train with: a 200 dpi
    page is 2200x1700 px, most of which the tiles throw away).
    """

    def __init__(self, samples: Sequence[Any], image_root: str | Path, encoder: SampleEncoder):
        self.samples, self.image_root, self.encoder = list(samples), Path(image_root), encoder

    @classmethod
    def from_file(cls, path: str | Path, model_dir: str | Path, *, max_length: int = 4096,
                  image_root: str | Path | None = None, limit: int | None = None
                  ) -> "InstructDataset":
        """Samples from an ECGInstruct file (JSON list or JSON lines) through the one reader,
        :func:`training.instruct.read_samples`; images relative to the file's folder."""
        from training.instruct import read_samples

        root = Path(image_root) if image_root is not None else Path(path).parent
        samples = read_samples(path, image_root=root)[:limit]
        return cls(samples, root, SampleEncoder(model_dir, max_length))

    def __len__(self) -> int:
        return len(self.samples)

    def image_path(self, sample) -> Path:
        image = _field(sample, "image")
        if not image:
            raise DataError(f"sample {_field(sample, 'id')!r} has no image")
        path = Path(image)
        return path if path.is_absolute() else self.image_root / path

    def __getitem__(self, index: int) -> TokenizedSample:
        sample = self.samples[index]
        with Image.open(self.image_path(sample)) as image:
            return self.encoder(sample_turns(_field(sample, "conversations")), image)


# -- batches --------------------------------------------------------------------------------------

@dataclass
class Collator:
    """Pads a list of :class:`TokenizedSample` into one batch (right padding, as LLaVA).

    ``pixel_values`` become (batch, most tiles, 3, H, W), zero-padded; the model keeps only each
    image's own tiles (it counts them from ``image_sizes``).
    """

    pad_id: int = 0

    def __call__(self, items: Sequence[TokenizedSample]) -> dict[str, torch.Tensor]:
        length = max(len(item.input_ids) for item in items)
        tiles = max(item.pixel_values.shape[0] for item in items)
        batch = len(items)
        input_ids = torch.full((batch, length), self.pad_id, dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((batch, length), dtype=torch.long)
        pixels = torch.zeros((batch, tiles, *items[0].pixel_values.shape[1:]))
        for row, item in enumerate(items):
            n = len(item.input_ids)
            input_ids[row, :n], labels[row, :n], attention[row, :n] = item.input_ids, item.labels, 1
            pixels[row, :item.pixel_values.shape[0]] = item.pixel_values
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention,
                "pixel_values": pixels,
                "image_sizes": torch.tensor([item.image_size for item in items])}
