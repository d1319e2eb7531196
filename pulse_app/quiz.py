"""Multiple-choice questions for students about a teaching case, written from its truth by the
instruction data's own builders (:mod:`pulse_app.questions`): the heart rate, the rhythm, the
axis, conduction and the waveform (ST/T, QT, voltage), each with four options.

>>> from pulse_app.teaching import Case, case_truth
>>> case = Case.make({"rhythm": "afib", "rate_bpm": 110}, seed=5)
>>> questions = case_quiz(case_truth(case), key=case.code)
>>> [q.kind for q in questions]
['rate', 'rhythm', 'axis', 'conduction', 'morphology']
>>> questions[1].options[questions[1].answer]
'Atrial fibrillation'
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

#: What a student is asked about a case, in this order.
KINDS = ("rate", "rhythm", "axis", "conduction", "morphology")


@dataclass(frozen=True)
class QuizQuestion:
    """One question: ``kind`` (its id within a case), the question, options A-D, the right
    letter and the explanation read out after Reveal."""

    kind: str
    text: str
    options: dict
    answer: str
    explanation: str

    def choices(self) -> list[tuple[str, str]]:
        """(label, letter) pairs for a radio group: "A. Normal axis" -> "A"."""
        return [(f"{letter}. {text}", letter) for letter, text in self.options.items()]


def case_quiz(truth: dict, *, key: str, kinds=KINDS) -> list[QuizQuestion]:
    """The questions of a case with ``truth``; ``key`` (the case's code) fixes their phrasing and
    option order, so every student and the handout see the same letters."""
    from pulse_app import questions
    from pulse_app.teaching import record_of

    builders = {"rate": questions.basic_rate, "rhythm": questions.rhythm_rhythm,
                "axis": questions.basic_axis, "conduction": questions.rhythm_conduction,
                "morphology": questions.morphology_findings}
    facts = questions.Facts(record_of(truth))
    out = []
    for kind in kinds:
        rng = random.Random(zlib.crc32(f"{key}|{kind}".encode()))
        built = builders[kind](facts, "mcq", rng)
        if built is None:                      # the truth does not settle it (never for a case)
            continue
        text, answer, meta = built
        out.append(QuizQuestion(kind, questions.mcq_stem(text), dict(meta["options"]),
                                meta["answer"], answer))
    return out
