"""What a checkpoint folder holds: its config, its layout, its weight files and tensors.

Two layouts exist: ``"original"`` (the LLaVA repository format PULSE-7B is published in,
``model_type: llava_llama``) and ``"transformers"`` (LLaVA-NeXT, what the app runs; see
:mod:`pulse_app.engine.convert`). Light: json and pathlib; torch and safetensors only when
tensors are read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from pulse_app.errors import ModelUnavailable

if TYPE_CHECKING:
    import torch

#: Where our provenance (name, training, conversion) lives in a converted ``config.json``.
PROVENANCE_KEY = "pulse_app"


def read_config(folder: str | Path) -> dict:
    """``config.json`` of a model folder, as a dict."""
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
            import torch

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
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            shapes.update({k: tuple(v.shape) for k, v in state.items()})
    return shapes
