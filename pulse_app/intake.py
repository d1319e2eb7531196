"""File bytes -> a clean RGB ECG image: formats, PDF pages, EXIF orientation, limits, no metadata.

Every entry point (web page, ``/session_start``, ``/ask``, ``serve-openai``, the CLI) reads
uploads with :func:`load_upload`: one or more files (an image, a PDF, a WFDB ``.hea`` with its
``.dat``/``.mat``, a DICOM ``.dcm``) and the :class:`Limits` from the settings -> one clean image
(+ the signal record, when there was one). Pictures go through :func:`load_image`:

1. size caps first: the file size, then the pixel count read from the header, *before* decoding
   (a 40000 x 40000 PNG is a few hundred kB on disk and 1.6 GB in memory);
2. decode PNG, JPEG, WebP, TIFF, BMP, GIF, HEIC (pillow-heif) or one page of a PDF (poppler),
   inside the process's memory budget (:mod:`pulse_app.memory`: each decode reserves its peak
   first, so many big uploads at once are decoded a few at a time), and scaled down to
   ``Limits.image_pixels`` as it is decoded: JPEG in the decoder (DCT scaling, the full image is
   never allocated), PDF pages rendered at a lower resolution, other formats right after;
3. normalise: EXIF orientation applied, first frame, 16-bit / palette / CMYK / transparent
   (composited on white) -> 8-bit RGB, colour profile -> sRGB;
4. strip all metadata (EXIF incl. GPS, device, names, XMP, text chunks): the result is a fresh
   image holding the pixels alone. Freed memory is handed back to the system after each upload.

Problems are :class:`~pulse_app.errors.ImageRejected` with a message and a hint for a clinician.
:func:`edit_image` straightens (page corners), rotates (quarter turns, then a fine angle) and crops;
the original is kept.

>>> upload = load_upload(["ecg.jpg"], Limits.from_settings(settings))     # doctest: +SKIP
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
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from pulse_app.errors import ImageRejected, InvalidParameter, PulseError
from pulse_app.memory import BYTES_PER_PIXEL, decode_budget, return_freed_memory
from pulse_app.settings import FIELDS

if TYPE_CHECKING:
    from pulse_app.ecg.records import Record
    from pulse_app.settings import Settings

#: Smallest accepted side, in pixels: anything smaller cannot show a readable ECG.
MIN_SIDE_PX = 100
#: PDF pages are rendered at this resolution (US letter -> 2200 x 1700 px), lower for huge pages.
PDF_DPI = 200
#: Largest fine rotation, in degrees (tilted phone photos).
MAX_FINE_ANGLE_DEG = 15.0
#: Pillow decoders we accept (anything else, e.g. EPS or PSD, is refused before decoding).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF", "HEIF")   # JPEG also opens MPO
SUPPORTED = "PNG, JPEG, WebP, TIFF, BMP, HEIC or PDF"
#: Upload suffixes that are signal recordings (drawn as a printed ECG first), not pictures.
RECORD_SUFFIXES = (".hea", ".dat", ".mat", ".dcm")


@dataclass(frozen=True)
class Limits:
    """What one upload may cost: file size (bytes), declared size (pixels, refused above),
    kept size (pixels, scaled down above) and the memory budget decodes share (bytes).
    Defaults are the settings' defaults."""

    max_bytes: int = int(FIELDS["max_upload_mb"].default * 1_000_000)
    max_pixels: int = FIELDS["max_pixels"].default
    image_pixels: int = FIELDS["image_pixels"].default
    memory_bytes: int = FIELDS["image_memory_mb"].default * 1_000_000

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Limits":
        return cls(max_bytes=int(settings.max_upload_mb * 1_000_000),
                   max_pixels=int(settings.max_pixels), image_pixels=int(settings.image_pixels),
                   memory_bytes=int(settings.image_memory_mb) * 1_000_000)


@dataclass(frozen=True)
class Upload:
    """One clean upload, ready for a model: ``image`` (RGB, no metadata), where it came from, and
    the signal ``record`` when the upload was a recording (WFDB, DICOM) drawn as a page."""

    image: Image.Image
    filename: str
    format: str                     # "PNG", "JPEG", "PDF", "WFDB", "DICOM", ...
    page: int = 1
    pages: int = 1
    record: "Record | None" = None

    def describe(self) -> dict:
        """JSON-able facts stored with a session (no pixels, no patient data)."""
        return {"filename": self.filename, "format": self.format, "page": self.page,
                "pages": self.pages}


#: A file as callers hand it over: a path, or (file name, bytes) for data that never was a file.
UploadFile = str | Path | tuple[str, bytes]


