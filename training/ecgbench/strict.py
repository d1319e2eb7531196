"""``--scoring strict``: the same benchmark, scored so that lucky parsing earns nothing.

Where it differs from ``--scoring paper`` (see :mod:`training.ecgbench.paper` for Q1-Q16):

- labels are found case-insensitively at word boundaries, by abbreviation or synonym ("RBBB",
  "right bundle branch block"; "MI", "inferior myocardial infarction"), and not when negated
  ("no atrial fibrillation"): ``ABNORMAL`` is not ``NORM``, ``LAFB`` is not ``AF``, ``STEMI`` is
  not ``STE``, ``ST segment`` is not sinus tachycardia (the synonyms reuse the instruction
  vocabulary's, :mod:`training.instruct.vocab`);
- the multiple-choice letter is read by :func:`training.metrics.parse_choice` (an answer line
  "B", "(B)", "Answer: B", "option B", or exactly one option's text), the gold letter is the
  reference's leading letter for every subset; **no random fallback**: an answer with no letter
  is wrong, and the count is reported;
- ECG-QA options match whole words, case-insensitively, longest first ("not sure" is not also
  "no"), against the gold set lower-cased;
- classes are the subset's whole label space; F1 is macro over the classes present in the gold
  answers or the predictions (:func:`training.metrics.macro_f1`), hamming loss over the label
  space; **AUC only where scores exist**: free-text answers give none, so it is not reported
  (the paper's AUC of 0/1 predictions equals the mean of sensitivity and specificity);
- the LLM judge's reply must name every aspect (any case, "Form" for "Waveform") with a score
  0-10; all arena turns are judged; every item keeps its own id.
"""

from __future__ import annotations

import re

from training.ecgbench.paper import ecgqa_options
from training.ecgbench.subsets import SUBSETS
from training.instruct.vocab import NEGATION, PATTERNS, normalise_text
from training.metrics import macro_f1, parse_choice

_ST_AFTER = r"(?![- /]?(?:segments?|elevations?|depressions?|changes?|t\b|waves?|intervals?|" \
            r"abnormalit))"
#: ECGBench label -> instruction-vocabulary findings it covers, and its own patterns (lower case).
LABEL_SYNONYMS = {
    "NORM": ((), (r"\bnorm\b", r"\bnormal (?:ecg|electrocardiogram|tracing|12-lead ecg)\b",
                  r"\bwithin normal limits\b")),
    "ABNORMAL": ((), (r"\babnormal\b",)),
    "MI": ((), (r"\bmi\b", r"\b(?:n?stemi|imi|ami|asmi|ilmi|lmi|pmi)\b", r"\binfarct")),
    "STTC": (("inferior st elevation", "anterior st elevation", "lateral st elevation",
              "inferior st depression", "anterior st depression", "lateral st depression",
              "t-wave inversion"),
             (r"\bsttc\b", r"\bst[/-]?t\b(?:[- ]wave)? (?:changes?|abnormalit)",
              r"\bst(?:[- ]segment)? (?:changes?|abnormalit|depression|elevation)",
              r"\bt[- ]wave (?:changes?|abnormalit)", r"\bischemi")),
    "CD": (("first-degree av block", "right bundle branch block", "left bundle branch block"),
           (r"\bcd\b", r"\bconduction (?:disturbance|abnormalit|defect|delay|disorder)",
            r"\bbundle branch block", r"\b(?:av|atrioventricular) block", r"\bfascicular block",
            r"\b(?:lafb|lpfb|ivcd|wpw)\b")),
    "HYP": (("left ventricular hypertrophy",),
            (r"\bhyp\b", r"\bhypertroph", r"\b[lr]vh\b", r"\batrial (?:enlargement|overload)")),
    "1dAVb": (("first-degree av block",), ()),
    "I-AVB": (("first-degree av block",), (r"\biavb\b",)),
    "RBBB": (("right bundle branch block",), ()),
    "LBBB": (("left bundle branch block",), ()),
    "SB": (("sinus bradycardia",), (r"\bsb\b",)),
    "ST": (("sinus tachycardia",), (r"\bst\b" + _ST_AFTER,)),
    "AF": (("atrial fibrillation",), ()),
    "PAC": (("premature atrial contractions",), (r"\bapcs?\b", r"\batrial premature")),
    "PVC": (("premature ventricular contractions",), (r"\bvpcs?\b", r"\bventricular premature")),
    "STD": (("inferior st depression", "anterior st depression", "lateral st depression"),
            (r"\bstd\b", r"\bst(?:[- ]segment)? depression")),
    "STE": (("inferior st elevation", "anterior st elevation", "lateral st elevation"),
            (r"\bste\b", r"\bst(?:[- ]segment)? elevation")),
}
LABEL_PATTERNS = {
    label: [PATTERNS[f] for f in findings] + [re.compile(p) for p in own]
    for label, (findings, own) in LABEL_SYNONYMS.items()}


