"""The vision warm-up's targets, from the simulator's ground truth and the renderer's sidecar, at
the geometry the language model sees (the model's own anyres tiles and patches).

- per patch token: how much of an R peak lies in that patch (a disc at each QRS complex of each
  panel, placed through the sidecar's homography, cut into tiles exactly like the image), and
  the heart rate of the beat intervals drawn in it (the rate is then there to read in every
  token, not only in the spacing of peaks that fall in other patches);
- per image: the heart rate and the rhythm label.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pulse_app.engine.anyres import AnyresGeometry, anyres_crops, anyres_pixel_values

R_PEAK_AFTER_ONSET_S = 0.04          # the R peak sits about 40 ms into the QRS complex
BEAT_SCALE = 50.0                    # per-patch target: mask mean x 50 (about 1 per beat)


def _baseline_point(sidecar: dict, scale: float):
    """``point(panel, t)``: where time ``t`` (s) falls on a panel's baseline in the image, after
    the page's distortions (the sidecar's homography), times ``scale``."""
    homography = np.asarray(sidecar["page_to_image"], dtype=float)
    px_per_s = sidecar["speed_mm_s"] * sidecar["px_per_mm"]

    def point(panel: dict, t: float) -> list[float]:
        x, y, w = homography @ (panel["x0_px"] + (t - panel["t0_s"]) * px_per_s,
                                panel["baseline_px"], 1.0)
        return [round(x / w * scale, 1), round(y / w * scale, 1)]
    return point


def r_peak_positions(sidecar: dict, qrs_onsets_s, scale: float = 1.0) -> list[list[float]]:
    """Pixel positions (x, y) of every drawn R peak on a rendered page, after its distortions.

    ``sidecar`` is :func:`pulse_app.ecg.render.render_ecg`'s; ``qrs_onsets_s`` the record's beat
    times (the simulator keeps them in ``record.meta["qrs_onsets_s"]``); ``scale`` maps the
    rendered image to the stored one (stored width / rendered width).
    """
    point = _baseline_point(sidecar, scale)
    peaks = [t + R_PEAK_AFTER_ONSET_S for t in qrs_onsets_s]
    return [point(panel, t) for panel in sidecar["panels"] for t in peaks
            if panel["t0_s"] <= t <= panel["t1_s"]]


def rr_segments(sidecar: dict, qrs_onsets_s, scale: float = 1.0) -> list[list[float]]:
    """Per lead panel, each stretch between two consecutive R peaks as drawn on the page, with
    the heart rate of that interval: ``[x0, y0, x1, y1, bpm]`` along the panel's baseline (image
    pixels after the distortions, times ``scale``). Stretches cut by a panel's edge are kept,
    with the rate of the whole interval."""
    point = _baseline_point(sidecar, scale)
    peaks = [t + R_PEAK_AFTER_ONSET_S for t in qrs_onsets_s]
    segments = []
    for panel in sidecar["panels"]:
        for a, b in zip(peaks, peaks[1:]):
            start, end = max(a, panel["t0_s"]), min(b, panel["t1_s"])
            if end > start:
                segments.append(point(panel, start) + point(panel, end)
                                + [round(60.0 / (b - a), 1)])
    return segments


#: local-rate targets are drawn as 8-bit values: log(bpm) between these bounds
_LOCAL_BPM_RANGE = (25.0, 320.0)


def local_rate_targets(size_wh: tuple[int, int], segments,
                       geometry: AnyresGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image token: the heart rate (bpm) of the beat intervals drawn in it, and how much of
    its patch they cover (the loss weight; 0 where no trace runs).

    Each stretch of :func:`rr_segments` is drawn as a band along its panel's baseline (red: 255,
    green: its rate on a log scale) and cut into tiles like the image, so a token's rate is the
    coverage-weighted mean of the stretches it holds. The sinus node's rate where the beats are
    regular, the beat-to-beat changes where they are not (sinus arrhythmia, atrial fibrillation).
    """
    lo, hi = (math.log(v) for v in _LOCAL_BPM_RANGE)
    mask = Image.new("RGB", size_wh, (0, 0, 0))
    draw = ImageDraw.Draw(mask)
    width = max(2, round(3 * size_wh[0] / 224))
    for x0, y0, x1, y1, bpm in segments:
        green = round(1 + 254 * min(1.0, max(0.0, (math.log(bpm) - lo) / (hi - lo))))
        draw.line((x0, y0, x1, y1), fill=(255, green, 0), width=width)
    n, p = geometry.tile_px // geometry.patch_px, geometry.patch_px
    coverage, level = [], []
    for crop in anyres_crops(mask, geometry):
        pixels = np.asarray(crop).astype(np.float32)
        red, green = (pixels[..., c].reshape(n, p, n, p).mean(axis=(1, 3)).reshape(-1)
                      for c in (0, 1))
        coverage.append(red / 255)
        level.append(np.where(red > 1, green / np.maximum(red, 1e-6), 0.0))
    coverage, level = np.stack(coverage), np.clip(np.stack(level), 0, 1)
    bpm = np.exp(lo + (level * 255 - 1) / 254 * (hi - lo))
    return torch.from_numpy(bpm.astype(np.float32)), torch.from_numpy(coverage.astype(np.float32))


