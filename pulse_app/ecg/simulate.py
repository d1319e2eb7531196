"""Synthetic 12-lead ECGs with controllable, labelled findings, for training data and teaching.

The heart is modelled as one moving dipole (x: to the patient's left, y: inferior, z: anterior).
Every wave is a sum of Gaussian "bumps" in time, each with a 3-D direction: P (right then left
atrium), QRS (septum rightward-anterior, apex, posterobasal wall, terminal basal forces), T, U, and
for the findings extra forces (late rightward-anterior RV activation in RBBB, slow left-posterior
activation in LBBB, injury currents for ST shifts, fibrillatory or flutter waves). The dipole is
projected onto leads I, II and V1–V6; III, aVR, aVL, aVF are derived from I and II, so Einthoven's
law holds exactly (III = II − I, aVR = −(I+II)/2, aVL = I − II/2, aVF = II − I/2). Leads
therefore differ plausibly: V1 rS, V6 qR, aVR negative, R-wave progression across the chest.

Each record comes with its ground truth: ``labels`` (canonical strings of :data:`FINDINGS`),
``measurements`` (computed from what was generated, not copied from the request) and ``findings``
(the request as a plain dict).

>>> rec = ecg_simulate({"rate_bpm": 48, "qrs": "rbbb"}, seed=1)
>>> rec.signal.shape, rec.labels
((5000, 12), ['sinus bradycardia', 'right bundle branch block'])
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from pulse_app.ecg.records import STANDARD_LEADS, Record
from pulse_app.errors import FindingsInvalid

RHYTHM_FINDINGS = ("sinus rhythm", "sinus bradycardia", "sinus tachycardia", "sinus arrhythmia",
                   "atrial fibrillation", "atrial flutter")
#: Every canonical finding label, exactly as records, instructions and evaluation spell them.
FINDINGS = RHYTHM_FINDINGS + (
    "premature ventricular contractions", "premature atrial contractions",
    "first-degree av block", "right bundle branch block", "left bundle branch block",
    "left axis deviation", "right axis deviation",
    "inferior st elevation", "anterior st elevation", "lateral st elevation",
    "inferior st depression", "anterior st depression", "lateral st depression", "t-wave inversion",
    "long qt", "low qrs voltage", "left ventricular hypertrophy",
)
#: Leads of each territory.
TERRITORIES = {"inferior": ("II", "III", "aVF"), "anterior": ("V1", "V2", "V3", "V4"),
               "lateral": ("I", "aVL", "V5", "V6")}


@dataclass
class Findings:
    """What to simulate. Intervals in ms, voltages in mV, rate in beats per minute.

    ``rhythm``: "sinus" | "sinus_arrhythmia" | "afib" | "aflutter"; ``ectopy``: None | "pvc" |
    "pac"; ``qrs``: "normal" | "rbbb" | "lbbb"; ``axis``: "normal" | "left" | "right";
    ``st``: territory -> mV (+ elevation, − depression), e.g. ``{"inferior": 0.2}``;
    ``t_inversion``: territories with inverted T waves.
    """

    rate_bpm: float = 75.0
    rhythm: str = "sinus"
    ectopy: str | None = None
    pr_ms: float = 160.0
    qrs: str = "normal"
    axis: str = "normal"
    st: dict = field(default_factory=dict)
    t_inversion: list = field(default_factory=list)
    qt_long: bool = False
    low_voltage: bool = False
    lvh: bool = False

    def __post_init__(self):
        choices = {"rhythm": ("sinus", "sinus_arrhythmia", "afib", "aflutter"),
                   "ectopy": (None, "pvc", "pac"), "qrs": ("normal", "rbbb", "lbbb"),
                   "axis": ("normal", "left", "right")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise FindingsInvalid(
                    f"{name}={getattr(self, name)!r} is not a finding we simulate",
                    hint=f"choose one of {allowed}")
        if not 25 <= float(self.rate_bpm) <= 250:
            raise FindingsInvalid(f"rate_bpm={self.rate_bpm} is out of range",
                                  hint="choose 25-250 beats per minute")
        if self.ectopy == "pac" and self.rhythm in ("afib", "aflutter"):
            raise FindingsInvalid(f"premature atrial contractions cannot occur in {self.rhythm}",
                                  hint="choose sinus rhythm, or PVCs instead")
        if self.low_voltage and self.lvh:
            raise FindingsInvalid("low QRS voltage and LVH voltage contradict each other",
                                  hint="choose one of them")
        if not 60 <= float(self.pr_ms) <= 400:
            raise FindingsInvalid(f"pr_ms={self.pr_ms} is out of range", hint="choose 60-400 ms")
        self.st = {str(k): float(v) for k, v in dict(self.st).items()}
        self.t_inversion = sorted(set(self.t_inversion))
        for territory in [*self.st, *self.t_inversion]:
            if territory not in TERRITORIES:
                raise FindingsInvalid(f"territory {territory!r} is unknown",
                                      hint=f"choose from {tuple(TERRITORIES)}")

    @classmethod
    def from_any(cls, value: "Findings | dict | None") -> "Findings":
        if value is None:
            return cls()
        if isinstance(value, cls):
            return cls(**asdict(value))
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise FindingsInvalid(f"unknown findings {sorted(unknown)}",
                                  hint=f"use the fields {sorted(known)}")
        return cls(**value)


# -- geometry ---------------------------------------------------------------------------------

def _unit(*v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def _frontal(angle_deg: float, z: float = 0.0) -> np.ndarray:
    a = np.radians(angle_deg)
    return _unit(np.cos(a), np.sin(a), z)


def _chest(angle_deg: float, gain: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return gain * np.array([np.cos(a), 0.0, np.sin(a)])


#: Lead vectors of the independent leads I, II, V1..V6 (rows), in the dipole's x/y/z frame.
_INDEPENDENT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
_LEAD_MATRIX = np.stack([_frontal(0), _frontal(60), _chest(115, 1.0), _chest(95, 1.5),
                         _chest(75, 1.6), _chest(55, 1.5), _chest(30, 1.3), _chest(0, 1.1)]).T


def _twelve(ind: np.ndarray) -> np.ndarray:
    """(samples × 8 independent leads) -> (samples × 12 standard leads), Einthoven-consistent."""
    lead_i, lead_ii = ind[:, 0], ind[:, 1]
    out = np.empty((ind.shape[0], 12), dtype=np.float32)
    out[:, 0], out[:, 1], out[:, 2] = lead_i, lead_ii, lead_ii - lead_i
    out[:, 3] = -(lead_i + lead_ii) / 2
    out[:, 4] = lead_i - lead_ii / 2
    out[:, 5] = lead_ii - lead_i / 2
    out[:, 6:] = ind[:, 2:]
    return out


def _project12(vector: np.ndarray) -> np.ndarray:
    """Lead values (12) of one dipole vector."""
    return _twelve((np.asarray(vector) @ _LEAD_MATRIX)[None, :])[0]


_TERRITORY_DIR = {"inferior": _unit(0.0, 1.0, 0.0), "anterior": _unit(0.2, -0.2, 1.0),
                  "lateral": _unit(0.9, -0.3, 0.3)}
_LEAD_INDEX = {name: i for i, name in enumerate(STANDARD_LEADS)}


# -- wave components --------------------------------------------------------------------------
# A component: (centre s, sigma before centre s, sigma after centre s, amplitude mV, direction).

@dataclass
class _Waves:
    centre: list = field(default_factory=list)
    sig_l: list = field(default_factory=list)
    sig_r: list = field(default_factory=list)
    amp: list = field(default_factory=list)
    dirs: list = field(default_factory=list)

    def add(self, centre, sigma_l, sigma_r, amp, direction):
        self.centre.append(centre)
        self.sig_l.append(sigma_l)
        self.sig_r.append(sigma_r)
        self.amp.append(amp)
        self.dirs.append(direction)

    def extend_shifted(self, template: "_Waves", t0: float, scale: float = 1.0):
        self.centre += [c + t0 for c in template.centre]
        self.sig_l += template.sig_l
        self.sig_r += template.sig_r
        self.amp += [a * scale for a in template.amp]
        self.dirs += template.dirs


def _render_waves(waves: _Waves, n: int, fs: float) -> np.ndarray:
    """Sum of the components' asymmetric Gaussians as an (n × 3) dipole signal (vectorised)."""
    dipole = np.zeros((n, 3))
    if not waves.centre:
        return dipole
    centre = np.asarray(waves.centre)
    sig_l, sig_r = np.asarray(waves.sig_l), np.asarray(waves.sig_r)
    amp, dirs = np.asarray(waves.amp), np.asarray(waves.dirs)
    half = int(np.ceil(4.0 * max(sig_l.max(), sig_r.max()) * fs))
    idx = np.round(centre * fs).astype(np.int64)[:, None] + np.arange(-half, half + 1)
    dt = idx / fs - centre[:, None]
    sigma = np.where(dt < 0, sig_l[:, None], sig_r[:, None])
    g = amp[:, None] * np.exp(-0.5 * (dt / sigma) ** 2)
    ok = (idx >= 0) & (idx < n)
    flat_idx, flat_g = idx[ok], g[ok]
    rows = np.nonzero(ok)[0]
    for d in range(3):
        dipole[:, d] = np.bincount(flat_idx, weights=flat_g * dirs[rows, d], minlength=n)
    return dipole


