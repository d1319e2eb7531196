"""The findings vocabulary of the instruction data: groups, synonyms, and finding them in text.

The canonical label strings are the simulator's (``pulse_app.ecg.simulate.FINDINGS``, the one
definition); this module groups them by the paper's task categories and knows the other
ways a report writes them ("RBBB", "inverted T waves", "ST elevation in II, III and aVF"), so
that :func:`find_labels` can read findings back out of any model's free text.

>>> sorted(find_labels("Sinus rhythm with RBBB; no ST elevation. Inverted T waves in V1-V3."))
['right bundle branch block', 'sinus rhythm', 't-wave inversion']
"""

from __future__ import annotations

import re

from pulse_app.answer_parse import NEGATION, normalise_text, rate_bucket  # noqa: F401 - re-exported
from pulse_app.ecg.simulate import FINDINGS

RHYTHMS = ("sinus rhythm", "sinus bradycardia", "sinus tachycardia", "sinus arrhythmia",
           "atrial fibrillation", "atrial flutter")
ECTOPY = ("premature ventricular contractions", "premature atrial contractions")
CONDUCTION = ("first-degree av block", "right bundle branch block", "left bundle branch block")
AXIS = ("left axis deviation", "right axis deviation")
ST_T = ("inferior st elevation", "anterior st elevation", "lateral st elevation",
        "inferior st depression", "anterior st depression", "lateral st depression",
        "t-wave inversion")
OTHER = ("long qt", "low qrs voltage", "left ventricular hypertrophy")
#: The groups partition the simulator's FINDINGS (checked in tests/test_instruct.py).
GROUPS = {"rhythm": RHYTHMS, "ectopy": ECTOPY, "conduction": CONDUCTION, "axis": AXIS,
          "st_t": ST_T, "other": OTHER}

#: Labels each task category asks about (the paper puts conduction under rhythm analysis).
TASK_LABELS = {
    "basic": AXIS,
    "rhythm": RHYTHMS + ECTOPY + CONDUCTION,
    "morphology": ST_T + OTHER,
    "report": FINDINGS,
}

#: Territory -> the leads it names, as the contract defines them.
TERRITORY_LEADS = {"inferior": "II, III and aVF", "anterior": "V1 to V4",
                   "lateral": "I, aVL, V5 and V6"}

_ST_WORDS = r"st(?:[- ]segment)?"
_SYNONYMS = {
    "sinus rhythm": [r"(?:normal )?sinus rhythm", r"\bnsr\b"],
    "sinus bradycardia": [r"sinus bradycardia"],
    "sinus tachycardia": [r"sinus tachycardia"],
    "sinus arrhythmia": [r"sinus arrhythmia"],
    "atrial fibrillation": [r"atrial fibrillation", r"\ba-?fib\b", r"\baf\b"],
    "atrial flutter": [r"atrial flutter", r"\baflutter\b"],
    "premature ventricular contractions": [
        r"premature ventricular (?:contraction|complex|beat)e?s?", r"\bpvcs?\b",
        r"ventricular (?:extrasystole|ectopic)s?"],
    "premature atrial contractions": [
        r"premature atrial (?:contraction|complex|beat)e?s?", r"\bpacs?\b",
        r"atrial (?:extrasystole|ectopic)s?"],
    "first-degree av block": [
        r"(?:first|1st)[- ]degree (?:av|atrioventricular|a-v) block", r"\b1davb\b",
        r"\bi-avb\b"],
    "right bundle branch block": [r"right bundle branch block", r"\brbbb\b"],
    "left bundle branch block": [r"left bundle branch block", r"\blbbb\b"],
    "left axis deviation": [r"left axis deviation", r"\blad\b", r"left axis"],
    "right axis deviation": [r"right axis deviation", r"\brad\b", r"right axis"],
    "normal axis": [r"normal (?:qrs |cardiac |electrical |frontal )?axis"],
    "t-wave inversion": [r"t[- ]wave inversions?", r"inverted t[- ]waves?", r"\btwi\b",
                         r"t waves? (?:are |is )?inverted"],
    "long qt": [r"long qt", r"(?:prolonged|long) qtc?(?: interval)?",
                r"qtc?(?: interval)? (?:is )?prolonged"],
    "low qrs voltage": [r"low (?:qrs )?voltage"],
    "left ventricular hypertrophy": [r"left ventricular hypertrophy", r"\blvh\b"],
}
for _kind in ("elevation", "depression"):                   # general, without territory (CPSC)
    _SYNONYMS[f"st {_kind}"] = [rf"{_ST_WORDS} {_kind}s?"]
_LEAD_SETS = {"inferior": r"(?:ii, iii,? and avf|ii, iii, avf|inferior leads?)",
              "anterior": r"(?:v1(?: to |-|–)v4|v1, v2, v3,? and v4|anterior leads?)",
              "lateral": r"(?:i, avl, v5,? and v6|i, avl, v5, v6|lateral leads?)"}
for _t, _leads in _LEAD_SETS.items():
    for _kind, _word in (("elevation", "elevations?"), ("depression", "depressions?")):
        _SYNONYMS[f"{_t} st {_kind}"] = [
            rf"{_t} {_ST_WORDS} {_word}",
            rf"{_ST_WORDS} {_word} (?:is )?(?:seen |present )?in (?:the )?{_leads}"]

PATTERNS = {label: re.compile("|".join(f"(?:{p})" for p in pats))
             for label, pats in _SYNONYMS.items()}
#: Words that negate a finding when they come shortly before it in the same clause.
def find_labels(text: str, vocabulary=FINDINGS) -> set[str]:
    """The canonical labels of ``vocabulary`` that ``text`` asserts (negated mentions skipped).

    >>> find_labels("No atrial fibrillation. Left axis deviation.")
    {'left axis deviation'}
    """
    text = normalise_text(text)
    found = set()
    for label in vocabulary:
        pattern = PATTERNS.get(label)
        if pattern is None:
            continue
        for match in pattern.finditer(text):
            if not NEGATION.search(text[max(0, match.start() - 60):match.start()]):
                found.add(label)
                break
    return found


def first_label(text: str, vocabulary) -> str | None:
    """The label of ``vocabulary`` asserted earliest in ``text`` (e.g. the rhythm named first).

    >>> first_label("Atrial flutter, not atrial fibrillation.", RHYTHMS)
    'atrial flutter'
    """
    text = normalise_text(text)
    best = None
    for label in vocabulary:
        pattern = PATTERNS.get(label)
        for match in pattern.finditer(text) if pattern else ():
            if NEGATION.search(text[max(0, match.start() - 60):match.start()]):
                continue
            if best is None or match.start() < best[0]:
                best = (match.start(), label)
            break
    return best[1] if best else None


RATE_BUCKETS = ("bradycardia", "normal", "tachycardia")


def canonical_labels(labels) -> list[str]:
    """The labels of a record that are in the vocabulary, in vocabulary order."""
    wanted = {normalise_text(l) for l in labels}
    return [l for l in FINDINGS if l in wanted]
