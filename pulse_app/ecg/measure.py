"""Measurements of a 12-lead ECG: rate, rhythm regularity, PR, QRS, QT/QTc, frontal axis.

Works on any signals in mV with NaN where a lead was not recorded or not read — the original
record, or what :func:`pulse_app.ecg.digitize.ecg_digitize` read off a page (where most leads
cover only 2.5 s of the 10 s). Each measurement comes with the lead(s) it came from, a
confidence in [0, 1] ("not measurable" with a reason when it cannot be made) and a flag when it
lies outside the usual adult range (:data:`NORMAL_RANGES`).

How: every finite stretch of every lead of at least 1.5 s is cleaned and its R peaks found with
NeuroKit2 (``ecg_clean``, ``ecg_peaks``). Heart rate and RR regularity come from the lead with
the longest run of beats (lead II first when tied; on a 3x4 page without a rhythm strip, the RR
intervals of the four time windows are pooled). The intervals are measured on each lead's
*median beat* (beats aligned on their R peak), which averages out noise and pen jitter:
QRS onset and offset where the slope falls below 10 % of the QRS's steepest slope for 16 ms, the
P wave as the largest deflection 60-300 ms before the QRS (its onset at 20 % of its amplitude),
the T wave's end by the tangent method (steepest descent after the T peak, crossing the
baseline). The page's value is the median over leads. NeuroKit2's own delineators (dwt, peak,
cwt) were tried first: on the normal PTB-XL record HR00007 they put the QRS at 184-232 ms across
leads, so they are not used. QTc is Bazett's (QT / sqrt(RR in s)); the axis is the direction
of the net QRS deflections of leads I and aVF (or I and II, aVF = II - I/2).

Example:
    >>> from pulse_app.ecg.simulate import ecg_simulate
    >>> rec = ecg_simulate({"rate_bpm": 75}, seed=0)
    >>> m = ecg_measure(rec.signal, rec.fs)
    >>> round(m.value("heart_rate") / 5) * 5, m["heart_rate"].lead, m["qrs"].unit  # 75.6 bpm
    (75, 'II', 'ms')
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from pulse_app.ecg.records import STANDARD_LEADS

#: Usual adult ranges (inclusive) and the flag for values below / above them.
NORMAL_RANGES = {
    "heart_rate": (60.0, 100.0, "bradycardia", "tachycardia"),
    "pr": (120.0, 200.0, "short PR", "prolonged PR (first-degree AV block?)"),
    "qrs": (0.0, 119.0, None, "wide QRS"),
    "qt": (None, None, None, None),
    "qtc": (350.0, 460.0, "short QTc", "prolonged QTc"),
    "axis": (-30.0, 90.0, "left axis deviation", "right axis deviation"),
}
UNITS = {"heart_rate": "bpm", "rr_regularity": "", "pr": "ms", "qrs": "ms", "qt": "ms",
         "qtc": "ms", "axis": "deg"}
LABELS = {"heart_rate": "Heart rate", "rr_regularity": "RR regularity", "pr": "PR interval",
          "qrs": "QRS duration", "qt": "QT interval", "qtc": "QTc (Bazett)",
          "axis": "Frontal QRS axis"}
#: RR coefficient of variation above which the rhythm is called irregular.
IRREGULAR_CV = 0.10
MIN_STRETCH_S = 1.5
NOT_MEASURABLE = "not measurable"


@dataclass
class Measurement:
    """One measured quantity: ``value`` in ``unit`` (None when not measurable), the ``lead`` it
    came from ("II", "median of 9 leads", ...), ``confidence`` in [0, 1], ``flag`` when outside
    :data:`NORMAL_RANGES`, ``note`` (how it was made, or why it could not be)."""

    name: str
    value: float | None
    unit: str
    lead: str | None = None
    confidence: float = 0.0
    flag: str | None = None
    note: str = ""

    @property
    def measurable(self) -> bool:
        return self.value is not None

    @property
    def confidence_word(self) -> str:
        if self.value is None:
            return NOT_MEASURABLE
        return "high" if self.confidence >= 0.7 else "medium" if self.confidence >= 0.4 else "low"

    def text(self) -> str:
        """One line for a panel or a report: "Heart rate 72 bpm (lead II, high)"."""
        label = LABELS.get(self.name, self.name)
        if self.value is None:
            return f"{label}: {NOT_MEASURABLE} ({self.note})"
        if self.name == "rr_regularity":
            shown = self.note
        else:
            shown = f"{self.value:.0f} {self.unit}".strip()
        flag = f" — {self.flag}" if self.flag else ""
        return f"{label}: {shown} (lead {self.lead}, {self.confidence_word} confidence){flag}"


@dataclass
class Measurements:
    """All measurements of one ECG, by name (:data:`LABELS`), plus the R peaks found per lead
    (sample indices on the signal's time axis) for drawing."""

    items: dict[str, Measurement]
    r_peaks: dict[str, np.ndarray] = field(default_factory=dict)
    fs: float = 500.0

    def __getitem__(self, name: str) -> Measurement:
        return self.items[name]

    def value(self, name: str) -> float | None:
        return self.items[name].value

    def to_dict(self) -> dict:
        """JSON-able: every measurement's fields, and R peaks in seconds per lead."""
        return {"measurements": {k: asdict(m) | {"confidence_word": m.confidence_word}
                                 for k, m in self.items.items()},
                "r_peaks_s": {lead: [round(float(i) / self.fs, 4) for i in idx]
                              for lead, idx in self.r_peaks.items()}}

    def lines(self) -> list[str]:
        return [m.text() for m in self.items.values()]


def _flag(name: str, value: float | None) -> str | None:
    lo, hi, low_flag, high_flag = NORMAL_RANGES.get(name, (None, None, None, None))
    if value is None:
        return None
    if lo is not None and value < lo:
        return low_flag
    if hi is not None and value > hi:
        return high_flag
    return None


def measured(name: str, value: float, lead: str, confidence: float, note: str = "", *,
             digits: int | None = None) -> Measurement:
    """A measurement of ``name`` with its unit and its range flag (of the value before it is
    rounded to ``digits``): how :func:`ecg_measure` makes them, and a context given to a model
    by hand (:mod:`training.grounded_eval`).

    >>> m = measured("heart_rate", 59.96, "II", 0.9, digits=1)
    >>> m.value, m.unit, m.flag
    (60.0, 'bpm', 'bradycardia')
    """
    shown = float(value) if digits is None else round(float(value), digits)
    return Measurement(name, shown, UNITS[name], lead, confidence, _flag(name, value), note)


def _missing(name: str, why: str) -> Measurement:
    return Measurement(name, None, UNITS[name], None, 0.0, None, why)


def _stretches(x: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """[start, stop) of the finite runs of ``x`` at least ``min_len`` long."""
    ok = np.concatenate([[False], np.isfinite(x), [False]])
    d = np.diff(ok.view(np.int8))
    return [(a, b) for a, b in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0])
            if b - a >= min_len]