@dataclass
class _Beat:
    """Waves of one kind of beat, times relative to its QRS onset (s)."""
    qrs: _Waves
    t: _Waves


def _qrs_waves(f: Findings, axis_deg: float, rng: np.random.Generator) -> _Waves:
    j = lambda s: 1.0 + s * rng.standard_normal()           # noqa: E731  (small jitter)
    w = _Waves()
    frontal = lambda a, z: _frontal(axis_deg + a, z)         # noqa: E731
    if f.qrs == "lbbb":
        # septum activated right -> left: no septal q; slow, notched leftward-posterior forces
        w.add(0.020, 0.010, 0.010, 0.25 * j(.1), frontal(-10, -0.6))
        w.add(0.052, 0.017, 0.017, 1.05 * j(.1), frontal(0, -0.55))
        w.add(0.112, 0.019, 0.019, 1.10 * j(.1), frontal(-15, -0.6))
        return w
    w.add(0.013, 0.0055, 0.0055, 0.30 * j(.1), _unit(-0.7, 0.15, 0.75))     # septal
    w.add(0.038, 0.0095, 0.0095, 1.10 * j(.1), frontal(0, 0.45))             # apical
    w.add(0.052, 0.0095, 0.0095, 0.85 * j(.1), frontal(-15, -1.3))           # posterobasal
    w.add(0.071, 0.0080, 0.0080, 0.30 * j(.1), _unit(-0.35, -0.7, -0.55))    # terminal
    if f.qrs == "rbbb":
        # late, slow right-ventricular activation: R' in V1, wide S in I/V6
        w.add(0.115, 0.019, 0.019, 0.70 * j(.1), _unit(-0.45, 0.0, 0.9))
    return w


