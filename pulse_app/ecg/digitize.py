"""Paper-ECG image -> per-lead signals in mV at 500 Hz (classical image processing, CPU).

The input is an upright page: a scan, a PDF page, or a phone photo after straightening (a few
degrees of residual tilt are measured and removed here). The steps, each a function below:

1. **Ink and grid maps** (:func:`ink_maps`): the trace is dark in every colour channel, grid lines
   are coloured or lighter; both are measured against the local paper brightness, so shadows and
   yellowed paper do not matter.
2. **Tilt** (:func:`estimate_skew_deg`): the angle that makes grid lines and baselines most
   horizontal (row-profile sharpness), within ±5°.
3. **Scale** (:func:`grid_px_per_mm`): the 1 mm grid period along x and y from the autocorrelation
   of the grid profile, or a fifth of the 5 mm period when only the major lines show (no grid:
   assumed from the page width, and said so).
4. **Rows** (:func:`find_rows`): baselines are peaks of the ink row profile, kept when a long, thin,
   single line runs along them (text lines fail that test).
5. **Calibration** (:func:`find_calibration_pulse`): the 1 mV rectangle at a row's start (or end)
   gives mm/mV (snapped to 2.5/5/10/20/40 when within 8 %), the row's 0 mV baseline and where
   its line starts; rows then agree on where they start and end (:func:`_agree_row_ends`).
6. **Layout**: 12 rows -> 12x1, 6 rows -> 6x2 unless rows 4-6 repeat 3x4 panels (rhythm strips),
   3-5 rows -> 3x4 with 0-2 rhythm strips, whose lead is found by matching the strip against the
   3x4 panel printed at the same time. Leads follow the standard order of each layout.
7. **Traces** (:func:`trace_row`): in every pixel column, the ink runs of the row's band; the
   path through them with the fewest vertical jumps (Viterbi; leaving the row's band costs a
   little per column, so a tall complex is followed) is the trace; a column's run becomes its
   centre (thin run, sub-pixel centroid) or a vertical stroke whose ends connect to the
   neighbours (a run as wide as two strokes holds both: :func:`_stroke_width`); ink that
   another row's path took is not taken into this line. Samples are read off that polyline at
   500 Hz, each panel's from its own stretch of it; a sample or two beyond the band, far from
   their neighbours, came from another row's stroke (:func:`_drop_glitches`); samples are
   smoothed over 2.75 px (:func:`_smoothed`: they lie 0.4 px apart, the line's points a pixel),
   except a spike's tip, which is put on its nearest sample as read; a pacing spike, an upright
   line one stroke wide, is one sample at its tip (:func:`find_needles`).

Speed is assumed to be 25 mm/s unless given (a page does not show it except in printed text);
the result says so. Failures are per lead and stated, never invented: a lead that is not on the
page, or not readable, has NaN samples and a ``reason``.

Example:
    >>> from pulse_app.ecg.simulate import ecg_simulate
    >>> from pulse_app.ecg.render import render_ecg
    >>> page = render_ecg(ecg_simulate(seed=1), layout="3x4+II").image
    >>> ecg = ecg_digitize(page)
    >>> ecg.layout, ecg.calibration.gain_mm_mV, ecg.signal.shape
    ('3x4+II', 10.0, (5000, 12))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from pulse_app.ecg.records import STANDARD_LEADS, Record
from pulse_app.ecg.render import LAYOUT_3X4, LAYOUT_6X2, LAYOUT_12X1

#: Output sampling rate (Hz).
FS_HZ = 500.0
#: Standard gains a measured calibration pulse snaps to (mm/mV).
STANDARD_GAINS_MM_MV = (2.5, 5.0, 10.0, 20.0, 40.0)
DEFAULT_SPEED_MM_S = 25.0
DEFAULT_GAIN_MM_MV = 10.0
#: Page widths (mm) tried when no grid is found: US letter and A4, landscape.
_PAGE_WIDTHS_MM = (279.4, 297.0)
_MAX_SKEW_DEG = 5.0
#: Stroke centres this close (px) to a spike tip's x belong to either stroke: left out.
_TIP_MERGE_PX = 1.0
#: Merged strokes of a spike are split when their run is this much (px) wider than one stroke.
_SPLIT_PX = 1.0
#: A run across one stroke is measured where the stroke is near upright: its columns' runs are
#: this many line widths long (a sloped stroke's run across is wider).
_UPRIGHT_LINES = 3.0
#: How far (mm) a row's start or end may sit from its pulse's or from the other rows' before it
#: is taken to be wrong (rows of a page are printed alike; a printer's gap is shorter).
_ROW_END_SLACK_MM = 3.0
#: Time shifts (s) tried when a rhythm strip is matched against a 3x4 panel: rows' start
#: estimates differ by a few samples, which decorrelates a QRS.
_STRIP_LAG_S = 0.02
#: Strips are matched to panels on their signals through a running median this long (18 ms):
#: a pacing spike's line lasts a few samples, a QRS complex 60 ms and more.
_DESPIKE_S = 0.018
#: Cost (in pixels of vertical gap) of each column a trace's path passes over without taking
#: any of its ink, up to ``_SKIP_THICK`` line widths of columns in a row, where none of the
#: column's ink is within ``_SKIP_THICK`` line widths of the path: where a grid line
#: crosses a blurred trace, the trace's own pixels turn reddish and drop out of the line mask
#: for a few columns, and a path forced to take some ink there jumped to a label or caption
#: (measured on a tuning scan, HR00007: the II strip dived 1.8 mV into "10 mm/mV" and was then
#: matched to V5).
_SKIP_COST_PX, _SKIP_THICK = 10.0, 3.0
#: Cost (pixels of vertical gap) of a column whose chosen ink lies wholly outside the row's own
#: band: half a pixel per pixel outside, at most this much. A tall complex's tip is far out but
#: only a few columns long; uncapped, passing it by (:data:`_SKIP_COST_PX` a column) was
#: cheaper than following it, and the row lost the tip while its neighbour's trace took the
#: stroke as its own (tall-complex tuning set: 16.9 -> 17.9 dB). A trace that wanders along
#: another row's line still pays for every column it stays there; where a path starts, the
#: full cost applies.
_OUTSIDE_CAP_PX = 3.0
#: A sample more than this (mV) from the median of this many samples around it, beyond its
#: row's band, is another row's stroke (:func:`_drop_glitches`; tall-complex tuning set
#: 17.87 -> 18.75 dB, tuning records 19.47 -> 19.52).
_GLITCH_MV, _GLITCH_SAMPLES = 0.5, 5
#: A pacing spike is one sample or two at 500 Hz: drawn, an upright line one pen stroke wide
#: from its foot to its tip, and its centre line spreads it over several samples, a sample or
#: two off. A needle (:func:`find_needles`): an excursion of the centre line of at least
#: ``_NEEDLE_THICK`` line widths, at most ``_NEEDLE_WIDTH_PX`` wide at half its height (twice
#: that where it leaves the line's level: not two rows' strokes running together), whose
#: ink is one stroke (x variance at most ``_NEEDLE_SPREAD_PX2`` px² on a page of
#: ``_NEEDLE_PPM`` px/mm; one stroke measured 1.1-1.9, the two strokes of the tuning records'
#: narrowest R waves 2.4 and more) a third of the way up, centred within ``_NEEDLE_OFF_PX``
#: of the stroke, and just below the tip. It is read as one sample at its tip.
_NEEDLE_THICK, _NEEDLE_WIDTH_PX, _NEEDLE_SPREAD_PX2, _NEEDLE_PPM = 6.0, 2.5, 2.1, 7.874
_NEEDLE_OFF_PX = 0.6
#: Lead labels are printed about 3 mm tall: a longer upright stroke near a row's quarter is
#: not a label (it is the line of a pacing spike crossing the row).
_MARK_STROKE_MM = 4.0
#: Samples are 0.4 px apart on a 200 dpi page and the centre line's points a pixel apart, each
#: known to a fraction of a pixel: interpolated between them, the samples carry the points'
#: jitter (41 % of the tuning pages' error power lay above 50 Hz, where the signals have 2 %
#: of theirs). They are smoothed by a least-squares quadratic over this many pixels
#: (:func:`_smoothed`; 7 samples at 200 dpi and 25 mm/s; tuning pages clean 19.52 -> 20.18,
#: scan 17.25 -> 17.72, photo 14.97 -> 15.72 dB, tall-complex set 18.75 -> 19.90; 5 samples
#: 20.11, 9 samples 19.96 on clean). A spike's tip is not smoothed: it is moved onto the
#: sample nearest it and kept as read (:func:`_row_signal`; clean 20.18 -> 20.33, scan 17.85,
#: photo 15.79, tall set 19.96; two samples either side kept as well: 20.11). Its x is the
#: ink-weighted x of its first line width of rows (:func:`_tip_x`; clean 20.45 -> 20.64, scan
#: 17.84 -> 17.88, photo 15.79 -> 15.90, paced 6.41 -> 6.50, tall set 20.10; 1, 2, 3, 6, 8
#: rows: 20.51, 20.60, 20.62, 20.57, 20.56; where lines through its two strokes meet: 20.27-20.31).
_SMOOTH_PX = 2.75
#: A row's time zero is its traced line's first point (plus the cap) when that lies at most
#: this many pixels after the row's first ink column: ink a pixel or two before it is not
#: the line (a sixth of the tuning pages' rows started 1-2 px early, and a pixel is 2.5
#: samples; clean 20.33 -> 20.45 dB, tall set 19.96 -> 20.10).
_START_SLACK_PX = 3.0

# Lead status words (``LeadTrace.status``).
OK, UNCALIBRATED, NOT_ON_PAGE, UNREADABLE, NO_ECG = (
    "ok", "uncalibrated", "not on page", "unreadable", "no ECG")


@dataclass
class Calibration:
    """How pixels became mm, mV and seconds.

    ``px_per_mm_x``/``px_per_mm_y`` from the grid (``scale_source`` "grid") or assumed from the
    page width ("page width"); ``gain_mm_mV`` from the calibration pulses ("pulse"), given by the
    caller ("given") or the standard 10 mm/mV ("assumed"); ``speed_mm_s`` "given" or "assumed".
    ``skew_deg``: the tilt that was removed (counter-clockwise positive).
    """

    px_per_mm_x: float
    px_per_mm_y: float
    gain_mm_mV: float
    speed_mm_s: float
    scale_source: str
    gain_source: str
    speed_source: str
    skew_deg: float = 0.0
    pulse_rows: int = 0

    @property
    def px_per_s(self) -> float:
        return self.px_per_mm_x * self.speed_mm_s

    @property
    def px_per_mV(self) -> float:
        return self.px_per_mm_y * self.gain_mm_mV


@dataclass
class Panel:
    """One printed stretch of one lead: where it is on the upright page and what was read.

    ``name`` is the lead ("II") or a rhythm strip ("II-rhythm"); ``box`` the pixel box
    ``(x0, y0, x1, y1)`` of its band; ``x0_px`` the x of its first sample, at ``t0_s`` on the
    page's time axis (x = x0_px + (t - t0_s) × px_per_s); ``signal_mV``
    its samples at :data:`FS_HZ` from ``t0_s``; ``trace_xy`` the traced polyline (pixels, for
    overlays); ``status``/``reason`` as for :class:`LeadTrace`.
    """

    name: str
    lead: str | None
    row: int
    col: int
    box: tuple[int, int, int, int]
    baseline_px: float
    x0_px: float
    t0_s: float
    signal_mV: np.ndarray
    trace_xy: np.ndarray
    status: str = OK
    reason: str = ""


@dataclass
class LeadTrace:
    """Per-lead outcome: ``status`` one of "ok", "uncalibrated" (read, but amplitudes assume a
    standard gain), "not on page", "unreadable", "no ECG"; ``reason`` says why in one line;
    ``coverage`` the fraction of the page's time window with samples."""

    lead: str
    status: str
    reason: str = ""
    coverage: float = 0.0
    panels: list[str] = field(default_factory=list)


