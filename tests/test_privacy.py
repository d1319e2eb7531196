"""Nothing of a visitor outside the database, in a real browser against `python -m pulse_app
serve` with temp and Gradio cache folders of its own: upload a phone photo with camera make,
description and GPS in its EXIF, ask, export the PDF with a note, delete the session. Meanwhile
no other client (no cookie, another browser) can fetch the upload or the report by URL;
afterwards no file under the temp or cache folders holds the photo's metadata, a PDF, the
question or the note, no picture at all, and the database file no longer holds the question."""

from __future__ import annotations

import io
import re

import httpx
import pytest
from PIL import Image

from tests.fixtures_ui import free_port, serve_process
from tests.test_browser import choose_session, click_picture, keep_original, wait_for_picture_size

pytestmark = pytest.mark.browser

CAMERA, DESCRIPTION = "PrivacyCam-3141", "PATIENT-J-DOE-7731"
QUESTION = "QMARK5521 what is the rhythm?"
NOTE = "NOTEMARK9934 seen with the family"


def photo_with_gps(path) -> None:
    """A JPEG of a real ECG photo with camera make, a description and a GPS position."""
    from tests.conftest import SHARED_DATA

    image = Image.open(SHARED_DATA / "ecg-images" / "ecg00040.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x010F], exif[0x010E] = CAMERA, DESCRIPTION               # Make, ImageDescription
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 22.0, 3.5), 3: "E", 4: (4.0, 53.0, 20.0)})
    image.save(path, "JPEG", exif=exif, quality=90)
    saved = Image.open(path).getexif()
    assert saved[0x010F] == CAMERA and saved.get_ifd(0x8825)[2], "the photo carries its GPS"


def leftovers(*folders) -> list[str]:
    """Files under ``folders`` that hold something of the visitor."""
    found = []
    markers = [CAMERA.encode(), DESCRIPTION.encode(), b"QMARK5521", b"NOTEMARK9934"]
    for folder in folders:
        for path in folder.rglob("*"):
            if not path.is_file():
                continue
            data = path.read_bytes()
            if any(marker in data for marker in markers) or data.startswith(b"%PDF"):
                found.append(str(path))
                continue
            try:
                Image.open(io.BytesIO(data))
                found.append(str(path))                 # a picture: the visitor's ECG
            except Exception:  # noqa: BLE001 - not an image
                pass
    return found


def test_nothing_of_a_visitor_stays_outside_the_database(browser, tmp_path, ui_cache):
    temp, cache, data = tmp_path / "tmp", tmp_path / "gradio-cache", tmp_path / "data"
    temp.mkdir()
    port = free_port()
    server = serve_process(data, ui_cache, port, tmp_path / "serve.log", "--max-new-tokens",
                           "8", env={"TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(cache)})
    url = f"http://127.0.0.1:{port}/"
    photo = tmp_path / "IMG_2041.jpg"
    photo_with_gps(photo)
    context = browser.new_context(viewport={"width": 1500, "height": 1100},
                                  accept_downloads=True)
    stranger = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        page.locator("#notice").get_by_text("not a medical device").wait_for()
        # Waited for, not collected by a handler: a handler reading the body runs in its own
        # greenlet and could append after the picture is shown (CI saw it empty once).
        with page.expect_response(lambda r: r.url.split("?")[0].endswith("/gradio_api/upload"),
                                  timeout=60_000) as upload:
            page.locator("#upload input[type=file]").set_input_files(str(photo))
        uploaded = upload.value.json()
        wait_for_picture_size(page, 1200, 612)
        assert uploaded, "the upload's path on the server was seen"
        keep_original(page)
        page.locator("#rotate-left").click()                        # every picture shown
        wait_for_picture_size(page, 612, 1200)
        click_picture(page, 0.1, 0.1)
        page.get_by_text("Now click the opposite corner").first.wait_for()
        click_picture(page, 0.6, 0.6)
        wait_for_picture_size(page, 306, 600)
        page.locator("#question textarea").fill(QUESTION)
        page.locator("#ask").click()
        page.locator("#chat").get_by_text("— tiny-untrained").wait_for(timeout=60_000)

        page.locator("#report-note textarea").fill(NOTE)
        page.locator("#export-pdf").click()
        link = page.locator("#report-file a").first
        link.wait_for(timeout=60_000)
        report = url + link.get_attribute("href")
        raw = f"{url}gradio_api/file={uploaded[0]}"
        assert httpx.get(report, timeout=30).status_code == 404         # no cookie at all
        assert stranger.request.get(report).status == 404               # another browser
        assert httpx.get(raw, timeout=30).status_code == 404
        assert stranger.request.get(raw).status == 404
        assert page.request.get(raw).status == 404, "not even the uploader: it is gone"
        with page.expect_download() as download:
            link.click()
        assert download.value.path().read_bytes().startswith(b"%PDF")
        assert page.request.get(report).status == 404, "a report is downloaded once"

        choose_session(page, "QMARK5521")
        page.locator("#session-delete").click()
        page.get_by_text("Session deleted.").wait_for(timeout=30_000)
        held = [p.name for p in data.rglob("*") if p.is_file() and b"QMARK5521" in p.read_bytes()]
        assert held == [], "the running server still holds the deleted question on disk"
    finally:
        context.close()
        stranger.close()
        server.terminate()
        server.wait(timeout=30)

    assert leftovers(temp, cache) == [], "a file of the visitor stayed in temp or cache"
    assert not re.search(r"Traceback", (tmp_path / "serve.log").read_text())
