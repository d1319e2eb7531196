"""File bytes -> a clean RGB ECG image: formats, PDF pages, EXIF orientation, limits, no metadata.

Everything a visitor uploads (and every file ``python -m pulse_app ask`` reads) goes through
:func:`load_image` before it is shown to a model or stored:

1. size caps first: the file size, then the pixel count read from the header, *before* decoding
   (a 40000 x 40000 PNG is a few hundred kB on disk and 1.6 GB in memory);
2. decode PNG, JPEG, WebP, TIFF, BMP, GIF, HEIC (pillow-heif) or one page of a PDF (poppler);
3. normalise: EXIF orientation applied, first frame, 16-bit / palette / CMYK / transparent
   (composited on white) -> 8-bit RGB, colour profile -> sRGB;
4. strip all metadata (EXIF incl. GPS, device, names, XMP, text chunks): the result is rebuilt
   from its pixels alone.

Problems are :class:`~pulse_app.errors.ImageRejected` with a message and a hint for a clinician.
:func:`edit_image` straightens (page corners), rotates (quarter turns, then a fine angle) and crops;
the original is kept.

>>> intake = load_image("ecg.jpg")                                        # doctest: +SKIP
>>> intake.image.size, intake.format, intake.pages                        # doctest: +SKIP
((2200, 1700), 'JPEG', 1)
>>> edited = edit_image(intake.image, rotate90=1, angle_deg=-2.5,
...                     crop=(0, 0, 1600, 2000))                           # doctest: +SKIP
"""

from __future__ import annotations

import functools
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from pulse_app.errors import ImageRejected

#: Smallest accepted side, in pixels: anything smaller cannot show a readable ECG.
MIN_SIDE_PX = 100
#: PDF pages are rendered at this resolution (US letter -> 2200 x 1700 px), lower for huge pages.
PDF_DPI = 200
#: Largest fine rotation, in degrees (tilted phone photos).
MAX_FINE_ANGLE_DEG = 15.0
DEFAULT_MAX_PIXELS = 60_000_000
DEFAULT_MAX_BYTES = 50_000_000
#: Pillow decoders we accept (anything else, e.g. EPS or PSD, is refused before decoding).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF", "HEIF")   # JPEG also opens MPO
SUPPORTED = "PNG, JPEG, WebP, TIFF, BMP, HEIC or PDF"


@dataclass(frozen=True)
class Intake:
    """A clean upload: ``image`` (PIL RGB, no metadata), the page read and the page count."""

    image: Image.Image
    pages: int = 1          # pages in the file (PDF), 1 for images
    page: int = 1           # which page ``image`` is (1 = first)
    format: str = "PNG"     # what the file was: "PNG", "JPEG", "HEIF", "PDF", ...


def load_image(source: bytes | str | Path, *, filename: str | None = None, page: int = 1,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
               ) -> Intake:
    """Read an uploaded ECG image or PDF page into a clean RGB image.

    ``source`` is the file's bytes or its path; ``filename`` only names it in messages;
    ``page`` (1 = first) picks the PDF page; ``max_pixels`` and ``max_bytes`` are the caps.
    Raises :class:`ImageRejected` for anything that is not a usable image.
    """
    name = filename or (Path(source).name if isinstance(source, (str, Path)) else "the file")
    data = _read_bytes(source, name, max_bytes)
    if _is_pdf(data):
        image, pages, page = _read_pdf_page(data, name, page, max_pixels)
        fmt = "PDF"
    else:
        if page != 1:
            raise ImageRejected(f"{name} is an image, not a PDF, so it has no page {page}",
                                hint="choose page 1")
        image, fmt = _decode_image(data, name, max_pixels)
        pages, page = 1, 1
    image = _clean_rgb(image)
    _check_dimensions(image.size, name, max_pixels)
    return Intake(image=image, pages=pages, page=page, format=fmt)