def _qrs_span(w: _Waves) -> tuple[float, float]:
    c, sl, sr = np.asarray(w.centre), np.asarray(w.sig_l), np.asarray(w.sig_r)
    return float(np.min(c - 2.5 * sl)), float(np.max(c + 2.5 * sr))


def _qrs_template(waves: _Waves, fs: float) -> np.ndarray:
    """12-lead QRS of one beat on a local grid starting at onset (samples × 12)."""
    start, end = _qrs_span(waves)
    n = int(np.ceil((end - start + 0.05) * fs))
    shifted = _Waves()
    shifted.extend_shifted(waves, -start + 0.01)
    return _twelve(_render_waves(shifted, n, fs) @ _LEAD_MATRIX)


def _axis_of(twelve: np.ndarray) -> float:
    """Frontal QRS axis (deg) from the net QRS areas of I and aVF."""
    area_i = twelve[:, _LEAD_INDEX["I"]].sum()
    area_avf = twelve[:, _LEAD_INDEX["aVF"]].sum()
    return float(np.degrees(np.arctan2(area_avf / np.sin(np.radians(60)), area_i)))


def _rate_label(rate: float) -> str:
    if rate < 60:
        return "sinus bradycardia"
    return "sinus tachycardia" if rate > 100 else "sinus rhythm"


