"""Reading measured values out of a model's free-text answer: rate, rhythm regularity, intervals.

The one definition of these parsers: the app's consistency check (:mod:`pulse_app.consistency`)
and the training package's scoring (``training.metrics``, ``training.instruct.vocab``) both import
them from here (``pulse_app`` never imports ``training``).

>>> parse_rate("HR 48 bpm"), parse_bpm("sinus rhythm at 72 bpm (60-100 bpm)")
('bradycardia', 72.0)
>>> parse_regularity("Irregularly irregular rhythm, no P waves.")
'irregular'
"""

from __future__ import annotations

import re

#: A negation shortly before a word ("no", "without", "rules out" ...), unless a "but" intervenes.
NEGATION = re.compile(r"\b(?:no|not|without|absence of|absent|negative for|rules? out|nor)\b"
                      r"(?:(?!\b(?:but|however|rather|instead)\b)[^.;:,]){0,40}$")


def normalise_text(text: str) -> str:
    """Lower case, unicode dashes as '-', single spaces."""
    text = text.lower().replace("–", "-").replace("—", "-").replace("’", "'")
    return re.sub(r"\s+", " ", text)


def negated(text: str, start: int) -> bool:
    """Whether the word at ``start`` of (normalised) ``text`` is negated."""
    return bool(NEGATION.search(text[max(0, start - 60):start]))


def rate_bucket(bpm: float) -> str:
    """Heart-rate class: bradycardia < 60 bpm, normal 60-100, tachycardia > 100 (as the
    simulator names sinus rhythms).

    >>> rate_bucket(59.6), rate_bucket(100), rate_bucket(100.5)
    ('bradycardia', 'normal', 'tachycardia')
    """
    return "bradycardia" if bpm < 60 else "tachycardia" if bpm > 100 else "normal"


_RATE_WORDS = re.compile(r"tachycardi|bradycardi|\bfast\b|\brapid\b|\bslow\b")
_BPM = re.compile(r"(?<![\d\-–/])(?<!to )(?<!below )(?<!above )(?<!than )(?<!under )(?<!over )"
                  r"(?<![<>])(\d{2,3})\s*(?:bpm|beats|/min)")


def parse_rate(text: str) -> str | None:
    """Heart-rate class from an answer: a non-negated tachy-/brady- word, else a number in bpm,
    else "normal". None when the text says nothing about the rate.

    >>> [parse_rate(t) for t in ["Tachycardia.", "rate 72 bpm (60-100 bpm)", "not tachycardic"]]
    ['tachycardia', 'normal', None]
    """
    t = normalise_text(text)
    for m in _RATE_WORDS.finditer(t):
        if not negated(t, m.start()):
            word = m.group(0)
            return "tachycardia" if word.startswith(("tachy", "fast", "rapid")) else "bradycardia"
    m = _BPM.search(t)
    if m:
        return rate_bucket(float(m.group(1)))
    if re.search(r"\bnormal\b", t):
        return "normal"
    return None


def parse_bpm(text: str) -> float | None:
    """The first heart rate in bpm written in ``text`` (ranges like 60-100 bpm skipped)."""
    m = _BPM.search(normalise_text(text))
    return float(m.group(1)) if m else None


def parse_intervals(text: str) -> dict[str, float]:
    """Interval values in ms: ``{"pr_ms", "qrs_ms", "qt_ms", "qtc_ms"}`` where written.

    >>> parse_intervals("PR 160 ms, QRS duration 90 ms, QT/QTc 380/415 ms")
    {'qt_ms': 380.0, 'qtc_ms': 415.0, 'pr_ms': 160.0, 'qrs_ms': 90.0}
    """
    t = normalise_text(text)
    out = {}
    both = re.search(r"qt\s*/\s*qtc\D{0,12}?(\d{2,3})\s*/\s*(\d{2,3})", t)
    if both:
        out["qt_ms"], out["qtc_ms"] = float(both.group(1)), float(both.group(2))
    for key, word in (("pr_ms", r"pr"), ("qrs_ms", r"qrs"), ("qtc_ms", r"qtc"), ("qt_ms", r"qt")):
        if key in out:
            continue
        m = re.search(rf"\b{word}\b(?! ?/)[^\d.;]{{0,20}}?(\d{{2,3}})\s*ms", t)
        if m:
            out[key] = float(m.group(1))
    return out


#: Words that state an irregular rhythm (atrial fibrillation is irregularly irregular).
_IRREGULAR = re.compile(r"\birregular|\batrial fibrillation\b|\bafib\b|\ba-?fib\b|"
                        r"\bsinus arrhythmia\b")
_REGULAR = re.compile(r"(?<!ir)\bregular\b")


def parse_regularity(text: str) -> str | None:
    """"irregular", "regular" or None: what an answer says about the rhythm's regularity (a
    non-negated "irregular(ly)", atrial fibrillation or sinus arrhythmia; else a non-negated
    "regular").

    >>> [parse_regularity(t) for t in ["Regular sinus rhythm.", "The rhythm is not irregular.",
    ...                                "Atrial fibrillation.", "Sinus rhythm."]]
    ['regular', None, 'irregular', None]
    """
    t = normalise_text(text)
    for m in _IRREGULAR.finditer(t):
        if not negated(t, m.start()):
            return "irregular"
    for m in _REGULAR.finditer(t):
        if not negated(t, m.start()):
            return "regular"
    return None
