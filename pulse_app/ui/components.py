"""Gradio components that keep a visitor's data where it belongs.

- :func:`private_image`: a picture sent to the page inline (a ``data:`` URL of a display-sized
  JPEG), never written to Gradio's cache folder, so no URL can serve it to anyone else;
- :func:`raw_textbox` / :func:`raw_number`: values passed to the handler as the client sent them
  (Gradio's own turn a list into its Python repr, or fail on it with a library message), so the
  core's checks see, and refuse, what was really sent.

They are Gradio's components with one method replaced on the instance (a subclass would make
Gradio write a ``.pyi`` stub beside this module at import time).

>>> shown_scale(Image.new("RGB", (4800, 1200)))
0.5
"""

from __future__ import annotations

import base64
import io
import types
from typing import Any

import gradio as gr
from gradio.data_classes import ImageData
from PIL import Image

#: Longest side of the picture shown on the page, in pixels (the model gets the full image).
MAX_SHOWN_SIDE = 2400
#: JPEG quality of the shown picture.
SHOWN_QUALITY = 90


def shown_scale(image: Image.Image) -> float:
    """Pixels on the page per pixel of ``image`` (1 unless it is larger than the page shows)."""
    return min(1.0, MAX_SHOWN_SIDE / max(image.width, image.height, 1))


def data_url(image: Image.Image) -> str:
    """``image`` as the page shows it: scaled to :data:`MAX_SHOWN_SIDE`, a JPEG ``data:`` URL."""
    scale = shown_scale(image)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)),
                              max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=SHOWN_QUALITY, subsampling=0)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _inline(component: gr.Image, value: Any) -> ImageData | None:
    if value is None:
        return None
    if not isinstance(value, Image.Image):
        raise TypeError("a private image shows PIL images only")
    return ImageData(url=data_url(value), orig_name="ecg.jpg", mime_type="image/jpeg")


def _as_sent(component, payload: Any) -> Any:
    return payload


def private_image(**kwargs) -> gr.Image:
    """A display-only ``gr.Image`` whose value travels inline, never as a cached file."""
    image = gr.Image(**kwargs)
    image.postprocess = types.MethodType(_inline, image)
    return image


def raw_textbox(**kwargs) -> gr.Textbox:
    """A ``gr.Textbox`` whose value reaches the handler unconverted (the core checks it)."""
    box = gr.Textbox(**kwargs)
    box.preprocess = types.MethodType(_as_sent, box)
    return box


def raw_number(**kwargs) -> gr.Number:
    """A ``gr.Number`` whose value reaches the handler unconverted (the core checks ranges)."""
    number = gr.Number(**kwargs)
    number.preprocess = types.MethodType(_as_sent, number)
    return number
