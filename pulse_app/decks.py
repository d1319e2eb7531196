"""Decks: a lesson's teaching cases, presented one by one, handed out as a PDF, shared as a code.

A :class:`Deck` is a list of :class:`~pulse_app.teaching.Case` chosen by the teacher, or drawn
at random at a difficulty :data:`LEVELS` (one clear finding; combinations; subtle findings) from
a seed, and whether students answer multiple-choice questions. Its code (:mod:`pulse_app.codes`)
holds the cases themselves, or for a drawn deck only (level, size, seed): a drawn deck of any
size is a 16-letter code.

>>> deck = Deck.draw("single", 5, seed=7, students=True)
>>> len(deck.cases), Deck.from_code(deck.code) == deck, len(deck.code.replace("-", ""))
(5, True, 16)
>>> [c.distort for c in deck.cases] == ["none"] * 5
True
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from pulse_app.codes import CASE_BYTES, KIND_DECK, KIND_LEVEL_DECK, CodeInvalid, decode, encode
from pulse_app.teaching import Case

#: Difficulty levels of a drawn deck: id -> what the teacher reads.
LEVELS = {"single": "One clear finding", "combined": "Combinations of findings",
          "subtle": "Subtle findings (near the thresholds, some on phone photos)"}
MAX_CASES = 30
_LEVEL_IDS = tuple(LEVELS)            # index written in codes: never reorder
_DRAWN = struct.Struct(">BBBI")       # flags, level, count, seed


def _rate(rng: random.Random) -> float:
    return float(rng.randint(62, 92))


#: One clear finding each (the rest normal): what a drawn "single" case shows.
CLEAR = {
    "normal ECG": lambda r: {},
    "sinus bradycardia": lambda r: {"rate_bpm": float(r.randint(38, 50))},
    "sinus tachycardia": lambda r: {"rate_bpm": float(r.randint(115, 145))},
    "atrial fibrillation": lambda r: {"rhythm": "afib", "rate_bpm": float(r.randint(80, 130))},
    "atrial flutter": lambda r: {"rhythm": "aflutter",
                                 "rate_bpm": float(round(r.uniform(270, 340) / r.choice([2, 4])))},
    "first-degree AV block": lambda r: {"pr_ms": float(r.randint(26, 32) * 10)},
    "right bundle branch block": lambda r: {"qrs": "rbbb"},
    "left bundle branch block": lambda r: {"qrs": "lbbb"},
    "left axis deviation": lambda r: {"axis": "left"},
    "right axis deviation": lambda r: {"axis": "right"},
    "premature ventricular contractions": lambda r: {"ectopy": "pvc"},
    "inferior ST elevation": lambda r: {"st": {"inferior": r.choice([0.25, 0.3, 0.35])}},
    "anterior ST elevation": lambda r: {"st": {"anterior": r.choice([0.25, 0.3, 0.35])}},
    "lateral ST elevation": lambda r: {"st": {"lateral": r.choice([0.25, 0.3])}},
    "long QT": lambda r: {"qt_long": True},
    "left ventricular hypertrophy": lambda r: {"lvh": True},
}
#: Findings near their thresholds, or easy to miss.
SUBTLE = {
    "borderline first-degree AV block": lambda r: {"pr_ms": float(r.randint(21, 23) * 10)},
    "mild sinus tachycardia": lambda r: {"rate_bpm": float(r.randint(103, 108))},
    "mild sinus bradycardia": lambda r: {"rate_bpm": float(r.randint(52, 57))},
    "sinus arrhythmia": lambda r: {"rhythm": "sinus_arrhythmia"},
    "premature atrial contractions": lambda r: {"ectopy": "pac"},
    "small ST elevation": lambda r: {"st": {r.choice(["inferior", "anterior"]): 0.1}},
    "ST depression": lambda r: {"st": {r.choice(["inferior", "anterior", "lateral"]):
                                       -r.choice([0.1, 0.12, 0.15])}},
    "T-wave inversion": lambda r: {"t_inversion": [r.choice(["inferior", "lateral"])]},
    "low QRS voltage": lambda r: {"low_voltage": True},
}
#: Which clear findings exclude each other in a combination (one rhythm, one block...).
_GROUP = {"sinus bradycardia": "rhythm", "sinus tachycardia": "rhythm",
          "atrial fibrillation": "rhythm", "atrial flutter": "rhythm",
          "right bundle branch block": "qrs", "left bundle branch block": "qrs",
          "left axis deviation": "axis", "right axis deviation": "axis",
          "inferior ST elevation": "st", "anterior ST elevation": "st",
          "lateral ST elevation": "st"}
_CLASHES = [("first-degree AV block", "atrial fibrillation"),
            ("first-degree AV block", "atrial flutter"),
            ("left ventricular hypertrophy", "left bundle branch block"),
            *[(st, block) for st in ("inferior ST elevation", "anterior ST elevation",
                                     "lateral ST elevation")
              for block in ("right bundle branch block", "left bundle branch block")]]


def _combine(names, rng: random.Random) -> dict:
    findings = {"rate_bpm": _rate(rng)}
    for name in names:
        findings.update(CLEAR[name](rng))
    return findings


def draw_case(level: str, rng: random.Random, used: set) -> Case:
    """One case of ``level``; ``used`` (the findings drawn so far) avoids repeats while it can."""
    if level == "single":
        names = [n for n in CLEAR if n not in used] or list(CLEAR)
        name = rng.choice(names)
        used.add(name)
        return Case.make({"rate_bpm": _rate(rng), **CLEAR[name](rng)}, seed=rng.randrange(10_000))
    if level == "combined":
        pool = [n for n in CLEAR if n != "normal ECG"]
        while True:
            names = rng.sample(pool, rng.choice([2, 2, 3]))
            groups = [_GROUP.get(n, n) for n in names]
            if len(set(groups)) == len(groups) and not any(
                    a in names and b in names for a, b in _CLASHES) \
                    and frozenset(names) not in used:
                used.add(frozenset(names))
                return Case.make(_combine(names, rng), seed=rng.randrange(10_000))
    if level == "subtle":
        names = [n for n in SUBTLE if n not in used] or list(SUBTLE)
        name = rng.choice(names)
        used.add(name)
        return Case.make({"rate_bpm": _rate(rng), **SUBTLE[name](rng)},
                         seed=rng.randrange(10_000), distort=rng.choice(["none", "photo"]))
    raise CodeInvalid(f"unknown difficulty level {level!r}",
                      hint=f"choose one of {', '.join(LEVELS)}")


@dataclass(frozen=True)
class Deck:
    """Cases in the order they are presented; ``students``: they answer questions too;
    ``level``/``seed``: how a drawn deck was drawn (None for a deck of chosen cases)."""

    cases: tuple
    students: bool = False
    level: str | None = None
    seed: int | None = None

    @classmethod
    def of(cls, cases, *, students: bool = False) -> "Deck":
        """A deck of chosen cases (1 to :data:`MAX_CASES`)."""
        cases = tuple(cases)
        if not 1 <= len(cases) <= MAX_CASES:
            raise CodeInvalid(f"a deck holds 1 to {MAX_CASES} cases, not {len(cases)}",
                              hint="add a case, or split the lesson into two decks")
        return cls(cases, bool(students))

    @classmethod
    def draw(cls, level: str, count: int, *, seed: int = 0, students: bool = False) -> "Deck":
        """``count`` random cases at difficulty ``level`` (see :data:`LEVELS`), from ``seed``."""
        if not 1 <= int(count) <= MAX_CASES or not 0 <= int(seed) < 2 ** 32:
            raise CodeInvalid(f"a drawn deck holds 1 to {MAX_CASES} cases from a seed "
                              f"0-4294967295 (asked: {count} cases, seed {seed})",
                              hint="choose another size or seed")
        rng, used = random.Random(f"{level}|{int(seed)}"), set()
        cases = tuple(draw_case(level, rng, used) for _ in range(int(count)))
        return cls(cases, bool(students), level, int(seed))

    @classmethod
    def from_code(cls, code: str) -> "Deck":
        """The deck a code holds; :class:`~pulse_app.codes.CodeInvalid` when it holds none."""
        kind, payload = decode(code)
        if kind == KIND_LEVEL_DECK and len(payload) == _DRAWN.size:
            flags, level, count, seed = _DRAWN.unpack(payload)
            if level >= len(_LEVEL_IDS):
                raise CodeInvalid("this deck code holds a level this app does not know",
                                  hint="open it on the app that made it")
            return cls.draw(_LEVEL_IDS[level], count, seed=seed, students=bool(flags & 1))
        if kind == KIND_DECK and len(payload) >= 2 \
                and len(payload) == 2 + payload[1] * CASE_BYTES:
            from pulse_app.codes import KIND_CASE

            cases = [Case.from_code(encode(KIND_CASE, payload[i:i + CASE_BYTES]))
                     for i in range(2, len(payload), CASE_BYTES)]
            return cls.of(cases, students=bool(payload[0] & 1))
        if kind in (KIND_DECK, KIND_LEVEL_DECK):
            raise CodeInvalid("this deck code is cut short", hint="copy the whole code")
        raise CodeInvalid("this is a case code, not a deck code",
                          hint="open it in the Teaching tab")

    @property
    def code(self) -> str:
        if self.level is not None:
            return encode(KIND_LEVEL_DECK, _DRAWN.pack(int(self.students),
                                                       _LEVEL_IDS.index(self.level),
                                                       len(self.cases), self.seed))
        from pulse_app.codes import pack_case

        payload = bytes([int(self.students), len(self.cases)]) + b"".join(
            pack_case(c.findings, seed=c.seed, distort=c.distort) for c in self.cases)
        return encode(KIND_DECK, payload)

    def title(self) -> str:
        """What a presenter reads: its size and how it was made (never its findings)."""
        how = LEVELS[self.level].split(" (")[0].lower() if self.level else "chosen cases"
        return f"{len(self.cases)} cases, {how}" + (", students answer" if self.students else "")


def deck_summary(checks: dict) -> str:
    """The model's score across a deck (Markdown): per item, right of checked, over the cases
    revealed so far. ``checks``: case number (1-based) -> that case's
    :func:`pulse_app.answer_check.check_case` rows."""
    from pulse_app.answer_check import ITEMS

    if not checks:
        return "*No case revealed yet.*"
    right = {item: [0, 0] for item in ITEMS}
    per_case = []
    for number in sorted(checks):
        rows = [r for r in checks[number] if r.correct is not None]
        for r in rows:
            right[r.item][0] += r.correct
            right[r.item][1] += 1
        per_case.append(f"{number}: {sum(r.correct for r in rows)}/{len(rows)}")
    lines = [f"**Model vs truth over {len(checks)} revealed case(s)**", "",
             "| | Right | Checked |", "|---|---|---|"]
    for item, name in ITEMS.items():
        lines.append(f"| {name} | {right[item][0]} | {right[item][1]} |")
    total = [sum(v[0] for v in right.values()), sum(v[1] for v in right.values())]
    lines += [f"| **All** | **{total[0]}** | **{total[1]}** |", "",
              "Per case (right/checked): " + ", ".join(per_case)]
    return "\n".join(lines)
