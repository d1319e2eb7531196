"""The deterministic reading of an ECG image: digitised signals, measurements, evidence overlay.

This is the one core path that the CLI (``python -m pulse_app digitize``), the web app and the
APIs call: :func:`read_ecg_image` turns an upright page image into an :class:`EcgReading`
(signals per lead with their status, measurements with confidences and flags, an overlay image
that shows what was read), and :func:`write_reading` saves it as WFDB (``wfdb.wrsamp``), CSV,
JSON and PNG. Nothing here knows about Gradio.

Example:
    >>> from pulse_app.ecg.simulate import ecg_simulate
    >>> from pulse_app.ecg.render import render_ecg
    >>> reading = read_ecg_image(render_ecg(ecg_simulate(seed=2)).image)
    >>> reading.found_ecg, reading.layout, round(reading.measurements.value("heart_rate"))
    (True, '3x4+II', 75)
    >>> sorted(p.name for p in write_reading(reading, "out").values())    # doctest: +SKIP
    ['ecg.csv', 'ecg.dat', 'ecg.hea', 'ecg.json', 'ecg_overlay.png']
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pulse_app.ecg.digitize import (NO_ECG, NOT_ON_PAGE, OK, UNCALIBRATED, UNREADABLE, Digitized,
                                    ecg_digitize)
from pulse_app.ecg.measure import Measurements, ecg_measure

#: Overlay colours (RGB): trace, beats, panel frames by lead status.
TRACE_RGB = (0, 90, 255)
BEAT_RGB = (230, 0, 120)
STATUS_RGB = {OK: (0, 150, 60), UNCALIBRATED: (230, 140, 0), UNREADABLE: (220, 0, 0),
              NOT_ON_PAGE: (120, 120, 120), NO_ECG: (220, 0, 0)}


@dataclass
class EcgReading:
    """What the deterministic reader found on one page.

    ``digitized``: signals (samples × 12, mV, 500 Hz, NaN where not read), layout, calibration,
    panels and per-lead status; ``measurements``: see :mod:`pulse_app.ecg.measure`;
    ``overlay``: the upright page with the extracted traces, detected beats and panel frames.
    """

    digitized: Digitized
    measurements: Measurements
    overlay: Image.Image

    @property
    def found_ecg(self) -> bool:
        return self.digitized.found_ecg

    @property
    def layout(self) -> str | None:
        return self.digitized.layout

    def lead_status(self) -> dict[str, dict]:
        return {k: asdict(v) for k, v in self.digitized.lead_status.items()}

    def summary_lines(self) -> list[str]:
        """Plain-text evidence: layout and calibration, then one line per measurement."""
        d = self.digitized
        if not d.found_ecg:
            return ["No ECG trace could be read on this image: "
                    + "; ".join(d.warnings or ["nothing found"]) + "."]
        cal = d.calibration
        read = [k for k, v in d.lead_status.items() if v.status in (OK, UNCALIBRATED)]
        lines = [f"Layout {d.layout or 'not recognised'}; {len(read)} of 12 leads read; "
                 f"{cal.speed_mm_s:g} mm/s ({cal.speed_source}), {cal.gain_mm_mV:g} mm/mV "
                 f"({cal.gain_source})."]
        lines += self.measurements.lines()
        lines += [f"Note: {w}." for w in d.warnings]
        return lines

    def to_json(self) -> dict:
        """JSON-able summary: layout, calibration, per-lead status, panels, measurements."""
        d = self.digitized
        return {
            "found_ecg": d.found_ecg,
            "layout": d.layout,
            "fs_hz": d.fs,
            "duration_s": round(len(d.signal) / d.fs, 3) if len(d.signal) else 0.0,
            "calibration": asdict(d.calibration) if d.calibration else None,
            "leads": self.lead_status(),
            "panels": [{"name": p.name, "lead": p.lead, "row": p.row, "col": p.col,
                        "box_px": list(p.box), "t0_s": round(p.t0_s, 4),
                        "duration_s": round(len(p.signal_mV) / d.fs, 3),
                        "status": p.status, "reason": p.reason} for p in d.panels],
            "warnings": list(d.warnings),
            **self.measurements.to_dict(),
        }


def read_ecg_image(image: Image.Image | np.ndarray, *, speed_mm_s: float | None = None,
                   gain_mm_mV: float | None = None) -> EcgReading:
    """Digitise, measure and draw the evidence for one upright ECG page image."""
    dig = ecg_digitize(image, speed_mm_s=speed_mm_s, gain_mm_mV=gain_mm_mV)
    if len(dig.signal):
        meas = ecg_measure(dig.signal, dig.fs, dig.leads)
    else:
        meas = ecg_measure(np.full((1, len(dig.leads)), np.nan), dig.fs, dig.leads)
    return EcgReading(dig, meas, draw_overlay(dig, meas))


def draw_overlay(dig: Digitized, meas: Measurements | None = None) -> Image.Image:
    """The upright page, lightened, with each panel's frame (coloured by its status) and name,
    the extracted trace, the calibration pulses' baselines, and a mark above every beat."""
    img = np.asarray(dig.image.convert("RGB")).astype(np.float32)
    img = (255 - (255 - img) * 0.55).astype(np.uint8)       # lighten so the drawing stands out
    h, w = img.shape[:2]
    scale = max(1, round(max(h, w) / 1100))
    font = 0.45 * scale
    for p in dig.panels:
        colour = STATUS_RGB.get(p.status, (0, 0, 0))
        x0, y0, x1, y1 = p.box
        cv2.rectangle(img, (x0, y0 + 2), (x1, y1 - 2), colour, 1)
        cv2.putText(img, p.name + ("" if p.status == OK else f" ({p.status})"),
                    (x0 + 4, y0 + 16 * scale), cv2.FONT_HERSHEY_SIMPLEX, font, colour, scale,
                    cv2.LINE_AA)
        pts = p.trace_xy[np.isfinite(p.trace_xy[:, 1])] if len(p.trace_xy) else p.trace_xy
        if len(pts) > 1:
            cv2.polylines(img, [np.round(pts * 4).astype(np.int32).reshape(-1, 1, 2)], False,
                          TRACE_RGB, scale, cv2.LINE_AA, shift=2)
    if meas is not None and dig.calibration is not None:
        pps = dig.calibration.px_per_s
        for p in dig.panels:
            if p.lead is None or p.lead not in meas.r_peaks or len(p.trace_xy) < 2:
                continue
            t = meas.r_peaks[p.lead] / dig.fs
            t = t[(t >= p.t0_s) & (t <= p.t0_s + len(p.signal_mV) / dig.fs)]
            good = np.isfinite(p.trace_xy[:, 1])
            for ti in t:
                x = p.x0_px + (ti - p.t0_s) * pps
                y = float(np.interp(x, p.trace_xy[good, 0], p.trace_xy[good, 1]))
                tip = (int(round(x)), int(round(y - 8 * scale)))
                tri = np.array([tip, (tip[0] - 4 * scale, tip[1] - 8 * scale),
                                (tip[0] + 4 * scale, tip[1] - 8 * scale)], np.int32)
                cv2.fillPoly(img, [tri], BEAT_RGB, cv2.LINE_AA)
    if not dig.found_ecg:
        cv2.putText(img, "no ECG trace found", (20, 40 * scale), cv2.FONT_HERSHEY_SIMPLEX,
                    font * 2, STATUS_RGB[NO_ECG], 2 * scale, cv2.LINE_AA)
    return Image.fromarray(img)