def ecg_peaks_stretches(x: np.ndarray, fs: float) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """R peaks of each finite stretch of one lead: [(start, cleaned stretch, peak indices into
    the stretch)], using NeuroKit2's ``ecg_clean`` and ``ecg_peaks`` (method "neurokit")."""
    import neurokit2 as nk

    out = []
    for a, b in _stretches(x, int(MIN_STRETCH_S * fs)):
        seg = np.asarray(x[a:b], np.float64)
        if np.ptp(seg) < 0.05:              # flat: no beats to find
            out.append((a, seg, np.zeros(0, int)))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean = nk.ecg_clean(seg, sampling_rate=fs, method="neurokit")
            try:
                _, info = nk.ecg_peaks(clean, sampling_rate=fs, method="neurokit")
                peaks = np.asarray(info["ECG_R_Peaks"], int)
            except (ValueError, IndexError, ZeroDivisionError):
                peaks = np.zeros(0, int)
        out.append((a, clean, peaks))
    return out


# -- per-lead median beat and its delineation ----------------------------------------------------

@dataclass
class _Beat:
    lead: str
    n_beats: int
    qrs_on: float | None = None      # ms relative to the R peak
    qrs_off: float | None = None
    p_on: float | None = None
    t_end: float | None = None
    net_qrs: float | None = None     # mV, net QRS deflection (positive minus negative)
    t_amp: float | None = None


