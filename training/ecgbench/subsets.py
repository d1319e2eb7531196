"""The nine ECGBench subsets: file names, what they ask, how they are scored, the paper's numbers.

Names are the released files' stems (the HuggingFace dataset's configs ``PULSE-ECG/ECGBench``,
laid out by the PULSE repository's README as ``<root>/<name>.json`` plus image folders). The
PULSE-7B and Random rows are Tables 2 and 3 (same in A4 and A5) of the paper, in percent.

>>> SUBSETS["ptb-test"].title, SUBSETS["ptb-test"].labels
('PTB-XL Super', ('NORM', 'MI', 'STTC', 'CD', 'HYP'))
>>> resolve_subsets("ptb,mmmu")
['ptb-test', 'mmmu-ecg']
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pulse_app.errors import PulseError

MULTILABEL, MCQ, ECGQA, REPORT, ARENA = "multilabel", "mcq", "ecgqa", "report", "arena"


@dataclass(frozen=True)
class Subset:
    """One ECGBench subset. ``metrics`` in the paper's column order; ``labels`` the label space
    (multi-label subsets), ``letters`` the options (multiple choice)."""

    name: str
    title: str
    table: int                  # 2: in-domain, 3: out-of-domain
    kind: str
    n: int                      # items in the release (Table A2)
    metrics: tuple[str, ...]
    paper: dict = field(default_factory=dict)      # PULSE-7B, percent
    random: dict = field(default_factory=dict)     # the paper's Random row
    labels: tuple[str, ...] = ()
    letters: str = ""
    aliases: tuple[str, ...] = ()


SUBSETS = {s.name: s for s in (
    Subset("ptb-test", "PTB-XL Super", 2, MULTILABEL, 2082, ("AUC", "F1", "HL"),
           {"AUC": 82.9, "F1": 76.9, "HL": 10.2}, {"AUC": 50.3, "F1": 33.2, "HL": 50.1},
           labels=("NORM", "MI", "STTC", "CD", "HYP"), aliases=("ptb", "ptbxl")),
    Subset("ptb-test-report", "PTB-XL Report", 2, REPORT, 500, ("Report Score",),
           {"Report Score": 65.4}, {"Report Score": 0.0}, aliases=("report", "ptb-report")),
    Subset("code15-test", "CODE-15%", 2, MULTILABEL, 1400, ("AUC", "F1", "HL"),
           {"AUC": 91.7, "F1": 87.0, "HL": 4.6}, {"AUC": 48.8, "F1": 15.0, "HL": 32.1},
           labels=("NORM", "ABNORMAL", "1dAVb", "RBBB", "LBBB", "SB", "ST", "AF"),
           aliases=("code15", "code-15")),
    Subset("ecgqa-test", "ECG-QA", 2, ECGQA, 1317, ("Accuracy",), {"Accuracy": 71.6},
           {"Accuracy": 16.2}, aliases=("ecgqa", "ecg-qa")),
    Subset("cpsc-test", "CPSC 2018", 3, MULTILABEL, 2061, ("AUC", "F1", "HL"),
           {"AUC": 80.7, "F1": 65.4, "HL": 6.8}, {"AUC": 51.2, "F1": 15.1, "HL": 28.8},
           labels=("NORM", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"),
           aliases=("cpsc", "cpsc2018", "cpsc-test-fix")),
    Subset("csn-test-no-cot", "CSN", 3, MCQ, 1611, ("Accuracy",), {"Accuracy": 87.9},
           {"Accuracy": 11.6}, letters="ABCDEFGH", aliases=("csn",)),
    Subset("g12-test-no-cot", "G12EC", 3, MCQ, 2026, ("Accuracy",), {"Accuracy": 81.4},
           {"Accuracy": 12.1}, letters="ABCDEFGH", aliases=("g12", "g12ec")),
    Subset("mmmu-ecg", "MMMU-ECG", 3, MCQ, 200, ("Accuracy",), {"Accuracy": 64.0},
           {"Accuracy": 24.2}, letters="ABCD", aliases=("mmmu",)),
    Subset("arena", "ECG Arena", 3, ARENA, 50, ("Arena Score",), {"Arena Score": 41.5},
           {"Arena Score": 0.0}, aliases=("ecg-arena",)),
)}

#: The order the published ``evaluate_ecgbench.py`` scores the rule-based subsets in (its
#: ``__main__``); the random fallback of multiple choice draws from one stream in this order.
PAPER_ORDER = ("mmmu-ecg", "ptb-test", "cpsc-test", "csn-test-no-cot", "g12-test-no-cot",
               "ecgqa-test", "code15-test")
#: The paper's table order (Table 2, then Table 3).
TABLE_ORDER = ("ptb-test", "ptb-test-report", "code15-test", "ecgqa-test", "cpsc-test",
               "csn-test-no-cot", "g12-test-no-cot", "mmmu-ecg", "arena")
_BY_ALIAS = {alias: s.name for s in SUBSETS.values() for alias in (s.name, *s.aliases)}


class UnknownSubset(PulseError):
    exit_code = 2


def resolve_subsets(spec: str) -> list[str]:
    """Subset names from a comma-separated list of names or aliases, or ``all``; in table
    order."""
    wanted = set()
    for part in (p.strip().lower() for p in spec.split(",")):
        if not part:
            continue
        if part == "all":
            wanted.update(SUBSETS)
        elif part in _BY_ALIAS:
            wanted.add(_BY_ALIAS[part])
        else:
            raise UnknownSubset(f"no ECGBench subset {part!r}",
                                hint=f"choose from {', '.join(TABLE_ORDER)} or all")
    return [name for name in TABLE_ORDER if name in wanted]
