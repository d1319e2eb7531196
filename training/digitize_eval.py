"""How well does :mod:`pulse_app.ecg.digitize` read pages? Challenge-2024 SNR, measurement errors.

Pages are rendered by the project's renderer (:mod:`pulse_app.ecg.render` + ``distort``) from the
real records in ``../shared/data/`` (never committed, nor any image made from them), digitised,
and scored against the signal that was drawn:

- **SNR** as defined by the George B. Moody PhysioNet Challenge 2024 (our implementation of its
  published scoring): per lead, the reference is the drawn part of the record (samples of a lead
  that were not printed are NaN, as in the Challenge's masked references); the digitised lead is
  first aligned by the Challenge's rule (2-D cross-correlation of the two signals quantised to
  256 levels, Gaussian-smoothed with σ = 0.5; the shift is kept only when within ±0.5 s and
  ±1 mV), then ``SNR = 10 log10(P_signal / P_noise)`` over the samples finite in both, multiplied
  by the fraction of the reference's samples that the digitisation covers. Means are over leads
  and pages (NaN-mean, as the Challenge).
- **Measurements**: :func:`pulse_app.ecg.measure.ecg_measure` on the digitised signals vs the
  same function on the original record (heart rate, QRS, QT; absolute errors, median and mean).

Conditions, reported separately: ``clean`` (the page as printed), ``scan`` (slight rotation within
±2°, yellowing, blur, scanner noise, JPEG 60-90), ``photo`` (the renderer's phone-photo mode:
rotation, perspective, shadow, colour cast, blur, noise, JPEG 20-80), straightened either with
the sidecar's known page-to-image homography (``--straighten oracle``: "oracle straightening")
or as the product does, with :mod:`pulse_app.straighten`'s proposal accepted (``--straighten
app``, the default).

Tuning and evaluation are kept apart. TUNING: records E07505 E07506 E07509 E07514 JS20005 JS20008
(ecg-records) and HR00007 HR00008 (ptbxl), seeds 0-99. EVALUATION: every record of cpsc2018
(incl. snomed-format), cinc-rare-rhythms, ptbxl HR00002 and HR00004, seeds from 1000 — never
looked at while the digitiser was built. E05526/E06320 are skipped (wfdb rejects their headers).
PTB-XL ``HR`` records are rescaled by 200/1000 (the README: their headers say 200/mV, the
integers are µV).

The real ecg-image-kit pages ``ecg-images/00002_hr-0.png`` and ``00004_hr-0.png`` (drawn from
ptbxl HR00002 / HR00004, 3x4 + II strip, 2.5 s per panel) are scored the same way.

    python -m training.digitize_eval                      # evaluation set, all conditions
    python -m training.digitize_eval --set tuning --conditions clean scan
    python -m training.digitize_eval --straighten oracle --json results.json
    python -m training.digitize_eval --set tuning --conditions clean --budget   # where the error lies
    python -m training.digitize_eval --set tuning-tall --pages 6 --budget     # simulated tall QRS
    python -m training.digitize_eval --set tuning-paced --pages 6 --conditions clean  # + pacing
    python -m training.digitize_eval --table results.json other.json   # Markdown table
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve

from pulse_app.ecg.digitize import ecg_digitize
from pulse_app.ecg.records import STANDARD_LEADS, Record, read_record
from pulse_app.ecg.render import render_ecg

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
TUNING_RECORDS = ("ecg-records/E07505", "ecg-records/E07506", "ecg-records/E07509",
                  "ecg-records/E07514", "ecg-records/JS20005", "ecg-records/JS20008",
                  "ptbxl/HR00007", "ptbxl/HR00008")
EVAL_FOLDERS = ("cpsc2018", "cpsc2018/snomed-format", "cinc-rare-rhythms")
EVAL_EXTRA = ("ptbxl/HR00002", "ptbxl/HR00004")
SKIPPED = ("E05526", "E06320")
TUNING_SEED, EVAL_SEED = 0, 1000
#: Layout, gain, grid of page k of a record (cycled): every layout and gain appears.
PAGE_PLAN = (("3x4+II", 10.0, "red"), ("6x2", 10.0, "pink"), ("12x1", 5.0, "grey"),
             ("3x4", 20.0, "green"), ("3x4+II,V1,V5", 10.0, "red"), ("3x4+II", 5.0, "grey"))
CONDITIONS = ("clean", "scan", "photo")
#: Tuning material beyond the 8 tuning records: simulated records (``--set tuning-tall``) whose
#: tall complexes cross the neighbouring rows, as many evaluation pages' do (errors above
#: 0.5 mV cost the evaluation pages 2.5 dB and the tuning records' pages under 1 dB).
TALL_SIMULATED = {
    "lvh": ({"lvh": True}, 1), "lvh-left-axis": ({"lvh": True, "axis": "left"}, 2),
    "lvh-tachycardia": ({"lvh": True, "rate_bpm": 120}, 3),
    "lbbb": ({"qrs": "lbbb", "lvh": True}, 4), "rbbb-lvh": ({"qrs": "rbbb", "lvh": True}, 5),
    "lvh-afib": ({"lvh": True, "rhythm": "afib", "rate_bpm": 100}, 6),
    "lvh-pvc": ({"lvh": True, "ectopy": "pvc"}, 7),
}
#: Tuning material for paced rhythms (``--set tuning-paced``): the tuning records with a pacing
#: spike added 40 ms before each R peak, one sample (500 Hz) of 1-12 mV, the same electrical
#: vector in every beat, projected on the leads (and, in half the records, a second sample of
#: opposite or like sign, up to 30 % of the first): see :func:`with_pacing_spikes`.
PACING_DELAY_S, PACING_MV = 0.04, (1.0, 12.0)
REAL_IMAGES = (("ecg-images/00002_hr-0.png", "ptbxl/HR00002"),
               ("ecg-images/00004_hr-0.png", "ptbxl/HR00004"))
MAX_SHIFT_S, MAX_SHIFT_MV, QUANT_LEVELS = 0.5, 1.0, 256


# -- the Challenge 2024 signal-to-noise ratio ------------------------------------------------------

def _binarise(x: np.ndarray, lo: float, hi: float, length: int) -> np.ndarray:
    img = np.zeros((QUANT_LEVELS, length))
    ok = np.isfinite(x)
    level = np.clip(np.round((QUANT_LEVELS - 1) * (x[ok] - lo) / (hi - lo)), 0, QUANT_LEVELS - 1)
    img[level.astype(int), np.nonzero(ok)[0]] = 1.0
    return gaussian_filter(img, 0.5)


def align_lead(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Shift ``est`` onto ``ref`` (Challenge 2024 rule): returns (shifted estimate, shift in
    samples, vertical shift in the signal's unit). The lag is where the 2-D cross-correlation of
    the quantised, smoothed signal images peaks, relative to the reference's autocorrelation
    peak; the estimate's samples move left by the lag and down by the vertical offset."""
    if not (np.isfinite(ref).any() and np.isfinite(est).any()):
        return est.copy(), 0, 0.0
    lo = min(np.nanmin(ref), np.nanmin(est))
    hi = max(np.nanmax(ref), np.nanmax(est))
    if hi <= lo:
        return est.copy(), 0, 0.0
    length = max(len(ref), len(est))
    a, b = _binarise(ref, lo, hi, length), _binarise(est, lo, hi, length)
    cross = fftconvolve(a, b[::-1, ::-1], mode="full")
    ic = np.unravel_index(np.argmax(cross), cross.shape)
    # the autocorrelation of a non-negative image peaks at zero shift (Cauchy-Schwarz): the
    # middle of the full output, so it need not be computed
    ia = (QUANT_LEVELS - 1, length - 1)
    lag = int(ia[1] - ic[1])
    vt = (ia[0] - ic[0]) / (QUANT_LEVELS - 1) * (hi - lo)
    return shift_lead(est, lag, vt), lag, float(vt)