def beat_targets(size_wh: tuple[int, int], points, geometry: AnyresGeometry) -> torch.Tensor:
    """Per image token (tiles, patches per tile): how much R peak it holds, about 1 per beat.

    A small disc is drawn at each peak on a mask the size of the image, and the mask goes through
    the model's own tiling (:func:`anyres_crops`), so targets and image tokens line up exactly.
    """
    mask = Image.new("L", size_wh, 0)
    draw = ImageDraw.Draw(mask)
    r = max(1.0, size_wh[0] / 224)
    for x, y in points:
        draw.ellipse((x - r, y - 1.5 * r, x + r, y + 1.5 * r), fill=255)
    n, p = geometry.tile_px // geometry.patch_px, geometry.patch_px
    crops = [np.asarray(c)[..., 0].astype(np.float32)
             for c in anyres_crops(mask.convert("RGB"), geometry)]
    tiles = [c.reshape(n, p, n, p).mean(axis=(1, 3)).reshape(-1) for c in crops]
    return torch.from_numpy(np.stack(tiles)) / 255 * BEAT_SCALE


def load_split(targets_file: Path, image_root: Path, geometry: AnyresGeometry,
               rhythms: list[str]) -> dict[str, torch.Tensor]:
    """Every image of a targets file as tensors: pixels (fp16), beats, rate, rhythm index, and
    where the entries give ``rr_segments``, each token's local rate and its weight."""
    entries = json.loads(Path(targets_file).read_text())
    pixels, beats, rate, rhythm, local = [], [], [], [], []
    for entry in entries:
        with Image.open(image_root / entry["image"]) as image:
            image = image.convert("RGB")
            pixels.append(anyres_pixel_values(image, geometry).half())
            beats.append(beat_targets(image.size, entry["r_peaks_xy"], geometry))
            if "rr_segments" in entry:
                local.append(local_rate_targets(image.size, entry["rr_segments"], geometry))
        rate.append(float(entry["heart_rate_bpm"]))
        rhythm.append(rhythms.index(entry["rhythm"]))
    split = {"pixels": torch.stack(pixels), "beats": torch.stack(beats),
             "rate": torch.tensor(rate), "rhythm": torch.tensor(rhythm)}
    if local and len(local) == len(entries):
        split["local_rate"] = log_rate(torch.stack([bpm for bpm, _ in local]))
        split["local_weight"] = torch.stack([weight for _, weight in local])
    return split


def log_rate(bpm: torch.Tensor) -> torch.Tensor:
    """Heart rate (bpm) -> the scale the heads regress: 0 at 75 bpm, 1 per factor e^0.4."""
    return (torch.log(bpm) - math.log(75.0)) / 0.4


def from_log_rate(value: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`log_rate`: bpm."""
    return torch.exp(value * 0.4 + math.log(75.0))