def _median_beat(stretches, fs: float, rr_s: float):
    pre = int(round(min(0.40, 0.55 * rr_s) * fs))
    post = int(round(min(0.70, 0.85 * rr_s) * fs))
    beats = []
    for _, clean, peaks in stretches:
        for p in peaks:
            if p - pre >= 0 and p + post <= len(clean):
                beats.append(clean[p - pre:p + post])
    if not beats:
        return None, pre, 0
    return np.median(np.asarray(beats), axis=0), pre, len(beats)


def _quiet_run(flags: np.ndarray, start: int, step: int, need: int) -> int | None:
    """First index from ``start`` (moving by ``step``) where ``flags`` stays True ``need`` times."""
    run, i = 0, start
    while 0 <= i < len(flags):
        run = run + 1 if flags[i] else 0
        if run >= need:
            return i - step * (need - 1)
        i += step
    return None


def delineate_beat(beat: np.ndarray, r: int, fs: float, rr_s: float, lead: str = "",
                   n_beats: int = 1) -> _Beat:
    """QRS onset/offset, P onset, T end (ms from the R peak) and net QRS of one median beat."""
    from scipy.ndimage import uniform_filter1d

    out = _Beat(lead, n_beats)
    ms = 1000.0 / fs
    slope = uniform_filter1d(np.abs(np.gradient(beat)), max(1, int(0.008 * fs)))
    w = int(0.08 * fs)
    core = slope[max(0, r - w): r + w]
    if core.size == 0 or core.max() <= 0:
        return out
    quiet = slope < 0.10 * core.max()
    need = max(2, int(0.016 * fs))
    on = _quiet_run(quiet, r - int(0.01 * fs), -1, need)
    off = _quiet_run(quiet, r + int(0.02 * fs), 1, need)
    if on is None or off is None or (r - on) * ms > 150 or (off - r) * ms > 200:
        return out
    out.qrs_on, out.qrs_off = (on - r) * ms, (off - r) * ms
    base = float(np.median(beat[max(0, on - int(0.03 * fs)): on + 1]))
    seg = beat[on:off + 1] - base
    out.net_qrs = float(seg.max() + seg.min())
    # T wave: largest deflection 80 ms after the QRS until 70 % of the RR
    t0, t1 = off + int(0.06 * fs), min(len(beat) - 2, r + int(0.7 * rr_s * fs))
    if t1 - t0 > int(0.1 * fs):
        tw = beat[t0:t1] - base
        k = int(np.argmax(np.abs(tw)))
        amp = float(tw[k])
        out.t_amp = amp
        if abs(amp) >= 0.05:
            sign = 1.0 if amp > 0 else -1.0
            g = np.gradient(beat[t0 + k:t1]) if t1 - (t0 + k) >= 4 else np.zeros(0)
            toward = -sign * g                     # > 0 while returning to the baseline
            if len(g) > 3 and toward.max() > 1e-6:
                j = int(np.argmax(toward))
                i = t0 + k + j
                end = i - (beat[i] - base) / g[j]   # the tangent crosses the baseline
                if i <= end < len(beat) and (end - r) * ms < 0.9 * rr_s * 1000:
                    out.t_end = (end - r) * ms
    # P wave: largest deflection 60-300 ms before the QRS onset
    p0, p1 = max(0, on - int(0.30 * fs)), on - int(0.06 * fs)
    if p1 - p0 > int(0.04 * fs):
        pw = beat[p0:p1] - base
        k = int(np.argmax(np.abs(pw)))
        amp = float(pw[k])
        noise = float(np.std(np.diff(pw))) * 3
        if abs(amp) >= 0.04 and abs(amp) > noise:
            below = np.abs(pw[:k + 1]) < 0.2 * abs(amp)
            idx = np.nonzero(below)[0]
            if len(idx):
                out.p_on = (p0 + idx[-1] - r) * ms
    return out


# -- the whole ECG ------------------------------------------------------------------------------

