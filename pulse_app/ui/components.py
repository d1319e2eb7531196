"""Gradio components that keep a visitor's data where it belongs.

- :class:`PrivateImage`: a picture sent to the page inline (a ``data:`` URL of a display-sized
  JPEG), never written to Gradio's cache folder, so no URL can serve it to anyone else;
- :class:`RawTextbox` / :class:`RawNumber`: values passed to the handler as the client sent them
  (Gradio's own turn a list into its Python repr, or fail on it with a library message), so the
  core's checks see, and refuse, what was really sent.

They are subclasses (Gradio rebuilds a component from its class for a page's own copy; a
method replaced on one instance is lost), drawn by the page as their Gradio parents
(``is_template``).

>>> shown_scale(Image.new("RGB", (4800, 1200)))
0.5
"""

from __future__ import annotations

import base64
import io
from contextlib import contextmanager
from typing import Any, Iterator

import gradio as gr
from gradio import component_meta
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


@contextmanager
def _no_type_stub() -> Iterator[None]:
    """Gradio writes a ``.pyi`` stub beside any module that subclasses one of its components
    (for its own package's type checking); not into this source tree."""
    write_stub = component_meta.create_or_modify_pyi
    component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        component_meta.create_or_modify_pyi = write_stub


with _no_type_stub():
    class PrivateImage(gr.Image):
        """A display-only ``gr.Image`` whose value travels inline, never as a cached file."""

        is_template = True                  # the page draws it with gr.Image's code

        def postprocess(self, value: Any) -> ImageData | None:
            if value is None:
                return None
            if not isinstance(value, Image.Image):
                raise TypeError("PrivateImage shows PIL images only")
            return ImageData(url=data_url(value), orig_name="ecg.jpg", mime_type="image/jpeg")

    class RawTextbox(gr.Textbox):
        """A ``gr.Textbox`` whose value reaches the handler unconverted (the core checks it)."""

        is_template = True

        def preprocess(self, payload: Any) -> Any:
            return payload

    class RawNumber(gr.Number):
        """A ``gr.Number`` whose value reaches the handler unconverted (the core checks
        ranges)."""

        is_template = True

        def preprocess(self, payload: Any) -> Any:
            return payload