def find_bench_labels(text: str, labels) -> list[str]:
    """The labels of ``labels`` that ``text`` asserts (word boundaries, any case, synonyms, not
    negated), in label order.

    >>> find_bench_labels("ABNORMAL ECG: LAFB, no atrial fibrillation; inferior MI.",
    ...                   ("NORM", "ABNORMAL", "AF", "MI", "CD"))
    ['ABNORMAL', 'MI', 'CD']
    """
    text = normalise_text(text)
    found = []
    for label in labels:
        for pattern in LABEL_PATTERNS[label]:
            if any(not NEGATION.search(text[max(0, m.start() - 60):m.start()])
                   for m in pattern.finditer(text)):
                found.append(label)
                break
    return found


def gold_labels(subset: str, reference: str) -> list[str]:
    """The gold labels: the reference's label tokens (exact abbreviations, e.g. "MI, STTC")."""
    labels = SUBSETS[subset].labels
    tokens = set(re.findall(r"[A-Za-z0-9-]+", reference))
    exact = [label for label in labels if label in tokens]
    return exact or find_bench_labels(reference, labels)


def score_multilabel(subset: str, answers: list[str], references: list,
                     scores: list[dict] | None = None) -> dict:
    """Macro F1 and hamming loss over the label space; AUC only from per-label ``scores``."""
    from sklearn.metrics import hamming_loss, roc_auc_score
    from sklearn.preprocessing import MultiLabelBinarizer

    labels = SUBSETS[subset].labels
    predicted = [find_bench_labels(a, labels) for a in answers]
    gold = [gold_labels(subset, r) for r in references]
    items = [{"parsed": p, "gold": g, "correct": float(set(p) == set(g))}
             for p, g in zip(predicted, gold)]
    metrics = {"AUC": None, "F1": None, "HL": None}
    notes = ["AUC not computed: the answers are text, with no per-label scores"]
    if items:
        binarizer = MultiLabelBinarizer(classes=list(labels))
        y_true, y_pred = binarizer.fit_transform(gold), binarizer.transform(predicted)
        metrics["F1"] = macro_f1(gold, predicted, labels=list(labels))
        metrics["HL"] = float(hamming_loss(y_true, y_pred))
        if scores and all(s for s in scores):
            import numpy as np

            y_score = np.array([[s.get(label, 0.0) for label in labels] for s in scores])
            kept = [c for c in range(len(labels)) if 0 < y_true[:, c].sum() < len(items)]
            metrics["AUC"] = float(np.mean([roc_auc_score(y_true[:, c], y_score[:, c])
                                            for c in kept])) if kept else None
            notes = [f"AUC from per-label scores over {len(kept)} classes with both outcomes"]
    unparsed = sum(not p for p in predicted)
    return {"metrics": metrics, "items": items, "unparsed": unparsed, "notes": notes}


# -- multiple choice -------------------------------------------------------------------------------

_MARKER = re.compile(r"(?:^|(?<=\s))\(?([A-H])[.):]\s+")