# -- the simulator ----------------------------------------------------------------------------

AXIS_TARGET_DEG = {"normal": 50.0, "left": -55.0, "right": 120.0}


def ecg_simulate(findings: Findings | dict | None = None, *, duration_s: float = 10.0,
                 fs: float = 500, noise_mV: float = 0.0, baseline_wander: bool = False,
                 seed: int = 0) -> Record:
    """A synthetic 12-lead ECG (mV) with the requested findings, its labels and measurements.

    ``findings``: a :class:`Findings` or a dict of its fields (``None``: normal sinus rhythm at
    75 bpm). ``noise_mV``: standard deviation of white noise added per electrode lead;
    ``baseline_wander``: slow respiratory drift (~0.1–0.3 Hz, ~0.1 mV). Same ``seed`` and
    arguments -> identical record.

    >>> rec = ecg_simulate({"rhythm": "afib", "rate_bpm": 110}, seed=3)
    >>> rec.labels[0], "pr_ms" in rec.measurements
    ('atrial fibrillation', False)
    """
    f = Findings.from_any(findings)
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * fs))

    # 1. conducted beat: QRS with the requested axis and voltage -----------------------------
    target_axis = AXIS_TARGET_DEG[f.axis] + rng.uniform(-8, 8)
    jitter_seed = int(rng.integers(2**32))
    axis_set = target_axis
    for _ in range(6):                       # steer the measured axis onto the target
        qrs = _qrs_waves(f, axis_set, np.random.default_rng(jitter_seed))
        template = _qrs_template(qrs, fs)
        error = (target_axis - _axis_of(template) + 180) % 360 - 180
        if abs(error) < 3:
            break
        axis_set += 0.8 * error
    limb = template[:, :6]
    limb_p2p = float((limb.max(0) - limb.min(0)).max())
    sokolow = float(-template[:, _LEAD_INDEX["V1"]].min() + template[:, _LEAD_INDEX["V5"]].max())
    if f.low_voltage:
        volt = rng.uniform(0.30, 0.42) / limb_p2p
    elif f.lvh:
        volt = rng.uniform(3.9, 4.8) / sokolow
    else:
        volt = rng.uniform(0.85, 1.25)
        volt = min(volt, 3.0 / sokolow)                     # stay below LVH voltage criteria
        volt = max(volt, 0.8 / limb_p2p)                    # and above low-voltage criteria
    qrs.amp = [a * volt for a in qrs.amp]
    template = template * volt
    q_start, q_end = _qrs_span(qrs)
    qrs.centre = [c - q_start for c in qrs.centre]          # QRS onset at t = 0
    qrs_end = q_end - q_start

    # 2. rhythm: beat times (QRS onsets), kinds ------------------------------------------------
    rr = 60.0 / f.rate_bpm
    flutter_ratio = None              # atrial flutter: F waves at ~300/min, 2:1, 3:1 or 4:1
    if f.rhythm == "aflutter":
        flutter_ratio = int(np.clip(round(300.0 / f.rate_bpm), 2, 4))
    onsets, kinds = _beat_schedule(f, rr, duration_s, rng)

    # 3. repolarisation: QT from Bazett on the mean RR ---------------------------------------
    qtc = rng.uniform(500, 540) if f.qt_long else rng.uniform(390, 430)
    qt = qtc / 1000.0 * np.sqrt(rr)
    qt = max(qt, qrs_end + 0.12)
    if not f.qt_long:                       # wide QRS at fast rates must not read as long QT
        qt = min(qt, 0.455 * np.sqrt(rr))
    t_end = qt
    sig_down = min(0.045 if not f.qt_long else 0.06, (qt - qrs_end) / 4)
    t_peak = t_end - 2.4 * sig_down
    sig_up = max((t_peak - qrs_end - 0.02) / 2.4, 0.02)
    t_dir = _frontal(axis_set if f.axis == "normal" else 45.0, 0.35) * rng.uniform(0.28, 0.40)
    if f.qrs == "rbbb":
        t_dir = t_dir + 0.15 * _unit(0.7, 0.0, -0.7)
    if f.qrs == "lbbb":
        t_dir = -_frontal(axis_set, -0.6) * 0.35               # discordant T
    if f.lvh:
        t_dir = t_dir - 0.18 * _unit(0.9, -0.2, 0.2)             # lateral strain tendency
    for territory in f.t_inversion:
        t_dir = _invert_t(t_dir, territory)
    st_vec = np.zeros(3)
    for territory, mv in f.st.items():
        st_vec += _st_vector(territory, mv)
    if f.qrs == "lbbb":
        st_vec += -0.08 * _frontal(axis_set, -0.6)

    # 4. assemble every beat ------------------------------------------------------------------
    waves = _Waves()
    st_beats = []
    p_right, p_left = _unit(0.25, 0.85, 0.45), _unit(0.85, 0.45, -0.45)
    p_amp = rng.uniform(0.10, 0.16)
    # small U wave after T, anterior (V2-V3), clearest at slow rates, absent above ~130/min
    u_amp, u_dir = 0.05 * float(np.clip((rr - 0.45) / 0.6, 0, 1)), _unit(0.3, 0.2, 1.0)
    pvc = _pvc_waves(rng)
    previous = np.concatenate([[rr], np.diff(onsets)])       # RR before each beat
    for onset, kind, rr_before in zip(onsets, kinds, previous):
        resp = 1.0 + 0.04 * np.sin(2 * np.pi * onset / 4.0)
        # repolarisation follows the preceding cycle (QT ~ sqrt(RR)): matters in AF and ectopy
        k = float(np.clip(np.sqrt(rr_before / rr), 0.8, 1.12))
        if kind == "pvc":
            waves.extend_shifted(pvc.qrs, onset, 1.0)
            waves.extend_shifted(pvc.t, onset, 1.0)
            continue
        if kind in ("sinus", "pac"):
            p_on = onset - f.pr_ms / 1000.0
            if kind == "pac":
                waves.add(p_on + 0.045, 0.018, 0.018, p_amp * 0.9, _unit(0.4, -0.8, 0.4))
            else:
                waves.add(p_on + 0.035, 0.015, 0.015, p_amp, p_right)
                waves.add(p_on + 0.065, 0.015, 0.015, p_amp * 0.75, p_left)
        waves.extend_shifted(qrs, onset, resp)
        waves.add(onset + qrs_end + (t_peak - qrs_end) * k, sig_up * k, sig_down * k, resp, t_dir)
        if u_amp > 0:
            waves.add(onset + (qt + 0.09) * k, 0.035, 0.035, u_amp, u_dir)
        st_beats.append((onset, k))
    dipole = _render_waves(waves, n, fs)
    if np.any(st_vec):
        plateau = _st_plateau(st_beats, qrs_end, t_peak, sig_down, n, fs)
        dipole += plateau[:, None] * st_vec
    if f.rhythm == "afib":
        dipole += _fibrillation(n, fs, rng)
    if f.rhythm == "aflutter":
        dipole += _flutter(onsets, flutter_ratio, n, fs, rng)

    ind = dipole @ _LEAD_MATRIX
    if baseline_wander:
        t = np.arange(n) / fs
        for _ in range(2):
            freq, phase = rng.uniform(0.1, 0.35), rng.uniform(0, 2 * np.pi)
            ind += np.outer(np.sin(2 * np.pi * freq * t + phase), rng.uniform(-0.15, 0.15, 8))
    if noise_mV > 0:
        ind += rng.normal(0.0, noise_mV, ind.shape)
    signal = _twelve(ind)

    # 5. ground truth ---------------------------------------------------------------------------
    inside = onsets[(onsets >= 0) & (onsets < duration_s)]
    intervals = np.diff(inside if len(inside) > 2 else onsets)
    rate = 60.0 / float(np.mean(intervals)) if len(intervals) else f.rate_bpm
    measurements = {
        "heart_rate_bpm": round(rate, 1),
        "qrs_ms": round(_measured_qrs_ms(template, fs)),
        "qt_ms": round(qt * 1000.0),
        "qtc_ms": round(qt * 1000.0 / np.sqrt(rr)),
        "axis_deg": round(_axis_of(template)),
    }
    if f.rhythm in ("sinus", "sinus_arrhythmia"):
        measurements["pr_ms"] = round(f.pr_ms)
    if flutter_ratio:
        measurements["atrial_rate_bpm"] = round(f.rate_bpm * flutter_ratio)
    voltages = {"sokolow_lyon_mV": round(float(-template[:, _LEAD_INDEX["V1"]].min()
                                               + template[:, _LEAD_INDEX["V5"]].max()), 2),
                "limb_qrs_max_mV": round(float((template[:, :6].max(0)
                                                - template[:, :6].min(0)).max()), 2)}
    labels = _labels(f, measurements, voltages)
    request = asdict(f)
    digest = hashlib.sha1(json.dumps([request, duration_s, fs, noise_mV, baseline_wander, seed],
                                     sort_keys=True).encode()).hexdigest()[:8]
    return Record(
        record_id=f"sim-{digest}", signal=signal, fs=float(fs), leads=list(STANDARD_LEADS),
        source="simulator", labels=labels, codes={}, measurements=measurements,
        findings=request,
        meta={"seed": seed, "qrs_onsets_s": [round(float(o), 4) for o in onsets],
              "beat_kinds": list(kinds), "qrs_end_s": round(qrs_end, 4), "voltages": voltages,
              "noise_mV": noise_mV, "baseline_wander": baseline_wander,
              **({"flutter_conduction": f"{flutter_ratio}:1"} if flutter_ratio else {})},
    )


