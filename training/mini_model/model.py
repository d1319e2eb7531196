"""The mini model's initial weights: PULSE-7B's classes at the sizes of ``model.yaml`` (a
CLIP-style ViT on small tiles, ``mlp2x_gelu`` projector, a small Llama, anyres, ``flat`` merge),
a sentencepiece tokenizer trained on the instruction text, random weights
(``pulse_app.engine.tiny``) with zero-mean patch filters."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pulse_app.engine.tiny import TinySpec


def build_initial(folder: Path, spec: TinySpec, corpus: str) -> TinySpec:
    """Write the untrained model to ``folder``: ``spec`` with its tokenizer trained on
    ``corpus``; returns the spec used."""
    from pulse_app.engine.tiny import build_tiny

    spec = dataclasses.replace(spec, corpus=corpus)
    build_tiny(folder, spec)
    zero_mean_patch_filters(folder)
    return spec


def zero_mean_patch_filters(folder: Path) -> None:
    """Make each random patch filter of the vision tower sum to zero (keeping its scale).

    An ECG page is mostly plain paper: with random filters, the patch embeddings are dominated
    by the page's uniform colour, so the image features hardly differ between ECGs, and
    training drove them to a constant: the model learned to ignore the image. Zero-mean filters
    respond to the drawn lines instead, so the features differ from page to page from the start.
    """
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(path)
    name = next(k for k in tensors if k.endswith("patch_embedding.weight"))
    weight = tensors[name].float()
    centred = weight - weight.mean(dim=(1, 2, 3), keepdim=True)
    tensors[name] = (centred * (weight.std() / centred.std())).to(tensors[name].dtype)
    save_file(tensors, path, metadata={"format": "pt"})