def _rate_lead(per_lead: dict, fs: float):
    """(lead name(s), RR intervals in s, number of beats) for rate and rhythm.

    Among the leads that cover the longest time, the one whose rate is the median of theirs
    (lead II when it is within 1 bpm of it): one lead with a missed or extra beat does not
    decide. When every lead covers less than 4 s (a 3x4 page without a rhythm strip), the RR
    intervals of one lead per time window (the largest) are pooled.
    """
    spans = {lead: sum(len(c) for _, c, _ in st) / fs for lead, st in per_lead.items()}
    cand = {}
    for lead, st in per_lead.items():
        rr = [np.diff(p) / fs for _, _, p in st if len(p) >= 2]
        if rr and spans[lead] >= 0.8 * max(spans.values()):
            rr = np.concatenate(rr)
            cand[lead] = (60.0 / np.mean(rr), rr, sum(len(p) for _, _, p in st))
    if not cand:
        return None, np.zeros(0), 0
    med = float(np.median([c[0] for c in cand.values()]))
    lead = min(cand, key=lambda k: (abs(cand[k][0] - med), STANDARD_LEADS.index(k)
                                    if k in STANDARD_LEADS else 99))
    if "II" in cand and abs(cand["II"][0] - med) <= 1.0:
        lead = "II"
    _, rr, n_beats = cand[lead]
    if spans[lead] < 4.0:                    # short panels: pool one lead per time window
        windows: dict[int, tuple] = {}
        for name, stretches in per_lead.items():
            for start, clean, p in stretches:
                if len(p) >= 2:
                    key = int(round(start / fs))
                    amp = float(np.ptp(clean))
                    if key not in windows or amp > windows[key][0]:
                        windows[key] = (amp, name, np.diff(p) / fs, len(p))
        if len(windows) > 1:
            rr = np.concatenate([w[2] for w in windows.values()])
            names = sorted({w[1] for w in windows.values()},
                           key=lambda k: STANDARD_LEADS.index(k) if k in STANDARD_LEADS else 99)
            return ", ".join(names), rr, sum(w[3] for w in windows.values())
    return lead, rr, n_beats


def ecg_measure(signals: np.ndarray, fs: float, leads=STANDARD_LEADS) -> Measurements:
    """Measure an ECG: ``signals`` (samples × leads, mV, NaN allowed), ``fs`` in Hz, ``leads``
    naming the columns. Returns :class:`Measurements` (see the module docstring)."""
    signals = np.asarray(signals, np.float64)
    leads = list(leads)
    if signals.ndim != 2 or signals.shape[1] != len(leads):
        raise ValueError(f"signals must be samples × {len(leads)} leads")
    per_lead = {}
    r_peaks = {}
    for c, lead in enumerate(leads):
        st = ecg_peaks_stretches(signals[:, c], fs)
        if st:
            per_lead[lead] = st
            r_peaks[lead] = np.concatenate([a + p for a, _, p in st]) if st else np.zeros(0, int)
    items: dict[str, Measurement] = {}
    rate_lead, rr, n_beats = _rate_lead(per_lead, fs)
    if len(rr) == 0:
        why = "no lead with two beats" if per_lead else "no readable lead of at least 1.5 s"
        for name in UNITS:
            items[name] = _missing(name, why)
        return Measurements(items, r_peaks, fs)

    rr = rr[(rr > 0.2) & (rr < 3.0)]
    if len(rr) == 0:
        for name in UNITS:
            items[name] = _missing(name, "no plausible RR interval")
        return Measurements(items, r_peaks, fs)
    rr_mean = float(np.mean(rr))
    hr = 60.0 / rr_mean
    conf = min(1.0, len(rr) / 6) * (1.0 if np.std(rr) / rr_mean < 0.25 else 0.6)
    items["heart_rate"] = measured("heart_rate", hr, rate_lead, round(conf, 2),
                                   f"{len(rr)} RR intervals", digits=1)
    cv = float(np.std(rr) / rr_mean)
    if len(rr) >= 3:
        regular = cv < IRREGULAR_CV
        word = "regular" if regular else "irregular"
        items["rr_regularity"] = Measurement(
            "rr_regularity", round(cv, 3), "", rate_lead, round(min(1.0, len(rr) / 8), 2),
            None if regular else "irregular rhythm",
            f"{word} (RR coefficient of variation {cv:.2f}, {len(rr)} intervals)")
    else:
        items["rr_regularity"] = _missing("rr_regularity", "fewer than 3 RR intervals")

    rr_med = float(np.median(rr))
    beats = []
    for lead, stretches in per_lead.items():
        beat, r, n = _median_beat(stretches, fs, rr_med)
        if beat is not None:
            beats.append(delineate_beat(beat, r, fs, rr_med, lead, n))

    def combine(name, values_by_lead, min_leads=1, prefer=()):
        vals = {k: v for k, v in values_by_lead.items() if v is not None and np.isfinite(v)}
        if len(vals) < min_leads:
            return None
        arr = np.array(list(vals.values()))
        med = float(np.median(arr))
        iqr = float(np.subtract(*np.percentile(arr, [75, 25]))) if len(arr) > 1 else 0.0
        spread = 1.0 - min(1.0, iqr / max(1.0, 0.3 * abs(med)))
        conf = spread * min(1.0, len(arr) / 4)
        lead = next((p for p in prefer if p in vals), None)
        where = lead if len(arr) == 1 and lead else (next(iter(vals)) if len(arr) == 1
                                                      else f"median of {len(arr)} leads")
        return measured(name, med, where, round(conf, 2), digits=1)

    qrs = {b.lead: (b.qrs_off - b.qrs_on) for b in beats if b.qrs_on is not None}
    items["qrs"] = combine("qrs", qrs) or _missing("qrs", "no QRS complex delineated")
    pr = {b.lead: (b.qrs_on - b.p_on) for b in beats if b.p_on is not None and b.qrs_on is not None}
    items["pr"] = (combine("pr", pr, min_leads=2, prefer=("II",))
                   or _missing("pr", "no P wave found in two leads (atrial fibrillation, noise or "
                               "too little signal)"))
    qt = {b.lead: (b.t_end - b.qrs_on) for b in beats
          if b.t_end is not None and b.qrs_on is not None and abs(b.t_amp or 0) >= 0.08}
    qtm = combine("qt", qt, min_leads=2)
    if qtm is None:
        items["qt"] = _missing("qt", "T wave end not found in two leads")
        items["qtc"] = _missing("qtc", "needs the QT interval")
    else:
        items["qt"] = qtm
        qtc = qtm.value / np.sqrt(rr_med)
        items["qtc"] = measured("qtc", qtc, qtm.lead, qtm.confidence,
                                f"Bazett, RR {rr_med * 1000:.0f} ms", digits=1)
    items["axis"] = _axis({b.lead: b.net_qrs for b in beats if b.net_qrs is not None})
    order = ["heart_rate", "rr_regularity", "pr", "qrs", "qt", "qtc", "axis"]
    return Measurements({k: items[k] for k in order}, r_peaks, fs)


