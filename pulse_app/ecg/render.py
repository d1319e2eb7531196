"""Record -> paper-ECG image, as printed by a 12-lead machine (plus distortions and a JSON sidecar).

Draws with numpy and OpenCV (anti-aliased polylines on a cached grid), not matplotlib: a clean
2200×1700 page takes a few tens of milliseconds on one core. The page is US letter landscape
(11 × 8.5 in, 2200 × 1700 px at 200 dpi); ``px_per_mm = dpi / 25.4``. The grid has 1 mm minor and
5 mm major lines from the page's top-left corner; every row's trace starts on a major line, after
a 1 mV calibration pulse (``gain_mm_mV`` mm tall, 5 mm wide).

Layouts (``layout``):

- ``"3x4"``: 3 rows × 4 columns (I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6), each column a
  consecutive quarter of the time window; ``"3x4+II"`` adds a full-length rhythm strip of lead II,
  ``"3x4+II,V1,V5"`` up to three strips.
- ``"6x2"``: limb leads in the left column, chest leads in the right (halves of the window).
- ``"12x1"``: every lead over the whole window.

The time window is as much of the record as fits the paper: 10 s at 25 mm/s, 5 s at 50 mm/s.

Texts: a header in one of :data:`HEADER_STYLES` (only what the record has: age and sex, the
machine's measurements, date, device; never made up), and each panel's lead label, placed in the
free space nearest its usual spot (above the start of the trace) at least
:data:`LABEL_CLEARANCE_MM` from any trace ink (on a crowded row, smaller); a panel with no such
space anywhere in its row is left unlabelled (listed in the sidecar's ``unlabelled``). Teaching pages use ``header="neutral"``
(speed and gain only); :func:`revealing_texts` lists the texts of a page that give a record's
ground truth away.

The sidecar (JSON-able) is ground truth for later digitisation work: ``leads`` maps each panel
("II", ..., rhythm strips as "II-rhythm") to the pixel box ``[x0, y0, x1, y1]`` of its drawn trace
in the final image (moved with the paper's folds and the camera, clipped to the image);
``texts`` lists every text drawn (``text``, ``kind``: lead_label, settings, demographics,
caption, measurements, date or device; ``box`` in the image, ``page_box`` on the flat page);
``panels`` keeps each panel's time window, baseline, row slot and x range in page pixels, and
``page_to_image`` the 3×3 homography of the camera from page pixels to image pixels (identity
without geometric distortions); folds move points by up to ``lift_mm`` more:
:func:`pulse_app.ecg.distort.warp_of` rebuilds the exact page -> image map from a sidecar.

Example:
    >>> from pulse_app.ecg.simulate import ecg_simulate
    >>> out = render_ecg(ecg_simulate(seed=1), layout="3x4+II", distort="photo", seed=3)
    >>> out.image.size, round(out.sidecar["px_per_mm"], 3), len(out.sidecar["leads"])
    ((2200, 1700), 7.874, 13)
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from pulse_app.ecg.records import Record

#: Paper size in mm (US letter, landscape).
PAPER_MM = (279.4, 215.9)
#: Leads of the 3×4 layout, by row.
LAYOUT_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
LAYOUT_6X2 = tuple(zip(("I", "II", "III", "aVR", "aVL", "aVF"), ("V1", "V2", "V3", "V4", "V5", "V6")))
LAYOUT_12X1 = tuple((lead,) for lead in ("I", "II", "III", "aVR", "aVL", "aVF",
                                         "V1", "V2", "V3", "V4", "V5", "V6"))
BASE_LAYOUTS = {"3x4": LAYOUT_3X4, "6x2": LAYOUT_6X2, "12x1": LAYOUT_12X1}
SPEEDS_MM_S = (25.0, 50.0)
GAINS_MM_MV = (5.0, 10.0, 20.0)

#: RGB colours: paper, minor lines, major lines.
GRIDS = {
    "red": ((255, 255, 255), (250, 196, 196), (238, 128, 128)),
    "pink": ((255, 246, 248), (247, 205, 216), (232, 150, 176)),
    "grey": ((255, 255, 255), (218, 218, 218), (165, 165, 165)),
    "green": ((247, 253, 247), (196, 232, 196), (118, 184, 118)),
    "none": ((255, 255, 255), None, None),
}
INK = (18, 18, 24)
#: Header styles (``render_ecg(header=...)``): what the text above and below the traces shows.
HEADER_STYLES = ("full", "machine", "neutral", "none")
#: Least distance (mm) between any text and the traces' ink.
LABEL_CLEARANCE_MM = 1.2
#: First line of the measurements in the "machine" header style.
MACHINE_CAPTION = "Machine measurements (computer, unconfirmed)"

# Page geometry in mm.
_LEFT_MM = 15.0           # trace start (a major grid line); calibration pulse just before it
_CAL_MM = (9.0, 10.0, 13.0, 14.0)   # pulse: flat, rise at 10, top to 13, fall, flat to 14
_RIGHT_MM = 8.0
_HEADER_MM = 30.0         # text block above the traces (header=True)
_TOP_MM = 8.0             # header=False
_BOTTOM_MM = 12.0         # speed/gain line lives here


@dataclass
class Rendered:
    """A rendered page: ``image`` (PIL RGB), ``pixels`` (the same as a numpy H×W×3 uint8 array),
    ``sidecar`` (JSON-able dict, see the module docstring)."""

    image: Image.Image
    pixels: np.ndarray
    sidecar: dict


def parse_layout(layout: str) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
    """``"3x4+II,V1"`` -> (rows of leads, rhythm-strip leads).

    >>> parse_layout("6x2")[1], parse_layout("3x4+II,V1")[1]
    ((), ('II', 'V1'))
    """
    base, _, strips = layout.replace(" ", "").partition("+")
    if base not in BASE_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: use 3x4, 3x4+II, 3x4+II,V1,V5, 6x2 or 12x1")
    rhythm = tuple(s for s in strips.split(",") if s)
    if len(rhythm) > 3:
        raise ValueError(f"layout {layout!r}: at most 3 rhythm strips")
    for lead in rhythm:
        if lead not in LAYOUT_12X1 and (lead,) not in LAYOUT_12X1:
            raise ValueError(f"layout {layout!r}: unknown rhythm lead {lead!r}")
    return BASE_LAYOUTS[base], rhythm


def page_size_px(dpi: float) -> tuple[int, int]:
    """(width, height) of the letter-landscape page at ``dpi``: 2200×1700 at 200 dpi."""
    return round(PAPER_MM[0] / 25.4 * dpi), round(PAPER_MM[1] / 25.4 * dpi)


@lru_cache(maxsize=16)
def paper_grid(width: int, height: int, px_per_mm: float, grid: str = "red") -> np.ndarray:
    """The empty page (H×W×3 uint8, RGB, read-only, cached): 1 mm minor and 5 mm major lines
    from the top-left corner. Copy it before drawing on it."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}: use {', '.join(GRIDS)}")
    paper, minor, major = GRIDS[grid]
    img = np.empty((height, width, 3), np.uint8)
    img[:] = paper
    if minor is not None:
        for step_mm, colour, width_mm in ((1.0, minor, 0.1), (5.0, major, 0.2)):
            lw = max(1, round(width_mm * px_per_mm))
            for axis, n in ((1, width), (0, height)):
                centres = np.round(np.arange(0.0, n / px_per_mm, step_mm) * px_per_mm).astype(int)
                idx = (centres[:, None] + np.arange(lw)[None, :] - (lw - 1) // 2).ravel()
                idx = idx[(idx >= 0) & (idx < n)]
                if axis == 1:
                    img[:, idx] = colour
                else:
                    img[idx, :] = colour
    img.flags.writeable = False
    return img


def _record_rng(record: Record, seed: int) -> np.random.Generator:
    """Deterministic per (record id, seed)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(record.record_id.encode())])


def header_style(header: bool | str) -> str:
    """``header`` as one of :data:`HEADER_STYLES` (True -> "full", False -> "none")."""
    if header is True:
        return "full"
    if header is False or header is None:
        return "none"
    if header not in HEADER_STYLES:
        raise ValueError(f"unknown header {header!r}: use {', '.join(HEADER_STYLES)} (or True/False)")
    return header


def _header_texts(record: Record, style: str, speed: float, gain: float) -> list[tuple]:
    """(text, kind, x_mm, y_mm of its baseline) of the header in ``style``. Only what the record
    has is printed (demographics, measurements, date, device); nothing is made up."""
    if style == "none":
        return []
    out = [(f"{speed:g} mm/s   {gain:g} mm/mV", "settings", 10.0, PAPER_MM[1] - 4.0)]
    if style == "neutral":
        return out
    left: list[tuple[str, str]] = []
    demo = []
    if record.age is not None and np.isfinite(record.age):
        demo.append(f"Age {int(record.age)} y")
    if record.sex in ("M", "F"):
        demo.append("Male" if record.sex == "M" else "Female")
    if demo:
        left.append(("   ".join(demo), "demographics"))
    m = record.measurements or {}

    def val(key, unit):
        v = m.get(key)
        return f"{v:.0f} {unit}" if isinstance(v, (int, float)) and np.isfinite(v) else "--"

    if any(k in m for k in ("heart_rate_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "axis_deg")):
        if style == "machine":
            left.append((MACHINE_CAPTION, "caption"))
        qt, qtc = m.get("qt_ms"), m.get("qtc_ms")
        qt_text = f"{qt:.0f}/{qtc:.0f} ms" if qt and qtc else f"{val('qt_ms', 'ms')}"
        left += [(f"Vent. rate {val('heart_rate_bpm', 'bpm')}", "measurements"),
                 (f"PR int. {val('pr_ms', 'ms')}   QRS dur. {val('qrs_ms', 'ms')}", "measurements"),
                 (f"QT/QTc {qt_text}   Axis {val('axis_deg', 'deg')}", "measurements")]
    out += [(text, kind, 10.0, 8.0 + k * 5.0) for k, (text, kind) in enumerate(left)]
    right = [(str(record.meta[key]).strip(), key) for key in ("date", "device")
             if str(record.meta.get(key) or "").strip()]
    out += [(text, kind, 190.0, 8.0 + k * 5.0) for k, (text, kind) in enumerate(right)]
    return out


def _text_params(height_px: float, thickness: int) -> tuple[float, int]:
    return height_px / 22.0, thickness     # Hershey simplex capitals are ~22 px tall at scale 1


@lru_cache(maxsize=512)
def text_extent(text: str, height_px: float, thickness: int) -> tuple[int, int, int, int]:
    """Ink box of ``text`` drawn at origin (0, 0) (its baseline's left end), as offsets
    (left, top, right, bottom) in whole pixels, anti-aliasing included: measured by drawing it."""
    scale, thick = _text_params(height_px, thickness)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = 4 + thick
    canvas = np.zeros((h + base + 2 * pad, w + 2 * pad), np.uint8)
    cv2.putText(canvas, text, (pad, pad + h), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick,
                cv2.LINE_AA)
    ys, xs = np.nonzero(canvas)
    if not len(xs):
        return 0, 0, 0, 0
    return (int(xs.min()) - pad, int(ys.min()) - pad - h, int(xs.max()) + 1 - pad,
            int(ys.max()) + 1 - pad - h)


def _put_text(img, text, x_px, y_px, height_px, thickness=1):
    scale, thick = _text_params(height_px, thickness)
    cv2.putText(img, text, (int(x_px), int(y_px)), cv2.FONT_HERSHEY_SIMPLEX, scale, INK, thick,
                cv2.LINE_AA)


class _FreeSpace:
    """Where text may go without touching trace ink: a coarse occupancy grid of the page (cells
    of ``cell`` px) marking every cell within ``clear_px`` of the traces' ink (conservatively:
    line width, anti-aliasing and the rounding to cells included); texts placed so far are kept
    as boxes, each to be cleared by as much."""

    def __init__(self, width: int, height: int, ppm: float, polylines, thickness: int,
                 clear_px: float):
        self.cell = c = max(1, int(round(ppm / 4)))        # ~0.25 mm
        self.clear = clear_px
        self.mask = np.zeros((-(-height // c), -(-width // c)), np.uint8)
        pts = [np.round((p / c - 0.5) * 8).astype(np.int32).reshape(-1, 1, 2) for p in polylines]
        cv2.polylines(self.mask, pts, False, 1, 1, cv2.LINE_8, shift=3)
        reach = (thickness / 2 + 1.0 + clear_px) / c       # ink + clearance, in cells
        size = 2 * int(np.ceil(reach + 1.0)) + 1
        self.mask = cv2.dilate(self.mask, np.ones((size, size), np.uint8))
        self._integral = None
        self.placed: list[list[float]] = []

    def _free(self, box) -> bool:
        c, m = self.cell, self.clear
        x0, y0 = int(box[0] // c), int(box[1] // c)
        x1, y1 = int(np.ceil(box[2] / c)), int(np.ceil(box[3] / c))
        rows, cols = self.mask.shape
        if x0 < 0 or y0 < 0 or x1 > cols or y1 > rows:
            return False
        ii = self._integral
        if ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]:
            return False
        return all(box[2] + m <= b[0] or box[0] - m >= b[2] or box[3] + m <= b[1] or
                   box[1] - m >= b[3] for b in self.placed)

    def place(self, extent, prefer_xy, x_range, y_range) -> tuple[float, float] | None:
        """The text origin (baseline's left end, page px) nearest ``prefer_xy`` whose ink box
        (``extent`` from :func:`text_extent`) is free and clear of the texts placed so far,
        with the origin inside ``x_range`` × ``y_range``; None if there is none (distance:
        |dx|, plus half the distance moved up or twice the distance moved down). The text is then
        counted as placed."""
        c = self.cell
        if self._integral is None:
            self._integral = cv2.integral(self.mask)
        ii = self._integral
        left, top, right, bottom = extent
        x, y = (int(round(v)) for v in prefer_xy)          # where it belongs, if that is free
        box = [x + left, y + top, x + right, y + bottom]
        if self._free(box):
            self.placed.append(box)
            return float(x), float(y)
        bw, bh = -(-(right - left) // c) + 1, -(-(bottom - top) // c) + 1
        rows, cols = self.mask.shape
        # candidate top-left cells; the origin is then (cx*c - left, cy*c - top)
        cx0 = max(0, int(np.ceil((x_range[0] + left) / c)))
        cx1 = min(cols - bw, int((x_range[1] + left) // c))
        cy0 = max(0, int(np.ceil((y_range[0] + top) / c)))
        cy1 = min(rows - bh, int((y_range[1] + top) // c))
        if cx1 < cx0 or cy1 < cy0:
            return None
        ys, xs = slice(cy0, cy1 + 1), slice(cx0, cx1 + 1)
        ys_b, xs_b = slice(cy0 + bh, cy1 + 1 + bh), slice(cx0 + bw, cx1 + 1 + bw)
        taken = ii[ys_b, xs_b] - ii[ys, xs_b] - ii[ys_b, xs] + ii[ys, xs]
        free_y, free_x = np.nonzero(taken == 0)
        ox = (free_x + cx0) * c - left
        oy = (free_y + cy0) * c - top
        m = self.clear
        lo_x, hi_x = x_range[0] + left - m, x_range[1] + right + m     # where these texts can be
        lo_y, hi_y = y_range[0] + top - m, y_range[1] + bottom + m
        near = [b for b in self.placed if b[0] < hi_x and b[2] > lo_x and b[1] < hi_y and b[3] > lo_y]
        for x0, y0, x1, y1 in near:
            apart = ((ox + right + m <= x0) | (ox + left - m >= x1) |
                     (oy + bottom + m <= y0) | (oy + top - m >= y1))
            ox, oy = ox[apart], oy[apart]
        if not len(ox):
            return None
        dy = oy - prefer_xy[1]
        k = int(np.argmin(np.abs(ox - prefer_xy[0]) + np.where(dy < 0, -0.5 * dy, 2.0 * dy)))
        x, y = float(ox[k]), float(oy[k])
        self.placed.append([x + left, y + top, x + right, y + bottom])
        return x, y


def _place_texts(record: Record, style: str, panels: list[dict], polylines, thickness: int,
                 ppm: float, row_mm: float, speed: float, gain: float,
                 size: tuple[int, int]) -> tuple[list[dict], list[str]]:
    """The page's texts, placed: the header where it belongs (else the nearest free place close
    by; if a trace crowds them all, where it belongs), then each lead's label in the free space
    nearest its usual place (above the start of its trace; on a crowded row anywhere on it, at
    7/10 of the size if need be), never touching ink. Returns the
    texts (``text``, ``kind``, ``page_box``, and ``_draw``: origin, size, thickness) and the
    panels left unlabelled."""
    texts: list[dict] = []
    space = _FreeSpace(*size, ppm, polylines, thickness, clear_px=LABEL_CLEARANCE_MM * ppm)
    head_px, label_px = 2.8 * ppm, 3.0 * ppm
    for text, kind, x_mm, y_mm in _header_texts(record, style, speed, gain):
        extent = text_extent(text, head_px, 1)
        x, y = int(round(x_mm * ppm)), int(round(y_mm * ppm))
        where = space.place(extent, (x, y), (x - 5 * ppm, x + 40 * ppm), (y - 6 * ppm, y + 6 * ppm))
        if where is None:
            space.placed.append([x + extent[0], y + extent[1], x + extent[2], y + extent[3]])
        x, y = where or (x, y)
        box = [x + extent[0], y + extent[1], x + extent[2], y + extent[3]]
        texts.append({"text": text, "kind": kind, "page_box": box, "_draw": (x, y, head_px, 1)})
    label_thick = max(1, round(0.2 * ppm))
    unlabelled: list[str] = []
    for panel in panels:
        slot0, slot1 = panel["slot_px"]
        x0, base_px = panel["x0_px"], panel["baseline_px"]
        prefer = (x0 + 1.0 * ppm, base_px - min(0.33 * row_mm, 9.0) * ppm)
        span = panel["x1_px"] - x0
        # near the start of the trace, else anywhere on its row, else the same smaller
        for size, thick in ((label_px, label_thick), (0.7 * label_px, max(1, label_thick - 1))):
            extent = text_extent(panel["lead"], size, thick)
            where = (space.place(extent, prefer, (x0, x0 + 0.45 * span), (slot0, slot1))
                     or space.place(extent, prefer, (x0, panel["x1_px"] - extent[2]),
                                    (slot0, slot1)))
            if where is not None:
                break
        if where is None:          # no free place on its row: left out (listed in the sidecar)
            unlabelled.append(panel["name"])
            continue
        x, y = where
        box = [x + extent[0], y + extent[1], x + extent[2], y + extent[3]]
        texts.append({"text": panel["lead"], "kind": "lead_label", "panel": panel["name"],
                      "page_box": box, "_draw": (x, y, size, thick)})
    return texts, unlabelled


def render_ecg(record: Record, *, layout: str = "3x4+II", speed_mm_s: float = 25.0,
               gain_mm_mV: float = 10.0, grid: str = "red", dpi: float = 200,
               header: bool | str = True, distort: str | dict = "none", seed: int = 0,
               draw_text: bool = True) -> Rendered:
    """Draw ``record`` as a paper ECG page.

    ``speed_mm_s`` 25 or 50 (mm per second), ``gain_mm_mV`` 5, 10 or 20 (mm per millivolt),
    ``grid`` red/pink/grey/green/none, ``dpi`` sets the pixel size (200 -> 2200×1700).
    ``header`` (see :data:`HEADER_STYLES`): True or "full" prints what the record has (age and
    sex, the machine's measurements, date, device) and the speed and gain; "machine" the same
    with the measurements captioned as the machine's; "neutral" only speed and gain (teaching
    pages: nothing derived from the ground truth); False or "none" no header at all (the traces
    then start higher). Lead labels are always placed where they touch no trace ink.
    ``distort``: "none", "photo" (a phone photo of the page), "phone" (a hand-held photo of the
    whole page, rotated up to ±30°, with background around it), "all" (every distortion kind),
    "mix" (the training mix: half clean, half a random subset), or a dict of explicit parameters
    per kind (see :mod:`pulse_app.ecg.distort`). ``draw_text=False`` leaves every text out of
    the pixels but not out of the sidecar (same geometry; for checking texts against the ink).
    Deterministic per (record id, ``seed``).
    """
    from pulse_app.ecg import distort as _distort

    rows, rhythm = parse_layout(layout)
    style = header_style(header)
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}: use {', '.join(GRIDS)}")
    if speed_mm_s <= 0 or gain_mm_mV <= 0 or dpi <= 0:
        raise ValueError("speed_mm_s, gain_mm_mV and dpi must be positive")
    rng = _record_rng(record, seed)
    plan = _distort.plan_distortions(distort, rng)
    drawn_grid = "none" if "grid_removal" in plan else grid

    ppm = dpi / 25.4
    width, height = page_size_px(dpi)
    img = paper_grid(width, height, ppm, drawn_grid).copy()

    # Time window: what fits between the margins, at most the record.
    avail_mm = PAPER_MM[0] - _LEFT_MM - _RIGHT_MM
    window_s = min(record.duration_s, np.floor(avail_mm / speed_mm_s * 2) / 2)   # whole 0.5 s
    top_mm = _HEADER_MM if style != "none" else _TOP_MM
    n_rows = len(rows) + len(rhythm)
    row_mm = (PAPER_MM[1] - top_mm - _BOTTOM_MM) / n_rows
    thickness = max(1, round(0.25 * ppm))
    signal = np.nan_to_num(np.asarray(record.signal, np.float32))
    fs = float(record.fs)

    panels: list[dict] = []
    polylines: list[np.ndarray] = []
    traces: dict[str, np.ndarray] = {}
    all_rows = [(r, False) for r in rows] + [((lead,), True) for lead in rhythm]
    for i, (row_leads, is_strip) in enumerate(all_rows):
        base_mm = round(top_mm + (i + 0.6) * row_mm)
        base_px = base_mm * ppm
        # Calibration pulse: 1 mV tall.
        c0, c1, c2, c3 = (v * ppm for v in _CAL_MM)
        top = base_px - gain_mm_mV * ppm
        polylines.append(np.array([[c0, base_px], [c1, base_px], [c1, top], [c2, top],
                                   [c2, base_px], [c3, base_px]]))
        n_cols = len(row_leads)
        col_s = window_s / n_cols
        for j, lead in enumerate(row_leads):
            if lead not in record.leads:
                continue
            t0, t1 = j * col_s, (j + 1) * col_s
            s0, s1 = int(round(t0 * fs)), int(round(t1 * fs))
            y = signal[s0:s1 + 1 if j < n_cols - 1 else s1, record.leads.index(lead)]
            if len(y) < 2:
                continue
            x0_px = (_LEFT_MM + t0 * speed_mm_s) * ppm
            xs = x0_px + np.arange(len(y)) / fs * speed_mm_s * ppm
            ys = base_px - y * gain_mm_mV * ppm
            trace = np.stack([xs, ys], axis=1)
            polylines.append(trace)
            pad = thickness / 2 + 1
            box = [float(xs[0] - pad), float(ys.min() - pad), float(xs[-1] + pad),
                   float(ys.max() + pad)]
            name = f"{lead}-rhythm" if is_strip else lead
            traces[name] = trace
            panels.append({"name": name, "lead": lead, "row": i, "col": j,
                           "t0_s": round(t0, 4), "t1_s": round(t0 + (len(y) - 1) / fs, 4),
                           "baseline_px": round(base_px, 2), "x0_px": round(float(xs[0]), 2),
                           "x1_px": round(float(xs[-1]), 2), "page_box": box,
                           "slot_px": [round((top_mm + i * row_mm) * ppm, 2),
                                       round((top_mm + (i + 1) * row_mm) * ppm, 2)]})

    pts = [np.round(p * 8).astype(np.int32).reshape(-1, 1, 2) for p in polylines]
    cv2.polylines(img, pts, False, INK, thickness, cv2.LINE_AA, shift=3)

    texts, unlabelled = _place_texts(record, style, panels, polylines, thickness, ppm, row_mm,
                                      speed_mm_s, gain_mm_mV, (width, height))
    for t in texts:
        x, y, size, thick = t.pop("_draw")
        if draw_text:
            _put_text(img, t["text"], x, y, size, thick)

    img, applied, warp = _distort.apply_distortions(img, plan, ppm)
    h_img, w_img = img.shape[:2]
    boxes = dict(zip(traces, warp.boxes(list(traces.values()), thickness / 2 + 1, (w_img, h_img))))
    for t, box in zip(texts, warp.boxes([warp.outline(t["page_box"]) for t in texts], 0,
                                        (w_img, h_img))):
        t["box"] = box
    sidecar = {
        "record_id": record.record_id,
        "layout": layout,
        "speed_mm_s": float(speed_mm_s),
        "gain_mm_mV": float(gain_mm_mV),
        "grid": grid,
        "dpi": float(dpi),
        "px_per_mm": ppm,
        "width": int(w_img),
        "height": int(h_img),
        "window_s": float(window_s),
        "seed": int(seed),
        "header": style,
        "distortions": applied,
        "leads": boxes,
        "panels": panels,
        "texts": texts,
        "unlabelled": unlabelled,
        "page_to_image": warp.homography_list(),
        "labels": list(record.labels),
    }
    return Rendered(image=Image.fromarray(img), pixels=img, sidecar=sidecar)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def truth_numbers(record: Record) -> set[str]:
    """Every number of the record's ground truth as it could be printed: measurements and
    requested findings (rate, PR, ST shifts), whole, with one or two decimals, and as ``%g``
    (sign dropped; "0" left out: every page has zeros).

    >>> sorted(truth_numbers(Record("r", np.zeros((10, 1)), 500.0, ["I"],
    ...                             measurements={"pr_ms": 162.0})))
    ['162', '162.0', '162.00']
    """
    values: list[float] = []

    def walk(obj):
        if isinstance(obj, bool):
            return
        if isinstance(obj, (int, float)) and np.isfinite(obj):
            values.append(float(obj))
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)

    walk(record.measurements or {})
    walk(record.findings or {})
    out = set()
    for v in map(abs, values):
        out.update({f"{v:.0f}", f"{v:.1f}", f"{v:.2f}", f"{v:g}"})
    return out - {"0", "0.0", "0.00"}


def revealing_texts(sidecar: dict, record: Record) -> list[str]:
    """The texts drawn on a page (from its sidecar) that give away the record's ground truth:
    any naming one of the record's findings, or, except the lead labels and the speed/gain line
    (fixed by the page settings alone), holding a number of its measurements or findings.
    Empty for a page fit to show before the answer is revealed."""
    names = [str(label).lower() for label in record.labels]
    numbers = truth_numbers(record)
    found = []
    for t in sidecar.get("texts", []):
        text = t["text"].lower()
        if any(name and name in text for name in names):
            found.append(t["text"])
        elif t["kind"] not in ("lead_label", "settings") and \
                any(n.replace(",", ".") in numbers for n in _NUMBER.findall(text)):
            found.append(t["text"])
    return found
