"""Reading answers out of free text, and scoring them against a sample's ``meta``.

Parsers for what models actually write ("B", "(B)", "Answer: B", the option's text; "Yes.",
"There is no ..."; "tachycardia at 112 bpm"; findings via the vocabulary's synonyms),
:func:`score_answer` for one prediction, :func:`macro_f1` for multi-label findings, and
:class:`MajorityBaseline`, the majority-class answer per question kind learned from a train split.

>>> parse_choice("I think the answer is (C) atrial flutter", {"A": "x", "B": "y", "C": "z"})
'C'
>>> parse_yes_no("There is no ST elevation."), parse_rate("HR 48 bpm")
('no', 'bradycardia')
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict

from pulse_app.answer_parse import (negated, normalise_text, parse_bpm, parse_intervals,
                                    parse_rate)  # noqa: F401 - re-exported
from training.instruct.vocab import PATTERNS, FINDINGS, find_labels, first_label

# -- parsers (rate, bpm and intervals: pulse_app.answer_parse, re-exported here) ----------------


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
                if not negated(norm, m.start()):
                    if best is None or m.start() < best[0]:
                        best = (m.start(), letter)
                    break
    return best[1] if best else None


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
            if not negated(t, m.start()):
                if best is None or m.start() < best[0]:
                    best = (m.start(), choice)
                break
    return best[1] if best else None


# -- scoring ---------------------------------------------------------------------------------------

def interval_score(pred: dict, truth: dict) -> float:
    """Fraction of the true intervals the prediction gets within max(20 ms, 10 %)."""
    if not truth:
        return 0.0
    hits = [abs(pred[k] - v) <= max(20.0, 0.1 * v) for k, v in truth.items() if k in pred]
    return sum(hits) / len(truth)


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
            from training.ecgbench.paper import substring_labels

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


def macro_f1(true_sets, pred_sets, labels=None) -> float:
    """Macro-averaged F1 (scikit-learn) over the labels present in either truth or prediction.

    >>> macro_f1([["a"], ["b"]], [["a"], []])
    0.5
    """
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    seen = set().union(*map(set, true_sets), *map(set, pred_sets))
    classes = [l for l in (labels or sorted(seen)) if l in seen]
    if not classes:
        return 1.0                                # nothing to find, nothing claimed
    binarizer = MultiLabelBinarizer(classes=classes)
    y_true = binarizer.fit_transform([[l for l in s if l in classes] for s in true_sets])
    y_pred = binarizer.transform([[l for l in s if l in classes] for s in pred_sets])
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


# -- majority-class baseline -----------------------------------------------------------------------

def group_key(meta: dict) -> tuple:
    return (meta.get("task"), meta.get("qtype"), meta.get("kind"))


class MajorityBaseline:
    """Answers every question with the most frequent answer of its kind in a train split.

    Per (task, question type, kind): the majority yes/no, option text, blank word or label; for
    findings every label present in more than half of the train answers; for intervals and the
    heart rate in bpm the medians. Its answers are text, scored by the same parsers as a model's.
    """

    def __init__(self):
        self.answers: dict[tuple, Counter] = defaultdict(Counter)
        self.labels: dict[tuple, Counter] = defaultdict(Counter)
        self.sizes: Counter = Counter()
        self.intervals: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))

    @classmethod
    def fit(cls, samples) -> "MajorityBaseline":
        self = cls()
        for sample in samples:
            meta = sample.meta
            key = group_key(meta)
            self.sizes[key] += 1
            how = meta.get("score")
            if how == "choice":
                self.answers[key][meta.get("answer_text")] += 1
            elif how == "labels":
                self.labels[key].update(set(meta.get("labels", [])))
            elif how == "intervals":
                for k, v in (meta.get("value") or {}).items():
                    self.intervals[key][k].append(v)
            elif how is not None:
                self.answers[key][str(meta.get("answer"))] += 1
            if how == "rate" and meta.get("value") is not None:
                self.intervals[key]["bpm"].append(meta["value"])
        return self

    def majority(self, key: tuple) -> str | None:
        counts = self.answers.get(key)
        return counts.most_common(1)[0][0] if counts else None

    def predict(self, sample) -> str:
        """The baseline's answer text for ``sample``."""
        meta, key = sample.meta, group_key(sample.meta)
        how = meta.get("score")
        if how == "choice":
            options = meta.get("options", {})
            text = self.majority(key)
            letter = next((k for k, v in options.items() if v == text), None)
            return f"{letter or sorted(options or {'A': ''})[0]}."
        if how == "labels":
            half = self.sizes[key] / 2
            chosen = [l for l, n in self.labels[key].items() if n > half]
            return "; ".join(chosen) if chosen else "none"
        if how == "intervals":
            medians = {k: statistics.median(v) for k, v in self.intervals[key].items()}
            names = {"pr_ms": "PR", "qrs_ms": "QRS", "qt_ms": "QT", "qtc_ms": "QTc"}
            return ", ".join(f"{names[k]} {round(v)} ms" for k, v in medians.items())
        if how == "rate" and self.intervals[key].get("bpm"):
            bpm = round(statistics.median(self.intervals[key]["bpm"]))
            return f"{self.majority(key)} ({bpm} bpm)"
        if how == "option":
            answer = self.majority(key) or ""
            return f"**{answer}**"
        return self.majority(key) or ""
