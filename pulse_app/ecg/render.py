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

The sidecar (JSON-able) is ground truth for later digitisation work: ``leads`` maps each panel
("II", ..., rhythm strips as "II-rhythm") to the pixel box ``[x0, y0, x1, y1]`` of its drawn trace
in the final image (transformed by geometric distortions, clipped to the image); ``panels`` keeps
each panel's time window, baseline and x range in page pixels, and ``page_to_image`` the 3×3
homography from page pixels to image pixels (identity without geometric distortions).

Example:
    >>> from pulse_app.ecg.simulate import ecg_simulate
    >>> out = render_ecg(ecg_simulate(seed=1), layout="3x4+II", distort="photo", seed=3)
    >>> out.image.size, round(out.sidecar["px_per_mm"], 3), len(out.sidecar["leads"])
    ((2200, 1700), 7.874, 13)
"""

from __future__ import annotations

import datetime as _dt
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
DEVICES = ("12-lead resting ECG", "Cardiograph 1200", "ECG-3000 rev 2", "Resting ECG system 12",
           "Portable ECG 6/12", "Electrocardiograph E-12")

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


def _header_lines(record: Record, rng: np.random.Generator, speed: float, gain: float):
    """(top-left lines, top-right lines, bottom line) of the name-free header: demographics and
    the machine's measurements where the record has them, date, device, speed and gain."""
    left = []
    demo = []
    if record.age is not None and np.isfinite(record.age):
        demo.append(f"Age {int(record.age)} y")
    if record.sex in ("M", "F"):
        demo.append("Male" if record.sex == "M" else "Female")
    if demo:
        left.append("   ".join(demo))
    m = record.measurements or {}

    def val(key, unit):
        v = m.get(key)
        return f"{v:.0f} {unit}" if isinstance(v, (int, float)) and np.isfinite(v) else "--"

    if any(k in m for k in ("heart_rate_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "axis_deg")):
        left.append(f"Vent. rate {val('heart_rate_bpm', 'bpm')}")
        left.append(f"PR int. {val('pr_ms', 'ms')}   QRS dur. {val('qrs_ms', 'ms')}")
        qt, qtc = m.get("qt_ms"), m.get("qtc_ms")
        qt_text = f"{qt:.0f}/{qtc:.0f} ms" if qt and qtc else f"{val('qt_ms', 'ms')}"
        left.append(f"QT/QTc {qt_text}   Axis {val('axis_deg', 'deg')}")
    date = record.meta.get("date")
    if not date:
        day = _dt.date(2019, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 5 * 365)))
        date = f"{day.isoformat()} {int(rng.integers(7, 20)):02d}:{int(rng.integers(0, 60)):02d}"
    device = record.meta.get("device") or DEVICES[int(rng.integers(len(DEVICES)))]
    right = [str(date), str(device)]
    bottom = f"{speed:g} mm/s   {gain:g} mm/mV   0.05-150 Hz   50 Hz notch"
    return left, right, bottom


def _put_text(img, text, x_px, y_px, height_px, thickness=1):
    scale = height_px / 22.0   # Hershey simplex capitals are ~22 px tall at scale 1
    cv2.putText(img, text, (int(round(x_px)), int(round(y_px))), cv2.FONT_HERSHEY_SIMPLEX, scale,
                INK, thickness, cv2.LINE_AA)


def render_ecg(record: Record, *, layout: str = "3x4+II", speed_mm_s: float = 25.0,
               gain_mm_mV: float = 10.0, grid: str = "red", dpi: float = 200, header: bool = True,
               distort: str | dict = "none", seed: int = 0) -> Rendered:
    """Draw ``record`` as a paper ECG page.

    ``speed_mm_s`` 25 or 50 (mm per second), ``gain_mm_mV`` 5, 10 or 20 (mm per millivolt),
    ``grid`` red/pink/grey/green/none, ``dpi`` sets the pixel size (200 -> 2200×1700).
    ``distort``: "none", "photo" (a phone photo of the page), "phone" (a hand-held photo of the
    whole page, rotated up to ±30°, with background around it), "all" (every distortion kind),
    "mix" (the training mix: half clean, half a random subset), or a dict of explicit parameters
    per kind (see :mod:`pulse_app.ecg.distort`). Deterministic per (record id, ``seed``).
    """
    from pulse_app.ecg import distort as _distort

    rows, rhythm = parse_layout(layout)
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
    top_mm = _HEADER_MM if header else _TOP_MM
    n_rows = len(rows) + len(rhythm)
    row_mm = (PAPER_MM[1] - top_mm - _BOTTOM_MM) / n_rows
    thickness = max(1, round(0.25 * ppm))
    signal = np.nan_to_num(np.asarray(record.signal, np.float32))
    fs = float(record.fs)

    panels: list[dict] = []
    polylines: list[np.ndarray] = []
    label_px = 3.0 * ppm
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
            polylines.append(np.stack([xs, ys], axis=1))
            pad = thickness / 2 + 1
            box = [float(xs[0] - pad), float(ys.min() - pad), float(xs[-1] + pad),
                   float(ys.max() + pad)]
            name = f"{lead}-rhythm" if is_strip else lead
            panels.append({"name": name, "lead": lead, "row": i, "col": j,
                           "t0_s": round(t0, 4), "t1_s": round(t0 + (len(y) - 1) / fs, 4),
                           "baseline_px": round(base_px, 2), "x0_px": round(float(xs[0]), 2),
                           "x1_px": round(float(xs[-1]), 2), "page_box": box})
            _put_text(img, lead, x0_px + 1.0 * ppm, base_px - min(0.33 * row_mm, 9.0) * ppm,
                      label_px, max(1, round(0.2 * ppm)))

    pts = [np.round(p * 8).astype(np.int32).reshape(-1, 1, 2) for p in polylines]
    cv2.polylines(img, pts, False, INK, thickness, cv2.LINE_AA, shift=3)

    if header:
        left, right, bottom = _header_lines(record, rng, speed_mm_s, gain_mm_mV)
        text_px, line_mm = 2.8 * ppm, 5.0
        for k, line in enumerate(left):
            _put_text(img, line, 10 * ppm, (8 + k * line_mm) * ppm, text_px)
        for k, line in enumerate(right):
            _put_text(img, line, 190 * ppm, (8 + k * line_mm) * ppm, text_px)
        _put_text(img, bottom, 10 * ppm, (PAPER_MM[1] - 4) * ppm, text_px)

    page_boxes = {p["name"]: p["page_box"] for p in panels}
    img, boxes, applied, homography = _distort.apply_distortions(img, plan, page_boxes, ppm)
    sidecar = {
        "record_id": record.record_id,
        "layout": layout,
        "speed_mm_s": float(speed_mm_s),
        "gain_mm_mV": float(gain_mm_mV),
        "grid": grid,
        "dpi": float(dpi),
        "px_per_mm": ppm,
        "width": int(img.shape[1]),
        "height": int(img.shape[0]),
        "window_s": float(window_s),
        "seed": int(seed),
        "distortions": applied,
        "leads": boxes,
        "panels": panels,
        "page_to_image": homography,
        "labels": list(record.labels),
    }
    return Rendered(image=Image.fromarray(img), pixels=img, sidecar=sidecar)