def load_upload(files: UploadFile | Sequence[UploadFile], limits: Limits = Limits(), *,
                page: int = 1) -> Upload:
    """The one upload loader: files -> a clean :class:`Upload`, within ``limits``.

    A picture or a PDF (``page`` picks the page) is read by :func:`load_image`; signal files
    (``.hea`` + ``.dat``/``.mat``, ``.dcm``) are read as a record and drawn as a printed 12-lead
    page by the project's renderer. Raises :class:`ImageRejected` (or
    :class:`~pulse_app.errors.RecordUnreadable`) with a message for the user.
    """
    page = _page_number(page)
    if isinstance(files, (str, Path, tuple)):
        files = [files]
    named = [_named(f) for f in files]
    if not named:
        raise ImageRejected("no file was uploaded", hint="choose an ECG image, PDF or record")
    try:
        records = [(name, src) for name, src in named if _is_record_file(name, src)]
        if records:
            return _load_record(records, limits)
        name, source = named[0]
        intake = load_image(source, filename=name, page=page, limits=limits)
        return Upload(image=intake.image, filename=name, format=intake.format,
                      page=intake.page, pages=intake.pages)
    finally:
        return_freed_memory()               # the decode's peak goes back to the system


def _page_number(page) -> int:
    """``page`` as a whole number from 1 (a number sent by a client may be a float or junk)."""
    if (isinstance(page, bool) or not isinstance(page, (int, float)) or page != page
            or not 1 <= page <= 100_000 or page != int(page)):
        raise InvalidParameter(f"the page must be a whole number from 1 (got {page!r})",
                               hint="choose page 1 for an image, or a page of the PDF")
    return int(page)


def read_files(files: UploadFile | Sequence[UploadFile], limits: Limits = Limits()
               ) -> list[tuple[str, bytes]]:
    """The files as (name, bytes), each within ``limits.max_bytes``: an upload kept in memory
    (e.g. a PDF whose other pages may be asked for) after its files are deleted."""
    if isinstance(files, (str, Path, tuple)):
        files = [files]
    return [(name, _read_bytes(source, name, limits.max_bytes))
            for name, source in (_named(f) for f in files)]


def _named(file: UploadFile) -> tuple[str, str | Path | bytes]:
    if isinstance(file, tuple):
        name, data = file
        if not isinstance(name, str) or not isinstance(data, (bytes, bytearray)):
            raise ImageRejected("an upload must be a file name and its bytes",
                                hint="send the file's contents")
        return Path(name).name or "the file", bytes(data)
    if not isinstance(file, (str, Path)):
        raise ImageRejected(f"{type(file).__name__} is not a file",
                            hint="send the ECG as a file")
    return Path(file).name, Path(file)


def _is_record_file(name: str, source) -> bool:
    if Path(name).suffix.lower() in RECORD_SUFFIXES:
        return True
    head = source[:132] if isinstance(source, bytes) else b""
    return head[128:132] == b"DICM"                  # a DICOM file without its suffix


def _load_record(files: list[tuple[str, str | Path | bytes]], limits: Limits) -> Upload:
    """Signal files side by side in a private temporary folder (Gradio keeps each upload in its
    own folder; a CLI path to a ``.hea`` brings the signal files beside it), read, drawn."""
    from pulse_app.ecg.records import find_records, read_record
    from pulse_app.ecg.render import render_ecg

    for name, source in list(files):
        if isinstance(source, Path) and source.suffix.lower() == ".hea":
            files += [(p.name, p) for p in source.parent.glob(source.stem + ".*")
                      if p.suffix.lower() in (".dat", ".mat") and p.name not in dict(files)]
    with tempfile.TemporaryDirectory(prefix="pulse-record-") as folder:
        for name, source in files:
            data = _read_bytes(source, name, limits.max_bytes)
            if Path(name).suffix.lower() not in RECORD_SUFFIXES:        # DICOM by its magic
                name += ".dcm"
            (Path(folder) / name).write_bytes(data)
        found = find_records([folder])
        if not found:
            raise ImageRejected("a WFDB record needs its .hea header and its .dat or .mat "
                                "signal file", hint="select both files and upload them together")
        record = read_record(found[0])
        image = render_ecg(record).image
    kind = "DICOM" if found[0].suffix.lower() == ".dcm" else "WFDB"
    return Upload(image=image, filename=found[0].name, format=kind, record=record)


@dataclass(frozen=True)
class Intake:
    """A clean upload: ``image`` (PIL RGB, no metadata), the page read and the page count."""

    image: Image.Image
    pages: int = 1          # pages in the file (PDF), 1 for images
    page: int = 1           # which page ``image`` is (1 = first)
    format: str = "PNG"     # what the file was: "PNG", "JPEG", "HEIF", "PDF", ...


