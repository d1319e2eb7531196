"""The report template: labels + measurements -> a clinical-style ECG report paragraph.

The paragraph follows the order a reader works in: rhythm and rate, intervals, axis, findings,
conclusion. Every canonical label of the record is written with a phrase that
:func:`training.instruct.vocab.find_labels` reads back, so a report can be scored label by label.
Phrasing varies with ``rng``; content never does.

>>> print(build_report(["sinus rhythm"], {"heart_rate_bpm": 72, "pr_ms": 160, "qrs_ms": 90,
...       "qt_ms": 380, "qtc_ms": 415, "axis_deg": 45}))   # doctest: +NORMALIZE_WHITESPACE
Sinus rhythm at 72 bpm. PR interval 160 ms, QRS duration 90 ms, QT/QTc 380/415 ms.
Normal QRS axis (+45°). No conduction, ST-segment, T-wave or voltage abnormality.
Conclusion: normal ECG.
"""

from __future__ import annotations

import random

from training.instruct.vocab import (AXIS, CONDUCTION, ECTOPY, FINDINGS, OTHER, RHYTHMS, ST_T,
                                     TERRITORY_LEADS, canonical_labels)

#: Each finding as a report phrase (read back by vocab.find_labels).
PHRASES = {
    "premature ventricular contractions": "premature ventricular contractions",
    "premature atrial contractions": "premature atrial contractions",
    "first-degree av block": "first-degree AV block",
    "right bundle branch block": "right bundle branch block",
    "left bundle branch block": "left bundle branch block",
    "left axis deviation": "left axis deviation",
    "right axis deviation": "right axis deviation",
    "t-wave inversion": "T-wave inversion",
    "long qt": "long QT (prolonged QTc)",
    "low qrs voltage": "low QRS voltage",
    "left ventricular hypertrophy": "left ventricular hypertrophy by voltage criteria",
}
PHRASES.update({"st elevation": "ST elevation", "st depression": "ST depression"})
for _t, _leads in TERRITORY_LEADS.items():
    PHRASES[f"{_t} st elevation"] = f"{_t} ST elevation (leads {_leads})"
    PHRASES[f"{_t} st depression"] = f"{_t} ST depression (leads {_leads})"


def phrase(label: str) -> str:
    """How a report writes one canonical label (rhythm names as they are)."""
    return PHRASES.get(label, label)


def _ms(value) -> str | None:
    return None if value is None else f"{round(float(value))} ms"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _choose(rng: random.Random | None, options: list[str]) -> str:
    return options[0] if rng is None else rng.choice(options)


def rhythm_sentence(labels: list[str], measurements: dict, rng=None) -> str:
    """E.g. "Sinus bradycardia at 52 bpm, with premature ventricular contractions."."""
    rhythm = next((l for l in labels if l in RHYTHMS), None)
    rate = measurements.get("heart_rate_bpm")
    ectopy = [phrase(l) for l in labels if l in ECTOPY]
    if rhythm is None:
        head = f"Heart rate {round(rate)} bpm" if rate is not None else "Rhythm not classified"
    else:
        name = rhythm[0].upper() + rhythm[1:]
        if rate is None:
            head = name
        elif rhythm in ("atrial fibrillation", "atrial flutter"):
            head = f"{name} with a ventricular rate of {round(rate)} bpm"
        else:
            head = _choose(rng, [f"{name} at {round(rate)} bpm", f"{name}, rate {round(rate)} bpm"])
    if ectopy:
        head += _choose(rng, [", with ", ", with occasional "]) + _join(ectopy)
    return head + "."


