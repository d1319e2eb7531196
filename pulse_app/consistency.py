"""The consistency check: does an answer contradict what the digitiser measured on the image?

A pure function of the answer's text and the stored measurements (``Measurements.to_dict()
["measurements"]``). It reads what the answer states with the shared parsers
(:mod:`pulse_app.answer_check`) and flags:

- a heart rate in bpm more than :data:`RATE_TOLERANCE_BPM` (or :data:`RATE_TOLERANCE_FRACTION`)
  from the measured rate, or a rate word (tachycardia, bradycardia) whose class the measured rate
  is clearly outside of;
- a regular rhythm stated where the RR intervals vary a lot, or an irregular one where they
  hardly vary (margins around ``IRREGULAR_CV`` so borderline rhythms are not flagged);
- a PR, QRS, QT or QTc value more than :data:`INTERVAL_TOLERANCE_MS` (or
  :data:`INTERVAL_TOLERANCE_FRACTION`) from the measured one.

Only measurements with confidence of at least :data:`MIN_CONFIDENCE` are used; a measurement
that is "not measurable" never flags anything. The check says "contradicts the measurements",
never which is right: the digitiser can be wrong too.

>>> measured = {"heart_rate": {"value": 72.0, "unit": "bpm", "lead": "II", "confidence": 0.9},
...             "rr_regularity": {"value": 0.02, "unit": "", "lead": "II", "confidence": 0.9}}
>>> for c in check_answer("Atrial fibrillation at 150 bpm.", measured):
...     print(c.message)
states a heart rate of 150 bpm; the digitiser measured 72 bpm (lead II)
states an irregular rhythm; the digitiser measured regular RR intervals (RR variation 0.02, lead II)
>>> check_answer("Sinus rhythm, 75 bpm.", measured)
[]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pulse_app.answer_check import parse_bpm, parse_intervals, parse_rate, parse_regularity
from pulse_app.ecg.measure import IRREGULAR_CV, LABELS

RATE_TOLERANCE_BPM = 10.0
RATE_TOLERANCE_FRACTION = 0.15
INTERVAL_TOLERANCE_MS = 40.0
INTERVAL_TOLERANCE_FRACTION = 0.2
#: RR variation (coefficient of variation) below which "irregular" contradicts, above which
#: "regular" does.
CLEARLY_REGULAR_CV, CLEARLY_IRREGULAR_CV = 0.6 * IRREGULAR_CV, 1.5 * IRREGULAR_CV
#: A rate word contradicts when the measured rate is this far inside another class.
RATE_CLASS_MARGIN_BPM = 5.0
MIN_CONFIDENCE = 0.4
_INTERVALS = {"pr_ms": "pr", "qrs_ms": "qrs", "qt_ms": "qt", "qtc_ms": "qtc"}


@dataclass(frozen=True)
class Contradiction:
    """One statement of the answer that the measurements contradict."""

    name: str                   # the measurement's name: heart_rate, rr_regularity, pr, ...
    stated: float | str
    measured: float | str
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def _usable(measurements: dict, name: str) -> dict | None:
    m = (measurements or {}).get(name)
    if not m or m.get("value") is None or float(m.get("confidence") or 0) < MIN_CONFIDENCE:
        return None
    return m


def _far(stated: float, measured: float, absolute: float, fraction: float) -> bool:
    return abs(stated - measured) > max(absolute, fraction * measured)


def check_answer(answer: str, measurements: dict | None) -> list[Contradiction]:
    """Every statement of ``answer`` that contradicts ``measurements`` (see the module doc)."""
    found: list[Contradiction] = []
    rate = _usable(measurements, "heart_rate")
    if rate is not None:
        measured, lead = float(rate["value"]), rate.get("lead")
        bpm = parse_bpm(answer)
        word = parse_rate(answer)
        if bpm is not None and _far(bpm, measured, RATE_TOLERANCE_BPM, RATE_TOLERANCE_FRACTION):
            found.append(Contradiction("heart_rate", bpm, measured,
                                       f"states a heart rate of {bpm:.0f} bpm; the digitiser "
                                       f"measured {measured:.0f} bpm (lead {lead})"))
        elif bpm is None and word in ("tachycardia", "bradycardia") and (
                (word == "tachycardia" and measured < 100 - RATE_CLASS_MARGIN_BPM)
                or (word == "bradycardia" and measured > 60 + RATE_CLASS_MARGIN_BPM)):
            found.append(Contradiction("heart_rate", word, measured,
                                       f"states {word}; the digitiser measured {measured:.0f} "
                                       f"bpm (lead {rate.get('lead')})"))
    rr = _usable(measurements, "rr_regularity")
    if rr is not None:
        cv, stated = float(rr["value"]), parse_regularity(answer)
        if stated == "irregular" and cv < CLEARLY_REGULAR_CV:
            found.append(Contradiction("rr_regularity", stated, "regular",
                                       f"states an irregular rhythm; the digitiser measured "
                                       f"regular RR intervals (RR variation {cv:.2f}, lead "
                                       f"{rr.get('lead')})"))
        elif stated == "regular" and cv > CLEARLY_IRREGULAR_CV:
            found.append(Contradiction("rr_regularity", stated, "irregular",
                                       f"states a regular rhythm; the digitiser measured "
                                       f"irregular RR intervals (RR variation {cv:.2f}, lead "
                                       f"{rr.get('lead')})"))
    for key, value in parse_intervals(answer).items():
        name = _INTERVALS[key]
        m = _usable(measurements, name)
        if m is not None and _far(value, float(m["value"]), INTERVAL_TOLERANCE_MS,
                                  INTERVAL_TOLERANCE_FRACTION):
            found.append(Contradiction(name, value, float(m["value"]),
                                       f"states a {LABELS[name]} of {value:.0f} ms; the "
                                       f"digitiser measured {float(m['value']):.0f} ms "
                                       f"({m.get('lead')})"))
    return found


def flag_text(contradictions: list[dict] | list[Contradiction]) -> str:
    """The warning shown with an answer ("" when nothing contradicts)."""
    messages = [c["message"] if isinstance(c, dict) else c.message for c in contradictions or ()]
    if not messages:
        return ""
    return "Contradicts the digitiser's measurements: the answer " + "; it ".join(messages) + "."
