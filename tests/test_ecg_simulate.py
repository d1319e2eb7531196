"""The teaching simulator, checked by measuring its output (R peaks found by neurokit2, QRS and PR
from the spatial magnitude of the leads, axis from net QRS areas, ST level at J+60 ms)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from pulse_app.ecg.records import STANDARD_LEADS
from pulse_app.ecg.simulate import (FINDINGS, RHYTHM_FINDINGS, TERRITORIES, Findings, ecg_simulate,
                                    random_findings)
from pulse_app.errors import PulseError

FS = 500


def r_peaks(rec) -> np.ndarray:
    """R-peak sample indices found by neurokit2 on lead II (an independent detector)."""
    import neurokit2 as nk

    _, info = nk.ecg_peaks(rec.lead("II"), sampling_rate=int(rec.fs), method="neurokit")
    peaks = np.asarray(info["ECG_R_Peaks"])
    edge = int(0.25 * rec.fs)            # beats cut by the record's ends are not counted
    return peaks[(peaks > edge) & (peaks < len(rec.signal) - edge)]


def rr_intervals(rec) -> np.ndarray:
    return np.diff(r_peaks(rec)) / rec.fs


def magnitude(rec) -> np.ndarray:
    """Spatial magnitude of the independent leads (I, II, V1-V6), in mV."""
    idx = [STANDARD_LEADS.index(n) for n in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]
    return np.sqrt((rec.signal[:, idx].astype(np.float64) ** 2).sum(axis=1))


def qrs_bounds(rec, onset_s: float) -> tuple[int, int]:
    """QRS onset/offset samples of the beat starting near ``onset_s``, measured on the signal:
    where the magnitude of the derivative exceeds 6 % of its peak within the beat."""
    lo = int((onset_s - 0.03) * rec.fs)
    seg = np.abs(np.gradient(rec.signal[lo: lo + int(0.3 * rec.fs)], axis=0)).sum(axis=1)
    above = np.flatnonzero(seg > 0.06 * seg.max())
    # the QRS is the first run of samples above threshold, gaps < 20 ms allowed
    end = above[0]
    for a, b in zip(above, above[1:]):
        if b - a > 0.02 * rec.fs:
            break
        end = b
    return lo + above[0], lo + end


def middle_beat(rec, kind=None) -> float:
    onsets = [o for o, k in zip(rec.meta["qrs_onsets_s"], rec.meta["beat_kinds"])
              if 1.0 < o < rec.duration_s - 1.5 and (kind is None or k == kind)]
    return onsets[len(onsets) // 2]


# -- rate and rhythm ------------------------------------------------------------------------------

@pytest.mark.parametrize("bpm, label", [(45, "sinus bradycardia"), (75, "sinus rhythm"),
                                        (130, "sinus tachycardia")])
def test_heart_rate_measured_within_5_bpm(bpm, label):
    rec = ecg_simulate({"rate_bpm": bpm}, seed=4)
    measured = 60.0 / np.mean(rr_intervals(rec))
    assert abs(measured - bpm) <= 5, measured
    assert abs(rec.measurements["heart_rate_bpm"] - bpm) <= 5
    assert rec.labels == [label]


def test_af_is_irregular_and_sinus_is_regular():
    for seed in range(3):
        af = rr_intervals(ecg_simulate({"rhythm": "afib", "rate_bpm": 90}, seed=seed))
        sinus = rr_intervals(ecg_simulate({"rate_bpm": 90}, seed=seed))
        assert np.std(af) / np.mean(af) > 0.1
        assert np.std(sinus) / np.mean(sinus) < 0.05


def test_af_has_no_p_waves_but_a_fibrillatory_baseline():
    af = ecg_simulate({"rhythm": "afib", "rate_bpm": 70}, seed=1)
    sinus = ecg_simulate({"rate_bpm": 70}, seed=1)
    assert "pr_ms" not in af.measurements and af.labels[0] == "atrial fibrillation"

    def before_qrs(rec, lead):   # the 200 ms before each QRS, aligned on the QRS, level at -50 ms
        x = rec.lead(lead)
        segs = np.stack([x[int((o - 0.25) * FS): int((o - 0.05) * FS)]
                         for o in rec.meta["qrs_onsets_s"] if 0.5 < o < rec.duration_s - 0.5])
        return segs - segs[:, -1:]

    # f waves are not locked to the QRS: the segments differ from beat to beat; P waves repeat
    assert np.median(before_qrs(af, "V1").std(axis=0)) > 0.01
    assert np.median(before_qrs(sinus, "V1").std(axis=0)) < 0.005
    # averaged over beats, the sinus P wave stands out in II; in AF nothing does
    assert np.ptp(before_qrs(sinus, "II").mean(axis=0)) > 0.07
    assert np.ptp(before_qrs(af, "II").mean(axis=0)) < 0.05


def test_sinus_arrhythmia_modulates_rr_with_respiration():
    rec = ecg_simulate({"rhythm": "sinus_arrhythmia", "rate_bpm": 70}, seed=2)
    rr = rr_intervals(rec)
    assert np.std(rr) / np.mean(rr) > 0.05
    assert rec.labels == ["sinus arrhythmia"]


def test_flutter_has_300_per_minute_f_waves_in_inferior_leads():
    rec = ecg_simulate({"rhythm": "aflutter", "rate_bpm": 75}, seed=0)
    ref = ecg_simulate({"rate_bpm": 75}, seed=0)
    assert rec.meta["flutter_conduction"] == "4:1" and rec.measurements["atrial_rate_bpm"] == 300

    def trough_spacings_s(r):     # F waves: negative sawtooth troughs in lead II
        troughs, _ = find_peaks(-r.lead("II"), prominence=0.08, distance=int(0.1 * FS))
        return np.diff(troughs) / FS

    flutter, sinus = trough_spacings_s(rec), trough_spacings_s(ref)
    assert len(flutter) >= 30 and 0.18 <= np.median(flutter) <= 0.22     # ~300 per minute
    assert np.mean((sinus > 0.18) & (sinus < 0.22)) < 0.1                # nothing at that pace
    fast = ecg_simulate({"rhythm": "aflutter", "rate_bpm": 150}, seed=0)
    assert fast.meta["flutter_conduction"] == "2:1"
    assert abs(60 / np.mean(rr_intervals(fast)) - 150) <= 5


def test_random_flutter_rates_do_not_give_the_rhythm_away():
    """Training flutter has F waves at 270-340 per minute conducted 2:1 to 4:1: its ventricular
    rates spread over each band instead of sitting on 300 / n (a text shortcut: "about 75 bpm"
    meant flutter), and the conduction ratio derived from the rate is the one drawn."""
    rates = [f.rate_bpm for f in map(random_findings, range(3000)) if f.rhythm == "aflutter"]
    assert len(rates) > 100 and len(set(rates)) > 30
    assert np.mean(np.isin(rates, [75, 100, 150])) < 0.1
    for rate in rates:
        ratio = round(300 / rate)
        assert ratio in (2, 3, 4) and 265 <= rate * ratio <= 345


def test_pvcs_are_wide_early_and_followed_by_a_compensatory_pause():
    rec = ecg_simulate({"ectopy": "pvc", "rate_bpm": 70}, seed=5)
    kinds, onsets = rec.meta["beat_kinds"], np.asarray(rec.meta["qrs_onsets_s"])
    i = next(k for k, kind in enumerate(kinds) if kind == "pvc" and 0 < onsets[k] < 9)
    before, after = onsets[i] - onsets[i - 1], onsets[i + 1] - onsets[i]
    assert before < 0.75 * (60 / 70)                          # early
    assert before + after == pytest.approx(2 * 60 / 70, rel=0.05)   # fully compensatory
    on, off = qrs_bounds(rec, onsets[i])
    assert (off - on) / FS * 1000 >= 120
    assert "premature ventricular contractions" in rec.labels


def test_pacs_are_early_with_a_different_p_wave():
    rec = ecg_simulate({"ectopy": "pac", "rate_bpm": 70}, seed=5)
    kinds, onsets = rec.meta["beat_kinds"], rec.meta["qrs_onsets_s"]
    i = next(k for k, kind in enumerate(kinds) if kind == "pac" and 1 < onsets[k] < 9)
    lead_ii = rec.lead("II")

    def p_area(onset):
        pr = rec.measurements["pr_ms"] / 1000
        return lead_ii[int((onset - pr) * FS): int((onset - 0.02) * FS)].sum()

    assert p_area(onsets[i - 1]) > 0 > p_area(onsets[i])     # sinus P upright, ectopic P inverted
    assert onsets[i] - onsets[i - 1] < 0.8 * (60 / 70)
    assert "premature atrial contractions" in rec.labels


# -- intervals, conduction, axis ------------------------------------------------------------------

def measured_pr_ms(rec) -> float:
    """P onset (first sample where the magnitude rises above 10 % of the P peak) to QRS onset."""
    onset = middle_beat(rec)
    q_on, _ = qrs_bounds(rec, onset)
    mag = magnitude(rec)
    lo = q_on - int(0.4 * FS)
    window = mag[lo: q_on - int(0.01 * FS)] - mag[lo]
    p_on = lo + np.flatnonzero(window > 0.1 * window.max())[0]
    return (q_on - p_on) / FS * 1000


def test_first_degree_av_block_prolongs_the_measured_pr():
    block = ecg_simulate({"pr_ms": 280, "rate_bpm": 60}, seed=3)
    normal = ecg_simulate({"pr_ms": 150, "rate_bpm": 60}, seed=3)
    assert measured_pr_ms(block) > 200 > measured_pr_ms(normal)
    assert "first-degree av block" in block.labels and "first-degree av block" not in normal.labels


@pytest.mark.parametrize("qrs, label", [("rbbb", "right bundle branch block"),
                                        ("lbbb", "left bundle branch block")])
def test_bundle_branch_blocks_widen_the_measured_qrs(qrs, label):
    rec = ecg_simulate({"qrs": qrs}, seed=6)
    normal = ecg_simulate(None, seed=6)
    width = lambda r: np.subtract(*qrs_bounds(r, middle_beat(r))[::-1]) / FS * 1000  # noqa: E731
    assert width(rec) >= 120 and rec.measurements["qrs_ms"] >= 120
    assert width(normal) < 110 and normal.measurements["qrs_ms"] < 110
    assert label in rec.labels


def qrs_segment(rec, lead):
    onset = middle_beat(rec)
    on, off = qrs_bounds(rec, onset)
    return rec.lead(lead)[on: off + 1] - rec.lead(lead)[on - 5]


def test_morphology_differs_by_lead_like_a_real_ecg():
    rec = ecg_simulate(None, seed=0)
    v1, v6, avr = (qrs_segment(rec, n) for n in ("V1", "V6", "aVR"))
    assert -v1.min() > 1.5 * v1.max()         # V1: rS
    assert v6.max() > 3 * -v6.min()           # V6: qR
    assert avr.sum() < 0 and -avr.min() > 2 * avr.max()   # aVR negative
    assert np.argmax(v6) > np.argmin(v6[: np.argmax(v6)] if np.argmax(v6) else v6)  # q before R
    rbbb = ecg_simulate({"qrs": "rbbb"}, seed=0)
    v1 = qrs_segment(rbbb, "V1")
    assert v1[-int(0.06 * FS):].max() > 0.3   # terminal R' in V1
    assert qrs_segment(rbbb, "I")[-int(0.06 * FS):].min() < -0.2   # wide terminal S in I
    lbbb = ecg_simulate({"qrs": "lbbb"}, seed=0)
    v1 = qrs_segment(lbbb, "V1")
    assert v1.min() < -0.6 and v1[: int(0.7 * len(v1))].max() < 0.2   # deep QS
    v6 = qrs_segment(lbbb, "V6")
    assert v6[: int(0.7 * len(v6))].min() > -0.1 and v6.max() > 0.5   # broad R, no septal q
    peaks, props = find_peaks(v6, prominence=0.01)
    assert len(peaks) == 2 and props["prominences"].min() > 0.05       # notched ("M") R


def test_einthoven_and_goldberger_relations_hold_exactly():
    rec = ecg_simulate({"rhythm": "afib", "st": {"lateral": 0.2}}, noise_mV=0.02,
                       baseline_wander=True, seed=9)
    i, ii = rec.lead("I").astype(np.float64), rec.lead("II").astype(np.float64)
    for name, expected in (("III", ii - i), ("aVR", -(i + ii) / 2), ("aVL", i - ii / 2),
                           ("aVF", ii - i / 2)):
        np.testing.assert_allclose(rec.lead(name), expected, atol=1e-5)
    assert rec.leads == list(STANDARD_LEADS) and rec.signal.dtype == np.float32


@pytest.mark.parametrize("axis", ["normal", "left", "right"])
def test_axis_from_net_qrs_areas(axis):
    rec = ecg_simulate({"axis": axis}, seed=7)
    area_i, area_avf = qrs_segment(rec, "I").sum(), qrs_segment(rec, "aVF").sum()
    signs = {"normal": (1, 1), "left": (1, -1), "right": (-1, 1)}[axis]
    assert (np.sign(area_i), np.sign(area_avf)) == signs
    label = {"left": "left axis deviation", "right": "right axis deviation"}.get(axis)
    assert (label in rec.labels) if label else not any("axis" in x for x in rec.labels)


# -- ST, T, QT, voltage --------------------------------------------------------------------------

def st_shift(rec, ref, lead) -> float:
    """Difference of the ST level at J+60 ms (vs the PR baseline) between ``rec`` and ``ref``."""
    def level(r):
        onset = middle_beat(r)
        on, off = qrs_bounds(r, onset)
        x = r.lead(lead)
        return x[off + int(0.06 * FS)] - np.median(x[on - int(0.03 * FS): on - 2])
    return level(rec) - level(ref)


@pytest.mark.parametrize("territory, reciprocal", [("inferior", "aVL"), ("lateral", "III"),
                                                   ("anterior", None)])
def test_st_elevation_in_the_territory_with_reciprocal_depression(territory, reciprocal):
    rec = ecg_simulate({"st": {territory: 0.2}}, seed=8)
    ref = ecg_simulate(None, seed=8)
    for lead in TERRITORIES[territory]:
        assert st_shift(rec, ref, lead) >= 0.17, lead
    if reciprocal:
        assert st_shift(rec, ref, reciprocal) < -0.05
    assert f"{territory} st elevation" in rec.labels


def test_st_depression():
    rec = ecg_simulate({"st": {"lateral": -0.15}}, seed=8)
    ref = ecg_simulate(None, seed=8)
    for lead in TERRITORIES["lateral"]:
        assert st_shift(rec, ref, lead) <= -0.12, lead
    assert "lateral st depression" in rec.labels


@pytest.mark.parametrize("territory", list(TERRITORIES))
def test_t_wave_inversion_by_territory(territory):
    rec = ecg_simulate({"t_inversion": [territory]}, seed=2)
    onset = middle_beat(rec)
    qt = rec.measurements["qt_ms"] / 1000
    for lead in TERRITORIES[territory]:
        x = rec.lead(lead)
        base = x[int((onset - 0.02) * FS)]
        t_part = x[int((onset + 0.16) * FS): int((onset + qt) * FS)] - base
        assert t_part.min() < -0.1 and abs(t_part.min()) > t_part.max(), lead
    assert "t-wave inversion" in rec.labels


def t_end_s(rec) -> float:
    """Last time after the QRS where the slope in I + II exceeds 5 % of the T slope peak (limb
    leads: the U wave points forward and hardly shows there)."""
    onset = middle_beat(rec)
    _, off = qrs_bounds(rec, onset)
    lo = off + int(0.04 * FS)
    limb = rec.signal[lo: int((onset + 0.75) * FS), :2]
    seg = np.abs(np.gradient(limb, axis=0)).sum(axis=1)
    return (lo + np.flatnonzero(seg > 0.05 * seg.max())[-1]) / FS - onset


def test_long_qt():
    rec = ecg_simulate({"qt_long": True, "rate_bpm": 60}, seed=1)
    ref = ecg_simulate({"rate_bpm": 60}, seed=1)
    assert t_end_s(rec) - t_end_s(ref) > 0.06
    assert t_end_s(rec) > 0.47          # at 60 bpm QTc = QT
    assert rec.measurements["qtc_ms"] > 470 and "long qt" in rec.labels
    assert ref.measurements["qtc_ms"] < 450 and "long qt" not in ref.labels


def qrs_amplitudes(rec):
    onset = middle_beat(rec)
    on, off = qrs_bounds(rec, onset)
    return {n: rec.lead(n)[on: off + 1] for n in STANDARD_LEADS}


def test_low_voltage_and_lvh_voltage_criteria_on_the_signal():
    low = qrs_amplitudes(ecg_simulate({"low_voltage": True}, seed=3))
    assert max(np.ptp(low[n]) for n in STANDARD_LEADS[:6]) < 0.5
    lvh = qrs_amplitudes(ecg_simulate({"lvh": True}, seed=3))
    assert -lvh["V1"].min() + lvh["V5"].max() > 3.5
    normal = qrs_amplitudes(ecg_simulate(None, seed=3))
    assert -normal["V1"].min() + normal["V5"].max() < 3.5
    assert max(np.ptp(normal[n]) for n in STANDARD_LEADS[:6]) > 0.5


# -- options, determinism, labels ----------------------------------------------------------------

def test_same_seed_same_record_and_different_seeds_differ():
    a = ecg_simulate({"rhythm": "afib"}, noise_mV=0.02, seed=11)
    b = ecg_simulate({"rhythm": "afib"}, noise_mV=0.02, seed=11)
    c = ecg_simulate({"rhythm": "afib"}, noise_mV=0.02, seed=12)
    assert np.array_equal(a.signal, b.signal) and a.record_id == b.record_id
    assert not np.allclose(a.signal, c.signal) and a.record_id != c.record_id


def test_noise_and_baseline_wander_are_optional():
    clean = ecg_simulate(None, seed=1)
    noisy = ecg_simulate(None, noise_mV=0.05, seed=1)
    wander = ecg_simulate(None, baseline_wander=True, seed=1)
    resid = noisy.lead("V2") - clean.lead("V2")
    assert 0.04 < resid.std() < 0.06
    drift = wander.lead("V2") - clean.lead("V2")
    assert np.ptp(drift) > 0.05                         # visible drift ...
    assert np.abs(np.diff(drift)).max() < 0.002         # ... that is slow (< 1 mV/s at 500 Hz)


def test_duration_and_sampling_rate():
    rec = ecg_simulate(None, duration_s=2.5, fs=250, seed=0)
    assert rec.signal.shape == (625, 12) and rec.fs == 250.0


def test_findings_are_validated_and_returned():
    rec = ecg_simulate(Findings(rate_bpm=50, qrs="rbbb", st={"inferior": 0.2}), seed=0)
    assert rec.findings["qrs"] == "rbbb" and rec.findings["st"] == {"inferior": 0.2}
    assert rec.source == "simulator"
    with pytest.raises(ValueError, match="rhythm"):
        ecg_simulate({"rhythm": "vtach"})
    with pytest.raises(ValueError, match="territory"):
        ecg_simulate({"st": {"posterior": 0.1}})
    with pytest.raises(ValueError, match="sinus rhythm"):
        ecg_simulate({"rhythm": "afib", "ectopy": "pac"})
    with pytest.raises(ValueError, match="unknown"):
        ecg_simulate({"heart_rate": 80})
    with pytest.raises(PulseError) as info:      # shown to a teacher as message + hint
        ecg_simulate({"low_voltage": True, "lvh": True})
    assert info.value.hint and info.value.exit_code == 9


#: One request per canonical label: every label of FINDINGS can be drawn on demand.
REQUESTS = {
    "sinus rhythm": {}, "sinus bradycardia": {"rate_bpm": 50},
    "sinus tachycardia": {"rate_bpm": 120}, "sinus arrhythmia": {"rhythm": "sinus_arrhythmia"},
    "atrial fibrillation": {"rhythm": "afib"}, "atrial flutter": {"rhythm": "aflutter"},
    "premature ventricular contractions": {"ectopy": "pvc"},
    "premature atrial contractions": {"ectopy": "pac"}, "first-degree av block": {"pr_ms": 260},
    "right bundle branch block": {"qrs": "rbbb"}, "left bundle branch block": {"qrs": "lbbb"},
    "left axis deviation": {"axis": "left"}, "right axis deviation": {"axis": "right"},
    "inferior st elevation": {"st": {"inferior": 0.2}},
    "anterior st elevation": {"st": {"anterior": 0.2}},
    "lateral st elevation": {"st": {"lateral": 0.2}},
    "inferior st depression": {"st": {"inferior": -0.1}},
    "anterior st depression": {"st": {"anterior": -0.1}},
    "lateral st depression": {"st": {"lateral": -0.1}},
    "t-wave inversion": {"t_inversion": ["inferior"]}, "long qt": {"qt_long": True},
    "low qrs voltage": {"low_voltage": True}, "left ventricular hypertrophy": {"lvh": True},
}


@pytest.mark.parametrize("label", FINDINGS)
def test_every_finding_label_can_be_requested(label):
    rec = ecg_simulate(REQUESTS[label], seed=21)
    expected = {label} | ({"sinus rhythm"} if label not in RHYTHM_FINDINGS else set())
    assert set(rec.labels) == expected


def test_random_findings_mix_and_label_consistency():
    n, plain = 300, 0
    seen = set()
    for seed in range(n):
        f = random_findings(seed)
        rec = ecg_simulate(f, duration_s=4.0, seed=seed)
        if f == Findings(rate_bpm=f.rate_bpm, pr_ms=f.pr_ms):
            plain += 1
        labels = rec.labels
        assert set(labels) <= set(FINDINGS), labels
        assert sum(label in RHYTHM_FINDINGS for label in labels) == 1, labels
        assert (f.qrs == "rbbb") == ("right bundle branch block" in labels)
        assert (f.qrs == "lbbb") == ("left bundle branch block" in labels)
        assert (f.axis == "left") == ("left axis deviation" in labels), (seed, rec.measurements)
        assert (f.axis == "right") == ("right axis deviation" in labels), (seed, rec.measurements)
        assert f.lvh == ("left ventricular hypertrophy" in labels)
        assert f.low_voltage == ("low qrs voltage" in labels)
        assert f.qt_long == ("long qt" in labels)
        if f.ectopy:       # the labelled ectopic beat is inside the record
            assert any(k == f.ectopy and 0 < o < 4.0 for o, k in
                       zip(rec.meta["qrs_onsets_s"], rec.meta["beat_kinds"])), seed
        seen.update(labels)
    assert 0.25 < plain / n < 0.45
    assert len(seen) >= len(FINDINGS) - 2      # nearly every finding occurs in 300 draws
    rng = np.random.default_rng(0)
    assert random_findings(rng) != random_findings(rng)


def mean_beat(rec) -> np.ndarray:
    """Average beat around the R peaks (-100..+120 ms), baseline-corrected, samples × 12."""
    x = rec.signal - np.median(rec.signal, axis=0)
    fs = int(rec.fs)
    peaks = r_peaks(rec)[1:-1]
    return np.stack([x[p - fs // 10: p + int(0.12 * fs)] for p in peaks]).mean(axis=0)


def test_simulated_normal_beat_resembles_a_real_normal_ecg(shared_data):
    """Per-lead QRS peaks (max, min) of a simulated normal ECG vs the real normal record E07506."""
    from pulse_app.ecg.records import read_record

    real = mean_beat(read_record(shared_data / "ecg-records" / "E07506.hea"))
    profile = lambda beat: np.concatenate([beat.max(axis=0), beat.min(axis=0)])  # noqa: E731
    for seed in range(3):
        sim = mean_beat(ecg_simulate(None, seed=seed))
        assert np.corrcoef(profile(real), profile(sim))[0, 1] > 0.93
        for lead in ("I", "II", "aVR", "aVF", "V1", "V2", "V5", "V6"):
            i = STANDARD_LEADS.index(lead)
            dominant = lambda b: np.sign(b[:, i].max() + b[:, i].min())  # noqa: E731
            assert dominant(sim) == dominant(real), (seed, lead)