@dataclass
class Digitized:
    """A digitised page.

    ``signal`` (samples × 12, mV, :data:`FS_HZ`, NaN where a lead was not printed or not
    readable) covers the page's time window from 0 s; ``leads`` names its columns
    (:data:`~pulse_app.ecg.records.STANDARD_LEADS`); ``lead_status`` explains each lead;
    ``panels`` keeps every printed stretch (rhythm strips too); ``image`` is the upright page
    the coordinates refer to.
    """

    signal: np.ndarray
    fs: float
    leads: list[str]
    layout: str | None
    calibration: Calibration | None
    panels: list[Panel]
    lead_status: dict[str, LeadTrace]
    image: Image.Image
    warnings: list[str] = field(default_factory=list)

    @property
    def found_ecg(self) -> bool:
        return any(t.status in (OK, UNCALIBRATED) for t in self.lead_status.values())

    def lead(self, name: str) -> np.ndarray:
        """One lead's samples (mV, NaN where not read)."""
        return self.signal[:, self.leads.index(name)]

    def rhythm_strips(self) -> list[Panel]:
        return [p for p in self.panels if p.name.endswith("-rhythm") or p.lead is None]

    def to_record(self, record_id: str = "digitized") -> Record:
        """The signals as a :class:`~pulse_app.ecg.records.Record` (NaN kept)."""
        return Record(record_id=record_id, signal=self.signal.astype(np.float32), fs=self.fs,
                      leads=list(self.leads), source="digitized",
                      meta={"layout": self.layout})


# -- 1. ink and grid -------------------------------------------------------------------------------

def ink_maps(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ink, grid) maps in [0, 1] (float32, H×W) of an RGB page.

    ``ink``: darkness of the brightest channel relative to the local paper, minus the colour
    (max - min channel): black or blue-black trace ink scores high, red/green/brown grid lines
    and coloured pen marks low. ``grid``: darkness of the dimmest channel relative to the paper
    (coloured and grey grid lines, and the ink).
    """
    v = rgb.max(axis=2)
    m = rgb.min(axis=2)
    k = max(5, (min(rgb.shape[:2]) // 120) | 1)
    kernel = np.ones((k, k), np.uint8)
    bg_v = np.maximum(cv2.blur(cv2.dilate(v, kernel), (k, k)), 1)
    bg_m = np.maximum(cv2.blur(cv2.dilate(m, kernel), (k, k)), 1)
    # OpenCV ops, in float32 without numpy temporaries: 1 - v / bg_v - (v - m) / 255
    ink = cv2.divide(v, bg_v, dtype=cv2.CV_32F)
    ink = cv2.addWeighted(ink, -1.0, cv2.subtract(v, m), -1.0 / 255, 1.0, dtype=cv2.CV_32F)
    grid = cv2.divide(m, bg_m, dtype=cv2.CV_32F)
    cv2.subtract(1.0, grid, dst=grid)
    del v, m, bg_v, bg_m
    np.clip(ink, 0.0, 1.0, out=ink)
    np.clip(grid, 0.0, 1.0, out=grid)
    return ink, grid


def ink_threshold(ink: np.ndarray) -> float:
    """Otsu's threshold between the darkest population (trace ink) and the rest, among pixels
    darker than 0.2; clamped to [0.25, 0.75]."""
    u8 = (ink * 255).astype(np.uint8)
    sel = u8[u8 > 50]
    if sel.size < 100:
        return 0.5
    t, _ = cv2.threshold(sel.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(np.clip(t / 255.0, 0.25, 0.75))


def ink_mask(ink: np.ndarray, thr: float) -> np.ndarray:
    """Binary trace ink with hysteresis: pixels above ``thr``, plus pixels above half of it
    that touch them (twice), so that faint thin strokes (blurred, rotated) stay unbroken."""
    strong = ink > thr
    weak = ink > 0.5 * thr
    kernel = np.ones((3, 3), np.uint8)
    mask = strong
    for _ in range(2):
        mask = weak & cv2.dilate(mask.view(np.uint8), kernel).view(bool)
    return mask | strong


# -- 2. tilt ---------------------------------------------------------------------------------------

def _profile_sharpness(img: np.ndarray, angle_deg: float) -> float:
    h, w = img.shape
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    out = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    prof = out[:, w // 8: w - w // 8].sum(axis=1, dtype=np.float64)
    return float(np.square(np.diff(prof)).sum())


def estimate_skew_deg(structure: np.ndarray, max_deg: float = _MAX_SKEW_DEG) -> float:
    """The tilt (degrees, counter-clockwise positive, as ``cv2.getRotationMatrix2D``) of the
    horizontal structures (grid lines, baselines) of a darkness map, within ±``max_deg``.

    Rotating the image by the returned angle's opposite... is done by :func:`deskew`; here the
    angle maximising the row profile's sharpness is searched coarse-to-fine on a half-size map.
    """
    small = cv2.resize(structure, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    best, step = 0.0, 0.5
    candidates = np.arange(-max_deg, max_deg + 1e-9, step)
    for _ in range(3):
        scores = [_profile_sharpness(small, a) for a in candidates]
        best = float(candidates[int(np.argmax(scores))])
        step /= 5
        candidates = best + np.arange(-4, 5) * step
    return best


def deskew(rgb: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate the page by ``angle_deg`` about its centre (white border)."""
    if abs(angle_deg) < 0.02:
        return rgb
    h, w = rgb.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    return cv2.warpAffine(rgb, rot, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


# -- 3. scale --------------------------------------------------------------------------------------

def _autocorr(profile: np.ndarray) -> np.ndarray:
    p = profile.astype(np.float64)
    trend = np.convolve(p, np.ones(31) / 31, mode="same")
    p = p - trend
    n = len(p)
    spec = np.fft.rfft(p, 2 * n)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:n]
    return ac / ac[0] if ac[0] > 0 else ac


def _peak_near(ac: np.ndarray, lag: float, radius: float) -> tuple[float, float]:
    """(sub-pixel position, height) of the autocorrelation maximum within lag ± radius."""
    lo, hi = max(1, int(np.floor(lag - radius))), min(len(ac) - 2, int(np.ceil(lag + radius)))
    if hi <= lo:
        return lag, 0.0
    i = lo + int(np.argmax(ac[lo:hi + 1]))
    a, b, c = ac[i - 1], ac[i], ac[i + 1]
    den = a - 2 * b + c
    off = 0.5 * (a - c) / den if den < 0 else 0.0
    return i + float(np.clip(off, -0.5, 0.5)), float(b)


def _local_peaks(ac: np.ndarray, lo: int, hi: int, floor: float) -> list[int]:
    """Lags in [lo, hi] where the autocorrelation has a local maximum above ``floor`` that
    stands out from the trough before it."""
    out = []
    for i in range(max(lo, 2), min(hi, len(ac) - 2) + 1):
        if ac[i] >= ac[i - 1] and ac[i] > ac[i + 1] and ac[i] > floor:
            trough = ac[max(1, i // 2):i].min()
            if ac[i] - trough > 0.03:
                out.append(i)
    return out


def grid_period_px(profile: np.ndarray, min_px: float = 2.5, max_px: float = 40.0
                   ) -> float | None:
    """The 1 mm grid period (pixels) of a grid profile, or None when no periodic grid shows.

    Candidates are the autocorrelation peaks between ``min_px`` and ``max_px`` whose first five
    multiples are peaks too (JPEG blocks and noise make isolated peaks without such a comb);
    the one with the strongest comb wins, except that a candidate five times smaller with a
    comb at least a fifth as strong is preferred (the 5 mm major lines give the 5 mm period the
    strongest comb). The period is refined on far multiples (sub-pixel). When no 1 mm period
    shows (the thin lines of a grey grid lost in a photo), the 5 mm lines' comb gives it / 5.
    """
    n = len(profile)
    max_px = min(max_px, n / 12)
    if max_px <= min_px:
        return None
    ac = _autocorr(profile)
    peaks = _local_peaks(ac, int(min_px), int(5 * max_px) + 2, 0.04)
    if not peaks:
        return None
    top = max(ac[i] for i in peaks)

    def comb(lag):
        heights = []
        for k in range(1, 6):
            pos, hgt = _peak_near(ac, k * lag, 0.6 + 0.02 * k * lag)
            if not any(abs(p - pos) <= 1.0 for p in peaks):
                return 0.0
            heights.append(hgt)
        return float(np.mean(heights))

    scored = {lag: comb(lag) for lag in peaks if lag <= max_px}
    scored = {lag: c for lag, c in scored.items() if c >= 0.2 * top and ac[lag] >= 0.1 * top}
    if not scored:
        # the 1 mm lines too faint to show (a grey grid in a photo): the 5 mm lines' comb
        peaks = _local_peaks(ac, int(5 * min_px), min(len(ac) - 3, int(25 * max_px) + 2), 0.04)
        major = {lag: comb(lag) for lag in peaks if 5 * min_px <= lag <= 5 * max_px}
        major = {lag: c for lag, c in major.items() if c >= 0.3 * top and ac[lag] >= 0.3 * top}
        if not major:
            return None
        return _refined_period(ac, float(max(major, key=major.get)), (2, 4, 8, 16), 0.06) / 5
    best = max(scored, key=scored.get)
    for lag in sorted(scored):
        if abs(lag * 5 - best) <= 2 and scored[lag] >= 0.2 * scored[best]:
            best = lag
            break
    return _refined_period(ac, float(best), (5, 10, 20, 40, 80), 0.3)


def _refined_period(ac: np.ndarray, period: float, multiples, radius: float) -> float:
    """A period refined on the autocorrelation peaks at far ``multiples`` of it (searched within
    ``radius`` periods; stops at a third of the profile or a missing peak)."""
    for k in multiples:
        if k * period > len(ac) / 3:
            break
        pos, height = _peak_near(ac, k * period, radius * period)
        if height < 0.03:
            break
        period = pos / k
    return float(period)


def grid_px_per_mm(grid: np.ndarray, ink_mask: np.ndarray) -> tuple[float | None, float | None]:
    """(px per mm along x, along y) from the grid map, ink removed; None where no grid shows.

    A printed page is 180-400 mm wide, which bounds the search (no factor-2 or factor-5
    confusions between minor lines, major lines and their multiples).
    """
    g = np.where(ink_mask, 0.0, grid).astype(np.float32)
    h, w = g.shape
    lo, hi = max(2.5, w / 400), max(4.0, w / 180)
    px = grid_period_px(g.mean(axis=0), lo, hi)
    py = grid_period_px(g.mean(axis=1), lo, hi)
    if px and py and not 0.85 < px / py < 1.18:
        px = py = None
    return px, py


# -- 4. rows ---------------------------------------------------------------------------------------

@dataclass
class _Row:
    y: float               # baseline estimate (px)
    top: int
    bottom: int
    x0: int = 0            # trace start (after the calibration pulse)
    x1: int = 0            # trace end (exclusive)
    xs: float = 0.0        # time zero: centre of the line's first point (px)
    xe: float = 0.0        # centre of the line's last point (px)
    baseline: float | None = None   # 0 mV level from the pulse foot
    pulse_px: float | None = None   # pulse height (px)
    pulse_box: tuple | None = None
    #: pacing spikes on the row's line (:func:`find_needles`), px
    needles: np.ndarray = field(default_factory=lambda: np.empty((0, 5)))
    #: tips of the line's spikes (x, y), px (:func:`_centreline`)
    tips: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))