def intervals_sentence(measurements: dict) -> str | None:
    """E.g. "PR interval 160 ms, QRS duration 90 ms, QT/QTc 380/415 ms."."""
    parts = []
    pr, qrs = _ms(measurements.get("pr_ms")), _ms(measurements.get("qrs_ms"))
    qt, qtc = measurements.get("qt_ms"), measurements.get("qtc_ms")
    if pr:
        parts.append(f"PR interval {pr}")
    if qrs:
        parts.append(f"QRS duration {qrs}")
    if qt is not None and qtc is not None:
        parts.append(f"QT/QTc {round(qt)}/{round(qtc)} ms")
    elif qtc is not None:
        parts.append(f"QTc {round(qtc)} ms")
    return ", ".join(parts) + "." if parts else None


def axis_sentence(labels: list[str], measurements: dict) -> str | None:
    """E.g. "Left axis deviation (-45°)." or "Normal QRS axis (+60°)."."""
    axis = measurements.get("axis_deg")
    degrees = f" ({round(axis):+d}°)" if axis is not None else ""
    deviation = next((l for l in labels if l in AXIS), None)
    if deviation:
        return f"{phrase(deviation)[0].upper()}{phrase(deviation)[1:]}{degrees}."
    return f"Normal QRS axis{degrees}." if axis is not None else None


def build_report(labels, measurements: dict | None = None, *, rng: random.Random | None = None,
                 extra_statements=(), facts=None) -> str:
    """A clinical-style report paragraph for a record's labels and measurements.

    ``labels`` outside the canonical vocabulary (real records) are listed after the findings
    (``extra_statements`` likewise). ``rng=None`` gives the plain first phrasing. ``facts``
    (a :class:`training.instruct.generate.Facts`) says what the record's source supports:
    without it every finding not labelled is taken as absent (the simulator's ground truth);
    with it, "no abnormality" and "normal ECG" are written only where the source says so, and
    possible findings are written as possible.
    """
    measurements = measurements or {}
    known = canonical_labels(labels)
    extra = [l for l in labels if l.lower() not in FINDINGS] + list(extra_statements)
    if facts is None:
        absent, general, normal, possible = set(FINDINGS) - set(known), [], False, []
    else:
        absent, general, normal = facts.absent, facts.general, facts.normal
        possible = facts.possible
        extra += [l for l in facts.other if l != "normal ecg"]
    rhythm = rhythm_sentence(known, measurements, rng)
    sentences = [] if facts is not None and rhythm == "Rhythm not classified." else [rhythm]
    sentences += [s for s in (intervals_sentence(measurements),
                              axis_sentence(known, measurements)) if s]
    findings = [phrase(l) for l in known if l in CONDUCTION + ST_T + OTHER]
    findings += [phrase(l) for l in general]
    if findings:
        lead = _choose(rng, ["Findings: ", "There is ", "The tracing shows "])
        sentences.append(lead + "; ".join(findings) + ".")
    elif set(CONDUCTION + ST_T + OTHER) <= set(absent):
        sentences.append("No conduction, ST-segment, T-wave or voltage abnormality.")
    if extra:
        sentences.append("Other statements: " + "; ".join(extra) + ".")
    if possible:
        sentences.append("Possible " + "; ".join(phrase(l) for l in possible) + ".")
    abnormal = [l for l in known if l not in ("sinus rhythm",)]
    everything_known = set(FINDINGS) - set(known) <= set(absent)
    if normal:
        others = [l for l in abnormal if l not in RHYTHMS] + general + extra
        sentences.append("Conclusion: otherwise normal ECG." if others or abnormal
                         else "Conclusion: normal ECG.")
    elif not abnormal and not extra and not general:
        if everything_known:
            sentences.append("Conclusion: normal ECG.")
    else:
        urgent = [l for l in abnormal if "st elevation" in l]
        main = [phrase(l) for l in urgent + [l for l in abnormal if l not in urgent]][:5] \
            or [phrase(l) for l in general] or extra[:2]
        sentences.append(_choose(rng, ["Conclusion: abnormal ECG (", "Impression: abnormal ECG ("])
                         + "; ".join(main) + ").")
    return " ".join(sentences)

