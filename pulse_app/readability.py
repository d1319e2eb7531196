"""Can this photo of an ECG be read? Advisory warnings before the first question.

:func:`check_readability` looks at the picture once (reusing the analysis of
:mod:`pulse_app.straighten`) and returns a :class:`Finding` per problem, each with a specific
thing to do: the picture is too blurred, too dark, washed out, the tracing is too small in the
frame, or no ECG was found at all. An empty list means nothing stood out. It never blocks: the
user may still ask.

What is measured (on the analysis copy, :data:`pulse_app.straighten.WORK_SIDE_PX` a side):

- *blur*: how far the darkest lines (ink, grid) are smeared, as the ratio of their darkness to
  their steepest slope (about the width of the blur), in millimetres of paper (the grid's 5 mm
  squares, or the page's width, give the scale);
- *darkness*: the brightness of the paper (its bright tail, so print and shadows do not count);
- *washed out*: most of the paper clipped to white while even the ink is pale;
- *size*: the share of the picture the page takes;
- *no ECG*: no grid and no long ink curve (see :mod:`pulse_app.straighten`).

>>> from pulse_app.ecg.simulate import ecg_simulate
>>> from pulse_app.ecg.render import render_ecg
>>> check_readability(render_ecg(ecg_simulate(seed=1)).image)
[]
>>> import numpy as np
>>> from PIL import Image
>>> [f.kind for f in check_readability(Image.fromarray(np.full((600, 800, 3), 128, np.uint8)))]
['no_ecg']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pulse_app.straighten import PageAnalysis, analyse_page

#: Kinds of finding, in the order they are reported.
KINDS = ("no_ecg", "dark", "blurred", "overexposed", "small")
#: A line smeared over more than this (mm of paper, darkness / steepest slope) is blurred.
BLUR_LIMIT_MM = 0.5
#: The smear of a sharp line in pixels (pixel size and anti-aliasing), taken off every measure.
LINE_FLOOR_PX = 2.0
#: Paper darker than this (0-255, its bright tail) is too dark.
DARK_LIMIT = 70.0
#: Washed out: at least this share of the paper clipped to white ...
CLIPPED_SHARE = 0.25
#: ... while the darkest ink is no darker than this share of the paper's brightness (and the
#: lines are sharp: blur pales ink too).
WASHED_INK_SHARE = 0.5
#: The page taking less than this share of the picture is too small.
SMALL_SHARE = 0.2
#: Page width assumed when there is no grid to measure (mm, a 12-lead printout).
PAGE_WIDTH_MM = 270.0
GRID_MM = 5.0      # the grid period found is taken as the 5 mm squares


@dataclass(frozen=True)
class Finding:
    """One readability problem: ``kind`` (one of :data:`KINDS`), ``message`` (what is wrong),
    ``hint`` (what to do), ``value`` and ``limit`` (the measured number and its threshold)."""

    kind: str
    message: str
    hint: str
    value: float
    limit: float

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}"


def check_readability(image, *, analysis: PageAnalysis | None = None) -> list[Finding]:
    """Findings (possibly none) that make this ECG picture hard to read; advisory only.

    ``image``: PIL image or H x W x 3 uint8 array; ``analysis``: an
    :func:`~pulse_app.straighten.analyse_page` result for it, to avoid a second look.
    """
    pa = analysis if analysis is not None else analyse_page(image)
    findings = []
    ecg = pa.quad is not None
    if not ecg:
        findings.append(Finding(
            "no_ecg", "no ECG grid or tracing was found in the picture",
            "check that the photo shows the paper ECG, the whole page, in focus and in good "
            "light", 0.0, 1.0))
    paper, clipped, ink = _exposure(pa)
    if paper < DARK_LIMIT:
        findings.append(Finding(
            "dark", f"the picture is too dark (the paper is at {100 * paper / 255:.0f} % "
            "brightness)", "add light or move to a brighter place, and keep your shadow off "
            "the paper", paper, DARK_LIMIT))
    look, picture = pa, image
    if "zoom" in pa.details:                       # the page was found in a closer look
        look, (left, top) = pa.details["zoom"]
        picture = np.asarray(image)[top:top + look.size[1], left:left + look.size[0]]
    blur = blur_mm(picture, look)
    sharp = blur is None or blur <= BLUR_LIMIT_MM
    if not sharp:
        findings.append(Finding(
            "blurred", f"the picture is blurred (lines smeared over about {blur:.1f} mm)",
            "hold the phone still and parallel to the paper, tap the page to focus, and take "
            "it again", blur, BLUR_LIMIT_MM))
    if paper >= DARK_LIMIT and sharp and clipped > CLIPPED_SHARE and ink > WASHED_INK_SHARE:
        findings.append(Finding(
            "overexposed", "the picture is washed out (the tracing and grid have lost their "
            "contrast)", "avoid glare and direct light on the paper, turn the flash off and "
            "take it again", ink, WASHED_INK_SHARE))
    if not ecg:
        return findings
    share = page_share(pa)
    if share < SMALL_SHARE:
        findings.append(Finding(
            "small", f"the ECG fills only {100 * share:.0f} % of the picture",
            "move closer so that the page fills the frame", share, SMALL_SHARE))
    return findings


# -- measurements --------------------------------------------------------------------------------

def _page_mask(pa: PageAnalysis) -> np.ndarray:
    """Analysis pixels on the page (the whole picture when no page was found)."""
    h, w = pa.gray.shape
    mask = np.zeros((h, w), np.uint8)
    if pa.quad is None:
        mask[:] = 1
    else:
        cv2.fillConvexPoly(mask, np.round(pa.quad).astype(np.int32), 1)
        if not mask.any():
            mask[:] = 1
    return mask.astype(bool)


def _exposure(pa: PageAnalysis) -> tuple[float, float, float]:
    """(paper brightness 0-255, share of paper clipped white, darkest ink / paper)."""
    mask = _page_mask(pa)
    gray = pa.gray[mask]
    paper = float(np.percentile(gray, 90))
    clipped = float(np.mean(pa.rgb.min(axis=2)[mask] >= 250))
    darkest = float(np.percentile(gray, 0.3))
    return paper, clipped, darkest / max(paper, 1.0)


def _px_per_mm(pa: PageAnalysis) -> float:
    """Analysis pixels per millimetre of paper: from the page's width (taken as
    :data:`PAGE_WIDTH_MM`; the picture's width when no page was found), or from the grid
    (its period taken as 5 mm squares) when the two roughly agree."""
    if pa.quad is not None:
        q = pa.quad
        width = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    else:
        width = pa.gray.shape[1]
    from_page = float(width) / PAGE_WIDTH_MM
    period = pa.details.get("grid_period_px")
    if pa.grid and period and period[0]:
        from_grid = float(np.mean(period)) / GRID_MM
        if 0.6 < from_grid / from_page < 1.7:
            return from_grid
    return from_page


def blur_mm(image, pa: PageAnalysis, *, spots: int = 12, half: int = 48) -> float | None:
    """How far the darkest lines are smeared, in mm of paper, measured at the picture's own
    resolution: at the ``spots`` strongest line spots of the analysis, a crop of the original
    (``2 half`` px a side), the ratio of each line's darkness to its steepest slope (for a
    Gaussian blur of width s about 1.2-1.7 s), the median over all. None without lines."""
    arr = np.asarray(image) if not isinstance(image, np.ndarray) else image
    lines = pa.lines
    h, w = lines.shape
    tile = 32
    ty, tx = h // tile, w // tile
    if ty < 1 or tx < 1:
        return None
    blocks = lines[:ty * tile, :tx * tile].reshape(ty, tile, tx, tile)
    strongest = blocks.max(axis=(1, 3))
    order = np.argsort(strongest.ravel())[::-1][:spots]
    ppm = _px_per_mm(pa) * pa.scale                   # original pixels per mm of paper
    kernel = int(np.clip(round(1.5 * ppm), 7, 41)) | 1
    spreads = []
    for k in order:
        if strongest.ravel()[k] < 12:
            break
        by, bx = divmod(int(k), tx)
        sub = blocks[by, :, bx, :]
        yy, xx = np.unravel_index(int(np.argmax(sub)), sub.shape)
        cx, cy = int((bx * tile + xx + 0.5) * pa.scale), int((by * tile + yy + 0.5) * pa.scale)
        crop = arr[max(0, cy - half):cy + half, max(0, cx - half):cx + half]
        if crop.shape[0] < 16 or crop.shape[1] < 16:
            continue
        spread = _line_spread(crop.min(axis=2) if crop.ndim == 3 else crop, kernel)
        if spread is not None:
            spreads.append(spread)
    if not spreads:
        return None
    # a perfectly sharp line still spreads over about LINE_FLOOR_PX pixels of the picture
    spread = math.sqrt(max(float(np.median(spreads)) ** 2 - LINE_FLOOR_PX ** 2, 0.0))
    return spread / ppm


def _line_spread(gray: np.ndarray, kernel: int) -> float | None:
    """Median darkness / steepest slope (px) over the darkest line pixels of a crop."""
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (kernel, kernel))
    lines = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, k).astype(np.float32)
    top = lines >= max(12.0, 0.6 * float(lines.max()))
    if top.sum() < 5:
        return None
    gx = cv2.Sobel(lines, cv2.CV_32F, 1, 0, ksize=3) / 8.0      # Sobel's gain is 8
    gy = cv2.Sobel(lines, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    slope = cv2.dilate(cv2.magnitude(gx, gy), np.ones((5, 5), np.uint8))
    peak = cv2.dilate(lines, np.ones((3, 3), np.uint8))
    return float(np.median(peak[top] / np.maximum(slope[top], 1e-3)))


def page_share(pa: PageAnalysis) -> float:
    """Share (0..1) of the picture taken by the page (1 when the page fills it)."""
    return float(_page_mask(pa).mean())
