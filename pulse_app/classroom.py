"""A live class: students answer a deck's questions from their own browsers while the teacher
presents it; the teacher sees how the class answered once a case is revealed.

A :class:`Classroom` lives in memory only, for the deck's lifetime: until the presenter ends it,
or :attr:`Classrooms.max_age_s` after it was last used, or the server restarts. It keeps, per
question, one letter per browser (a salted hash of the browser's id, never the id, no name);
the presenter may save the counts as a CSV file, nothing else is written anywhere.

>>> from pulse_app.decks import Deck
>>> rooms = Classrooms()
>>> room = rooms.open("teacher", Deck.draw("single", 2, seed=1, students=True))
>>> room.answer("browser-1", 0, "rhythm", "A"); room.answer("browser-2", 0, "rhythm", "A")
>>> room.counts(0)["rhythm"]
{'A': 2, 'B': 0, 'C': 0, 'D': 0}
"""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
import threading
import time
from dataclasses import dataclass, field

from pulse_app.decks import Deck
from pulse_app.errors import PulseError

#: Letters of a class code: no 0/O, 1/I/L look-alikes.
CODE_LETTERS = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


class ClassNotFound(PulseError):
    """No live class with that code (ended, too old, or the server restarted)."""

    exit_code = 11


@dataclass
class Classroom:
    """One deck being presented with students: which case is shown, which are revealed, and
    the class's answers."""

    id: str
    presenter: str
    deck: Deck
    current: int = 0
    revealed: set = field(default_factory=set)
    used: float = field(default_factory=time.monotonic)
    _answers: dict = field(default_factory=dict)       # (case, kind) -> {browser hash: letter}
    _salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    _questions: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def questions(self, case: int) -> list:
        """The multiple-choice questions of case ``case`` (0-based)."""
        from pulse_app.quiz import case_quiz
        from pulse_app.teaching import case_truth

        with self._lock:
            if case not in self._questions:
                chosen = self.deck.cases[case]
                self._questions[case] = case_quiz(case_truth(chosen), key=chosen.code)
            return self._questions[case]

    def answer(self, browser: str, case: int, kind: str, letter: str) -> None:
        """Record (or change) one browser's answer; refused once the case is revealed."""
        if not 0 <= case < len(self.deck.cases):
            raise PulseError("this case is not in the deck", hint="follow the presenter")
        if case in self.revealed:
            raise PulseError("this case has been revealed: answers are closed",
                             hint="wait for the next case")
        question = next((q for q in self.questions(case) if q.kind == kind), None)
        if question is None or letter not in question.options:
            raise PulseError("that is not one of the options", hint="pick A, B, C or D")
        who = hashlib.sha256(self._salt + str(browser).encode()).hexdigest()[:16]
        with self._lock:
            self._answers.setdefault((case, kind), {})[who] = letter
            self.used = time.monotonic()

    def mine(self, browser: str, case: int) -> dict:
        """What ``browser`` answered in case ``case``: kind -> letter."""
        who = hashlib.sha256(self._salt + str(browser).encode()).hexdigest()[:16]
        with self._lock:
            return {kind: votes[who] for (c, kind), votes in self._answers.items()
                    if c == case and who in votes}

    def counts(self, case: int) -> dict:
        """kind -> {letter: how many browsers chose it} for case ``case``."""
        with self._lock:
            return {q.kind: {letter: sum(v == letter for v in
                                         self._answers.get((case, q.kind), {}).values())
                             for letter in q.options}
                    for q in self._questions.get(case, [])} if case in self._questions else {}

    def answered(self, case: int) -> int:
        """How many browsers answered at least one question of case ``case``."""
        with self._lock:
            return len({who for (c, _), votes in self._answers.items() if c == case
                        for who in votes})

    def distribution_markdown(self, case: int) -> str:
        """The class's answers to case ``case`` (Markdown, for the presenter after Reveal)."""
        questions = self.questions(case)
        counts = self.counts(case)
        lines = [f"**The class: {self.answered(case)} answered**"]
        for q in questions:
            total = sum(counts[q.kind].values())
            lines += ["", f"*{q.text}*", ""]
            for letter, text in q.options.items():
                n = counts[q.kind][letter]
                bar = "█" * round(20 * n / total) if total else ""
                mark = " ✅" if letter == q.answer else ""
                lines.append(f"- {letter}. {text}: **{n}** {bar}{mark}")
        return "\n".join(lines)

    def results_csv(self) -> bytes:
        """Every question's counts, per case (what the presenter may save; no browser ids)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["deck", "case", "question", "option", "text", "correct", "answers"])
        for case in range(len(self.deck.cases)):
            counts = self.counts(case) if case in self._questions else {}
            for q in self.questions(case):
                for letter, text in q.options.items():
                    writer.writerow([self.deck.code, case + 1, q.text, letter, text,
                                     letter == q.answer, counts.get(q.kind, {}).get(letter, 0)])
        return out.getvalue().encode()


class Classrooms:
    """Live classes by code (thread-safe); the oldest go after ``max_age_s`` unused."""

    def __init__(self, max_age_s: float = 6 * 3600, max_count: int = 256):
        self.max_age_s, self.max_count = max_age_s, max_count
        self._rooms: dict[str, Classroom] = {}
        self._lock = threading.Lock()

    def open(self, presenter: str, deck: Deck) -> Classroom:
        """A new live class for ``deck``, presented by ``presenter`` (an owner id)."""
        with self._lock:
            self._trim()
            while True:
                code = "".join(secrets.choice(CODE_LETTERS) for _ in range(6))
                if code not in self._rooms:
                    break
            room = self._rooms[code] = Classroom(code, presenter, deck)
        return room

    def get(self, code: str) -> Classroom:
        """The live class ``code`` (what a student opens)."""
        key = "".join(str(code or "").split()).upper().replace("-", "")
        with self._lock:
            self._trim()
            room = self._rooms.get(key)
        if room is None:
            raise ClassNotFound("no live class with this code (it has ended, or the server "
                                "restarted)", hint="ask the presenter for the current code")
        return room

    def presented_by(self, presenter: str, code: str) -> Classroom:
        """The live class ``code`` if ``presenter`` runs it (what the presenter's page asks)."""
        room = self.get(code)
        if room.presenter != presenter:
            raise ClassNotFound("this class is run from another browser",
                                hint="present the deck again to open a class of your own")
        room.used = time.monotonic()
        return room

    def end(self, presenter: str, code: str) -> None:
        """End a class: its answers are gone."""
        room = self.presented_by(presenter, code)
        with self._lock:
            self._rooms.pop(room.id, None)

    def _trim(self) -> None:
        now = time.monotonic()
        for key in [k for k, r in self._rooms.items() if now - r.used > self.max_age_s]:
            del self._rooms[key]
        while len(self._rooms) > self.max_count:
            oldest = min(self._rooms, key=lambda k: self._rooms[k].used)
            del self._rooms[oldest]
