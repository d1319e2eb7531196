"""Questions about an ECG with answers that state its ground truth, from its labels and
measurements: the builders of the instruction data (``training.instruct.generate`` asks them for
every task and question type) and of the teaching quiz (:mod:`pulse_app.quiz` asks them for
multiple-choice questions about a simulated case). One definition, so a student's question and
a training question are written the same way.

Each builder takes :class:`Facts` (what a record says and supports), a question type
(``"close"``, ``"open"``, ``"fill"``, ``"mcq"``) and a ``random.Random``; it returns
``(question, answer, meta)`` or None when the record does not settle the answer. ``meta`` says
how an answer is scored (:func:`pulse_app.answer_check.score_answer`).

>>> import random
>>> from pulse_app.ecg.simulate import ecg_simulate
>>> record = ecg_simulate({"rhythm": "afib"}, seed=1, duration_s=2.0)
>>> question, answer, meta = rhythm_rhythm(Facts(record), "mcq", random.Random(0))
>>> meta["options"][meta["answer"]]
'Atrial fibrillation'
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pulse_app.ecg.vocab import (AXIS, CONDUCTION, ECTOPY, OTHER, RHYTHMS, ST_T,
                                 TERRITORY_LEADS, canonical_labels, phrase, rate_bucket)

if TYPE_CHECKING:
    from pulse_app.ecg.records import Record

LETTERS = "ABCD"
RATE_TEXT = {"bradycardia": "bradycardia, below 60 bpm", "normal": "normal, 60-100 bpm",
             "tachycardia": "tachycardia, above 100 bpm"}
#: Findings the simulator never produces: safe distractors for multiple choice.
NEVER = ("second-degree AV block", "Wolff-Parkinson-White pattern", "complete heart block",
         "ventricular tachycardia", "pacemaker rhythm", "Brugada pattern")


class Facts:
    """What a record says, in the forms the question builders need, and what it supports.

    ``labels``: canonical findings present; ``absent``: findings known absent (the source labels
    them exhaustively, or a present label excludes them; see :mod:`pulse_app.ecg.labels`);
    a finding in neither is unknown and never asked about. ``m``: measurements from the source,
    else the heart rate from the signal (``measured_by`` says which), minus any that disagree
    with a label (``dropped`` says why).
    """

    def __init__(self, record: "Record"):
        from pulse_app.ecg.labels import CHILDREN, OTHER_FINDINGS, known_absent

        self.id = record.record_id
        self.source = record.source
        self.simulated = record.source == "simulator"
        self.labels = canonical_labels(record.labels)
        self.general = [l for l in record.labels if l in CHILDREN]    # "st elevation" (CPSC)
        self.normal = "normal ecg" in record.labels
        self.extra = [l for l in record.labels
                      if l.lower() not in self.labels and l not in OTHER_FINDINGS]
        self.other = [l for l in record.labels if l in OTHER_FINDINGS and l not in CHILDREN]
        self.possible = list(getattr(record, "possible", []) or [])
        self.absent = known_absent(record.source, record.labels, self.possible)
        self.m = {k: v for k, v in (record.measurements or {}).items() if v is not None}
        self.measured_by = {k: "source" for k in self.m}
        self.dropped: dict[str, str] = {}
        if "heart_rate_bpm" not in self.m and not self.simulated and record.signal.size:
            from pulse_app.ecg.measure import METHOD, RELIABLE, ecg_measure_record

            for key, value in ecg_measure_record(record).items():
                if key in RELIABLE and key not in self.m:
                    self.m[key], self.measured_by[key] = value, METHOD
        self._check_against_labels()
        self.rate = self.m.get("heart_rate_bpm")
        self.rhythm = next((l for l in self.labels if l in RHYTHMS), None)

    def _check_against_labels(self) -> None:
        """Drop a measurement that contradicts a label (the label is the source's word)."""
        rate = self.m.get("heart_rate_bpm")
        implied = {"sinus bradycardia": "bradycardia", "sinus tachycardia": "tachycardia",
                   "sinus rhythm": "normal"}
        for label, bucket in implied.items():
            if rate is not None and self.has(label) and rate_bucket(rate) != bucket:
                self._drop("heart_rate_bpm", f"{round(rate)} bpm disagrees with '{label}'")
                rate = None
        pr = self.m.get("pr_ms")
        if pr is not None and self.known("first-degree av block") and \
                (pr > 200) != self.has("first-degree av block"):
            self._drop("pr_ms", f"PR {round(pr)} ms disagrees with the AV block label")
        qrs = self.m.get("qrs_ms")
        wide = [l for l in ("right bundle branch block", "left bundle branch block") if self.has(l)]
        if qrs is not None and wide and qrs < 120:
            self._drop("qrs_ms", f"QRS {round(qrs)} ms disagrees with '{wide[0]}'")
        qtc = self.m.get("qtc_ms")
        if qtc is not None and self.known("long qt") and (qtc > 470) != self.has("long qt"):
            self._drop("qtc_ms", f"QTc {round(qtc)} ms disagrees with the long QT label")

    def _drop(self, key: str, why: str) -> None:
        self.m.pop(key, None)
        self.measured_by.pop(key, None)
        self.dropped[key] = why

    def has(self, label: str) -> bool:
        return label in self.labels

    def known(self, label: str) -> bool:
        """The record says whether ``label`` is present (present, or known absent)."""
        return label in self.labels or label in self.absent

    def present(self, group) -> list[str]:
        return [l for l in self.labels if l in group]

    def meta(self) -> dict:
        """What every sample of a record from a real source notes about its support."""
        if self.simulated:
            return {}
        out = {"source": self.source}
        derived = {k: v for k, v in self.measured_by.items() if v != "source"}
        if derived:
            out["measured_by"] = derived
        if self.dropped:
            out["dropped_measurements"] = self.dropped
        return out


# -- small helpers ---------------------------------------------------------------------------------

def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _yes_no(rng: random.Random, truth: bool, claim_true: str, claim_false: str) -> tuple[str, str]:
    """(answer text, "yes"/"no") for a close-ended question: the reading first, then the
    verdict ("... Answer: no."), so a model states what it sees before it decides; a small
    model that must say "Yes"/"No" first decides before it has read anything."""
    if truth:
        return f"{_cap(claim_true)} Answer: yes.", "yes"
    return f"{_cap(claim_false)} Answer: no.", "no"


#: How a multiple-choice question is put around its stem ``q`` and option lines ``o``.
MCQ_STYLES = ["{q}\n{o}", "{q}\nOptions:\n{o}", "{q}\n{o}\nAnswer with the letter.",
              "Answer the following multiple choice question. {q}\n{o}",
              "{q} Choose one option.\n{o}"]


def mcq_stem(question: str) -> str:
    r"""The bare question of a multiple-choice instruction (no options, no answering hint).

    >>> mcq_stem("Answer the following multiple choice question. What is the QRS axis?\nA. x")
    'What is the QRS axis?'
    """
    stem = question.split("\n", 1)[0]
    for style in MCQ_STYLES:
        before, after = style.split("\n", 1)[0].split("{q}")
        if before and stem.startswith(before):
            stem = stem[len(before):]
        if after and stem.endswith(after):
            stem = stem[:-len(after)]
    return stem


def _mcq(rng: random.Random, question: str, correct: str, distractors: list[str],
         explanation: str) -> tuple[str, str, dict]:
    """Shuffle ``correct`` among three ``distractors``: (question with options, answer, meta)."""
    options = [correct] + rng.sample(distractors, 3)
    rng.shuffle(options)
    table = dict(zip(LETTERS, options))
    letter = LETTERS[options.index(correct)]
    lines = "\n".join(f"{k}. {v}" for k, v in table.items())
    style = rng.choice(MCQ_STYLES)
    answer = f"{explanation} Answer: {letter}. {correct}.".strip()    # reading, then the pick
    return style.format(q=question, o=lines), answer, {"answer": letter, "answer_text": correct,
                                                      "options": table}


def _fill(rng: random.Random, sentence: str, choices: list[str]) -> str:
    """A fill-in-the-blank instruction around ``sentence`` (which contains ``____``)."""
    listed = ", ".join(choices[:-1]) + " or " + choices[-1]
    return rng.choice([
        "Fill in the blank: {s} ({c})",
        "Complete the sentence with one of: {c}.\n{s}",
        "Based on this ECG, fill in the blank ({c}): {s}",
        "You are reviewing this tracing. Fill in the blank: {s} Options: {c}.",
        "Read the ECG and complete: {s} (choose from {c})",
    ]).format(s=sentence, c=listed)


def _bold(word: str) -> str:
    return f"**{word}**"


# -- basic features: rate, axis, intervals ---------------------------------------------------------

RATE_CLAIMS = {"normal": "within the normal range (60-100 bpm)",
               "bradycardia": "slower than 60 bpm (bradycardia)",
               "tachycardia": "faster than 100 bpm (tachycardia)"}
RATE_OPEN = ["What is the heart rate?", "Estimate the ventricular rate on this ECG.",
             "How fast is the heart beating on this tracing?",
             "What is the heart rate in beats per minute, and is it normal?",
             "Calculate the heart rate from the R-R intervals.",
             "Is the heart rate slow, normal or fast? Give the rate."]


def _rate_statement(f: Facts) -> str:
    bucket = rate_bucket(f.rate)
    return f"The heart rate is about {round(f.rate)} bpm ({RATE_TEXT[bucket]})."


def basic_rate(f: Facts, qtype: str, rng: random.Random):
    bucket = rate_bucket(f.rate)
    meta = {"kind": "rate", "score": "rate", "answer": bucket, "value": round(f.rate)}
    if qtype == "close":
        claim = (bucket if rng.random() < 0.5
                 else rng.choice([b for b in RATE_CLAIMS if b != bucket]))
        q = rng.choice(["Is the heart rate {c}?", "Would you describe the heart rate as {c}?",
                        "Based on this ECG, is the rate {c}?",
                        "Does this tracing show a heart rate {c}?",
                        "Looking at the R-R intervals, is the ventricular rate {c}?"]
                       ).format(c=RATE_CLAIMS[claim])
        text, yn = _yes_no(rng, claim == bucket, _rate_statement(f), _rate_statement(f))
        return q, text, {**meta, "score": "yesno", "answer": yn, "claim": claim}
    if qtype == "open":
        return rng.choice(RATE_OPEN), _rate_statement(f), meta
    if qtype == "fill":
        q = _fill(rng, rng.choice(["The heart rate is in the ____ range.",
                                   "This ECG shows a ____ heart rate.",
                                   "The ventricular rate falls in the ____ category."]),
                  ["bradycardia", "normal", "tachycardia"])
        return q, f"The heart rate is about {round(f.rate)} bpm, in the {_bold(bucket)} range.", \
            {**meta, "choices": ["bradycardia", "normal", "tachycardia"]}
    names = {"bradycardia": "Bradycardia (below 60 bpm)", "normal": "Normal rate (60-100 bpm)",
             "tachycardia": "Tachycardia (above 100 bpm)"}
    others = [v for k, v in names.items() if k != bucket] + ["Asystole (no ventricular activity)"]
    q, a, extra = _mcq(rng, rng.choice(["Which option best describes the heart rate?",
                                        "What is the heart rate category on this ECG?",
                                        "How would you classify the ventricular rate?",
                                        "Which rate category fits this tracing?",
                                        "Select the correct description of the heart rate."]),
                       names[bucket], others, f"The rate is about {round(f.rate)} bpm.")
    return q, a, {**meta, **extra, "score": "choice", "rate_answer": bucket}


AXIS_NAMES = {"normal axis": "Normal axis", "left axis deviation": "Left axis deviation",
              "right axis deviation": "Right axis deviation"}


def axis_truth(f: Facts) -> str | None:
    """The axis a record supports: its deviation label, "normal axis" when both deviations are
    known absent, else None (not asked)."""
    deviation = next((l for l in f.labels if l in AXIS), None)
    if deviation:
        return deviation
    return "normal axis" if all(a in f.absent for a in AXIS) else None


def basic_axis(f: Facts, qtype: str, rng: random.Random):
    truth = axis_truth(f)
    deg = f.m.get("axis_deg")
    statement = (f"The QRS axis is about {round(deg):+d} degrees: {truth}." if deg is not None
                 else f"The QRS axis shows {truth}.")
    meta = {"kind": "axis", "score": "label", "answer": truth,
            "vocabulary": ["normal axis", *AXIS]}
    if qtype == "close":
        claim = truth if rng.random() < 0.5 else rng.choice([a for a in AXIS_NAMES if a != truth])
        q = rng.choice(["Is there {c}?", "Does this ECG show {c}?",
                        "Is the axis consistent with {c}?",
                        "Would you report {c} on this tracing?",
                        "Looking at leads I and aVF, is there {c}?"]).format(c=claim)
        text, yn = _yes_no(rng, claim == truth, statement, statement)
        return q, text, {**meta, "score": "yesno", "answer": yn, "claim": claim}
    if qtype == "open":
        q = rng.choice(["What is the cardiac axis?", "Determine the QRS axis.",
                        "Is the electrical axis normal or deviated?",
                        "Describe the frontal plane axis.",
                        "Using leads I and aVF, what is the axis?"])
        return q, statement, meta
    if qtype == "fill":
        q = _fill(rng, rng.choice(["The cardiac axis shows ____.", "The QRS axis is ____.",
                                   "Frontal plane axis: ____."]), list(AXIS_NAMES))
        return q, f"The cardiac axis shows {_bold(truth)}.", {**meta, "choices": list(AXIS_NAMES)}
    q, a, extra = _mcq(rng, rng.choice(["What is the QRS axis?",
                                        "Which describes the cardiac axis?",
                                        "Select the correct axis.",
                                        "How is the axis best described?",
                                        "Which axis does this ECG show?"]),
                       AXIS_NAMES[truth],
                       [v for k, v in AXIS_NAMES.items() if k != truth] +
                       ["Extreme axis deviation (northwest axis)"], statement)
    return q, a, {**meta, **extra, "score": "choice"}


def _interval_facts(f: Facts) -> dict:
    keys = ("pr_ms", "qrs_ms", "qt_ms", "qtc_ms")
    return {k: round(f.m[k]) for k in keys if k in f.m}


def basic_intervals(f: Facts, qtype: str, rng: random.Random):
    values = _interval_facts(f)
    statement = " ".join(filter(None, [
        f"PR interval {values['pr_ms']} ms." if "pr_ms" in values else
        "No measurable PR interval (no consistent P waves).",
        f"QRS duration {values['qrs_ms']} ms." if "qrs_ms" in values else "",
        f"QT {values['qt_ms']} ms." if "qt_ms" in values else "",
        f"QTc {values['qtc_ms']} ms." if "qtc_ms" in values else ""]))
    meta = {"kind": "intervals", "score": "intervals", "answer": values, "value": values}
    qrs = values.get("qrs_ms", 90)
    wide = "wide" if qrs >= 120 else "narrow"
    if qtype == "close":
        checks = [("qrs", "Is the QRS complex wide (120 ms or more)?", qrs >= 120),
                  ("qrs", "Are the QRS complexes broad?", qrs >= 120)]
        if "pr_ms" in values:
            long_pr = f.has("first-degree av block") or f.m["pr_ms"] > 200
            checks += [("pr", "Is the PR interval prolonged beyond 200 ms?", long_pr),
                       ("pr", "Is AV conduction delayed (PR over 200 ms)?", long_pr)]
        if "qtc_ms" in values and f.known("long qt"):
            long_qt = f.has("long qt")
            checks += [("qtc", "Is the corrected QT interval prolonged?", long_qt),
                       ("qtc", "Is the QTc abnormally long?", long_qt)]
        _, q, truth = rng.choice(checks)
        text, yn = _yes_no(rng, truth, statement, statement)
        return q, text, {**meta, "score": "yesno", "answer": yn}
    if qtype == "open":
        q = rng.choice(["Measure the PR, QRS and QT intervals.", "What are the main intervals?",
                        "Report the PR interval, QRS duration and QTc.",
                        "Give the interval measurements of this ECG in milliseconds.",
                        "What are the PR, QRS and QT/QTc durations?"])
        return q, statement, meta
    if qtype == "fill":
        q = _fill(rng, rng.choice(["The QRS complexes are ____.", "QRS width: ____.",
                                   "Ventricular depolarisation produces ____ QRS complexes."]),
                  ["narrow", "wide"])
        return q, f"The QRS complexes are {_bold(wide)} (QRS duration {qrs} ms).", \
            {**meta, "score": "option", "answer": wide, "choices": ["narrow", "wide"]}
    bins = ["below 100 ms", "100-119 ms", "120-150 ms", "above 150 ms"]
    correct = bins[0 if qrs < 100 else 1 if qrs < 120 else 2 if qrs <= 150 else 3]
    q, a, extra = _mcq(rng, rng.choice(["What is the QRS duration?", "Which range contains the "
                                        "QRS duration?", "How long is the QRS complex?",
                                        "Select the QRS duration.",
                                        "The QRS duration on this ECG is closest to which range?"]),
                       correct, [b for b in bins if b != correct], f"QRS duration {qrs} ms.")
    return q, a, {**meta, **extra, "score": "choice"}


# -- rhythm: rhythm, ectopy, conduction ------------------------------------------------------------

def rhythm_rhythm(f: Facts, qtype: str, rng: random.Random):
    truth = f.rhythm
    # The rate comes first: sinus bradycardia and tachycardia follow from it.
    lead = f"The rate is about {round(f.rate)} bpm and the" if f.rate is not None else "The"
    statement = f"{lead} rhythm is {truth}."
    meta = {"kind": "rhythm", "score": "label", "answer": truth,
            "vocabulary": [r for r in RHYTHMS if f.known(r)]}
    if qtype == "close":
        others = [r for r in RHYTHMS if r != truth and r in f.absent]
        claim = truth if rng.random() < 0.5 or not others else rng.choice(others)
        q = rng.choice(["Is the rhythm {c}?", "Does this ECG show {c}?", "Is this {c}?",
                        "Would you classify the rhythm as {c}?",
                        "Is the underlying rhythm consistent with {c}?"]).format(c=claim)
        no = f"{lead} rhythm is {truth}, not {claim}."
        text, yn = _yes_no(rng, claim == truth, statement, no)
        return q, text, {**meta, "score": "yesno", "answer": yn, "claim": claim}
    if qtype == "open":
        q = rng.choice(["What is the rhythm?", "Identify the heart rhythm on this ECG.",
                        "Describe the cardiac rhythm.", "What rhythm does this tracing show?",
                        "Analyse the rhythm strip: what is the rhythm?"])
        return q, statement, meta
    choices = [r for r in RHYTHMS if r == truth or r in f.absent]
    if qtype == "fill":
        q = _fill(rng, rng.choice(["The underlying rhythm is ____.", "Rhythm: ____.",
                                   "This tracing shows ____."]), choices)
        return q, f"{lead} underlying rhythm is {_bold(truth)}.", \
            {**meta, "choices": choices}
    if len(choices) < 4:
        return None                               # fewer than 3 options known to be wrong
    q, a, extra = _mcq(rng, rng.choice(["What is the rhythm?", "Which rhythm is shown?",
                                        "Identify the rhythm.", "Which best describes the rhythm?",
                                        "Select the heart rhythm on this ECG."]),
                       _cap(truth), [_cap(r) for r in choices if r != truth], statement)
    return q, a, {**meta, **extra, "score": "choice"}


def _finding_kind(f: Facts, qtype: str, rng: random.Random, *, kind: str, group: tuple,
                  none_text: str, close_q: list[str], open_q: list[str], fill_sentences: list[str],
                  mcq_q: list[str], pool: tuple, normal_q: list[str]):
    """Shared builder for 'which of these findings' kinds (ectopy, conduction, morphology).

    Close-ended questions ask about one finding (present half the time when the record has
    one) or, in a third of cases, whether the whole group is normal, so that "no" does not
    dominate the answers of mostly normal records.
    """
    group = tuple(group) + tuple(l for l in f.general if l in _GENERAL_OF.get(kind, ()))
    present = f.present(group) + [l for l in f.general if l in group]
    known = [l for l in group if f.known(l) or l in present]
    absent = [l for l in group if l in f.absent]
    if not known:
        return None
    all_known = len(absent) + len(set(present)) == len(group)
    listed = "; ".join(phrase(l) for l in present)
    statement = (f"{_cap(listed)}." if present else f"{none_text}.")
    meta = {"kind": kind, "score": "labels", "answer": present, "labels": present,
            "vocabulary": list(group) if all_known else known}
    if qtype == "close" and rng.random() < 1 / 3 and (present or all_known):
        text, yn = _yes_no(rng, not present, f"{none_text}.", f"The tracing shows {listed}.")
        return rng.choice(normal_q), text, {**meta, "score": "yesno", "answer": yn,
                                            "claim": "no finding"}
    if qtype == "close":
        claim = (rng.choice(present) if present and (rng.random() < 0.5 or not absent)
                 else rng.choice(absent or list(group)))
        q = rng.choice(close_q).format(c=phrase(claim))
        truth = claim in present
        shown = (f"; the tracing shows {listed}." if present else f". {statement}")
        text, yn = _yes_no(rng, truth, f"{_cap(phrase(claim))} is present.",
                           f"There is no {phrase(claim)}{shown}")
        return q, text, {**meta, "score": "yesno", "answer": yn, "claim": claim}
    if not present and not all_known:
        return None                               # "none" would be a guess
    if qtype == "open":
        return rng.choice(open_q), statement, meta
    if qtype == "fill":
        target = rng.choice(present) if present else "none"
        choices = list(group) + ["none"]
        q = _fill(rng, rng.choice(fill_sentences), choices)
        return q, f"{_bold(target)}. {statement}", \
            {**meta, "score": "option", "answer": target, "choices": choices}
    correct = rng.choice(present) if present else "none"
    correct_text = _cap(phrase(correct)) if present else "None of these"
    distract = [_cap(phrase(l)) for l in pool
                if l not in present and (l in f.absent or (f.simulated and l in NEVER))]
    if present:
        distract.append("None of these")
    if f.simulated:                               # the simulator never makes these
        distract += [d for d in NEVER][:max(0, 3 - len(distract))]
    if len(distract) < 3:
        return None
    q, a, extra = _mcq(rng, rng.choice(mcq_q), correct_text, distract, statement)
    return q, a, {**meta, **extra, "score": "choice"}


#: General findings a kind may ask about when a source states them without territory (CPSC).
_GENERAL_OF = {"morphology": ("st elevation", "st depression")}


def rhythm_ectopy(f: Facts, qtype: str, rng: random.Random):
    return _finding_kind(
        f, qtype, rng, kind="ectopy", group=ECTOPY, none_text="No premature beats are seen",
        normal_q=["Is the rhythm free of premature beats?", "Is every beat on time, without "
                  "ectopy?", "Is this tracing free of ectopic beats?",
                  "Do all complexes arrive on time?", "Is this ECG free of premature complexes?"],
        close_q=["Are there {c}?", "Does this ECG show {c}?", "Do you see {c} on the rhythm strip?",
                 "Are {c} present?", "Is there evidence of {c}?"],
        open_q=["Are there any ectopic beats?", "Describe any premature beats.",
                "Is there ectopy on this tracing?", "Do you see extra or early beats?",
                "Comment on premature complexes in this ECG."],
        fill_sentences=["The premature beats on this ECG are ____.", "Ectopy: ____.",
                        "Early beats seen: ____."],
        mcq_q=["Which ectopic beats are present?", "Which premature beats does this ECG show?",
               "Select the ectopy seen on this tracing.", "What kind of early beats are present?",
               "Which of the following is present?"],
        pool=ECTOPY + NEVER[:2])


def rhythm_conduction(f: Facts, qtype: str, rng: random.Random):
    return _finding_kind(
        f, qtype, rng, kind="conduction", group=CONDUCTION,
        none_text="AV and intraventricular conduction are normal",
        normal_q=["Is AV and intraventricular conduction normal?", "Is conduction normal?",
                  "Is this ECG free of AV and bundle branch blocks?",
                  "Are the PR interval and QRS duration normal?",
                  "Would you call the conduction system normal on this tracing?"],
        close_q=["Is there a {c}?", "Does this ECG show {c}?", "Is {c} present?",
                 "Would you report {c}?", "Is there evidence of {c}?"],
        open_q=["Is there a conduction abnormality?", "Describe AV and intraventricular "
                "conduction.", "Are there any bundle branch or AV blocks?",
                "Comment on the conduction system.", "Which conduction abnormalities are present?"],
        fill_sentences=["The conduction abnormality on this ECG is ____.",
                        "Conduction: ____.", "This tracing shows ____ (conduction)."],
        mcq_q=["Which conduction abnormality is present?", "Select the conduction finding.",
               "Which block does this ECG show?", "Which of the following is present?",
               "What is the conduction abnormality?"],
        pool=CONDUCTION + NEVER[:3])


# -- morphology: ST/T, QT, voltage, hypertrophy ----------------------------------------------------

MORPHOLOGY = ST_T + OTHER


def morphology_findings(f: Facts, qtype: str, rng: random.Random):
    if qtype == "fill":
        return morphology_fill(f, rng)
    return _finding_kind(
        f, qtype, rng, kind="morphology", group=MORPHOLOGY,
        none_text="No ST-segment, T-wave, QT or voltage abnormality is seen",
        normal_q=["Are the ST segments, T waves, QT and QRS voltage all normal?",
                  "Is the waveform morphology normal?", "Are repolarisation and voltage normal?",
                  "Is this tracing free of ST-T, QT and voltage abnormalities?",
                  "Would you call the ST segments, T waves and voltage normal?"],
        close_q=["Is there {c}?", "Does this ECG show {c}?", "Do you see {c}?",
                 "Is {c} present on this tracing?", "Is there evidence of {c}?"],
        open_q=["Describe any ST-segment, T-wave, QT or voltage abnormalities.",
                "What morphological abnormalities do you see?",
                "Comment on the ST segments, T waves and QRS voltage.",
                "Are there signs of ischaemia, hypertrophy or repolarisation abnormality?",
                "List the waveform abnormalities on this ECG."],
        fill_sentences=[], mcq_q=["Which of the following findings is present?",
                                  "Which waveform abnormality does this ECG show?",
                                  "Select the morphological finding.",
                                  "Which abnormality is seen on this tracing?",
                                  "What does the ST/T and QRS morphology show?"],
        pool=MORPHOLOGY)


def morphology_fill(f: Facts, rng: random.Random):
    """One blank about ST segments in a territory, QT, QRS voltage or T waves; only sentences
    whose answer the record's labels settle."""
    options = []
    territory = rng.choice(list(TERRITORY_LEADS))
    up, down = f"{territory} st elevation", f"{territory} st depression"
    st = ("elevated" if f.has(up) else "depressed" if f.has(down) else "isoelectric")
    options.append((f"In the {territory} leads ({TERRITORY_LEADS[territory]}) the ST segments "
                    "are ____.", ["elevated", "depressed", "isoelectric"], st,
                    f.has(up) or f.has(down) or (up in f.absent and down in f.absent)))
    options.append(("The QT interval is ____.", ["normal", "prolonged"],
                    "prolonged" if f.has("long qt") else "normal", f.known("long qt")))
    volt = ("low" if f.has("low qrs voltage") else "increased"
            if f.has("left ventricular hypertrophy") else "normal")
    options.append(("The QRS voltage is ____.", ["low", "normal", "increased"], volt,
                    volt != "normal" or (f.known("low qrs voltage")
                                         and f.known("left ventricular hypertrophy"))))
    options.append(("T-wave inversion is ____ on this tracing.", ["present", "absent"],
                    "present" if f.has("t-wave inversion") else "absent",
                    f.known("t-wave inversion")))
    weights = [w for w, option in zip([3, 1, 1, 1], options) if option[3]]
    options = [option for option in options if option[3]]
    if not options:
        return None
    sentence, choices, answer, _ = rng.choices(options, weights)[0]
    q = _fill(rng, sentence, choices)
    return q, sentence.replace("____", _bold(answer)), {
        "kind": "morphology", "score": "option", "answer": answer, "choices": choices,
        "labels": f.present(MORPHOLOGY)}