def _axis(net: dict[str, float]) -> Measurement:
    """Frontal QRS axis (degrees) from net QRS deflections: leads I and aVF, else I and II."""
    if "I" in net and "aVF" in net:
        x, y, used = net["I"], net["aVF"], "I, aVF"
    elif "I" in net and "II" in net:
        x, y, used = net["I"], net["II"] - net["I"] / 2, "I, II"
    else:
        return _missing("axis", "needs the QRS of leads I and aVF (or I and II)")
    size = float(np.hypot(x, y))
    if size < 0.05:
        return _missing("axis", "QRS too small in the limb leads")
    angle = float(np.degrees(np.arctan2(y, x)))
    conf = round(min(1.0, size / 0.5), 2)
    flag = _flag("axis", angle)
    if angle < -90:
        flag = "extreme axis deviation"
    return Measurement("axis", round(angle, 0), "deg", used, conf, flag, "")


#: What the instruction data takes from a record's own signal (training.instruct): the rate only.
#: The intervals are measured on the median beat above, but they are not yet checked against
#: the labels of real records, so the instruction data does not state them from the signal.
RELIABLE = ("heart_rate_bpm",)
#: Name of the method, as instruction sample metadata records it.
METHOD = "signal (neurokit2 ecg_peaks, mean R-R interval)"


def ecg_measure_record(record) -> dict[str, float]:
    """The :data:`RELIABLE` measurements of a :class:`~pulse_app.ecg.records.Record`, keyed as
    ``Record.measurements`` (``heart_rate_bpm``); missing when not measurable.

    >>> from pulse_app.ecg.simulate import ecg_simulate
    >>> m = ecg_measure_record(ecg_simulate({"rate_bpm": 72}, seed=1))
    >>> 70 <= m["heart_rate_bpm"] <= 75
    True
    """
    rate = ecg_measure(record.signal, record.fs, record.leads).value("heart_rate")
    return {} if rate is None else {"heart_rate_bpm": round(float(rate), 1)}