def load_image(source: bytes | str | Path, *, filename: str | None = None, page: int = 1,
               limits: Limits = Limits()) -> Intake:
    """Read an uploaded ECG image or PDF page into a clean RGB image.

    ``source`` is the file's bytes or its path; ``filename`` only names it in messages;
    ``page`` (1 = first) picks the PDF page; ``limits`` are the caps and the memory budget.
    Raises :class:`ImageRejected` for anything that is not a usable image.
    """
    name = filename or (Path(source).name if isinstance(source, (str, Path)) else "the file")
    data = _read_bytes(source, name, limits.max_bytes)
    budget = decode_budget(limits.memory_bytes)
    if _is_pdf(data):
        render_pixels = min(limits.image_pixels, limits.max_pixels)
        with budget.reserve(_peak_bytes(render_pixels, render_pixels), name):
            image, pages, page = _read_pdf_page(data, name, page, render_pixels)
            image = _clean_rgb(image, orientation=1)
        fmt = "PDF"
    else:
        if page != 1:
            raise ImageRejected(f"{name} is an image, not a PDF, so it has no page {page}",
                                hint="choose page 1")
        image, fmt = _decode_image(data, name, limits)
        pages, page = 1, 1
    _check_dimensions(image.size, name, limits.max_pixels)
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


#: EXIF orientation -> the transposition that shows the picture upright.
_ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                 4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                 8: Image.Transpose.ROTATE_90}


def _peak_bytes(decoded_pixels: int, kept_pixels: int) -> int:
    """What decoding ``decoded_pixels`` and keeping ``kept_pixels`` may hold at once: the
    decoded image, one working copy (a conversion or the resize's intermediate) and the kept
    image (see :func:`_fit` and :func:`_clean_rgb`)."""
    return BYTES_PER_PIXEL * (2 * decoded_pixels + kept_pixels)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation of a loaded image (PNG's ``getexif`` decodes the whole image when
    it is called before ``load``, outside the memory budget)."""
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - an unreadable EXIF block: keep the pixels as stored
        return 1


def _decode_image(data: bytes, name: str, limits: Limits) -> tuple[Image.Image, str]:
    """Decode frame 0 within the memory budget, scaled down to ``limits.image_pixels``,
    checking the declared size before any pixel is decompressed."""
    _register_heif()
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        _check_dimensions(image.size, name, limits.max_pixels)   # from the header only
        fmt = "JPEG" if image.format == "MPO" else (image.format or "image")
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        kept = min(image.width * image.height, limits.image_pixels)
        if fmt == "JPEG" and image.width * image.height > limits.image_pixels:
            scale = math.sqrt(limits.image_pixels / (image.width * image.height))
            image.draft(image.mode, (math.ceil(image.width * scale),      # DCT scaling: 1/2,
                                     math.ceil(image.height * scale)))    # 1/4 or 1/8 size
        with decode_budget(limits.memory_bytes).reserve(
                _peak_bytes(image.width * image.height, kept), name):
            image.load()
            orientation = _orientation(image)           # before scaling drops the EXIF block
            image = _fit(image, limits.image_pixels)
            image = _clean_rgb(image, orientation)
    except PulseError:                                  # ours: refused, or the server busy
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
    """Page ``page`` of a PDF, rendered by poppler at the resolution that keeps it under
    ``max_pixels`` (at most :data:`PDF_DPI`)."""
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


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit, float, palette and 1-bit images as 8-bit L, LA, RGB or RGBA."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _high_bit_depth_to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode == "1":
        image = image.convert("L")
    return image


def _fit(image: Image.Image, max_pixels: int) -> Image.Image:
    """``image`` scaled down (Lanczos, aspect kept) to at most ``max_pixels``; unchanged when it
    is small enough.

    >>> _fit(Image.new("RGB", (4000, 3000)), 3_000_000).size
    (2000, 1500)
    """
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
    # reducing_gap: a cheap box reduction first when the image is 3x (or more) too large
    return _eight_bit(image).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _clean_rgb(image: Image.Image, orientation: int) -> Image.Image:
    """Upright (EXIF ``orientation``), 8-bit RGB on white, sRGB, and a fresh image that carries
    no metadata."""
    try:
        return _normalise(image, orientation)
    except (ValueError, OSError) as error:
        raise ImageRejected(f"the image's colour format ({image.mode}) cannot be converted",
                            hint="export it again as an ordinary PNG or JPEG") from error


def _normalise(image: Image.Image, orientation: int) -> Image.Image:
    if orientation in _ORIENTATIONS:
        image = image.transpose(_ORIENTATIONS[orientation])
    image = _to_srgb(image)
    image = _eight_bit(image)
    if image.mode in ("LA", "La", "PA", "RGBa", "RGBA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    clean = Image.new("RGB", image.size)                # pixels only: no info, EXIF, XMP...
    clean.paste(image)
    return clean