def write_reading(reading: EcgReading, out_dir: str | Path, name: str = "ecg") -> dict[str, Path]:
    """Save a reading in ``out_dir``: ``NAME.hea``/``NAME.dat`` (WFDB, 16-bit, 1 µV steps, NaN
    kept as WFDB's missing value), ``NAME.csv`` (time in s and one column per lead, empty where
    not read), ``NAME.json`` (:meth:`EcgReading.to_json`), ``NAME_overlay.png``. Returns the
    paths by kind ("hea", "dat", "csv", "json", "png")."""
    import wfdb

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dig = reading.digitized
    paths = {"json": out / f"{name}.json", "png": out / f"{name}_overlay.png",
             "csv": out / f"{name}.csv"}
    sig = dig.signal if len(dig.signal) else np.full((1, len(dig.leads)), np.nan)
    clipped = np.clip(sig, -32.0, 32.0)
    wfdb.wrsamp(name, fs=dig.fs, units=["mV"] * len(dig.leads), sig_name=list(dig.leads),
                p_signal=clipped, fmt=["16"] * len(dig.leads),
                adc_gain=[1000.0] * len(dig.leads), baseline=[0] * len(dig.leads),
                comments=[f"digitized from an image by pulse_app; layout {dig.layout}",
                          "NaN (missing) where a lead was not printed or not readable"],
                write_dir=str(out))
    paths["hea"], paths["dat"] = out / f"{name}.hea", out / f"{name}.dat"
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["time_s", *dig.leads])
        for i, row in enumerate(sig):
            writer.writerow([f"{i / dig.fs:.4f}",
                             *("" if not np.isfinite(v) else f"{v:.4f}" for v in row)])
    paths["json"].write_text(json.dumps(reading.to_json(), indent=1, default=_jsonable),
                             encoding="utf-8")
    reading.overlay.save(paths["png"])
    return paths


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-able: {type(value).__name__}")
