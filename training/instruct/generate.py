"""Instruction samples from a record's labels and measurements (deterministic given a seed).

For one record and its image, :func:`generate_samples` writes questions of the paper's four task
categories (basic features, rhythm, morphology/pathology, report) in four question types
(close-ended yes/no, open-ended, fill-in-the-blank, multiple choice with shuffled options A-D),
each asked in one of many phrasings, with an answer that states the ground truth exactly. The
builders of each kind (rate, axis, intervals, rhythm, ectopy, conduction, morphology) and
:class:`Facts` are the app's (:mod:`pulse_app.questions`: the teaching quiz asks them too); this
module adds the report and puts them together.

Every sample's ``meta`` says how to score an answer to it (``training.evaluate`` does)::

    task, qtype, kind      e.g. "basic", "mcq", "rate"
    score                  yesno | choice | option | rate | label | labels | intervals
    answer                 the canonical answer: "yes", "B", "tachycardia", "atrial flutter", ...
    options / choices      mcq: {"A": text, ...}; fill: the words the blank takes
    vocabulary, labels     labels scoring: the labels the question covers, and those present
    value                  rate: exact bpm; intervals: {"pr_ms": ..., ...}
    source, measured_by    real records only: the source, and measurements not from it
                           ({"heart_rate_bpm": "signal (neurokit2 ...)"})
    dropped_measurements   real records only: measurements left out as contradicting a label

A question is asked only where the record's labels settle its answer (:class:`Facts`): "no",
"normal axis", "none of these", distractors and "normal ECG" only for findings known absent.

>>> from pulse_app.ecg.records import Record
>>> import numpy as np
>>> rec = Record("r1", np.zeros((10, 12), "float32"), 500.0, [], labels=["sinus rhythm"],
...              measurements={"heart_rate_bpm": 72, "pr_ms": 160, "qrs_ms": 90, "qt_ms": 380,
...                            "qtc_ms": 415, "axis_deg": 45})
>>> [s.meta["task"] + "/" + s.meta["qtype"] for s in generate_samples(rec, "r1.png", seed=0)][:4]
['basic/close', 'basic/open', 'basic/fill', 'basic/mcq']
"""

from __future__ import annotations

import random
import zlib
from typing import TYPE_CHECKING, Callable

from pulse_app.questions import (Facts, axis_truth, basic_axis, basic_intervals,
                                 basic_rate, morphology_findings, rhythm_conduction,
                                 rhythm_ectopy, rhythm_rhythm)
from training.instruct.format import IMAGE_PREFIX, QTYPES, TASKS, Sample
from training.instruct.report import build_report

if TYPE_CHECKING:
    from pulse_app.ecg.records import Record

# -- report ----------------------------------------------------------------------------------------

REPORT_Q = ["Write a clinical report for this ECG.", "Please write a clinical report based on "
            "this ECG image.", "Review this electrocardiogram and provide your expert diagnosis.",
            "Interpret this 12-lead ECG: rhythm, rate, intervals, axis, findings and conclusion.",
            "Provide a structured report of this ECG.", "What is your full reading of this ECG?"]


def report(f: Facts, qtype: str, rng: random.Random):
    from pulse_app.ecg.vocab import FINDINGS

    text = build_report(f.labels + f.extra, f.m, rng=rng, facts=f)
    vocabulary = [l for l in FINDINGS if f.known(l)]
    return rng.choice(REPORT_Q), text, {"kind": "report", "score": "labels", "answer": f.labels,
                                        "labels": f.labels, "vocabulary": vocabulary}


# -- putting it together ---------------------------------------------------------------------------

Builder = Callable[[Facts, str, random.Random], tuple]
#: task -> [(kind builder, weight, needs)]; skipped when the record lacks what a builder needs.
KINDS: dict[str, list[tuple[Builder, float, Callable[[Facts], bool]]]] = {
    "basic": [(basic_rate, 0.5, lambda f: f.rate is not None),
              (basic_axis, 0.25, lambda f: axis_truth(f) is not None),
              (basic_intervals, 0.25, lambda f: "qrs_ms" in f.m)],
    "rhythm": [(rhythm_rhythm, 0.6, lambda f: f.rhythm is not None),
               (rhythm_ectopy, 0.2, lambda f: True),
               (rhythm_conduction, 0.2, lambda f: True)],
    "morphology": [(morphology_findings, 1.0, lambda f: True)],
    "report": [(report, 1.0, lambda f: True)],
}
#: Question types per task (the paper's reports are open-ended only).
TASK_QTYPES = {"basic": QTYPES, "rhythm": QTYPES, "morphology": QTYPES, "report": ("open",)}


def _rng(seed: int, record_id: str, task: str, qtype: str) -> random.Random:
    return random.Random(zlib.crc32(f"{seed}|{record_id}|{task}|{qtype}".encode()))


def generate_samples(record: "Record", image: str, *, seed: int = 0, tasks=TASKS,
                     qtypes=QTYPES) -> list[Sample]:
    """One sample per (task, question type) for ``record``, its image at relative path ``image``.

    The kind asked (rate, axis, rhythm, ectopy...) and its phrasing are drawn from ``seed`` and
    the record id, so the same inputs give the same samples.
    """
    f = Facts(record)
    samples = []
    for task in tasks:
        for qtype in TASK_QTYPES[task]:
            if qtype not in qtypes:
                continue
            rng = _rng(seed, f.id, task, qtype)
            usable = [(b, w) for b, w, needs in KINDS[task] if needs(f)]
            if not usable:
                continue
            builder = rng.choices([b for b, _ in usable], [w for _, w in usable])[0]
            built = builder(f, qtype, rng)
            for other, _ in sorted(usable, key=lambda bw: -bw[1]):     # unsupported: next kind
                if built is not None:
                    break
                if other is not builder:
                    built = other(f, qtype, rng)
            if built is None:
                continue                                # nothing this record supports
            question, answer, meta = built
            meta = {"task": task, "qtype": qtype, **meta, "record_labels": f.labels,
                    **f.meta()}
            samples.append(Sample(
                id=f"{f.id}-{task}-{qtype}", image=image,
                conversations=[{"from": "human", "value": IMAGE_PREFIX + question},
                               {"from": "gpt", "value": answer}],
                meta=meta))
    return samples