def _column_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertical ink runs of a boolean band: (column, start row, end row inclusive), by column."""
    t = np.ascontiguousarray(mask.T).view(np.int8)
    pad = np.zeros((t.shape[0], 1), np.int8)
    d = np.diff(np.concatenate([pad, t, pad], axis=1), axis=1)
    cs, ss = np.nonzero(d == 1)
    ce, ee = np.nonzero(d == -1)
    return cs, ss, ee - 1


def _longest_stretch(columns: np.ndarray, max_gap: float) -> int:
    """Length (px) of the longest run of ``columns`` (sorted indices) with gaps <= max_gap."""
    if len(columns) == 0:
        return 0
    breaks = np.nonzero(np.diff(columns) > max_gap)[0]
    edges = np.concatenate([[0], breaks + 1, [len(columns)]])
    return int(max(columns[e - 1] - columns[s] for s, e in zip(edges[:-1], edges[1:])))


def find_rows(mask: np.ndarray, ppm: float) -> list[_Row]:
    """Trace rows of a binary ink mask.

    Candidate baselines are peaks of the ink row profile (a trace spends most of its time on
    its baseline). A candidate is kept when, within ±3 mm, a line runs for at least 25 mm with
    gaps under 2 mm (or ink covers 60 mm of columns, for tall traces that often leave the
    band) and at least three columns in four hold a single run (text fails this: its letters
    stack several strokes in a column), over at least 40 mm and 40 % of the longest row (a
    blurred text line may pass the first tests; a row's length is its longest stretch with
    gaps under 5 mm, or its inked columns when more: a tall trace leaves the band at every
    complex). Two kept candidates closer than 25 mm are one
    wandering trace when their bands rarely hold ink in the same column (two parallel traces
    almost always do); they are merged.
    """
    from scipy.signal import find_peaks

    h, w = mask.shape
    prof = mask.sum(axis=1).astype(np.float32)
    prof = cv2.GaussianBlur(prof.reshape(-1, 1), (1, 0), max(1.0, 0.8 * ppm)).ravel()
    peaks, _ = find_peaks(prof, distance=max(3, int(5 * ppm)), height=0.02 * w)
    half = int(round(3.0 * ppm))
    kept, extent = [], {}
    for y in peaks:
        band = mask[max(0, y - half): y + half + 1]
        has = band.any(axis=0)
        covered = np.nonzero(has)[0]
        if len(covered) < 20 * ppm:
            continue
        cols, _, _ = _column_runs(band)
        single = np.mean(np.bincount(cols, minlength=w)[covered] == 1)
        long_line = _longest_stretch(covered, 2 * ppm) >= 25 * ppm or len(covered) >= 60 * ppm
        if long_line and single >= 0.75:
            kept.append(int(y))
            # a tall trace leaves the band for more than 5 mm at every complex: its inked
            # columns count too (a text line's words lie within 5 mm of each other)
            extent[int(y)] = max(_longest_stretch(covered, 5 * ppm), len(covered))
    if kept:                 # a blurred text line can pass; it is much shorter than the traces
        longest = max(extent.values())
        kept = [y for y in kept if extent[y] >= max(40 * ppm, 0.4 * longest)]
    near = max(1, int(round(1.0 * ppm)))
    merged: list[list[int]] = []
    for y in kept:
        y0 = max(merged[-1], key=lambda v: prof[v]) if merged else None
        if y0 is not None and y - y0 < 25 * ppm:
            a = mask[max(0, y0 - near): y0 + near + 1].any(axis=0)
            b = mask[max(0, y - near): y + near + 1].any(axis=0)
            if (a & b).sum() < 0.35 * max(1, (a | b).sum()):
                merged[-1].append(y)
                continue
        merged.append([y])
    rows = [_Row(y=float(max(g, key=lambda v: prof[v])), top=0, bottom=h) for g in merged]
    spans = [(min(g), max(g)) for g in merged]
    for i, r in enumerate(rows):
        r.top = (int(round((spans[i - 1][1] + spans[i][0]) / 2)) if i
                 else max(0, int(spans[i][0] - _spacing(rows, i))))
        r.bottom = (int(round((spans[i][1] + spans[i + 1][0]) / 2)) if i + 1 < len(rows)
                    else min(h, int(spans[i][1] + _spacing(rows, i))))
    return rows


def _spacing(rows: list[_Row], i: int) -> float:
    if len(rows) < 2:
        return 40.0
    gaps = np.diff([r.y for r in rows])
    return float(np.median(gaps)) * 0.6


# -- 5. calibration pulse --------------------------------------------------------------------------

def find_calibration_pulse(mask: np.ndarray, row: _Row, ppm: float, thick: float,
                           side: str = "left") -> tuple | None:
    """The 1 mV rectangle at one end of a row: (x_rise, x_fall, y_top, y_foot, line width) in
    pixels (centres of the strokes and lines), or None.

    Two vertical strokes of equal extent 1.5-8 mm apart, joined by a flat top, with no ink
    inside the rectangle, within the first (or last) 30 mm of the row's ink.
    """
    # a pulse may rise above the row's band (10 mm pulses on 14.5 mm rows): search up to 45 mm
    # above the baseline, and keep only a pulse whose foot is on this row's baseline
    top0 = max(0, min(row.top, int(row.y - 45 * ppm)))
    band = mask[top0:row.bottom]
    has = np.nonzero(mask[row.top:row.bottom].any(axis=0))[0]
    if len(has) == 0:
        return None
    span = int(30 * ppm)
    if side == "left":
        xa, xb = has[0], min(band.shape[1], has[0] + span)
    else:
        xa, xb = max(0, has[-1] - span), has[-1] + 1
    sub = band[:, xa:xb]
    # bridge short breaks (a red grid line crossing a faint stroke lowers its ink score)
    k = max(3, int(round(1.2 * ppm)) | 1)
    sub = cv2.morphologyEx(sub.view(np.uint8), cv2.MORPH_CLOSE, np.ones((k, 1), np.uint8)
                           ).view(bool)
    cols, starts, ends = _column_runs(sub)
    long_ = (ends - starts + 1) >= 2.0 * ppm
    cand = list(zip(cols[long_], starts[long_], ends[long_]))
    if not cand:
        return None
    # merge adjacent stroke columns into strokes
    strokes = []
    for c, s, e in cand:
        if strokes and c - strokes[-1][1] <= 1 + thick and abs(s - strokes[-1][2]) <= thick + 2 \
                and abs(e - strokes[-1][3]) <= thick + 2:
            strokes[-1][1] = c
        else:
            strokes.append([c, c, s, e])
    for i, a in enumerate(strokes):
        for b in strokes[i + 1:]:
            width = (b[0] + b[1]) / 2 - (a[0] + a[1]) / 2
            if not 1.5 * ppm <= width <= 8 * ppm:
                continue
            if abs(a[2] - b[2]) > 0.5 * ppm or abs(a[3] - b[3]) > 0.5 * ppm:
                continue
            top, foot = (a[2] + b[2]) / 2, (a[3] + b[3]) / 2
            if abs(top0 + foot - row.y) > 4 * ppm or foot - top < 2.0 * ppm + thick:
                continue
            inner = sub[int(top + thick + 2): int(foot - thick - 1), a[1] + 2: b[0] - 1]
            top_line = sub[int(top): int(top + thick + 2), a[1] + 1: b[0]]
            if inner.size and inner.mean() > 0.02:
                continue
            if top_line.size == 0 or top_line.any(axis=0).mean() < 0.8:
                continue
            x_rise, x_fall = xa + (a[0] + a[1]) / 2, xa + (b[0] + b[1]) / 2
            # the top line's own thickness (a horizontal line: the cleanest measure of the pen)
            inside = (cols > a[1]) & (cols < b[0]) & (np.abs(starts - top) <= 2)
            t = float(np.median(ends[inside] - starts[inside] + 1)) if inside.any() else thick
            half = (t - 1) / 2
            return (x_rise, x_fall, top0 + top + half, top0 + foot - half, t)
    return None


def _trace_start_after(mask: np.ndarray, row: _Row, x_fall: float, thick: float, ppm: float
                       ) -> int:
    """First column of the trace after a pulse falling at ``x_fall``: right there when the
    line runs on, or after the gap when the printer leaves one (within 3 mm)."""
    start = int(np.ceil(x_fall + thick / 2))
    stop = min(mask.shape[1], start + int(3 * ppm))
    has = mask[row.top:row.bottom, start:stop].any(axis=0)
    empty = np.nonzero(~has)[0]
    if len(empty) == 0:
        return start
    after = np.nonzero(has[empty[0]:])[0]
    return start + int(empty[0] + after[0]) if len(after) else start


def _before_end_mark(mask: np.ndarray, row: _Row, thick: float, ppm: float) -> int:
    """The row's end, before an end mark when there is one: some printers close each row
    with a step up (or down) of about 1 mV and a flat line to the end (ecg-image-kit pages do).
    A stroke of at least 3 mm in the last 12 mm, followed only by one thin flat line."""
    x_end = row.x1
    x_start = max(row.x0, x_end - int(12 * ppm))
    band = mask[row.top:row.bottom, x_start:x_end]
    cols, starts, ends = _column_runs(band)
    if len(cols) == 0:
        return x_end
    lens = ends - starts + 1
    long_cols = np.unique(cols[lens >= 3 * ppm])
    for c in long_cols[::-1]:
        right = cols > c + thick + 1
        if right.sum() < 0.5 * ppm:
            continue
        rc, rs, re = cols[right], starts[right], ends[right]
        single = np.bincount(rc - rc.min()).max() == 1
        flat = np.ptp((rs + re) / 2) <= thick + 2 and (re - rs + 1).max() <= thick + 3
        if single and flat:
            first = c
            while first - 1 in set(long_cols.tolist()):
                first -= 1
            return int(x_start + first - thick)
        break
    return x_end


def _snap_gain(gain: float) -> float:
    for g in STANDARD_GAINS_MM_MV:
        if abs(gain - g) <= 0.08 * g:
            return g
    return round(gain, 2)


# -- 7. tracing ------------------------------------------------------------------------------------

@dataclass
class _Path:
    """A row's Viterbi path: the band's runs and the chosen run per column (band coordinates,
    -1 where the column has no ink); ``x0``/``b0`` place the band on the page."""

    x0: int
    b0: int
    band: np.ndarray
    cols: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    chosen_s: np.ndarray
    chosen_e: np.ndarray


def trace_row(ink: np.ndarray, mask: np.ndarray, x0: int, x1: int, top: int, bottom: int,
              y_ref: float, thick: float, margin: int) -> _Path:
    """The path of one row's trace between columns ``x0`` and ``x1`` (see :class:`_Path`).

    The band is [top, bottom) widened by ``margin`` (big complexes reach into neighbours' bands).
    Each column's ink runs are candidates; the path minimising vertical gaps between the runs of
    consecutive columns, plus a cost for leaving the row's own band (capped per column at
    :data:`_OUTSIDE_CAP_PX`), is found by dynamic programming. The path may also pass a few
    columns by without taking their ink (:data:`_SKIP_COST_PX` each, at most
    :data:`_SKIP_THICK` line widths in a row), so a short break in the line does not force it
    onto a nearby label; at the row's start it may likewise begin a few columns in, past a
    label's stroke. :func:`centre_line` turns it into a polyline.
    """
    h = ink.shape[0]
    b0, b1 = max(0, top - margin), min(h, bottom + margin)
    band = mask[b0:b1, x0:x1]
    cols, starts, ends = _column_runs(band)
    n_cols = x1 - x0
    bounds = np.searchsorted(cols, np.arange(n_cols + 1))
    own0, own1 = top - b0, bottom - b0
    ref = y_ref - b0
    max_skip = max(2, int(round(_SKIP_THICK * thick)))
    reach = max(6.0, _SKIP_THICK * thick)
    prev_s = prev_e = prev_cost = prev_skip = None
    first = 0

    def starting(outside, s, e):        # cost of the path starting on runs [s, e]
        return outside + 0.05 * np.abs((s + e) / 2 - ref)

    back: list[np.ndarray | None] = [None] * n_cols
    chosen_s = np.full(n_cols, -1, np.int64)
    chosen_e = np.full(n_cols, -1, np.int64)
    col_runs: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * n_cols
    costs: list[np.ndarray | None] = [None] * n_cols
    for c in range(n_cols):
        i0, i1 = bounds[c], bounds[c + 1]
        if i0 == i1:
            continue
        s, e = starts[i0:i1], ends[i0:i1]
        skip = np.zeros(len(s), np.int64)
        outside = 0.5 * (np.maximum(0, own0 - e) + np.maximum(0, s - own1))
        if prev_cost is None:
            first = c
            cost = starting(outside, s, e)
            arg = None
        else:
            gap = np.maximum(0, np.maximum(s[None, :] - prev_e[:, None],
                                           prev_s[:, None] - e[None, :]) - 1)
            total = prev_cost[:, None] + gap
            arg = np.argmin(total, axis=0)
            cost = total[arg, np.arange(len(s))] + np.minimum(outside, _OUTSIDE_CAP_PX)
            # or start here, the first columns' ink passed by (a label's stroke at the row's
            # start), at the cost of passing them
            if c - first <= max_skip:
                later = starting(outside, s, e) + _SKIP_COST_PX * (c - first)
                arg = np.where(later < cost, -1, arg)
                cost = np.minimum(cost, later)
            # or pass this column by, none of its ink taken: an earlier candidate that no run
            # of this column is near (a break in the line, not a steep stroke's next piece)
            carry = np.flatnonzero((prev_skip < max_skip) & (gap.min(axis=1) > reach))
            if len(carry):
                s, e = np.concatenate([s, prev_s[carry]]), np.concatenate([e, prev_e[carry]])
                cost = np.concatenate([cost, prev_cost[carry] + _SKIP_COST_PX])
                arg = np.concatenate([arg, carry])
                skip = np.concatenate([skip, prev_skip[carry] + 1])
        col_runs[c] = (s, e, skip)
        back[c] = arg
        costs[c] = cost
        prev_s, prev_e, prev_cost, prev_skip = s, e, cost, skip
    # backtrack
    filled = [c for c in range(n_cols) if costs[c] is not None]
    if filled:
        k = int(np.argmin(costs[filled[-1]]))
        for idx in range(len(filled) - 1, -1, -1):
            c = filled[idx]
            s, e, skip = col_runs[c]
            if not skip[k]:                         # a passed-by column keeps no ink
                chosen_s[c], chosen_e[c] = s[k], e[k]
            if idx > 0:
                k = int(back[c][k])
                if k < 0:                           # the path started in this column
                    break
    return _Path(x0, b0, band, cols, starts, ends, chosen_s, chosen_e)


def release_shared(paths: list[_Path]) -> None:
    """Where two rows' paths chose touching runs in the same column (a big complex of one row
    running into another's), neither row keeps that column: the blob cannot be split between
    them, and the centre line bridges the gap from both sides instead."""
    for i, a in enumerate(paths):
        for b in paths[i + 1:i + 3]:
            lo, hi = max(a.x0, b.x0), min(a.x0 + len(a.chosen_s), b.x0 + len(b.chosen_s))
            if hi <= lo:
                continue
            sa, ea = a.chosen_s[lo - a.x0:hi - a.x0], a.chosen_e[lo - a.x0:hi - a.x0]
            sb, eb = b.chosen_s[lo - b.x0:hi - b.x0], b.chosen_e[lo - b.x0:hi - b.x0]
            ok = (sa >= 0) & (sb >= 0)
            sa_abs, ea_abs, sb_abs, eb_abs = sa + a.b0, ea + a.b0, sb + b.b0, eb + b.b0
            shared = ok & (sa_abs <= eb_abs + 1) & (sb_abs <= ea_abs + 1)
            idx = np.nonzero(shared)[0] + lo
            a.chosen_s[idx - a.x0] = a.chosen_e[idx - a.x0] = -1
            b.chosen_s[idx - b.x0] = b.chosen_e[idx - b.x0] = -1


def centre_line(ink: np.ndarray, path: _Path, thick: float, owner: np.ndarray | None = None,
                row: int = 0) -> np.ndarray:
    """Polyline (N×2, page pixels, x increasing) of a traced path; see :func:`_centreline`.
    ``owner``: :func:`chosen_mask` of every row's path, this path being row ``row``."""
    h, w = path.band.shape
    if not (path.chosen_s >= 0).any():
        return np.empty((0, 2)), np.empty((0, 2))
    sub = ink[path.b0:path.b0 + h, path.x0:path.x0 + w]
    taken = None
    if owner is not None:                   # what the other rows' paths chose, in this band
        band_owner = owner[path.b0:path.b0 + h, path.x0:path.x0 + w]
        taken = (band_owner > 0) & (band_owner != row + 1)
    poly, tips = _centreline(sub, path.band, path.cols, path.starts, path.ends, path.chosen_s,
                             path.chosen_e, thick, taken)
    at = np.array([path.x0, path.b0], np.float64)
    return poly + at, tips + at