def options_of(question: str, letters: str) -> dict[str, str]:
    """The options a multiple-choice question lists ("A. text", "(B) text", "C) text"), one per
    line or inline, as long as they run A, B, C... in order; {} when fewer than two.

    >>> options_of("Which rhythm? A. Sinus rhythm B. Atrial flutter\\nAnswer with a letter.", "ABCD")
    {'A': 'Sinus rhythm', 'B': 'Atrial flutter'}
    """
    markers = []
    for match in _MARKER.finditer(question):
        if len(markers) < len(letters) and match.group(1) == letters[len(markers)]:
            markers.append(match)
    options = {}
    for i, match in enumerate(markers):
        end = markers[i + 1].start() if i + 1 < len(markers) else len(question)
        options[match.group(1)] = question[match.end():end].strip().split("\n")[0].strip(" ,;")
    return options if len(options) >= 2 else {}


def gold_letter(reference) -> str | None:
    """The reference's leading letter ("B", "(B)", "B. Sinus rhythm")."""
    value = reference if isinstance(reference, str) else "".join(reference)
    match = re.match(r"\W*([A-H])(?![A-Za-z])", value.strip())
    return match.group(1) if match else None


def score_mcq(subset: str, answers: list[str], questions: list[str], references: list) -> dict:
    """Accuracy; an answer with no letter is wrong and counted (no random fallback)."""
    letters = SUBSETS[subset].letters
    items = []
    for answer, question, reference in zip(answers, questions, references):
        options = options_of(question, letters) or dict.fromkeys(letters, "")
        letter = parse_choice(answer, options)
        gold = gold_letter(reference)
        items.append({"parsed": letter, "gold": gold,
                      "correct": float(letter is not None and letter == gold)})
    accuracy = sum(i["correct"] for i in items) / len(items) if items else None
    return {"metrics": {"Accuracy": accuracy}, "items": items,
            "unparsed": sum(i["parsed"] is None for i in items), "notes": []}


# -- ECG-QA ----------------------------------------------------------------------------------------

def ecgqa_prediction(answer: str, options: list[str]) -> list[str]:
    """Options the answer names as whole words (any case), longest first, each span used once."""
    text = normalise_text(answer)
    found = []
    for option in sorted({normalise_text(o).strip(" .") for o in options if o.strip(" .")},
                         key=len, reverse=True):
        pattern = re.compile(rf"(?<![\w-]){re.escape(option)}(?![\w-])")
        match = pattern.search(text)
        if match:
            found.append(option)
            text = text[:match.start()] + " " * len(option) + text[match.end():]
    return sorted(found)


def score_ecgqa(answers: list[str], questions: list[str], references: list) -> dict:
    items = []
    for answer, question, reference in zip(answers, questions, references):
        predicted = ecgqa_prediction(answer, ecgqa_options(question))
        gold = sorted({normalise_text(g).strip(" .") for g in
                       (reference if isinstance(reference, list) else [reference])})
        items.append({"parsed": predicted, "gold": gold,
                      "correct": float(bool(predicted) and predicted == gold)})
    accuracy = sum(i["correct"] for i in items) / len(items) if items else None
    return {"metrics": {"Accuracy": accuracy}, "items": items,
            "unparsed": sum(not i["parsed"] for i in items), "notes": []}


# -- judge scores ----------------------------------------------------------------------------------

REPORT_ASPECTS = {"diagnosis": ("diagnosis",), "waveform": ("waveform", "form"),
                  "rhythm": ("rhythm", "rhythms")}
ARENA_ASPECTS = {"accuracy": ("accuracy",), "completeness": ("completeness",),
                 "instruction adherence": ("instruction adherence", "instruction_adherence",
                                           "instructionadherence", "adherence")}


def aspect_scores(judgement: dict, aspects: dict) -> dict[str, float]:
    """Each aspect's score 0-10 (keys any case, ``Score``/``score`` inside or a bare number);
    ValueError when one is missing or out of range."""
    by_name = {re.sub(r"\s+", " ", str(k)).strip().lower(): v for k, v in judgement.items()}
    out = {}
    for aspect, names in aspects.items():
        value = next((by_name[n] for n in names if n in by_name), None)
        if isinstance(value, dict):
            value = next((v for k, v in value.items() if str(k).lower() == "score"), None)
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"no score for {aspect}") from None
        if not 0 <= score <= 10:
            raise ValueError(f"{aspect} score {score} is outside 0-10")
        out[aspect] = score
    return out