def edit_image(image: Image.Image, *, rotate90: int = 0, angle_deg: float = 0.0,
               crop: tuple[float, float, float, float] | None = None,
               corners=None, page_size: tuple[int, int] | None = None) -> Image.Image:
    """The image straightened to ``corners`` (if given), rotated by ``rotate90`` quarter turns
    and ``angle_deg`` (both counter-clockwise), then cropped to ``crop`` = (left, top, right,
    bottom) in pixels of the rotated image.

    ``corners``: the page's top-left, top-right, bottom-right and bottom-left corners in pixels
    of the original; the photo is first warped to a flat, upright page of ``page_size`` =
    (width, height) (default from the corners), see :mod:`pulse_app.straighten`. The fine
    rotation keeps every pixel (the canvas grows) and fills the corners with white.
    Reset = call again on the original. The crop is clipped to the image.

    >>> edit_image(Image.new("RGB", (300, 200)), rotate90=1).size
    (200, 300)
    """
    if not -MAX_FINE_ANGLE_DEG <= angle_deg <= MAX_FINE_ANGLE_DEG:
        raise ImageRejected(f"a fine rotation of {angle_deg:g} degrees is too large",
                            hint=f"use the 90-degree buttons, then at most "
                                 f"{MAX_FINE_ANGLE_DEG:g} degrees either way")
    quarter_turns = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180,
                     3: Image.Transpose.ROTATE_270}
    turns = int(rotate90) % 4
    out = image.convert("RGB")
    if corners is not None:
        from pulse_app.straighten import apply_straightening

        out = apply_straightening(out, corners, page_size)
    if turns:
        out = out.transpose(quarter_turns[turns])
    if angle_deg:
        out = out.rotate(angle_deg, resample=Image.Resampling.BICUBIC, expand=True,
                         fillcolor=(255, 255, 255))
    if crop is not None:
        left, top, right, bottom = (int(round(v)) for v in crop)
        left, right = sorted((max(0, min(out.width, left)), max(0, min(out.width, right))))
        top, bottom = sorted((max(0, min(out.height, top)), max(0, min(out.height, bottom))))
        if right - left < MIN_SIDE_PX or bottom - top < MIN_SIDE_PX:
            raise ImageRejected(f"the crop box is too small ({right - left} x {bottom - top} px)",
                                hint=f"keep at least {MIN_SIDE_PX} px a side, or reset the crop")
        out = out.crop((left, top, right, bottom))
    return out


def png_bytes(image: Image.Image) -> bytes:
    """The image as PNG bytes, with no metadata (what the store keeps)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


# -- steps -----------------------------------------------------------------------------------------

def _megabytes(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def _read_bytes(source: bytes | str | Path, name: str, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageRejected(f"{name} was not found", hint="check the file name and folder")
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_big(name, size, max_bytes)
        data = path.read_bytes()
    if not data:
        raise ImageRejected(f"{name} is empty (0 bytes)",
                            hint="the upload or the export went wrong; save the ECG again")
    if len(data) > max_bytes:
        raise _too_big(name, len(data), max_bytes)
    return data


def _too_big(name: str, size: int, max_bytes: int) -> ImageRejected:
    return ImageRejected(f"{name} is {_megabytes(size)}, more than the {_megabytes(max_bytes)} "
                         "limit", hint="upload a smaller export (a PNG or JPEG, or one PDF page)")


def _is_pdf(data: bytes) -> bool:
    return b"%PDF-" in data[:1024]


def _check_dimensions(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageRejected(f"{name} is {width} x {height} pixels, more than the "
                            f"{max_pixels / 1e6:g} megapixel limit",
                            hint="export or photograph it at a lower resolution")
    if min(width, height) < MIN_SIDE_PX:
        raise ImageRejected(f"{name} is only {width} x {height} pixels, too small to read an ECG",
                            hint=f"upload an image at least {MIN_SIDE_PX} px on each side")


@functools.cache
def _register_heif() -> None:
    """Teach Pillow to open HEIC/HEIF (once per process)."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def _decode_image(data: bytes, name: str, max_pixels: int) -> tuple[Image.Image, str]:
    """Decode frame 0, checking the declared size before any pixel is decompressed."""
    _register_heif()
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        _check_dimensions(image.size, name, max_pixels)          # from the header only
        fmt = "JPEG" if image.format == "MPO" else (image.format or "image")
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
    except ImageRejected:
        raise
    except Image.DecompressionBombError as error:      # Pillow's own guard, before ours
        declared = re.search(r"\((\d+) pixels\)", str(error))
        amount = (f"{int(declared.group(1)) / 1e6:,.0f} megapixels" if declared
                  else "too many pixels")
        raise ImageRejected(f"{name} declares {amount}, too many to open safely",
                            hint="export or photograph it at a lower resolution") from error
    except Image.UnidentifiedImageError as error:
        raise ImageRejected(f"{name} is not an image this app can read",
                            hint=f"upload a {SUPPORTED} file") from error
    except Exception as error:  # noqa: BLE001 - decoders fail in many ways on broken files
        detail = "truncated" if "truncated" in str(error).lower() else "damaged or incomplete"
        raise ImageRejected(f"{name} looks like an image but is {detail}",
                            hint="upload the file again or export it again") from error
    return image, fmt