def _beat_schedule(f: Findings, rr: float, duration_s: float, rng: np.random.Generator):
    """QRS onset times (s) covering the record (beats may start before 0 or run past the end)
    and each beat's kind: "sinus" (with P), "pac", "pvc", or "none" (no P: AF / flutter)."""
    times, kinds = [], []
    t = -rng.uniform(0.2, 1.0) * rr
    base_kind = "sinus" if f.rhythm in ("sinus", "sinus_arrhythmia") else "none"
    ectopic_every = None
    if f.ectopy:
        ectopic_every = int(rng.integers(3, 6))
    k = placed = 0
    resp_period, resp_phase = rng.uniform(3.5, 5.0), rng.uniform(0, 2 * np.pi)
    if f.rhythm == "afib":       # irregularly irregular, scaled so the record's mean RR is rr
        count = int(np.ceil((duration_s + 2) / rr)) + 2
        af_intervals = np.clip(rng.lognormal(0.0, 0.3, count), 0.5, 2.0)
        af_intervals *= rr / af_intervals[: max(int(duration_s / rr), 1) + 1].mean()
        af_intervals = np.maximum(af_intervals, 0.3)     # AV-node refractoriness: <= 200/min
    while t < duration_s + 0.6:
        times.append(t)
        kinds.append(base_kind)
        if f.rhythm == "afib":
            interval = af_intervals[k % len(af_intervals)]
        elif f.rhythm == "sinus_arrhythmia":
            interval = rr * (1 + 0.14 * np.sin(2 * np.pi * t / resp_period + resp_phase))
        elif f.rhythm == "aflutter":
            interval = rr
        else:
            interval = rr * (1 + 0.012 * rng.standard_normal())
        k += 1
        coupling = (0.62 if f.ectopy == "pvc" else 0.68) * interval
        inside = 0.3 < t + coupling < duration_s - 0.4
        last_chance = t + interval + coupling > duration_s - 0.4
        # every 3rd-5th beat, and at least one inside the record whenever one fits
        if ectopic_every and inside and (k % ectopic_every == 0 or (placed == 0 and last_chance)):
            placed += 1
            times.append(t + coupling)
            kinds.append(f.ectopy)
            # PVC: full compensatory pause; PAC resets the sinus node (pause < compensatory)
            t = t + 2 * interval if f.ectopy == "pvc" else t + coupling + interval
            continue
        t += interval
    return np.asarray(times), kinds