def chosen_mask(shape, paths: list[_Path]) -> np.ndarray:
    """Row index (+1) of the path that chose each page pixel; 0 where none did."""
    owner = np.zeros(shape, np.int16)
    for i, p in enumerate(paths):
        for c in np.flatnonzero(p.chosen_s >= 0):
            owner[p.b0 + p.chosen_s[c]:p.b0 + p.chosen_e[c] + 1, p.x0 + c] = i + 1
    return owner


def _weighted_centres(weights: np.ndarray, lines: np.ndarray, s: np.ndarray, e: np.ndarray
                      ) -> np.ndarray:
    """Ink-weighted centre of runs [s, e] (one pixel of margin each side) along axis 1 of
    ``weights`` (line index ``lines``), from cumulative sums: O(1) per run."""
    n = weights.shape[1]
    w = np.concatenate([np.zeros((weights.shape[0], 1)), weights], axis=1)
    cw = np.cumsum(w, axis=1)
    cyw = np.cumsum(w * np.arange(-1, n, dtype=np.float64)[None, :], axis=1)
    lo, hi = np.maximum(s - 1, 0), np.minimum(e + 2, n)
    sw = cw[lines, hi] - cw[lines, lo]
    syw = cyw[lines, hi] - cyw[lines, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        c = syw / sw
    return np.where(sw > 0, c, (s + e) / 2.0)


def _stroke_width(widths: np.ndarray) -> float:
    """The width most runs across one stroke have (the mode, to 0.05 px): wider runs hold two
    merged strokes or a sloped one, narrower ones a stroke partly taken by another row."""
    lo, hi = float(widths.min()), float(widths.max())
    if hi - lo < 0.1:
        return float(np.median(widths))
    hist, edges = np.histogram(widths, bins=np.arange(lo, hi + 0.05, 0.05))
    k = int(np.argmax(np.convolve(hist, np.ones(5), "same")))
    near = np.abs(widths - (edges[k] + edges[k + 1]) / 2) <= 0.3
    return float(np.median(widths[near]))


def _centreline(ink: np.ndarray, band: np.ndarray, cols, starts, ends, chosen_s, chosen_e,
                thick: float, taken: np.ndarray | None = None) -> np.ndarray:
    """Centre line of the traced line (points (x, y) in band coordinates, sorted by x).

    The trace's pixels are the chosen run of every column plus the runs that touch the chosen
    runs of the neighbouring columns (the other stroke of a narrow spike), except a run that
    ``taken`` (other rows' chosen runs) covers and that reaches more than a line width past the
    traced span (another row's complex touching this one's peak). Flat parts give one
    point per column (ink-weighted centre of a thin vertical run), steep parts one point per
    pixel row (centre of a thin horizontal run): both are centres of the line, so a steep
    stroke's position is known to a fraction of a pixel. At a spike's tip the line's cap lies
    half a line width beyond the signal's extreme: tips get their own point, the cap's rows none,
    nor the merged strokes' rows within :data:`_TIP_MERGE_PX` of the tip (either stroke's: sorted
    by x they would mix the way down with the way up). A tip is a column's extreme on the traced
    run beyond those of the columns past the line's cap on either side.
    """
    n_cols = band.shape[1]
    have = chosen_s >= 0
    # runs touching the neighbours' chosen runs
    keep = (starts == chosen_s[cols]) & (ends == chosen_e[cols])
    foreign = np.zeros(len(starts), bool)
    if taken is not None:
        below = np.vstack([np.zeros((1, n_cols), np.int32), np.cumsum(taken, 0, np.int32)])
        foreign = below[ends + 1, cols] > below[starts, cols]
    traced = have[cols]                 # the run's own column has a traced run
    for d in (-1, 1):
        nb = cols + d
        ok = (nb >= 0) & (nb < n_cols)
        nbc = np.clip(nb, 0, n_cols - 1)
        touch = ok & have[nbc] & (starts <= chosen_e[nbc] + 1) & (ends >= chosen_s[nbc] - 1)
        lo = np.where(traced, np.minimum(chosen_s[cols], chosen_s[nbc]), chosen_s[nbc])
        hi = np.where(traced, np.maximum(chosen_e[cols], chosen_e[nbc]), chosen_e[nbc])
        beyond = (starts < lo - thick - 1) | (ends > hi + thick + 1)
        keep |= touch & ~(foreign & beyond)
    ks, ke, kc = starts[keep], ends[keep], cols[keep]
    trace = np.zeros(band.shape, bool)
    for c, a, b in zip(kc, ks, ke):
        trace[a:b + 1, c] = True
    wts = ink.astype(np.float64) * trace
    half = thick / 2.0
    # flat parts: columns with a single thin run
    lens = ke - ks + 1
    n_runs = np.bincount(kc, minlength=n_cols)
    thin = (lens <= thick + 1.5) & (n_runs[kc] == 1)
    fx = kc[thin].astype(np.float64)
    fy = _weighted_centres(wts.T, kc[thin], ks[thin], ke[thin])
    # steep parts: horizontal runs through steep columns; a run as wide as the line is one
    # stroke (its centre), a wider one is the two strokes of a spike merging (left edge + half
    # the line, right edge - half the line); edges are sub-pixel from the anti-aliased ink.
    rr, rs, re = _column_runs(trace.T)            # "columns" of trace.T are rows
    col_len = np.zeros(n_cols, np.int64)
    np.maximum.at(col_len, kc, lens)
    steep_col = np.concatenate([[0], np.cumsum(col_len > thick + 2)])
    hl = re - rs + 1
    all_steep = (steep_col[re + 1] - steep_col[rs]) == hl
    full = float(np.percentile(ink[trace], 90)) if trace.any() else 1.0
    cov = np.clip(ink / max(full, 1e-3), 0.0, 1.0)
    w = band.shape[1]
    left = rs - 0.5 - cov[rr, np.maximum(rs - 1, 0)] * (rs > 0) + (1 - cov[rr, rs])
    right = re + 0.5 + cov[rr, np.minimum(re + 1, w - 1)] * (re < w - 1) - (1 - cov[rr, re])
    one = hl <= thick + 2
    two = ~one & all_steep & (hl <= 5 * thick)
    # a run of a steep part wider than one stroke holds two strokes whose centres lie half the
    # excess either side of its middle; also when they are closer than a pixel (a narrow spike):
    # the widths' sub-pixel edges still tell them apart. One stroke's width: the most common
    # width of the single runs through near-upright strokes (a sloped stroke's run is wider, a
    # narrow spike's merged strokes wider still; the line's thickness overstates it)
    width = right - left
    single = one & all_steep
    upright_col = np.concatenate([[0], np.cumsum(col_len > _UPRIGHT_LINES * thick)])
    upright = single & ((upright_col[re + 1] - upright_col[rs]) == hl)
    if upright.sum() >= 5:
        single = upright
    w1 = _stroke_width(width[single]) if single.sum() >= 5 else 2 * half
    sep = width - w1
    mid = (left + right) / 2
    x_left, x_right = mid - sep / 2, mid + sep / 2
    merged = two & (sep < 1.0)
    two &= ~merged
    split = all_steep & (hl <= 5 * thick) & (sep > _SPLIT_PX) & (one | merged)
    two |= split
    one &= ~split
    merged &= ~split
    sx = np.concatenate([(left + right)[one | merged] / 2, x_left[two], x_right[two]])
    sy = np.concatenate([rr[one | merged], rr[two], rr[two]]).astype(np.float64)
    # spike tips: a column whose top (bottom) is beyond both neighbours by more than a line width
    top = np.full(n_cols, np.inf)
    bot = np.full(n_cols, -np.inf)
    np.minimum.at(top, kc, ks)
    np.maximum.at(bot, kc, ke)
    tips_x, tips_y, drop = [], [], np.zeros(len(sx), bool)
    reach = int(np.ceil(half)) + 1     # a thick line's cap covers the columns within half a width
    for sign, edge in ((1, top), (-1, bot)):
        e = sign * edge                      # local minima of e are tips
        finite = np.isfinite(e)
        c = 1
        while c < n_cols - 1:
            if not finite[c]:
                c += 1
                continue
            c2 = c
            while c2 + 1 < n_cols and finite[c2 + 1] and e[c2 + 1] == e[c]:
                c2 += 1
            lft = e[c - 1] if finite[c - 1] else np.inf
            rgt = e[c2 + 1] if c2 + 1 < n_cols and finite[c2 + 1] else np.inf
            own = chosen_s[c] == top[c] if sign == 1 else chosen_e[c] == bot[c]
            if e[c] < lft and e[c] < rgt and own:
                # beside the tip: beyond the columns the line's cap reaches
                r = reach
                side = sign * np.concatenate([e[max(0, c - r - 2):max(0, c - r + 1)],
                                              e[c2 + r:min(n_cols, c2 + r + 3)]])
                side = side[np.isfinite(side)]
                if len(side) and (sign * side).min() > e[c] + 2 * thick:
                    xt = _tip_x(wts, int(sign * e[c]), sign, c, c2, reach, thick)
                    yt = sign * e[c] + sign * (half - 0.5)
                    near = (np.abs(sx - xt) <= thick + 1) & (sign * (sy - yt) < half + 0.5)
                    # the stroke centres within a pixel of the tip's x belong to either stroke
                    # (merged runs): the line from the separated strokes to the tip stands in
                    inside = (np.abs(sx - xt) < _TIP_MERGE_PX) & (sy >= top[c]) & (sy <= bot[c])
                    drop |= near | inside
                    tips_x.append(xt)
                    tips_y.append(yt)
            c = c2 + 1
    xs = np.concatenate([fx, sx[~drop], tips_x])
    ys = np.concatenate([fy, sy[~drop], tips_y])
    # columns left without a point nearby (a blob of noise, a thick scribble): the chosen run's
    # middle, so that the trace has no hole where the line is merely unclear
    covered = np.zeros(n_cols + 2, bool)
    covered[np.clip(np.round(xs).astype(np.int64), -1, n_cols) + 1] = True
    near = covered[:-2] | covered[1:-1] | covered[2:]
    fill = np.nonzero(have & ~near)[0]
    xs = np.concatenate([xs, fill.astype(np.float64)])
    ys = np.concatenate([ys, (chosen_s[fill] + chosen_e[fill]) / 2.0])
    order = np.argsort(xs, kind="stable")
    return (np.column_stack([xs[order], ys[order]]),
            np.column_stack([np.asarray(tips_x, np.float64), np.asarray(tips_y, np.float64)]))


def _tip_x(wts: np.ndarray, ext: int, sign: int, c: int, c2: int, reach: int, thick: float
           ) -> float:
    """x of a spike's tip whose extreme row ``ext`` spans columns c..c2: the ink-weighted x of
    the trace's first line width of rows from the tip (the cap, centred on the apex), within
    a pixel of the middle of c..c2 (the extreme columns alone tell it to half a pixel)."""
    mid = (c + c2) / 2.0
    k = max(1, int(round(thick)))
    rows = slice(max(0, ext), ext + k) if sign == 1 else slice(max(0, ext - k + 1), ext + 1)
    ca, cb = max(0, c - reach - 1), min(wts.shape[1], c2 + reach + 2)
    per_col = wts[rows, ca:cb].sum(axis=0)
    if per_col.sum() <= 0:
        return mid
    x = ca + float((per_col * np.arange(cb - ca)).sum() / per_col.sum())
    return x if abs(x - mid) <= 1.0 else mid


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D boolean array, stop exclusive."""
    edges = np.diff(np.concatenate([[0], flags.view(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _fill_short_gaps(y: np.ndarray, max_gap: int) -> np.ndarray:
    """Linear interpolation over NaN gaps of at most ``max_gap`` samples (inside the data)."""
    bad = np.isnan(y)
    if not bad.any() or bad.all():
        return y
    idx = np.arange(len(y))
    good = ~bad
    filled = np.interp(idx, idx[good], y[good])
    for a, b in _runs(bad):                # keep long gaps as NaN
        if b - a > max_gap or a == 0 or b == len(y):
            filled[a:b] = np.nan
    return filled


def _sample_polyline(poly: np.ndarray, x_start: float, px_per_s: float, t0: float, t1: float,
                     fs: float, max_gap_px: float = 24.0) -> tuple[np.ndarray, int]:
    """Samples (pixel y) of a centre line at times t0..t1 (seconds on the row's axis, where
    ``x_start`` is t = 0): (values, index of the first sample on the fs grid). NaN where the
    line has a gap wider than ``max_gap_px``."""
    k0, k1 = int(np.ceil(t0 * fs - 1e-6)), int(np.floor(t1 * fs + 1e-6))
    ts = np.arange(k0, k1 + 1) / fs
    xs = x_start + ts * px_per_s
    if len(poly) < 2:
        return np.full(len(ts), np.nan), k0
    px, py = poly[:, 0], poly[:, 1]
    y = np.interp(xs, px, py, left=np.nan, right=np.nan)
    i = np.clip(np.searchsorted(px, xs), 1, len(px) - 1)
    y[(px[i] - px[i - 1]) > max_gap_px] = np.nan
    return y, k0


def find_needles(poly: np.ndarray, thick: float, ink: np.ndarray | None = None,
                 ppm: float = _NEEDLE_PPM) -> np.ndarray:
    """Pacing spikes on a centre line (see :data:`_NEEDLE_THICK`): rows of (x of the spike,
    y of its tip, x where it leaves the line's level, x where it is back, y of that level),
    page px.

    The line's level at a point is its mean a line width and more to either side. A spike's
    x is the ink-weighted x of its stroke between its foot and its tip (``ink``; without it,
    the middle of the centre line's width at half height).

    >>> line = np.column_stack([np.arange(100.0), np.full(100, 50.0)])
    >>> spike = np.array([[49.8, 50.0], [50.0, 10.0], [50.2, 50.0]])
    >>> needles = find_needles(np.vstack([line, spike])[np.argsort(np.r_[line[:, 0],
    ...                        spike[:, 0]], kind="stable")], thick=3.0)
    >>> np.round(needles[:, :2], 1).tolist()
    [[50.0, 10.0]]
    """
    if len(poly) < 8:
        return np.empty((0, 5))
    x, y = poly[:, 0], poly[:, 1]
    col = np.floor(x + 0.5).astype(np.int64)
    c0 = int(col.min())
    idx = col - c0
    n = int(idx.max()) + 1
    total, count = np.zeros(n + 1), np.zeros(n + 1)
    np.add.at(total, idx + 1, y)
    np.add.at(count, idx + 1, 1)
    total, count = np.cumsum(total), np.cumsum(count)
    side = int(np.ceil(thick))

    def window(a, b):                     # sums over columns [a, b) (clipped)
        a, b = np.clip(a, 0, n), np.clip(b, 0, n)
        return total[b] - total[a], count[b] - count[a]

    ls, ln = window(idx - side - 3, idx - side)
    rs, rn = window(idx + side + 1, idx + side + 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        base = np.where((ln > 0) & (rn > 0), (ls / ln + rs / rn) / 2, np.nan)
    exc = np.abs(y - base)
    cand = np.flatnonzero(exc >= _NEEDLE_THICK * thick)
    out = []
    if not len(cand):
        return np.empty((0, 5))
    groups = np.split(cand, np.flatnonzero(np.diff(x[cand]) > 3) + 1)
    for g in groups:
        k = int(g[np.argmax(exc[g])])
        lvl, tip = base[k], y[k]
        reach = tip - lvl
        half, near = lvl + reach / 2, lvl + np.sign(reach) * thick

        def crossing(step, level):         # x where the line, from the tip, reaches level
            j = k
            while 0 <= j + step < len(y) and (y[j + step] - level) * reach > 0:
                j += step
            if not 0 <= j + step < len(y):
                return None
            y0, y1 = y[j], y[j + step]
            f = (y0 - level) / (y0 - y1) if y0 != y1 else 0.0
            return x[j] + f * (x[j + step] - x[j])

        xl, xr = crossing(-1, half), crossing(1, half)
        if xl is None or xr is None or xr - xl > _NEEDLE_WIDTH_PX:
            continue
        xa, xb = crossing(-1, near), crossing(1, near)
        if xa is None or xb is None or xb - xa > 2 * _NEEDLE_WIDTH_PX:
            continue                      # wide at its foot: a complex, not a needle
        xc = (xl + xr) / 2
        if ink is not None:
            # one stroke a third of the way up, where it is, and one stroke below the tip: a
            # needle (an R wave as narrow is two strokes apart low down, or its tip is wide)
            sign = np.sign(reach)
            xc = _stroke_x(ink, xc, min(lvl, tip) + 1.5 * thick, max(lvl, tip) - 1.5 * thick,
                           thick, xc)
            spread, centre = _row_spread(ink, xc, lvl + sign * max(0.3 * abs(reach), 2 * thick),
                                         thick)
            below_tip = _row_spread(ink, xc, tip - sign * 1.5 * thick, thick)[0]
            bound = _NEEDLE_SPREAD_PX2 * (ppm / _NEEDLE_PPM) ** 2
            if max(spread, below_tip) > bound or not abs(centre - xc) <= _NEEDLE_OFF_PX:
                continue
        out.append((xc, tip, xa, xb, lvl))
    return np.array(out).reshape(-1, 5)


def _row_spread(ink: np.ndarray, x: float, y: float, thick: float) -> tuple[float, float]:
    """(variance (px²), mean) of the ink's x across the stroke at (``x``, pixel row ``y``):
    over the run of pixels at least half as dark as the darkest within a line width and three
    pixels, and a pixel either side of it. One upright stroke's variance is set by its width;
    two strokes merged in one run have more; no ink at ``x`` (two strokes apart): infinite."""
    h, w = ink.shape
    r, c = int(round(y)), int(round(x))
    c0, c1 = max(0, int(np.floor(x - thick - 3))), min(w, int(np.ceil(x + thick + 3)) + 1)
    if not (0 <= r < h and c0 <= c < c1):
        return np.inf, np.nan
    row = ink[r, c0:c1].astype(np.float64)
    dark = row >= 0.5 * row.max() if row.max() > 0 else np.zeros(len(row), bool)
    i = c - c0
    if not dark[i]:
        return np.inf, np.nan
    a, b = i, i
    while a > 0 and dark[a - 1]:
        a -= 1
    while b < len(row) - 1 and dark[b + 1]:
        b += 1
    a, b = max(0, a - 1), min(len(row) - 1, b + 1)
    wts = row[a:b + 1]
    xs = np.arange(a, b + 1, dtype=np.float64)
    mean = (wts * xs).sum() / wts.sum()
    return float((wts * (xs - mean) ** 2).sum() / wts.sum()), float(c0 + mean)


def _stroke_x(ink: np.ndarray, x: float, y0: float, y1: float, thick: float,
              default: float) -> float:
    """Ink-weighted x of an upright stroke near ``x`` between rows ``y0`` and ``y1`` (the
    median over its rows of each row's centroid within a line width and a pixel)."""
    h, w = ink.shape
    r0, r1 = max(0, int(np.ceil(y0))), min(h, int(np.floor(y1)) + 1)
    c0, c1 = max(0, int(np.floor(x - thick - 1))), min(w, int(np.ceil(x + thick + 1)) + 1)
    if r1 - r0 < 2 or c1 - c0 < 2:
        return default
    win = ink[r0:r1, c0:c1].astype(np.float64)
    mass = win.sum(axis=1)
    ok = mass > 0
    if not ok.any():
        return default
    cx = (win[ok] * np.arange(c0, c1)).sum(axis=1) / mass[ok]
    return float(np.median(cx))


def _bridge_needles(y: np.ndarray, k0: int, row: _Row, cal: Calibration, fs: float
                    ) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """A row's samples (page px, the first one at sample ``k0`` of the row's time axis) with
    each of its needles' samples replaced by the line's level either side of it, and the
    needles as (sample index nearest the stroke's x, tip): each is one sample at its tip."""
    tips: list[tuple[int, float]] = []
    if not len(row.needles):
        return y, tips
    y = y.copy()
    per_px = fs / cal.px_per_s                     # samples per pixel
    pos = lambda xx: (xx - row.xs) * per_px - k0  # noqa: E731 (sample index of a page x)
    for xc, tip, xa, xb, _ in row.needles:
        n = int(round(pos(xc)))
        if not 0 <= n < len(y):
            continue
        i0 = max(0, int(np.floor(pos(xa - 0.5))))
        i1 = min(len(y) - 1, int(np.ceil(pos(xb + 0.5))))
        ya = y[i0 - 1] if i0 > 0 and np.isfinite(y[i0 - 1]) else y[i0]
        yb = y[i1 + 1] if i1 + 1 < len(y) and np.isfinite(y[i1 + 1]) else y[i1]
        if i1 > i0:
            y[i0:i1 + 1] = np.linspace(ya, yb, i1 - i0 + 1)
        tips.append((n, float(tip)))
    return y, tips


def _smoothed(y: np.ndarray, window: float) -> np.ndarray:
    """Samples smoothed by a least-squares quadratic over ``window`` samples (Savitzky-Golay,
    the nearest odd count of at least 5), each finite stretch on its own; stretches shorter
    than the window stay as they are."""
    from scipy.signal import savgol_filter

    n = int(round(window)) // 2 * 2 + 1
    if n < 5:
        return y
    out = y.copy()
    for a, b in _runs(np.isfinite(y)):
        if b - a >= n:
            out[a:b] = savgol_filter(y[a:b], n, 2, mode="interp")
    return out


# -- 6. layout and the whole page ------------------------------------------------------------------

def _estimate_thickness(mask: np.ndarray, rows: list[_Row]) -> float:
    lens = []
    for r in rows:
        band = mask[r.top:r.bottom]
        cols, s, e = _column_runs(band)
        lens.append(e - s + 1)
    if not lens:
        return 2.0
    return float(max(1.0, np.percentile(np.concatenate(lens), 20)))


def _row_extent(mask: np.ndarray, row: _Row, ppm: float) -> tuple[int, int]:
    """First and last (exclusive) columns of the row's main line: the longest stretch of ink
    columns near the baseline band, gaps under 2 mm bridged."""
    band = mask[row.top:row.bottom]
    has = np.nonzero(band.any(axis=0))[0]
    if len(has) == 0:
        return 0, 0
    gaps = np.diff(has)
    breaks = np.nonzero(gaps > 2 * ppm)[0]
    edges = np.concatenate([[0], breaks + 1, [len(has)]])
    best = max(zip(edges[:-1], edges[1:]), key=lambda se: has[se[1] - 1] - has[se[0]])
    return int(has[best[0]]), int(has[best[1] - 1]) + 1


def _agree_row_ends(rows: list[_Row], mask: np.ndarray, ppm: float) -> None:
    """Rows of a page start and end at the same columns (every layout prints them so): a row
    whose start or end is more than :data:`_ROW_END_SLACK_MM` off what at least half of the
    rows agree on takes theirs (a row found without its pulse starts too early; a tall complex
    of another row crossing its band, or a stretch of its own line outside it, cuts it short),
    moving out only where its band has ink. Between two halves that disagree on the end, the
    later end wins (a lead's last complex followed by a flat line can look like an end mark)."""
    if len(rows) < 3:
        return
    slack = _ROW_END_SLACK_MM * ppm
    for attr in ("x0", "x1"):
        vals = np.array([getattr(r, attr) for r in rows], np.float64)
        counts = (np.abs(vals[:, None] - vals[None, :]) <= slack).sum(axis=1)
        if counts.max() * 2 < len(rows):
            continue
        tied = vals[counts == counts.max()]
        if attr == "x0" and np.ptp(tied) > slack:
            continue
        pick = tied.max()
        common = int(round(np.median(vals[np.abs(vals - pick) <= slack])))
        for r, v in zip(rows, vals):
            if abs(v - common) <= slack:
                continue
            if (v > common) == (attr == "x0"):          # moving out: the line must be there
                lo, hi = ((common, common + int(ppm)) if attr == "x0"
                          else (common - int(ppm), common))
                if not mask[r.top:r.bottom, max(0, lo):max(0, hi)].any():
                    continue
            setattr(r, attr, common)


def _despiked(y: np.ndarray, fs: float) -> np.ndarray:
    """``y`` through a running median of :data:`_DESPIKE_S` (NaN kept): pacing spikes go (the
    same in every lead, they would make any two leads look alike; as needles or as what is
    left of lines merged with another row's), and the two signals to compare lose their peaks
    alike."""
    from scipy.ndimage import median_filter

    ok = np.isfinite(y)
    if ok.sum() < 2:
        return y
    idx = np.arange(len(y))
    filled = np.interp(idx, idx[ok], y[ok])
    out = median_filter(filled, max(3, int(round(_DESPIKE_S * fs)) | 1), mode="nearest")
    out[~ok] = np.nan
    return out


def _segment_corr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(correlation, normalised RMS difference after removing the means) of two segments."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 50:
        return 0.0, np.inf
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0, np.inf
    return float(a @ b / (na * nb)), float(np.linalg.norm(a - b) / nb)


def ecg_digitize(image: Image.Image | np.ndarray, *, speed_mm_s: float | None = None,
                 gain_mm_mV: float | None = None, fs: float = FS_HZ) -> Digitized:
    """Digitise an upright paper-ECG page into 12 leads in mV at ``fs`` Hz.

    ``image``: PIL image or H×W×3 uint8 RGB array (a page, mildly tilted at most).
    ``speed_mm_s``: paper speed if known (default: the standard 25 mm/s, marked "assumed").
    ``gain_mm_mV``: gain if known; otherwise read from the calibration pulses (or the standard
    10 mm/mV, and the leads are marked "uncalibrated").

    Returns a :class:`Digitized`; nothing raises for an unreadable page: every lead then says why.
    """
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("ecg_digitize needs an RGB image (H×W×3)")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    warnings: list[str] = []

    ink, grid = ink_maps(rgb)
    skew = estimate_skew_deg(cv2.max(ink, cv2.multiply(grid, 0.5)))
    if abs(skew) >= 0.02:
        del ink, grid
        rgb = deskew(rgb, skew)
        ink, grid = ink_maps(rgb)
    upright = Image.fromarray(rgb)
    thr = ink_threshold(ink)
    mask = ink_mask(ink, thr)           # structure: rows, pulses, extents, labels
    line = ink > thr                    # the line itself, for tracing
    weak = ink > 0.5 * thr              # faint strokes too (and grey grid lines): pulses, 2nd try

    px, py = grid_px_per_mm(grid, mask)
    h, w = mask.shape
    if px and py:
        scale_source = "grid"
    else:
        aspect = w / h
        page_w = _PAGE_WIDTHS_MM[0] if aspect < 1.35 else _PAGE_WIDTHS_MM[1]
        px = py = w / page_w
        scale_source = "page width"
        warnings.append(f"no grid found: scale assumed from the page width ({page_w} mm)")
    ppm = (px + py) / 2

    rows = find_rows(mask, ppm)
    empty = np.full((0, len(STANDARD_LEADS)), np.nan)
    if not rows:
        status = {lead: LeadTrace(lead, NO_ECG, "no ECG trace found on the page")
                  for lead in STANDARD_LEADS}
        return Digitized(empty, fs, list(STANDARD_LEADS), None, None, [], status, upright,
                         warnings + ["no ECG trace found"])

    thick = _estimate_thickness(line, rows)
    # rows' extent and calibration pulses
    gains = []
    for r in rows:
        r.x0, r.x1 = _row_extent(mask, r, ppm)
        for side in ("left", "right"):
            pulse = (find_calibration_pulse(mask, r, ppm, thick, side)
                     or find_calibration_pulse(weak, r, ppm, thick, side))
            if pulse is None:
                continue
            x_rise, x_fall, y_top, y_foot, _ = pulse
            r.pulse_px = y_foot - y_top
            r.baseline = y_foot
            r.pulse_box = (x_rise, y_top, x_fall, y_foot)
            gains.append(r.pulse_px / py)
            # the line starts (ends) at the pulse, unless the row's ink starts a little later
            # (a printer's gap); far later, the row's band lost the line (a crossing complex)
            if side == "left":
                start = _trace_start_after(mask, r, x_fall, thick, ppm)
                r.x0 = r.x0 if start <= r.x0 <= start + _ROW_END_SLACK_MM * ppm else start
            else:
                end = int(np.floor(x_rise - thick))
                r.x1 = r.x1 if end - _ROW_END_SLACK_MM * ppm <= r.x1 <= end else end
            break
        r.x1 = _before_end_mark(mask, r, thick, ppm)
    _agree_row_ends(rows, mask, ppm)
    if gain_mm_mV is not None:
        gain, gain_source = float(gain_mm_mV), "given"
    elif gains:
        snapped = [_snap_gain(g) for g in gains]
        votes = {g: snapped.count(g) for g in set(snapped)}
        gain = max(votes, key=lambda g: (votes[g], g in STANDARD_GAINS_MM_MV))
        gain_source = "pulse"
    else:
        gain, gain_source = DEFAULT_GAIN_MM_MV, "assumed"
        warnings.append("no calibration pulse found: amplitudes assume 10 mm/mV")
    speed, speed_source = ((float(speed_mm_s), "given") if speed_mm_s
                           else (DEFAULT_SPEED_MM_S, "assumed"))
    cal = Calibration(px, py, gain, speed, scale_source, gain_source, speed_source, skew,
                      pulse_rows=len(gains))

    for r in rows:           # the line's round caps reach half its width beyond its ends
        r.xs, r.xe = r.x0 + max(0.0, thick / 2 - 1), r.x1 - 1 - max(0.0, thick / 2 - 1)
    # trace every row
    margin = int(round(min(15 * ppm, 1.0 * np.median(np.diff([r.y for r in rows]))
                           if len(rows) > 1 else 15 * ppm)))
    paths = []
    for r in rows:
        y_ref = r.baseline if r.baseline is not None else r.y
        paths.append(trace_row(ink, line, r.x0, r.x1, r.top, r.bottom, y_ref, thick, margin))
    release_shared(paths)
    owner = chosen_mask(ink.shape, paths)
    lines = [centre_line(ink, p, thick, owner, i) for i, p in enumerate(paths)]
    del owner
    polys = [poly for poly, _ in lines]
    for r, (poly, tips) in zip(rows, lines):
        r.needles = find_needles(poly, thick, ink, ppm)
        r.tips = tips
        # ink a pixel or two before the traced line's first point is not the line's start
        if len(poly) and r.x0 < poly[0, 0] <= r.x0 + _START_SLACK_PX:
            r.xs += poly[0, 0] - r.x0

    # a common time axis for the rows of the same kind
    labels = _label_marks(mask, rows, polys, thick, ppm)
    layout, assignment, missing = _assign_layout(rows, polys, cal, fs, labels)
    return _assemble(rows, polys, layout, assignment, missing, cal, fs, upright, warnings,
                     edge_px=thick / 2 + 1)


def _row_seconds(row: _Row, cal: Calibration) -> float:
    """Seconds a row spans, snapped to a whole half second when within 1.5 % of one (pages
    print 2.5, 5 or 10 s; the line's caps make the measured extent a pixel or two long)."""
    seconds = (row.xe - row.xs) / cal.px_per_s
    snapped = round(seconds * 2) / 2
    return snapped if snapped > 0 and abs(seconds - snapped) <= 0.015 * snapped else seconds


def _row_signal(poly, row: _Row, cal: Calibration, fs: float, t0: float, t1: float):
    """Samples (mV) of a row's polyline between t0 and t1 seconds after the row's start: the
    line's spike tips each on the sample nearest it and kept as read, the rest smoothed
    (:func:`_smoothed`), pacing spikes as single samples."""
    per_px = fs / cal.px_per_s                      # samples per pixel
    at_tips = []
    if len(row.tips):
        poly = poly.copy()
        for xt, yt in row.tips:
            n = round((xt - row.xs) * per_px)
            poly[(poly[:, 0] == xt) & (poly[:, 1] == yt), 0] = row.xs + n / per_px
            at_tips.append(n)
        poly = poly[np.argsort(poly[:, 0], kind="stable")]
    y, k0 = _sample_polyline(poly, row.xs, cal.px_per_s, t0, t1, fs)
    y, needles = _bridge_needles(_drop_glitches(y, row, cal.px_per_mV), k0, row, cal, fs)
    tips = [n - k0 for n in at_tips if 0 <= n - k0 < len(y)]
    y, kept = _smoothed(y, _SMOOTH_PX * per_px), y[tips]
    y[tips] = kept
    for n, tip in needles:
        y[n] = tip
    base = row.baseline
    if base is None:
        base = float(np.nanmedian(y)) if np.isfinite(y).any() else row.y
    return (base - y) / cal.px_per_mV, k0


def _drop_glitches(y: np.ndarray, row: _Row, px_per_mV: float) -> np.ndarray:
    """A row's samples (page px) with its one- and two-sample excursions beyond its band
    replaced by the median of :data:`_GLITCH_SAMPLES` samples: where another row's stroke
    crosses the line, a few of the line's points come from that stroke. An excursion counts
    when it is more than :data:`_GLITCH_MV` from that median (the drawn signals of the tuning
    records come within 0.45 mV of it) and beyond the row's band, so a pacing spike within
    it stays."""
    from scipy.ndimage import median_filter

    ok = np.flatnonzero(np.isfinite(y))
    if len(ok) < _GLITCH_SAMPLES:
        return y
    v = y[ok]
    med = median_filter(v, _GLITCH_SAMPLES, mode="nearest")
    bad = (np.abs(v - med) > _GLITCH_MV * px_per_mV) & ((v < row.top) | (v > row.bottom))
    out = y.copy()
    out[ok[bad]] = med[bad]
    return out


def _label_marks(mask, rows, polys, thick, ppm) -> np.ndarray:
    """Per row, whether something other than the trace (a lead label, a separator bar) is
    printed at a quarter, the half and three quarters of the row: rows × 3 booleans."""
    traced = np.zeros(mask.shape, np.uint8)
    for poly in polys:
        ok = np.isfinite(poly[:, 1]) if len(poly) else np.zeros(0, bool)
        if ok.sum() > 1:
            pts = np.round(poly[ok] * 4).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(traced, [pts], False, 1, int(thick) + 4, shift=2)
    residual = mask & (traced == 0)
    marks = np.zeros((len(rows), 3), bool)
    for i, r in enumerate(rows):
        for q in range(3):
            x = r.xs + (q + 1) * (r.xe - r.xs) / 4
            win = residual[r.top:r.bottom, max(0, int(x - 1.5 * ppm)): int(x + 8 * ppm)]
            # an upright stroke longer than a label's letters is a pacing spike's line
            _, s, e = _column_runs(win)
            runs = e - s + 1
            ink = runs[runs <= _MARK_STROKE_MM * ppm].sum()
            marks[i, q] = ink > 2.0 * ppm * ppm
    return marks


def _row_slots(rows: list[_Row]) -> list[int]:
    """Each row's position in the page's grid of equally spaced rows (a row that was not found
    leaves its slot empty): the spacing is the typical gap among the smallest ones (baselines
    from the calibration pulses where found)."""
    if len(rows) < 2:
        return list(range(len(rows)))
    ys = np.array([r.baseline if r.baseline is not None else r.y for r in rows])
    gaps = np.diff(ys)
    unit = float(np.median(gaps[gaps <= 1.4 * gaps.min()]))
    return [int(round((y - ys[0]) / unit)) for y in ys]


def _assign_layout(rows, polys, cal, fs, labels):
    """(layout string, per row the list of (lead, panel name) of its columns, leads whose row
    was not found: {lead: reason}).

    Rows sit in equally spaced slots (:func:`_row_slots`; a torn-off or unreadable row leaves a
    gap). 12 slots: 12x1. 6 slots: 3x4 with three rhythm strips when the top three rows carry
    marks (labels, separators) at their quarters and the others do not; 6x2 when marks sit only
    at the half (or the half of three rows and no quarter); otherwise decided by whether most
    of rows 4-6 repeat distinct 3x4 panels closely. 3-5 slots: 3x4 with
    0-2 strips. A strip's lead is the 3x4 panel it repeats (unmatched: "rhythm-k", no lead).
    """
    slots = _row_slots(rows)
    n = max(slots) + 1 if slots else 0
    at = {slot: i for i, slot in enumerate(slots)}
    gone = "its row was not found on the page (torn, covered or too faint)"
    if n == 12:
        missing = {LAYOUT_12X1[k][0]: gone for k in range(12) if k not in at}
        return "12x1", [[(LAYOUT_12X1[k][0],) * 2] for k in slots], missing
    if n == 6:
        quarters = labels[:, [0, 2]].any(axis=1)
        top = [at[k] for k in range(3) if k in at]
        rest = [at[k] for k in range(3, 6) if k in at]
        if quarters[top].sum() >= 2 and quarters[rest].sum() <= 1:
            six_by_two = False
        elif labels[:, 1].sum() >= 4 and quarters.sum() <= 1 or \
                labels[:, 1].sum() >= 3 and not quarters.any():
            six_by_two = True
        else:       # most strips must repeat a panel closely (6x2 rows resemble each other)
            strict = _strips_match(rows, polys, cal, fs, at, strict=True) or {}
            matched = [lead for lead in strict.values() if lead]
            six_by_two = len(set(matched)) * 2 < len(rest)
        if six_by_two:
            missing = {lead: gone for k in range(6) if k not in at for lead in LAYOUT_6X2[k]}
            return "6x2", [[(lead, lead) for lead in LAYOUT_6X2[k]] for k in slots], missing
    if 3 <= n <= 6:
        strips = _strips_match(rows, polys, cal, fs, at) or {}
        assignment, names = [], []
        for k in slots:
            if k < 3:
                assignment.append([(lead, lead) for lead in LAYOUT_3X4[k]])
            else:
                lead = strips.get(k)
                assignment.append([(lead, f"{lead}-rhythm" if lead else f"rhythm-{k - 2}")])
                if lead:
                    names.append(lead)
        missing = {lead: gone for k in range(3) if k not in at for lead in LAYOUT_3X4[k]}
        return "3x4" + ("+" + ",".join(names) if names else ""), assignment, missing
    return None, [[(None, f"row-{i + 1}")] for i in range(len(rows))], {}


_USUAL_STRIPS = ("II", "V1", "V5")


def _strips_match(rows, polys, cal, fs, at: dict[int, int], strict=False):
    """Leads of the rhythm strips (rows in slots 3..), matched against the 3x4 panel printed at
    the same time: {slot: lead or None}; None when no strip repeats any panel."""
    base = [at[k] for k in range(3) if k in at]
    strip_slots = sorted(k for k in at if k >= 3)
    if not strip_slots or not base:
        return {}
    dur = np.median([_row_seconds(rows[i], cal) for i in base])
    q = dur / 4
    panel = {}
    for k in range(3):
        if k in at:
            i = at[k]
            for j in range(4):
                panel[(k, j)] = _despiked(_row_signal(polys[i], rows[i], cal, fs, j * q,
                                                      (j + 1) * q)[0], fs)
    found: dict[int, str | None] = {}
    for slot in strip_slots:
        s = at[slot]
        scores = {}
        segs = [_despiked(_row_signal(polys[s], rows[s], cal, fs, j * q, (j + 1) * q)[0], fs)
                for j in range(4)]
        for (k, j), ref in panel.items():
            seg = segs[j]
            m = min(len(seg), len(ref))
            corr, nrms = 0.0, np.inf
            lags = int(round(_STRIP_LAG_S * fs))
            for lag in range(-lags, lags + 1):
                a, b = seg[max(0, lag):m + min(0, lag)], ref[max(0, -lag):m - max(0, lag)]
                c2, n2 = _segment_corr(a, b)
                if n2 < nrms:
                    corr, nrms = c2, n2
            if corr > (0.95 if strict else 0.8) and nrms < (0.3 if strict else 0.7):
                scores[LAYOUT_3X4[k][j]] = nrms
        if not scores:
            found[slot] = None
            continue
        best = min(scores, key=scores.get)
        # the usual strips win a near tie: II, then V1, V5 (a digitised panel is noisy too)
        for usual in _USUAL_STRIPS:
            if usual in scores and usual not in found.values() and \
                    scores[usual] <= scores[best] + 0.1:
                best = usual
                break
        found[slot] = best
    if all(f is None for f in found.values()):
        return None
    return found


def _hold_ends(y: np.ndarray, start: int, end: int) -> np.ndarray:
    """``y`` with up to ``start`` leading and ``end`` trailing NaN samples set to the nearest
    value read."""
    ok = np.flatnonzero(np.isfinite(y))
    if len(ok):
        if 0 < ok[0] <= start:
            y[:ok[0]] = y[ok[0]]
        if 0 < len(y) - 1 - ok[-1] <= end:
            y[ok[-1] + 1:] = y[ok[-1]]
    return y


def _assemble(rows, polys, layout, assignment, missing, cal, fs, upright, warnings,
              edge_px: float = 0.0) -> Digitized:
    """The :class:`Digitized` page from each row's centre line, cut into its panels at their
    boundaries: a panel's samples past the last point of its own stretch (up to ``edge_px``)
    hold the last value read rather than run into the next lead's line."""
    window = float(np.median([_row_seconds(r, cal) for r in rows]))
    hold = int(np.ceil(edge_px / cal.px_per_s * fs))
    n = int(round(window * fs))
    signal = np.full((n, len(STANDARD_LEADS)), np.nan)
    panels: list[Panel] = []
    lead_panels: dict[str, list[Panel]] = {}
    for i, (r, poly, assigned) in enumerate(zip(rows, polys, assignment)):
        dur = _row_seconds(r, cal)          # rows agree on their ends (_agree_row_ends)
        n_cols = len(assigned)
        for j, (lead, name) in enumerate(assigned):
            t0, t1 = j * dur / n_cols, (j + 1) * dur / n_cols
            xa = r.xs + t0 * cal.px_per_s
            xb = r.xs + t1 * cal.px_per_s
            own = poly
            if n_cols > 1 and len(poly):
                lo = round(xa) - 0.5 if j > 0 else -np.inf
                hi = round(xb) - 0.5 if j < n_cols - 1 else np.inf
                own = poly[(poly[:, 0] >= lo) & (poly[:, 0] < hi)]
            sig, k0 = _row_signal(own, r, cal, fs, t0, t1)
            sig = _fill_short_gaps(sig, int(0.02 * fs))
            if n_cols > 1:
                sig = _hold_ends(sig, hold if j > 0 else 0, hold if j < n_cols - 1 else 0)
            sel = (own[:, 0] >= xa - 0.5) & (own[:, 0] <= xb + 0.5) if len(own) else []
            readable = np.isfinite(sig).mean() if len(sig) else 0.0
            status, reason = OK, ""
            if readable < 0.5:
                status, reason = UNREADABLE, f"trace readable over {readable:.0%} of its panel"
            elif cal.gain_source == "assumed":
                status, reason = UNCALIBRATED, "no calibration pulse: amplitudes assume 10 mm/mV"
            p = Panel(name=name, lead=lead, row=i, col=j,
                      box=(int(xa), int(r.top), int(np.ceil(xb)), int(r.bottom)),
                      baseline_px=float(r.baseline if r.baseline is not None else r.y),
                      x0_px=float(r.xs + k0 / fs * cal.px_per_s), t0_s=k0 / fs, signal_mV=sig,
                      trace_xy=own[sel] if len(own) else own,
                      status=status, reason=reason)
            panels.append(p)
            if lead is not None and status != UNREADABLE:
                lead_panels.setdefault(lead, []).append(p)
    status = {}
    for c, lead in enumerate(STANDARD_LEADS):
        got = sorted(lead_panels.get(lead, []), key=lambda p: -np.isfinite(p.signal_mV).sum())
        for p in reversed(got):                  # longest written last: it wins overlaps
            k0 = int(round(p.t0_s * fs))
            m = min(len(p.signal_mV), n - k0)
            if m <= 0:
                continue
            seg = p.signal_mV[:m]
            dst = signal[k0:k0 + m, c]
            ok = np.isfinite(seg)
            dst[ok] = seg[ok]
        coverage = float(np.isfinite(signal[:, c]).mean())
        if got:
            st = UNCALIBRATED if cal.gain_source == "assumed" else OK
            reason = got[0].reason if st == UNCALIBRATED else ""
            status[lead] = LeadTrace(lead, st, reason, coverage, [p.name for p in got])
        elif lead in missing:
            status[lead] = LeadTrace(lead, UNREADABLE, missing[lead], 0.0)
        elif layout is None:
            status[lead] = LeadTrace(lead, NOT_ON_PAGE, "layout not recognised: rows could not "
                                     "be matched to leads", 0.0)
        else:
            bad = [p for p in panels if p.lead == lead]
            if bad:
                status[lead] = LeadTrace(lead, UNREADABLE, bad[0].reason, 0.0,
                                         [p.name for p in bad])
            else:
                status[lead] = LeadTrace(lead, NOT_ON_PAGE, f"lead {lead} is not printed in the "
                                         f"{layout} layout found", 0.0)
    return Digitized(signal, fs, list(STANDARD_LEADS), layout, cal, panels, status, upright,
                     warnings)