def shift_lead(est: np.ndarray, lag: int, vt: float) -> np.ndarray:
    """``est`` moved left by ``lag`` samples (right when negative) and down by ``vt``; the
    length is kept (NaN where nothing moved in)."""
    out = np.full(len(est), np.nan)
    if abs(lag) < len(est):
        if lag >= 0:
            out[:len(est) - lag] = est[lag:]
        else:
            out[-lag:] = est[:len(est) + lag]
    return out - vt


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    """Challenge 2024 SNR of one lead (dB), without alignment: over the samples finite in both,
    scaled by the share of the reference's finite samples that the estimate covers; 0 when the
    estimate covers none of them; NaN when the reference has no power or the estimate is exact."""
    n = max(len(ref), len(est))
    r = np.full(n, np.nan)
    e = np.full(n, np.nan)
    r[:len(ref)], e[:len(est)] = ref, est
    ok_ref = np.isfinite(r)
    both = ok_ref & np.isfinite(e)
    if both.sum() == 0:
        return 0.0 if ok_ref.any() else float("nan")
    p_signal = float(np.mean(r[both] ** 2))
    p_noise = float(np.mean((r[both] - e[both]) ** 2))
    if not (p_signal > 0 and p_noise > 0):
        return float("nan")
    return 10 * np.log10(p_signal / p_noise) * both.sum() / ok_ref.sum()