def _pvc_waves(rng: np.random.Generator) -> _Beat:
    """A wide, bizarre ventricular beat (no P) with a discordant T wave."""
    origin = _frontal(rng.choice([-60.0, 100.0]), rng.choice([-0.8, 0.8]))
    qrs = _Waves()
    qrs.add(0.045, 0.020, 0.020, 1.3, origin)
    qrs.add(0.100, 0.022, 0.022, 0.9, _unit(*(origin + _unit(0.3, 0.3, 0.3))))
    t = _Waves()
    t.add(0.34, 0.07, 0.05, 0.5, -origin)
    return _Beat(qrs=qrs, t=t)


def _invert_t(t_dir: np.ndarray, territory: str, depth_mV: float = 0.15) -> np.ndarray:
    """Turn the T vector away from ``territory`` until every lead there is ≤ −depth_mV."""
    leads = [_LEAD_INDEX[name] for name in TERRITORIES[territory]]
    away = _TERRITORY_DIR[territory]
    t_now, d = _project12(t_dir)[leads], _project12(away)[leads]
    k = max((t_now[i] + depth_mV) / d[i] for i in range(len(leads)) if d[i] > 0.1)
    return t_dir - max(k, 0.0) * away


def _st_vector(territory: str, mv: float) -> np.ndarray:
    """Injury-current vector: every lead of ``territory`` shifted by at least ``mv`` (signed)."""
    leads = [_LEAD_INDEX[name] for name in TERRITORIES[territory]]
    proj = _project12(_TERRITORY_DIR[territory])[leads]
    return _TERRITORY_DIR[territory] * (mv / float(proj.min()))