def _pdf_page_inches(info: dict, page: int) -> tuple[float, float]:
    for key in (f"Page {page:4d} size", "Page size"):
        match = re.match(r"\s*([\d.]+) x ([\d.]+)", str(info.get(key, "")))
        if match:
            return float(match.group(1)) / 72, float(match.group(2)) / 72
    return 11.0, 8.5


def _read_pdf_page(data: bytes, name: str, page: int, max_pixels: int
                   ) -> tuple[Image.Image, int, int]:
    from pdf2image import convert_from_bytes, pdfinfo_from_bytes
    from pdf2image.exceptions import PDFPageCountError, PDFSyntaxError

    try:
        info = pdfinfo_from_bytes(data, timeout=60)
        pages = int(info["Pages"])
        if page != 1 and 1 <= page <= pages:                    # that page's size
            info = pdfinfo_from_bytes(data, first_page=page, last_page=page, timeout=60)
    except (PDFPageCountError, PDFSyntaxError, KeyError, ValueError) as error:
        if "password" in str(error).lower():
            raise ImageRejected(f"{name} is a password-protected PDF",
                                hint="save or print it again without a password") from error
        raise ImageRejected(f"{name} is a damaged PDF that cannot be opened",
                            hint="export the PDF again, or upload a screenshot of the ECG"
                            ) from error
    if pages < 1:
        raise ImageRejected(f"{name} is a PDF with no pages", hint="export the PDF again")
    if not 1 <= page <= pages:
        raise ImageRejected(f"{name} has {pages} page{'s' if pages > 1 else ''}, no page {page}",
                            hint=f"choose a page from 1 to {pages}")
    width_in, height_in = _pdf_page_inches(info, page)
    dpi = min(PDF_DPI, math.sqrt(0.95 * max_pixels / max(width_in * height_in, 1e-6)))
    try:
        images = convert_from_bytes(data, dpi=max(int(dpi), 1), first_page=page, last_page=page,
                                    timeout=120)
    except Exception as error:  # noqa: BLE001 - poppler errors come in many shapes
        raise ImageRejected(f"page {page} of {name} could not be rendered",
                            hint="export the PDF again, or upload a screenshot of the ECG"
                            ) from error
    if not images:
        raise ImageRejected(f"page {page} of {name} could not be rendered",
                            hint="export the PDF again, or upload a screenshot of the ECG")
    return images[0], pages, page


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert from an embedded ICC profile (e.g. a phone's Display P3) to sRGB, when possible."""
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        target = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(image, source, target, outputMode=out_mode)
    except Exception:  # noqa: BLE001 - a broken profile is ignored, the pixels are still fine
        return image


def _high_bit_depth_to_8bit(image: Image.Image) -> Image.Image:
    import numpy as np

    pixels = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = pixels.astype(np.float32) / 257.0
    else:                                        # "I" (32-bit int) or "F" (float)
        pixels = pixels.astype(np.float32)
        low, high = float(pixels.min()), float(pixels.max())
        if low >= 0 and high <= 255:
            scaled = pixels
        elif low >= 0 and high <= 65535:
            scaled = pixels / 257.0
        else:
            scaled = (pixels - low) * (255.0 / max(high - low, 1e-6))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _clean_rgb(image: Image.Image) -> Image.Image:
    """Orientation, 8-bit RGB on white, sRGB, and a fresh image that carries no metadata."""
    try:
        return _normalise(image)
    except (ValueError, OSError) as error:
        raise ImageRejected(f"the image's colour format ({image.mode}) cannot be converted",
                            hint="export it again as an ordinary PNG or JPEG") from error


def _normalise(image: Image.Image) -> Image.Image:
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - an unreadable EXIF block: keep the pixels as stored
        pass
    image = _to_srgb(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _high_bit_depth_to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa", "RGBA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    rgb = image.convert("RGB")
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())          # pixels only, no info
