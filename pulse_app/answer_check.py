"""Reading answers out of free text, and checking them against the truth.

The one home of the answer parsers, for what models actually write ("B", "(B)", "Answer: B",
the option's text; "Yes.", "There is no ..."; "tachycardia at 112 bpm"; "irregularly
irregular"; "QT/QTc 380/415 ms"; findings via the vocabulary's synonyms) and
:func:`score_answer`, which scores one answer against a question's ``meta`` (the instruction
data's scoring fields, see :mod:`pulse_app.questions`). ``training.evaluate`` scores held-out
sets with them; the app checks a teaching case's answers with them (:func:`check_case`): what
the model said about the rate, rhythm, conduction, axis and ST segments, against the truth; and
:mod:`pulse_app.consistency` checks answers against the digitiser's reading with them.

>>> parse_choice("I think the answer is (C) atrial flutter", {"A": "x", "B": "y", "C": "z"})
'C'
>>> parse_yes_no("There is no ST elevation."), parse_rate("HR 48 bpm")
('no', 'bradycardia')
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from pulse_app.ecg.vocab import (FINDINGS, NEGATION, PATTERNS, find_labels, first_label,
                                 normalise_text, rate_bucket)

# -- parsers ---------------------------------------------------------------------------------------

def _negated(text: str, start: int) -> bool:
    return bool(NEGATION.search(text[max(0, start - 60):start]))


def parse_yes_no(text: str) -> str | None:
    """"yes", "no" or None (undecided) for an answer to a close-ended question.

    >>> [parse_yes_no(t) for t in ["Yes.", "**No**, it is sinus rhythm", "yes/no", "Unclear."]]
    ['yes', 'no', None, None]
    """
    t = normalise_text(text).strip()
    if re.match(r"^\W*(yes|no)\s*(/|or)\s*(yes|no)\b", t):
        return None
    said = re.search(r"answer(?: is)?\W*(yes|no)\b", t)     # "... Answer: no." wins
    if said:
        return said.group(1)
    lead = re.match(r"^[\W_]*(yes|no|not|none|correct|incorrect)\b", t)
    if lead:
        return {"yes": "yes", "correct": "yes"}.get(lead.group(1), "no")
    words = re.search(r"\b(yes|no|not|absent|negative|without)\b", t)
    if words:
        return "yes" if words.group(1) == "yes" else "no"
    if re.search(r"\b(present|seen|shows?|evident|consistent with|there is|there are)\b", t):
        return "yes"
    return None


def parse_choice(text: str, options: dict | None = None) -> str | None:
    """The option letter an answer picks: "B", "(B)", "B.", "Answer: B", "option B", or the text
    of exactly one option (earliest mention wins). None when nothing is picked.

    >>> parse_choice("A normal ECG would look different; the answer is B.", {"A": "", "B": ""})
    'B'
    """
    options = options or {}
    letters = "".join(sorted(options)) or "ABCDEFGH"
    L = f"[{letters}]"
    t = text.strip()
    for pattern in (rf"^\W*\(?({L})\)?\W*$",
                    rf"(?i:answer)(?:\s+(?i:is))?\s*[:\-]?\s*\**(?:(?i:option)\s*)?\(?({L})\b",
                    rf"(?i:option|choice)\s*\(?({L})\b",
                    rf"\(({L})\)",
                    rf"(?:^|\s|\*)({L})[.):](?=\s|$|\*)"):
        match = re.search(pattern, t)
        if match:
            return match.group(1)
    norm = normalise_text(t)
    best = None
    for letter, option in options.items():
        full = normalise_text(str(option)).strip(" .")
        core = re.sub(r"\s*\(.*\)$", "", full)
        for candidate in dict.fromkeys((full, core)):
            if not candidate:
                continue
            for m in re.finditer(rf"(?<!\w){re.escape(candidate)}(?!\w)", norm):
                if not _negated(norm, m.start()):
                    if best is None or m.start() < best[0]:
                        best = (m.start(), letter)
                    break
    return best[1] if best else None


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
        if not _negated(t, m.start()):
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
        if not _negated(t, m.start()):
            return "irregular"
    for m in _REGULAR.finditer(t):
        if not _negated(t, m.start()):
            return "regular"
    return None


def parse_option(text: str, choices) -> str | None:
    """Which of a blank's ``choices`` an answer fills in: a **bold** choice, else the earliest
    non-negated mention (findings through their synonyms).

    >>> parse_option("The ST segments are **elevated**.", ["elevated", "depressed"])
    'elevated'
    """
    t = normalise_text(text)
    for bold in re.findall(r"\*\*(.+?)\*\*", t):
        if bold.strip() in choices:
            return bold.strip()
    best = None
    for choice in choices:
        pattern = PATTERNS.get(choice) or re.compile(rf"(?<!\w){re.escape(choice)}(?!\w)")
        for m in pattern.finditer(t):
            if not _negated(t, m.start()):
                if best is None or m.start() < best[0]:
                    best = (m.start(), choice)
                break
    return best[1] if best else None


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


# -- scoring ---------------------------------------------------------------------------------------

def interval_score(pred: dict, truth: dict) -> float:
    """Fraction of the true intervals the prediction gets within max(20 ms, 10 %)."""
    if not truth:
        return 0.0
    hits = [abs(pred[k] - v) <= max(20.0, 0.1 * v) for k, v in truth.items() if k in pred]
    return sum(hits) / len(truth)


def substring_labels(text: str, labels) -> list[str]:
    """The labels that occur in ``text`` as case-sensitive substrings, in label order (ECGBench's
    own matching, quirks included: ``"ABNORMAL"`` contains ``NORM``).

    >>> substring_labels("ABNORMAL ECG", ["NORM", "MI"])
    ['NORM']
    """
    return [label for label in labels if label in text]


def score_answer(prediction: str, meta: dict) -> dict:
    """Score one answer against ``meta`` (see training.instruct.generate for its fields).

    Returns ``{"parsed": ..., "correct": float 0..1 or None (unscorable)}``, and for findings
    ``"true"``/``"pred"`` label lists (for macro F1) and for rate ``"abs_error_bpm"``.
    """
    how, answer = meta.get("score"), meta.get("answer")
    if how == "yesno":
        parsed = parse_yes_no(prediction)
        return {"parsed": parsed, "correct": float(parsed == answer)}
    if how == "choice":
        parsed = parse_choice(prediction, meta.get("options"))
        return {"parsed": parsed, "correct": float(parsed == answer)}
    if how == "option":
        parsed = parse_option(prediction, meta.get("choices", [answer]))
        return {"parsed": parsed, "correct": float(parsed == answer)}
    if how == "rate":
        parsed = parse_rate(prediction)
        out = {"parsed": parsed, "correct": float(parsed == answer)}
        bpm = parse_bpm(prediction)
        if bpm is not None and meta.get("value") is not None:
            out["abs_error_bpm"] = abs(bpm - float(meta["value"]))
        return out
    if how == "label":
        parsed = first_label(prediction, meta.get("vocabulary", FINDINGS))
        return {"parsed": parsed, "correct": float(parsed == answer)}
    if how == "labels":
        vocabulary = meta.get("vocabulary", FINDINGS)
        if meta.get("match") == "substring":                 # ECGBench's own label matching
            pred = substring_labels(prediction, vocabulary)
        else:
            pred = sorted(find_labels(prediction, vocabulary), key=list(vocabulary).index)
        true = list(meta.get("labels", answer or []))
        return {"parsed": pred, "true": true, "pred": pred,
                "correct": float(set(pred) == set(true))}
    if how == "intervals":
        parsed = parse_intervals(prediction)
        return {"parsed": parsed, "correct": interval_score(parsed, meta.get("value") or {})}
    return {"parsed": None, "correct": None}


# -- a teaching case's answers against its truth ---------------------------------------------------

#: What the model's answers in a teaching case are checked on, in table order.
ITEMS = {"rate": "Heart rate", "rhythm": "Rhythm", "conduction": "Conduction", "axis": "Axis",
         "st": "ST segments"}
#: A heart rate in bpm counts as right within this many bpm, or this fraction of the true rate.
RATE_TOLERANCE_BPM, RATE_TOLERANCE_FRACTION = 10.0, 0.10
#: Words that show an answer speaks about an item (or it names one of the item's findings).
_TOPICS = {"rate": re.compile(r"\brate\b|\d\s*bpm|beats|/min|tachycard|bradycard"),
           "rhythm": re.compile(r"rhythm|sinus|fibrillation|flutter"),
           "conduction": re.compile(r"conduct|block|bundle|\bpr\b|bbb"),
           "axis": re.compile(r"\baxis\b"),
           "st": re.compile(r"\bst\b")}


def truth_metas(truth: dict) -> dict[str, dict]:
    """The scoring ``meta`` of each :data:`ITEMS` entry for a teaching case's truth (see
    :func:`pulse_app.teaching.truth_of`), as the instruction builders write it for the same
    record (:mod:`pulse_app.questions`); the ST item is scored on the six territory labels.

    >>> from pulse_app.ecg.simulate import ecg_simulate
    >>> from pulse_app.teaching import truth_of
    >>> metas = truth_metas(truth_of(ecg_simulate({"rate_bpm": 120, "qrs": "rbbb"}, seed=1)))
    >>> metas["rate"]["answer"], metas["rhythm"]["answer"], metas["conduction"]["labels"]
    ('tachycardia', 'sinus tachycardia', ['right bundle branch block'])
    """
    from pulse_app.ecg.vocab import AXIS, CONDUCTION, RHYTHMS, ST_T
    from pulse_app.questions import Facts, axis_truth
    from pulse_app.teaching import record_of

    f = Facts(record_of(truth))
    st_labels = [label for label in ST_T if " st " in label]
    metas = {"rate": {"kind": "rate", "score": "rate", "answer": rate_bucket(f.rate),
                      "value": round(f.rate)} if f.rate is not None else None,
             "rhythm": {"kind": "rhythm", "score": "label", "answer": f.rhythm,
                        "vocabulary": [r for r in RHYTHMS if f.known(r)]},
             "conduction": {"kind": "conduction", "score": "labels",
                            "answer": f.present(CONDUCTION), "labels": f.present(CONDUCTION),
                            "vocabulary": list(CONDUCTION)},
             "axis": {"kind": "axis", "score": "label", "answer": axis_truth(f),
                      "vocabulary": ["normal axis", *AXIS]},
             "st": {"kind": "st", "score": "labels", "answer": f.present(st_labels),
                    "labels": f.present(st_labels), "vocabulary": st_labels}}
    return {item: meta for item, meta in metas.items() if meta is not None}


def addresses(text: str, item: str, meta: dict) -> bool:
    """Whether ``text`` says anything about ``item``: a word of its topic or one of its labels.

    >>> addresses("Normal sinus rhythm.", "axis", {"vocabulary": ["left axis deviation"]})
    False
    """
    text = normalise_text(text)
    return bool(_TOPICS[item].search(text) or find_labels(text, meta.get("vocabulary", ())))


def rate_ok(bpm_error: float, true_bpm: float) -> bool:
    """A written heart rate within :data:`RATE_TOLERANCE_BPM` or the fraction of the truth."""
    return bpm_error <= max(RATE_TOLERANCE_BPM, RATE_TOLERANCE_FRACTION * true_bpm)


def _shown(parsed) -> str:
    if parsed is None or parsed == []:
        return "none named"
    return ", ".join(parsed) if isinstance(parsed, list) else str(parsed)


@dataclass
class ItemCheck:
    """One row of the model-vs-truth table: what the truth is, what the model said (its last
    answer that speaks about the item), whether that is right (None: it said nothing about it)."""

    item: str
    truth: str
    said: str | None = None
    correct: bool | None = None
    turn: int | None = None             # which answer (0-based) it was read from
    model: str | None = None            # the model that wrote that answer
    scored: dict = field(default_factory=dict)      # score_answer's result

    @property
    def name(self) -> str:
        return ITEMS[self.item]


def check_answer(text: str, item: str, meta: dict) -> tuple[str, bool, dict]:
    """(what ``text`` says about ``item``, right or wrong, score_answer's result).

    >>> meta = {"kind": "rate", "score": "rate", "answer": "normal", "value": 74}
    >>> check_answer("Sinus rhythm at 80 bpm.", "rate", meta)[:2]
    ('80 bpm', True)
    """
    scored = score_answer(text, meta)
    if item == "rate":
        bpm = parse_bpm(text)
        if bpm is not None:
            return f"{bpm:.0f} bpm", rate_ok(abs(bpm - meta["value"]), meta["value"]), scored
    return _shown(scored["parsed"]), bool(scored["correct"]), scored


def check_case(answers, truth: dict) -> list[ItemCheck]:
    """The model's answers in a teaching case, checked against its truth: one
    :class:`ItemCheck` per item, read from the last answer that speaks about it.

    ``answers``: the case's answers in order, as text or ``(text, model label)`` pairs.

    >>> from pulse_app.ecg.simulate import ecg_simulate
    >>> from pulse_app.teaching import truth_of
    >>> truth = truth_of(ecg_simulate({"rhythm": "afib", "rate_bpm": 90}, seed=2))
    >>> rows = check_case(["Atrial flutter.", "Atrial fibrillation, rate about 95 bpm."], truth)
    >>> [(r.item, r.said, r.correct, r.turn) for r in rows][:3]    # doctest: +NORMALIZE_WHITESPACE
    [('rate', '95 bpm', True, 1), ('rhythm', 'atrial fibrillation', True, 1),
     ('conduction', None, None, None)]
    """
    metas = truth_metas(truth)
    answers = [(a, None) if isinstance(a, str) else tuple(a) for a in answers]
    rows = []
    for item, meta in metas.items():
        expected = meta["answer"]
        if item == "rate":
            expected = f"{meta['value']} bpm ({meta['answer']})"
        row = ItemCheck(item, _shown(expected))
        for turn in range(len(answers) - 1, -1, -1):
            text, model = answers[turn]
            if text and addresses(text, item, meta):
                row.said, row.correct, row.scored = check_answer(text, item, meta)
                row.turn, row.model = turn, model
                break
        rows.append(row)
    return rows


def _cell(text: str) -> str:
    return html.escape(str(text), quote=False).replace("|", "/")


def checks_markdown(rows: list[ItemCheck]) -> str:
    """The model-vs-truth table (Markdown); every cell is a canonical label or a number, never
    the model's own text."""
    if not rows:
        return ""
    models = sorted({r.model for r in rows if r.model})
    lines = ["| | Truth | The model said | |", "|---|---|---|---|"]
    for r in rows:
        mark = "—" if r.correct is None else "✅ right" if r.correct else "❌ wrong"
        lines.append(f"| {r.name} | {_cell(r.truth)} | {_cell(r.said or '(not said)')} | {mark} |")
    checked = [r for r in rows if r.correct is not None]
    lines += ["", f"**Model vs truth:** {sum(r.correct for r in checked)} of {len(checked)} "
                  f"right" + (f" (answers by {_cell(', '.join(models))})" if models else
                              " (ask the model about the rate, rhythm, conduction, axis and ST "
                              "segments first)")]
    return "\n".join(lines)
