"""Intake on real files: every format, PDF pages, broken files, limits, EXIF and metadata."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from pulse_app.errors import ImageRejected
from pulse_app.intake import Limits, edit_image, load_image, png_bytes


@pytest.fixture(scope="module")
def ecg(shared_data) -> Image.Image:
    return Image.open(shared_data / "ecg-images" / "ecg00010.png").convert("RGB")   # 768 x 420


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def dark_fraction(image: Image.Image, below: int = 128) -> float:
    """Fraction of pixels darker than ``below`` (0-255 gray)."""
    gray = image.convert("L")
    return sum(gray.histogram()[:below]) / (gray.width * gray.height)


def pdf_with_ecg(ecg: Image.Image, pages: int = 3, ecg_page: int = 2, **canvas_options) -> bytes:
    from reportlab.lib.pagesizes import landscape, letter
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=landscape(letter), **canvas_options)
    width, height = landscape(letter)
    for number in range(1, pages + 1):
        pdf.drawString(72, 36, f"page {number}")
        if number == ecg_page:
            pdf.drawImage(ImageReader(ecg), 36, 72, width=width - 72, height=height - 144)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def huge_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A valid all-white 1-bit PNG of width x height, built row by row (about 0.2 MB)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


# -- formats ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, expected, options", [
    ("PNG", "PNG", {}), ("JPEG", "JPEG", {"quality": 90}), ("WEBP", "WEBP", {"quality": 90}),
    ("TIFF", "TIFF", {"compression": "tiff_lzw"}), ("BMP", "BMP", {}), ("GIF", "GIF", {}),
])
def test_each_image_format_loads_as_rgb(ecg, fmt, expected, options):
    intake = load_image(encode(ecg, fmt, **options), filename=f"ecg.{fmt.lower()}")
    assert (intake.format, intake.image.mode, intake.image.size) == (expected, "RGB", ecg.size)
    assert (intake.pages, intake.page) == (1, 1)
    assert abs(dark_fraction(intake.image) - dark_fraction(ecg)) < 0.02


def test_heic_phone_photo_loads(ecg):
    import pillow_heif

    pillow_heif.register_heif_opener()
    data = encode(ecg, "HEIF", quality=90)
    assert data[4:12] in (b"ftypheic", b"ftypmif1", b"ftypheix")      # a real HEIF container
    intake = load_image(data, filename="IMG_0001.HEIC")
    assert (intake.format, intake.image.size, intake.image.mode) == ("HEIF", ecg.size, "RGB")
    assert abs(dark_fraction(intake.image) - dark_fraction(ecg)) < 0.03


def test_heic_rotation_from_its_container_is_applied_and_metadata_dropped():
    import pillow_heif

    pillow_heif.register_heif_opener()
    photo = Image.new("RGB", (300, 200), "white")
    photo.paste((255, 0, 0), (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6                                      # written as the HEIF 'irot' transform
    exif[0x010F] = "SecretPhoneMaker"
    photo.info["exif"] = exif.tobytes()
    data = encode(photo, "HEIF", quality=90)
    assert b"irot" in data and b"SecretPhoneMaker" in data
    intake = load_image(data, filename="IMG_0002.HEIC")
    assert intake.image.size == (200, 300)
    assert intake.image.getpixel((180, 20))[0] > 200 > intake.image.getpixel((180, 20))[1]
    assert b"SecretPhoneMaker" not in png_bytes(intake.image)


def test_multipage_pdf_reads_the_chosen_page(ecg, tmp_path):
    path = tmp_path / "scan.pdf"
    path.write_bytes(pdf_with_ecg(ecg, pages=3, ecg_page=2))
    first = load_image(path)
    second = load_image(path, page=2)
    assert (first.format, first.pages, first.page) == ("PDF", 3, 1)
    assert (second.pages, second.page, second.image.size) == (3, 2, (2200, 1700))
    assert dark_fraction(first.image, 230) < 0.01 < 0.1 < dark_fraction(second.image, 230)
    with pytest.raises(ImageRejected, match="has 3 pages, no page 4") as error:
        load_image(path, page=4)
    assert "from 1 to 3" in error.value.hint


def test_huge_pdf_page_is_rendered_under_the_pixel_cap(ecg):
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=(100 * 72, 50 * 72))        # a 100 x 50 inch poster
    pdf.drawString(72, 72, "poster")
    pdf.showPage()
    pdf.save()
    intake = load_image(buffer.getvalue(), limits=Limits(max_pixels=4_000_000))
    assert intake.image.width * intake.image.height <= 4_000_000
    assert abs(intake.image.width - 2 * intake.image.height) <= 2


def test_real_ecg_photos_and_printouts_load(shared_data):
    for path in sorted((shared_data / "ecg-images").iterdir()):
        intake = load_image(path)
        assert intake.image.mode == "RGB" and min(intake.image.size) >= 100, path.name


# -- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda ecg: b"", "is empty"),
    (lambda ecg: b"Patient: Doe\nHR 72\n" * 50, "not an image"),
    (lambda ecg: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, "damaged|truncated|not an image"),
    (lambda ecg: encode(ecg, "PNG")[: len(encode(ecg, "PNG")) // 2], "truncated|damaged"),
    (lambda ecg: encode(ecg, "JPEG")[:3000], "truncated|damaged"),
    (lambda ecg: b"%PDF-1.4\n1 0 obj garbage", "damaged PDF"),
    (lambda ecg: encode(ecg.resize((80, 60)), "PNG"), "too small"),
    (lambda ecg: encode(ecg, "PCX"), "not an image"),                 # a format we do not take
])
def test_broken_and_unusable_files_are_refused_clearly(ecg, make, message):
    with pytest.raises(ImageRejected, match=message) as error:
        load_image(make(ecg), filename="upload.png")
    assert error.value.hint and "upload.png" in error.value.message


def test_text_file_renamed_png_is_refused(tmp_path):
    path = tmp_path / "ecg.png"
    path.write_text("12-lead ECG report\nSinus rhythm, rate 72 bpm\n" * 10)
    with pytest.raises(ImageRejected, match="ecg.png is not an image"):
        load_image(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ImageRejected, match="not found"):
        load_image(tmp_path / "nope.png")


def test_encrypted_pdf_is_refused(ecg):
    data = pdf_with_ecg(ecg, pages=1, ecg_page=1, encrypt="secret")
    with pytest.raises(ImageRejected, match="password-protected PDF"):
        load_image(data, filename="locked.pdf")


def test_40000_square_png_is_refused_before_decoding():
    data = huge_png()
    assert len(data) < 1_000_000
    assert struct.unpack(">II", data[16:24]) == (40_000, 40_000)         # IHDR width, height
    decoder = zlib.decompressobj()                                         # a real, valid PNG:
    assert len(decoder.decompress(data[41:-12], 10_000)) == 10_000         # its IDAT inflates
    with pytest.raises(ImageRejected, match="bomb.png declares 1,600 megapixels, too many"):
        load_image(data, filename="bomb.png")


def test_pixel_cap_is_checked_from_the_header():
    data = huge_png(10_000, 8_000)        # 80 Mpx: over our 60 Mpx cap, under Pillow's guard
    with pytest.raises(ImageRejected, match="10000 x 8000 pixels, more than the 60 megapixel"):
        load_image(data, filename="scan.png")


def test_file_size_cap(ecg, tmp_path):
    path = tmp_path / "big.bmp"
    path.write_bytes(encode(ecg, "BMP"))
    with pytest.raises(ImageRejected, match=r"MB, more than the 0.5 MB limit"):
        load_image(path, limits=Limits(max_bytes=500_000))
    with pytest.raises(ImageRejected, match="limit"):
        load_image(path.read_bytes(), limits=Limits(max_bytes=500_000))


def test_pixel_cap_is_a_setting(ecg):
    with pytest.raises(ImageRejected, match="megapixel"):
        load_image(encode(ecg, "PNG"), limits=Limits(max_pixels=100_000))


# -- normalisation ------------------------------------------------------------------------------

def test_exif_orientation_applied_and_all_metadata_stripped():
    image = Image.new("RGB", (300, 200), "white")
    image.paste((255, 0, 0), (0, 0, 40, 40))                 # red mark at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6                                          # display = rotate 90 clockwise
    exif[0x010F] = "SecretPhoneMaker"                         # Make
    exif[0x0110] = "Model-X-9000"                             # Model
    exif[0x013B] = "Dr Jane Doe"                              # Artist
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    data = encode(image, "JPEG", exif=exif, quality=95)
    assert b"SecretPhoneMaker" in data

    intake = load_image(data, filename="photo.jpg")
    assert intake.image.size == (200, 300)                   # portrait, as the phone showed it
    assert intake.image.getpixel((180, 20))[0] > 200 > intake.image.getpixel((180, 20))[1]
    stored = png_bytes(intake.image)
    for secret in (b"Exif", b"SecretPhoneMaker", b"Model-X-9000", b"Dr Jane Doe", b"eXIf"):
        assert secret not in stored
    reopened = Image.open(io.BytesIO(stored))
    assert dict(reopened.getexif()) == {}
    assert not {"exif", "icc_profile", "xmp", "dpi"} & set(reopened.info)


def test_png_text_chunks_are_not_kept(ecg):
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("Author", "Patient John Smith 1950-02-03")
    intake = load_image(encode(ecg, "PNG", pnginfo=meta))
    assert b"John Smith" not in png_bytes(intake.image)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    import numpy as np

    ramp = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (200, 1))
    image = Image.fromarray(ramp)                              # mode I;16
    assert image.mode.startswith("I;16")
    out = load_image(encode(image, "PNG")).image
    row = [out.getpixel((x, 10))[0] for x in (0, 128, 255)]
    assert row[0] < 3 and 120 < row[1] < 135 and row[2] > 252


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_images_are_composited_on_white(mode):
    image = Image.new("RGBA", (200, 150), (0, 0, 0, 0))       # fully transparent black...
    image.paste((0, 0, 0, 255), (0, 0, 100, 150))              # ...left half opaque black
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
        image.info["transparency"] = image.getpixel((150, 10))
    out = load_image(encode(image, "PNG")).image
    assert out.getpixel((150, 10)) == (255, 255, 255)
    assert out.getpixel((10, 10)) == (0, 0, 0)


def test_palette_cmyk_and_multiframe_are_normalised(ecg):
    palette = ecg.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert load_image(encode(palette, "PNG")).image.mode == "RGB"
    cmyk = load_image(encode(ecg.convert("CMYK"), "JPEG")).image
    assert cmyk.mode == "RGB" and abs(dark_fraction(cmyk) - dark_fraction(ecg)) < 0.03
    frames = [Image.new("RGB", (200, 200), color) for color in ("red", "blue", "green")]
    for fmt in ("TIFF", "GIF", "WEBP"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
        assert Image.open(io.BytesIO(data)).n_frames == 3
        out = load_image(data).image
        red, green, blue = out.getpixel((100, 100))
        assert red > 200 and green < 60 and blue < 60, fmt


# -- edits ----------------------------------------------------------------------------------------

def test_edit_rotates_in_quarter_turns_then_fine_angle_then_crops(ecg):
    assert edit_image(ecg, rotate90=1).size == (420, 768)
    assert edit_image(ecg, rotate90=4).tobytes() == ecg.tobytes()
    marked = Image.new("RGB", (300, 200), "white")
    marked.paste((255, 0, 0), (0, 0, 30, 30))
    turned = edit_image(marked, rotate90=1)                    # counter-clockwise
    assert turned.getpixel((10, 290)) == (255, 0, 0)           # top-left -> bottom-left
    tilted = edit_image(ecg, angle_deg=10)
    assert tilted.width > ecg.width and tilted.height > ecg.height
    assert tilted.getpixel((0, 0)) == (255, 255, 255)          # white corners, not black
    cropped = edit_image(ecg, rotate90=1, crop=(10, 20, 310, 420))
    assert cropped.size == (300, 400)
    assert edit_image(ecg, crop=(-50, -50, 5000, 5000)).size == ecg.size    # clipped


def test_edit_refusals(ecg):
    with pytest.raises(ImageRejected, match="too large"):
        edit_image(ecg, angle_deg=30)
    with pytest.raises(ImageRejected, match="crop box is too small"):
        edit_image(ecg, crop=(0, 0, 50, 400))


# -- the CLI reads through intake -----------------------------------------------------------------

def run_ask(*args, timeout=180):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "pulse_app", "ask", *map(str, args)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_cli_ask_reads_a_pdf_page(ecg, tmp_path, tiny_model_dir):
    path = tmp_path / "scan.pdf"
    path.write_bytes(pdf_with_ecg(ecg, pages=2, ecg_page=2))
    refused = run_ask(path, "Rhythm?", "--page", "3")
    assert refused.returncode == 3 and refused.stdout == ""
    assert "error: scan.pdf has 2 pages, no page 3. choose a page from 1 to 2" in refused.stderr
    answered = run_ask(path, "Rhythm?", "--page", "2", "--model", tiny_model_dir,
                       "--device", "cpu", "--temperature", "0", "--max-new-tokens", "4",
                       "--cache-dir", tmp_path / "cache")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() and "UNTRAINED" in answered.stderr


def test_damaged_files_never_crash_with_anything_but_image_rejected(ecg):
    import random

    rng = random.Random(0)
    originals = [encode(ecg, fmt) for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "GIF", "BMP")]
    for n in range(120):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 20)):                # flip bytes, header included
            data[rng.randrange(min(len(data), 4096 if n % 2 else len(data)))] = rng.randrange(256)
        try:
            intake = load_image(bytes(data), filename="damaged")
        except ImageRejected:
            continue
        assert intake.image.mode == "RGB"                   # a readable image is fine too


# -- decoding cost ------------------------------------------------------------------------------

def test_large_images_are_scaled_down_while_decoding(ecg):
    """A 5 MP photo comes out at most ``image_pixels`` (here 1 MP), its aspect kept and
    upright; a JPEG is decoded at a reduced size by libjpeg (draft), never at full size."""
    big = ecg.resize((3072, 1680))                                   # 5.2 MP
    exif = Image.Exif()
    exif[0x0112] = 6                                                 # shown rotated 90 degrees
    limits = Limits(image_pixels=1_000_000)
    for fmt, options in (("JPEG", {"quality": 85, "exif": exif}), ("PNG", {"exif": exif})):
        out = load_image(encode(big, fmt, **options), limits=limits).image
        assert 900_000 < out.width * out.height <= 1_000_000, fmt
        assert out.height > out.width and abs(out.height / out.width - 3072 / 1680) < 0.01, fmt

    from PIL import JpegImagePlugin

    decoded = []
    original_load = JpegImagePlugin.JpegImageFile.load

    def watched_load(image):
        decoded.append(image.size)
        return original_load(image)

    JpegImagePlugin.JpegImageFile.load = watched_load
    try:
        load_image(encode(big, "JPEG", quality=85), limits=limits)
    finally:
        JpegImagePlugin.JpegImageFile.load = original_load
    assert decoded and decoded[0][0] * decoded[0][1] <= 4 * 1_000_000, \
        f"decoded at {decoded[0]}: the JPEG was not scaled in the decoder"


def test_decodes_wait_for_room_in_the_memory_budget():
    import threading
    import time

    from pulse_app.errors import ServerBusy
    from pulse_app.memory import MemoryBudget

    budget, order = MemoryBudget(100, wait_s=5), []

    def decode(name, hold_s):
        with budget.reserve(60, name):
            order.append(f"{name} in")
            time.sleep(hold_s)
            order.append(f"{name} out")

    first = threading.Thread(target=decode, args=("a", 0.3))
    first.start()
    time.sleep(0.05)
    decode("b", 0)                                   # waits until "a" has given its share back
    first.join()
    assert order == ["a in", "a out", "b in", "b out"]
    impatient = MemoryBudget(100, wait_s=0.1)
    with impatient.reserve(60, "a"), pytest.raises(ServerBusy, match="busy"):
        with impatient.reserve(60, "b"):
            pass