def _st_plateau(beats: list[tuple[float, float]], j: float, t_peak: float, t_sigma: float,
                n: int, fs: float) -> np.ndarray:
    """1 from the J point to the T peak with smooth edges, 0 elsewhere, for each (QRS onset s,
    repolarisation time scale) in ``beats``."""
    t = np.arange(n) / fs
    out = np.zeros(n)
    for onset, k in beats:
        t_peak_k, t_sigma_k = j + (t_peak - j) * k, t_sigma * k
        lo = int(max((onset + j - 0.05) * fs, 0))
        hi = int(min((onset + t_peak_k + 4 * t_sigma_k) * fs, n))
        if hi <= lo:
            continue
        s = t[lo:hi] - onset
        rise = 0.5 * (1 + np.tanh((s - j + 0.005) / 0.006))
        fall = 0.5 * (1 - np.tanh((s - t_peak_k - t_sigma_k) / (0.8 * t_sigma_k)))
        out[lo:hi] += rise * fall
    return out


def _fibrillation(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Fibrillatory baseline: 4–9 Hz waves of wandering amplitude (V1, II, III, aVF most)."""
    t = np.arange(n) / fs
    dipole = np.zeros((n, 3))
    for _ in range(4):
        freq = rng.uniform(4.5, 8.5)
        wobble = 1 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t + rng.uniform(0, 6.3))
        phase = np.cumsum(2 * np.pi * freq * (1 + 0.08 * np.sin(2 * np.pi * 0.5 * t)) / fs)
        wave = np.sin(phase + rng.uniform(0, 6.3)) * wobble * rng.uniform(0.015, 0.035)
        direction = _unit(rng.uniform(-0.6, 0.2), rng.uniform(0.4, 1), rng.uniform(0.4, 1))
        dipole += np.outer(wave, direction)
    return dipole


def _flutter(onsets, ratio: int, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Sawtooth F waves (negative in II/III/aVF), each k-th one conducted to a QRS."""
    t = np.arange(n) / fs
    cycle = float(np.median(np.diff(onsets))) / ratio
    first = onsets[0] - 0.24            # an F wave precedes each conducted QRS by ~240 ms
    frac = ((t - first) / cycle) % 1.0
    saw = np.where(frac < 0.7, 0.5 - frac / 0.7, -0.5 + (frac - 0.7) / 0.3)
    return np.outer(saw * rng.uniform(0.16, 0.24), _unit(0.1, 1.0, 0.35))


def _measured_qrs_ms(template: np.ndarray, fs: float) -> float:
    """QRS duration (ms): span where the spatial QRS magnitude exceeds 2 % of its peak."""
    mag = np.sqrt((template.astype(np.float64) ** 2).sum(axis=1))
    above = np.flatnonzero(mag > 0.02 * mag.max())
    return (above[-1] - above[0] + 1) / fs * 1000.0


def _labels(f: Findings, m: dict, voltages: dict) -> list[str]:
    rhythm = {"sinus_arrhythmia": "sinus arrhythmia", "afib": "atrial fibrillation",
              "aflutter": "atrial flutter"}.get(f.rhythm) or _rate_label(m["heart_rate_bpm"])
    labels = [rhythm]
    if f.ectopy:
        labels.append({"pvc": "premature ventricular contractions",
                       "pac": "premature atrial contractions"}[f.ectopy])
    if m.get("pr_ms", 0) > 200:
        labels.append("first-degree av block")
    if f.qrs != "normal":
        labels.append({"rbbb": "right bundle branch block",
                       "lbbb": "left bundle branch block"}[f.qrs])
    if m["axis_deg"] < -30:
        labels.append("left axis deviation")
    elif m["axis_deg"] > 90:
        labels.append("right axis deviation")
    for territory in TERRITORIES:
        mv = f.st.get(territory, 0.0)
        if mv >= 0.05:
            labels.append(f"{territory} st elevation")
        elif mv <= -0.05:
            labels.append(f"{territory} st depression")
    if f.t_inversion:
        labels.append("t-wave inversion")
    if m["qtc_ms"] > 470:
        labels.append("long qt")
    if voltages["limb_qrs_max_mV"] < 0.5:
        labels.append("low qrs voltage")
    if voltages["sokolow_lyon_mV"] > 3.5:
        labels.append("left ventricular hypertrophy")
    return labels


def random_findings(seed_or_rng: int | np.random.Generator = 0) -> Findings:
    """A realistic mix of findings for training data: ~35 % plain normal sinus rhythm, the rest
    rhythm, conduction, axis, ST/T, QT and voltage findings in plausible combinations."""
    rng = (seed_or_rng if isinstance(seed_or_rng, np.random.Generator)
           else np.random.default_rng(seed_or_rng))
    if rng.random() < 0.35:
        return Findings(rate_bpm=float(round(rng.uniform(60, 100))),
                        pr_ms=float(round(rng.uniform(130, 190))))
    rhythm = rng.choice(["sinus", "sinus_arrhythmia", "afib", "aflutter"], p=[0.6, 0.1, 0.2, 0.1])
    if rhythm == "aflutter":
        # F waves at 270-340 per minute, conducted 2:1, 3:1 or 4:1: ventricular rates spread over
        # 68-85, 90-113 and 135-170 bpm (not exactly 300 / n, which made "about 75 bpm" in the
        # text give flutter away: the mini model named flutter for sinus rhythm at 75 bpm)
        rate = rng.uniform(270, 340) / rng.choice([2, 3, 4])
    elif rhythm == "afib":
        rate = rng.uniform(60, 150)
    else:
        rate = rng.choice([rng.uniform(40, 59), rng.uniform(60, 100), rng.uniform(101, 150)],
                          p=[0.25, 0.5, 0.25])
    f = Findings(rate_bpm=float(round(rate)), rhythm=str(rhythm))
    if rng.random() < 0.18:
        f.ectopy = "pvc" if f.rhythm in ("afib", "aflutter") else str(rng.choice(["pvc", "pac"]))
    f.pr_ms = float(round(rng.uniform(220, 320) if rng.random() < 0.18 else rng.uniform(130, 190)))
    f.qrs = str(rng.choice(["normal", "rbbb", "lbbb"], p=[0.8, 0.12, 0.08]))
    f.axis = str(rng.choice(["normal", "left", "right"], p=[0.78, 0.14, 0.08]))
    u = rng.random()
    if u < 0.15 and f.qrs == "normal":
        f.st = {str(rng.choice(list(TERRITORIES))): float(round(rng.uniform(0.1, 0.4), 2))}
    elif u < 0.27:
        f.st = {str(rng.choice(list(TERRITORIES))): -float(round(rng.uniform(0.1, 0.25), 2))}
    if rng.random() < 0.12:
        f.t_inversion = [str(rng.choice(list(TERRITORIES)))]
    f.qt_long = bool(rng.random() < 0.08)
    f.low_voltage = bool(rng.random() < 0.06)
    f.lvh = bool(not f.low_voltage and f.qrs != "lbbb" and rng.random() < 0.1)
    return f