def aligned(ref: np.ndarray, est: np.ndarray, fs: float) -> np.ndarray:
    """``est`` after the Challenge's alignment: shifted onto ``ref`` when the shift is within
    ±0.5 s and ±1 mV, else as it is."""
    shifted, lag, vt = align_lead(ref, est)
    if abs(lag) <= round(MAX_SHIFT_S * fs) and abs(vt) <= MAX_SHIFT_MV:
        return shifted
    return est


def challenge_snr(ref: np.ndarray, est: np.ndarray, fs: float, align: bool = True) -> float:
    """SNR (dB) of one lead after the Challenge's alignment (shift kept if within ±0.5 s, ±1 mV)."""
    return snr_db(ref, aligned(ref, est, fs) if align else est)


#: A sample is on a steep stroke when the reference moves faster than this (mV/s); the QRS
#: window is every sample within QRS_WINDOW_S of one.
STEEP_MV_S, QRS_WINDOW_S = 15.0, 0.03


def error_budget(pairs: list[tuple[np.ndarray, np.ndarray]], fs: float = 500.0) -> dict:
    """Where a digitiser's error lies, over leads given as (reference, aligned estimate).

    ``snr_mean_db``: the leads' mean SNR; ``if_qrs_exact_db`` / ``if_rest_exact_db``: the same
    mean with every sample inside / outside the QRS windows read exactly (samples within
    :data:`QRS_WINDOW_S` of a stroke steeper than :data:`STEEP_MV_S`), so the two say where
    the decibels are lost; ``qrs_share``: the windows' share of the samples;
    ``steep_offset_ms``: quartiles and 5/95th percentiles of the time error on steep strokes
    (the estimate's error over the reference's slope; positive: the estimate is late);
    ``if_errors_capped_db``: the mean SNR with errors above 0.5 mV set to 0.02 mV (what gross
    errors cost). A lead the estimate reads exactly (or not at all) is left out.

    >>> t = np.arange(2500) / 500
    >>> ref = np.exp(-((t % 1 - 0.5) / 0.01) ** 2)         # a 1 mV spike a second
    >>> late = np.interp(t - 0.002, t, ref) + 0.001         # read 2 ms late, 1 µV high
    >>> b = error_budget([(ref, late)])
    >>> round(b["steep_offset_ms"]["50"], 1), round(b["snr_mean_db"]), round(b["if_qrs_exact_db"])
    (2.0, 14, 41)
    """
    base, qrs_exact, rest_exact, capped, shares, offsets = [], [], [], [], [], []
    steep_per_sample = STEEP_MV_S / fs
    half = int(round(QRS_WINDOW_S * fs))
    for ref, est in pairs:
        n = len(ref)
        est = np.concatenate([est, np.full(max(0, n - len(est)), np.nan)])[:n]
        snr = snr_db(ref, est)
        if not np.isfinite(snr):
            continue
        slope = np.gradient(np.nan_to_num(ref))
        steep = np.abs(slope) > steep_per_sample
        window = np.convolve(steep, np.ones(2 * half + 1), "same") > 0
        err = est - ref
        exact = np.where(np.isnan(est), np.nan, ref)    # what was not read stays unread
        base.append(snr)
        qrs_exact.append(snr_db(ref, np.where(window, exact, est)))
        rest_exact.append(snr_db(ref, np.where(window, est, exact)))
        capped.append(snr_db(ref, np.where(np.abs(err) > 0.5, ref + 0.02, est)))
        ok = np.isfinite(err)
        shares.append(float(window[ok].mean()) if ok.any() else 0.0)
        sel = ok & steep
        offsets.append(-err[sel] / slope[sel] / fs * 1000.0)

    def mean(v):
        v = [x for x in v if np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")

    off = np.concatenate(offsets) if offsets else np.zeros(0)
    pct = (np.percentile(off, [5, 25, 50, 75, 95]) if len(off)
           else np.full(5, np.nan))
    return {"leads": len(base), "snr_mean_db": mean(base),
            "if_qrs_exact_db": mean(qrs_exact), "if_rest_exact_db": mean(rest_exact),
            "if_errors_capped_db": mean(capped), "qrs_share": mean(shares),
            "steep_offset_ms": dict(zip(("5", "25", "50", "75", "95"),
                                        (float(x) for x in pct)))}


# -- pages -----------------------------------------------------------------------------------------

def with_pacing_spikes(rec: Record, seed: int) -> Record:
    """``rec`` with a pacing spike before each beat (see :data:`PACING_MV`): where the R peaks
    of lead II are (NeuroKit2), one sample of a fixed vector's projection on each lead.

    >>> rec = with_pacing_spikes(load_record("ecg-records/E07505"), 0)  # doctest: +SKIP
    """
    import neurokit2 as nk

    rng = np.random.default_rng(seed)
    x = rec.signal.astype(np.float64)
    fs = int(rec.fs)
    _, info = nk.ecg_peaks(x[:, rec.leads.index("II")], sampling_rate=fs)
    lo, hi = np.log(PACING_MV[0]), np.log(PACING_MV[1])
    amp, angle = float(np.exp(rng.uniform(lo, hi))), float(rng.uniform(0, 2 * np.pi))
    lead_i, lead_ii = amp * np.cos(angle), amp * np.cos(angle - np.pi / 3)
    vector = {"I": lead_i, "II": lead_ii, "III": lead_ii - lead_i,
              "aVR": -(lead_i + lead_ii) / 2, "aVL": lead_i - lead_ii / 2,
              "aVF": lead_ii - lead_i / 2}
    vector.update({f"V{k}": amp * float(rng.uniform(-1, 1)) for k in range(1, 7)})
    second = float(rng.uniform(-0.3, 0.3)) if rng.random() < 0.5 else 0.0
    for peak in np.asarray(info["ECG_R_Peaks"], int):
        n = peak - int(round(PACING_DELAY_S * fs))
        if 0 < n < len(x) - 1:
            for lead, a in vector.items():
                c = rec.leads.index(lead)
                x[n, c] += a
                x[n + 1, c] += a * second
    rec.signal = x.astype(np.float32)
    return rec


def load_record(name: str) -> Record:
    """A record of ../shared/data by "folder/id" (PTB-XL HR records rescaled to mV), or a
    simulated one of :data:`TALL_SIMULATED` by "sim/<name>", or a tuning record with pacing
    spikes (:func:`with_pacing_spikes`) by "paced/<folder>/<id>"."""
    if name.startswith("paced/"):
        inner = name.removeprefix("paced/")
        return with_pacing_spikes(load_record(inner), TUNING_RECORDS.index(inner))
    if name.startswith("sim/"):
        from pulse_app.ecg.simulate import ecg_simulate

        findings, seed = TALL_SIMULATED[name.removeprefix("sim/")]
        return ecg_simulate(findings, noise_mV=0.01, baseline_wander=True, seed=seed)
    rec = read_record(SHARED / f"{name}.hea")
    if name.startswith("ptbxl/"):
        rec.signal = rec.signal * np.float32(200 / 1000)
    return rec


def record_names(which: str) -> list[str]:
    if which == "tuning":
        return list(TUNING_RECORDS)
    if which == "tuning-tall":
        return [f"sim/{name}" for name in TALL_SIMULATED]
    if which == "tuning-paced":
        return [f"paced/{name}" for name in TUNING_RECORDS]
    names = []
    for folder in EVAL_FOLDERS:
        for hea in sorted((SHARED / folder).glob("*.hea")):
            if hea.stem not in SKIPPED:
                names.append(f"{folder}/{hea.stem}")
    return names + list(EVAL_EXTRA)


def scan_distortions(rng: np.random.Generator) -> dict:
    """A flatbed scan: slight rotation on the white lid, yellowing, blur, noise, JPEG 60-90."""
    return {"rotation": {"angle_deg": round(float(rng.uniform(-2, 2)), 2),
                         "background": [240, 240, 238]},
            "yellowing": True, "blur": {"sigma_mm": round(float(rng.uniform(0.04, 0.1)), 3)},
            "noise": {"sigma": round(float(rng.uniform(1.5, 5)), 2),
                      "seed": int(rng.integers(2**31))},
            "jpeg": {"quality": int(rng.integers(60, 91))}}


def straighten_oracle(pixels: np.ndarray, sidecar: dict) -> np.ndarray:
    """Undo the sidecar's page-to-image homography (what a perfect straightener would do)."""
    homography = np.asarray(sidecar["page_to_image"], np.float64)
    h, w = pixels.shape[:2]
    return cv2.warpPerspective(pixels, np.linalg.inv(homography), (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))


def straighten_app(pixels: np.ndarray) -> np.ndarray:
    """What the product does with a photo: :func:`pulse_app.straighten.propose_straightening`,
    accepted as proposed, then :func:`~pulse_app.straighten.apply_straightening` (a photo with
    no page found goes on as it is)."""
    from pulse_app.straighten import apply_straightening, propose_straightening

    image = Image.fromarray(pixels)
    proposal = propose_straightening(image)
    if proposal.corners is None:
        return pixels
    return np.asarray(apply_straightening(image, proposal.corners, proposal.page_size))


def plan_indices(first: int, pages: int) -> list[int]:
    """:data:`PAGE_PLAN` entries of a record's ``pages`` pages in one condition, when ``first``
    pages were scored before them: consecutive from there, so that six pages are the six
    layouts (records start at different entries, so that one page per record covers them too).

    >>> plan_indices(0, 1), plan_indices(7, 1), sorted(plan_indices(4, 6))
    ([0], [1], [0, 1, 2, 3, 4, 5])
    """
    return [(first + k) % len(PAGE_PLAN) for k in range(pages)]


def make_page(rec: Record, condition: str, k: int, seed: int):
    """(pixels to digitise, sidecar) of page ``k`` of a record under ``condition``."""
    layout, gain, grid = PAGE_PLAN[k % len(PAGE_PLAN)]
    rng = np.random.default_rng([seed, k, CONDITIONS.index(condition)])
    distort = {"clean": "none", "scan": scan_distortions(rng), "photo": "photo"}[condition]
    out = render_ecg(rec, layout=layout, gain_mm_mV=gain, grid=grid, distort=distort,
                     seed=seed + k)
    return out.pixels, out.sidecar


def reference_signals(rec: Record, sidecar: dict, fs: float) -> np.ndarray:
    """The drawn part of each standard lead (samples × 12, mV, NaN where not printed), on the
    page's time axis from 0 s."""
    n = int(round(sidecar["window_s"] * fs))
    ref = np.full((n, len(STANDARD_LEADS)), np.nan)
    for p in sidecar["panels"]:
        c = STANDARD_LEADS.index(p["lead"])
        s0, s1 = int(round(p["t0_s"] * fs)), int(round(p["t1_s"] * fs))
        src = rec.signal[s0:s1 + 1, rec.leads.index(p["lead"])]
        ref[s0:s0 + len(src), c] = src
    return ref


def reference_from_layout(rec: Record, layout_rows, strips, window_s: float, fs: float):
    """Like :func:`reference_signals` for a page not rendered here (equal columns, strips full)."""
    n = int(round(window_s * fs))
    ref = np.full((n, len(STANDARD_LEADS)), np.nan)
    for row in layout_rows:
        col_s = window_s / len(row)
        for j, lead in enumerate(row):
            s0, s1 = int(round(j * col_s * fs)), int(round((j + 1) * col_s * fs))
            src = rec.lead(lead)[s0:s1 + 1]
            ref[s0:s0 + len(src), STANDARD_LEADS.index(lead)] = src
    for lead in strips:
        src = rec.lead(lead)[:n]
        ref[:len(src), STANDARD_LEADS.index(lead)] = src
    return ref


# -- scoring ---------------------------------------------------------------------------------------

@dataclass
class PageScore:
    record: str
    condition: str
    layout: str
    layout_found: str | None
    snr: dict[str, float]
    seconds: float
    measures: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    #: (reference, aligned estimate) per scored lead, for :func:`error_budget`; kept only when
    #: asked (``keep_pairs``: about 1 MB a page), never saved
    pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)

    @property
    def mean_snr(self) -> float:
        vals = [v for v in self.snr.values() if np.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")


MEASURES = (("heart_rate", "bpm"), ("qrs", "ms"), ("qt", "ms"))


def _measure_values(signal: np.ndarray, fs: float) -> dict[str, float | None]:
    from pulse_app.ecg.measure import ecg_measure

    m = ecg_measure(signal, fs, leads=STANDARD_LEADS)
    return {name: m.value(name) for name, _ in MEASURES}


def score_page(rec_name: str, rec: Record, pixels: np.ndarray, ref: np.ndarray, condition: str,
               layout: str, fs: float = 500.0, measure: bool = True,
               original: dict | None = None, keep_pairs: bool = False) -> PageScore:
    start = time.process_time()
    dig = ecg_digitize(pixels)
    seconds = time.process_time() - start
    est = dig.signal if len(dig.signal) else np.full_like(ref, np.nan)
    snr, pairs = {}, []
    for c, lead in enumerate(STANDARD_LEADS):
        if np.isfinite(ref[:, c]).any():
            pairs.append((ref[:, c], aligned(ref[:, c], est[:, c], fs)))
            snr[lead] = snr_db(*pairs[-1])
    score = PageScore(rec_name, condition, layout, dig.layout, snr, seconds,
                      pairs=pairs if keep_pairs else [])
    if measure:
        got = _measure_values(est, fs) if len(dig.signal) else {n: None for n, _ in MEASURES}
        original = original or _measure_values(rec.signal[: int(10 * rec.fs)], rec.fs)
        score.measures = {n: (original[n], got[n]) for n, _ in MEASURES}
    return score


def summarise(scores: list[PageScore]) -> dict:
    out = {}
    for cond in sorted({s.condition for s in scores}, key=lambda c: (c not in CONDITIONS, c)):
        sel = [s for s in scores if s.condition == cond]
        per_lead = [v for s in sel for v in s.snr.values() if np.isfinite(v)]
        row = {"pages": len(sel), "leads": len(per_lead),
               "snr_mean_db": float(np.mean(per_lead)) if per_lead else float("nan"),
               "snr_median_db": float(np.median(per_lead)) if per_lead else float("nan"),
               "page_snr_min_db": float(min(s.mean_snr for s in sel)),
               "layout_correct": sum(s.layout_found == s.layout for s in sel),
               "seconds_median": statistics.median(s.seconds for s in sel)}
        for name, unit in MEASURES:
            errs = [abs(a - b) for s in sel for a, b in [s.measures.get(name, (None, None))]
                    if a is not None and b is not None]
            missing = sum(1 for s in sel if s.measures.get(name, (None, None))[0] is not None
                          and s.measures[name][1] is None)
            row[f"{name}_err_median_{unit}"] = float(np.median(errs)) if errs else float("nan")
            row[f"{name}_err_mean_{unit}"] = float(np.mean(errs)) if errs else float("nan")
            row[f"{name}_not_measured"] = missing
        out[cond] = row
    return out


def evaluate(which: str = "evaluation", conditions=CONDITIONS, pages_per_record: int = 2,
             straighten: str = "app", measure: bool = True, progress=print,
             keep_pairs: bool = False) -> list[PageScore]:
    """Render, digitise and score ``pages_per_record`` pages per record and condition
    (``keep_pairs``: keep each lead's signals for :func:`error_budget`)."""
    seed = EVAL_SEED if which == "evaluation" else TUNING_SEED
    scores = []
    for name in record_names(which):
        rec = load_record(name)
        original = _measure_values(rec.signal[: int(10 * rec.fs)], rec.fs) if measure else None
        for condition in conditions:
            for kk in plan_indices(len(scores), pages_per_record):
                pixels, sidecar = make_page(rec, condition, kk, seed)
                if condition == "photo":
                    pixels = (straighten_oracle(pixels, sidecar) if straighten == "oracle"
                              else straighten_app(pixels))
                ref = reference_signals(rec, sidecar, 500.0)
                s = score_page(name, rec, pixels, ref, condition, sidecar["layout"],
                               measure=measure, original=original, keep_pairs=keep_pairs)
                scores.append(s)
                progress(f"{name:32s} {condition:6s} {sidecar['layout']:13s} -> "
                         f"{str(s.layout_found):13s} SNR {s.mean_snr:6.2f} dB  {s.seconds:.2f} s")
    return scores


def evaluate_real_images(measure: bool = True, progress=print,
                         keep_pairs: bool = False) -> list[PageScore]:
    """The two ecg-image-kit pages whose source records are in ptbxl/ (3x4 + II strip)."""
    from pulse_app.ecg.render import LAYOUT_3X4

    scores = []
    for image_name, rec_name in REAL_IMAGES:
        rec = load_record(rec_name)
        pixels = np.asarray(Image.open(SHARED / image_name).convert("RGB"))
        ref = reference_from_layout(rec, LAYOUT_3X4, ("II",), 10.0, 500.0)
        s = score_page(image_name, rec, pixels, ref, "real", "3x4+II", measure=measure,
                       keep_pairs=keep_pairs)
        scores.append(s)
        progress(f"{image_name:32s} real   -> {s.layout_found}  SNR {s.mean_snr:6.2f} dB "
                 + " ".join(f"{k}:{v:.1f}" for k, v in s.snr.items()))
    return scores


TABLE_COLUMNS = (("pages", "pages", "{:d}"), ("leads", "leads", "{:d}"),
                 ("snr_mean_db", "SNR mean dB", "{:.2f}"),
                 ("snr_median_db", "SNR median dB", "{:.2f}"),
                 ("page_snr_min_db", "worst page dB", "{:.2f}"),
                 ("layout_correct", "layout right", "{:d}"),
                 ("heart_rate_err_median_bpm", "HR err median bpm", "{:.2f}"),
                 ("heart_rate_err_mean_bpm", "HR err mean bpm", "{:.2f}"),
                 ("qrs_err_median_ms", "QRS err median ms", "{:.1f}"),
                 ("qt_err_median_ms", "QT err median ms", "{:.1f}"),
                 ("heart_rate_not_measured", "HR not measured", "{:d}"),
                 ("seconds_median", "CPU s/page", "{:.2f}"))


def markdown_table(results: list[dict]) -> str:
    """A Markdown table of the summaries in ``--json`` result files (one row per set and
    condition), so that documented numbers are the command's own."""
    lines = ["| set | condition | " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |",
             "|---|---|" + "---|" * len(TABLE_COLUMNS)]
    for res in results:
        for cond, row in res["summary"].items():
            name = f"photo ({res['straighten']} straightening)" if cond == "photo" else cond
            cells = [fmt.format(row[k]) if k in row else "" for k, _, fmt in TABLE_COLUMNS]
            lines.append(f"| {res['set']} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=("evaluation", "tuning", "tuning-tall", "tuning-paced"),
                    default="evaluation",
                    help="tuning-tall: simulated records with tall complexes; tuning-paced: the "
                         "tuning records with pacing spikes (both tuning material)")
    ap.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    ap.add_argument("--pages", type=int, default=2, help="pages per record and condition")
    ap.add_argument("--straighten", choices=("oracle", "app"), default="app")
    ap.add_argument("--no-real", action="store_true", help="skip the two real ecg-image-kit pages")
    ap.add_argument("--no-measure", action="store_true", help="SNR only")
    ap.add_argument("--json", type=Path, help="write the summary and per-page scores here")
    ap.add_argument("--budget", action="store_true",
                    help="also print where the error lies (error_budget), per condition")
    ap.add_argument("--table", type=Path, nargs="+", metavar="JSON",
                    help="print a Markdown table of earlier --json results and stop")
    args = ap.parse_args(argv)
    if args.table:
        print(markdown_table([json.loads(p.read_text()) for p in args.table]))
        return 0
    if not SHARED.is_dir():
        print(f"no shared data at {SHARED}", file=sys.stderr)
        return 2
    measure = not args.no_measure
    scores = evaluate(args.set, args.conditions, args.pages, args.straighten, measure,
                      keep_pairs=args.budget)
    if not args.no_real:
        scores += evaluate_real_images(measure, keep_pairs=args.budget)
    summary = summarise(scores)
    label = {"photo": f"photo ({args.straighten} straightening)"}
    print(f"\n{args.set} set; SNR = Challenge 2024 definition with its alignment")
    for cond, row in summary.items():
        print(f"{label.get(cond, cond):28s} " + "  ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    if args.budget:
        print("\nwhere the error lies (error_budget): mean SNR dB as read, with the QRS windows "
              "exact, with the rest exact, with errors > 0.5 mV capped; time error on steep "
              "strokes, ms (5/25/50/75/95th percentiles)")
        for cond in summary:
            b = error_budget([p for sc in scores if sc.condition == cond for p in sc.pairs])
            off = " / ".join(f"{v:+.2f}" for v in b["steep_offset_ms"].values())
            print(f"{label.get(cond, cond):28s} {b['snr_mean_db']:.2f} | QRS exact "
                  f"{b['if_qrs_exact_db']:.2f} | rest exact {b['if_rest_exact_db']:.2f} | "
                  f"capped {b['if_errors_capped_db']:.2f} | QRS windows "
                  f"{100 * b['qrs_share']:.0f} % of samples | steep {off}")
    if args.json:
        args.json.write_text(json.dumps({
            "set": args.set, "straighten": args.straighten, "summary": summary,
            "pages": [{"record": s.record, "condition": s.condition, "layout": s.layout,
                       "layout_found": s.layout_found, "snr": s.snr, "seconds": s.seconds,
                       "measures": s.measures} for s in scores]}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
