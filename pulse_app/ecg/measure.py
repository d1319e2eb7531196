"""Heart rate and intervals measured from a recorded signal with NeuroKit2.

For sources that come without measurements (CinC, PTB-XL, CODE-15%), the instruction data states
a rate and intervals only where it can measure them: R peaks on one lead (``ecg_peaks``), waves
delineated around them (``ecg_delineate``, discrete wavelet method), the median over beats.
Values outside physiological ranges are left out rather than guessed.

>>> from pulse_app.ecg.simulate import ecg_simulate
>>> m = ecg_measure(ecg_simulate({"rate_bpm": 72}, seed=1))
>>> 70 <= m["heart_rate_bpm"] <= 75
True

The rate is robust. The intervals are not, on real 12-lead records: on the shared samples the
delineation gave QRS 162-166 ms for two normal records and PR 70-88 ms for two of three
first-degree AV blocks, so the instruction data states only :data:`RELIABLE` from the signal.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pulse_app.ecg.records import Record

#: Plausible ranges (ms) of what :func:`ecg_measure` returns; values outside are dropped.
RANGES_MS = {"pr_ms": (80, 400), "qrs_ms": (50, 220), "qt_ms": (200, 650)}
#: Lead measured first, then the others in this order if it fails.
LEADS = ("II", "V5", "I", "V2", "aVF")
#: What the instruction data takes from the signal (the rest disagreed with labels, see above).
RELIABLE = ("heart_rate_bpm",)
#: Name of the method, as sample metadata records it.
METHOD = "signal (neurokit2 ecg_peaks, mean R-R interval)"


def ecg_measure(record: "Record", lead: str | None = None) -> dict[str, float]:
    """Heart rate (bpm, from the mean R-R interval) and the median PR, QRS, QT (ms) and
    Bazett QTc (ms) of one lead of ``record``. Keys as in ``Record.measurements``; a value that
    cannot be measured is missing. ``lead``: the lead to use (default: :data:`LEADS` in turn).
    """
    import neurokit2 as nk

    leads = [lead] if lead else [name for name in LEADS if name in record.leads]
    for name in leads or record.leads[:1]:
        signal = np.asarray(record.lead(name), dtype=np.float64)
        fs = int(round(record.fs))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                clean = nk.ecg_clean(signal, sampling_rate=fs)
                _, info = nk.ecg_peaks(clean, sampling_rate=fs)
            except Exception:           # NeuroKit raises on flat or odd signals
                continue
            peaks = np.asarray(info["ECG_R_Peaks"], dtype=int)
            if len(peaks) < 4:
                continue
            rr_s = np.diff(peaks) / fs
            out = {"heart_rate_bpm": round(60.0 / float(np.mean(rr_s)), 1)}
            try:
                _, waves = nk.ecg_delineate(clean, peaks, sampling_rate=fs, method="dwt")
            except Exception:
                return out
        onsets = _ms(waves, "ECG_R_Onsets", fs)
        spans = {"pr_ms": _span(_ms(waves, "ECG_P_Onsets", fs), onsets),
                 "qrs_ms": _span(onsets, _ms(waves, "ECG_R_Offsets", fs)),
                 "qt_ms": _span(onsets, _ms(waves, "ECG_T_Offsets", fs))}
        for key, value in spans.items():
            low, high = RANGES_MS[key]
            if value is not None and low <= value <= high:
                out[key] = round(value)
        if "qt_ms" in out:
            out["qtc_ms"] = round(out["qt_ms"] / np.sqrt(float(np.mean(rr_s))))
        return out
    return {}


def _ms(waves: dict, key: str, fs: int) -> np.ndarray:
    values = np.asarray(waves.get(key, []), dtype=np.float64)
    return values * 1000.0 / fs


def _span(start: np.ndarray, end: np.ndarray) -> float | None:
    """Median of ``end - start`` over beats where both are found."""
    n = min(len(start), len(end))
    if n == 0:
        return None
    d = end[:n] - start[:n]
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if len(d) >= 3 else None
