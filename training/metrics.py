"""Scoring answers against a sample's ``meta``: the answer parsers and :func:`score_answer`
(one definition, in :mod:`pulse_app.answer_check`, where the app's teaching tab checks the
model's answers with them; their names work here too), :func:`macro_f1` for multi-label
findings, and :class:`MajorityBaseline`, the majority-class answer per question kind learned
from a train split.

>>> parse_choice("I think the answer is (C) atrial flutter", {"A": "x", "B": "y", "C": "z"})
'C'
>>> parse_yes_no("There is no ST elevation."), parse_rate("HR 48 bpm")
('no', 'bradycardia')
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

from pulse_app.answer_check import (interval_score, parse_bpm, parse_choice, parse_intervals,
                                    parse_option, parse_rate, parse_yes_no, score_answer)

__all__ = ["interval_score", "parse_bpm", "parse_choice", "parse_intervals", "parse_option",
           "parse_rate", "parse_yes_no", "score_answer", "macro_f1", "group_key",
           "MajorityBaseline"]


# -- scoring ---------------------------------------------------------------------------------------

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
