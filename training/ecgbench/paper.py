"""``--scoring paper``: the published PULSE scorers' behaviour, quirks included.

Re-implemented from reading AIMedLab/PULSE ``evaluation/evaluate_ecgbench.py`` (multiple choice,
multi-label, ECG-QA), ``evaluation/eval_report.py`` and ``evaluation/eval_arena.py`` (LLM judge)
and ``LLaVA/llava/eval/model_ecg_resume.py`` (what the scorers read). Each quirk is named
``Qn`` here, in the docs (docs/ecgbench.md) and in tests/test_ecgbench_scoring.py:

Multiple choice (``extract``, ``eval_mmmu``/``eval_csn_test``/``eval_g12_test``):

- Q1 the whole answer equal to a letter A-H is that letter;
- Q2 else the first of ``"A." ... "H."`` (alphabetical, not by position) found *anywhere* in the
  text wins: ``"B. ..., see A."`` -> A, and ``"... this ECG."`` -> G (``"G."`` in ``"ECG."``);
- Q3 else after the *last* ``"The correct option is "``, the next character if it is A-H, else no
  answer (the rules below are not tried);
- Q4 else after the last ``"Answer:"``, the alphabetically first capital A-H found anywhere in
  the rest: ``"Answer: D) LBBB"`` -> B;
- Q5 no answer -> a random letter (A-D for MMMU-ECG, A-H for CSN/G12EC) from one
  ``random.seed(42)`` stream shared, in ``PAPER_ORDER``, by all subsets of the run;
- Q6 the gold letter is the answer's first character for CSN/G12EC (``value[0]``) but the whole
  answer for MMMU-ECG (``"(B)"`` or ``"B. ..."`` never equals a letter);
- Q7 a file is scored only with exactly 200 / 1611 / 2026 answers (MMMU/CSN/G12EC): a partial
  run is skipped silently (here: scored, with a note).

Multi-label (``eval_ptb_test``, ``eval_cpsc_test``, ``eval_code15_test``, ``compute_f1_auc``):

- Q8 labels are case-sensitive substrings, in the gold answer and in the prediction:
  ``"ABNORMAL"`` contains PTB-XL's ``NORM``, ``"LAFB"`` contains CPSC's ``AF``, ``"STEMI"``
  contains ``STE``, lower-case ``"atrial fibrillation"`` names nothing;
- Q9 CODE-15%: only the text after the last ``"Answer:"`` counts; ``NORM`` (without ``ABNORMAL``)
  or ``ABNORMAL`` is added in front of the substring labels; a gold answer that is exactly
  ``NORM``/``ABNORMAL`` is that one class, else its substring labels; ``ST`` matches inside
  ``STD``/``ST-T``/``FIRST``... upper case;
- Q10 classes are those of the gold answers only (``MultiLabelBinarizer`` fitted on them);
  predicted labels outside them are dropped;
- Q11 F1 is the mean of per-class F1 (a gold class never predicted scores 0); AUC is ``roc_auc_score`` of the 0/1 predictions per
  class (no scores exist), NaN for a class whose gold column is constant, and the mean is NaN if
  any class is (``np.mean``, not ``nanmean``); hamming loss over the gold classes.

ECG-QA (``eval_ecgqa_test``):

- Q12 the options are the question's text after the last ``"Options:"``, the sentence "Only
  answer based on the given Options without any explanation." removed, split on commas,
  stripped, **case kept**; an option is predicted when it is a substring of the *lower-cased*
  answer, so an option with a capital letter (``"None"``, ``"lead I"``) is never predicted, and
  ``"no"`` is predicted inside ``"not sure"``/``"normal"``/``"none"``;
- Q13 correct when the set of predicted options equals the set of the gold answer: a list of
  words in the release, but a gold *string* would be compared as a set of characters.

LLM judge (``eval_report.py``, ``eval_arena.py``):

- Q14 the prompt is the Fig. A9/A10 text then the ground truth and the answer between the
  ``[The Start of ...]`` markers, exactly spaced as the script writes it (prompts/*.txt);
  temperature 0, JSON mode, no retry;
- Q15 the report score of an item is the mean of ``Score`` over *every* key of the judge's JSON
  (whatever the keys are called) x 10; the arena score is the mean of the three named scores
  (``Accuracy``, ``Completeness``, ``Instruction Adherence``) x 10 over all items, and only the
  first two turns are judged;
- Q16 items are keyed by the text after the last ``-`` of their id (``"ptb-report-07190_hr-0"``
  -> ``"0"``): ids sharing it collapse into one judged item (the golden report of the last one
  in the file; which answer survives depends on thread timing in the script, here the last);
  a judge reply that is not JSON, or lacks a key, stops the published script (here: counted as
  a failed judgement and left out).
"""

from __future__ import annotations

import random
import warnings

import numpy as np

from training.ecgbench.subsets import SUBSETS

LETTERS = "ABCDEFGH"
ECGQA_INSTRUCTION = "Only answer based on the given Options without any explanation."
PAPER_SEED = 42


# -- multiple choice ------------------------------------------------------------------------------

def extract_choice(text: str) -> str | None:
    """The published ``extract``: Q1-Q4 (None when it finds no answer).

    >>> [extract_choice(t) for t in ["C", "B. Sinus rhythm. See A.", "Answer: D) LBBB", "no idea"]]
    ['C', 'A', 'B', None]
    """
    if text in tuple(LETTERS):                                    # Q1
        return text
    for letter in LETTERS:                                        # Q2
        if f"{letter}." in text:
            return letter
    if "The correct option is " in text:                          # Q3
        after = text.split("The correct option is ")[-1]
        return after[0] if after and after[0] in LETTERS else None
    if "Answer:" in text:                                         # Q4
        rest = text.split("Answer:")[-1].strip()
        return next((letter for letter in LETTERS if letter in rest), None)
    return None


def new_paper_random() -> random.Random:
    """The ``random.seed(42)`` stream of the published script (Q5)."""
    return random.Random(PAPER_SEED)


def mcq_gold(subset: str, reference) -> str:
    """Q6: the gold letter as the published script reads it."""
    value = reference if isinstance(reference, str) else "".join(reference)
    return value if subset == "mmmu-ecg" else value[:1]


def score_mcq(subset: str, answers: list[str], references: list, rng: random.Random) -> dict:
    """Accuracy with Q1-Q7; per item the extracted letter, whether it was drawn at random."""
    from sklearn.metrics import accuracy_score

    letters = SUBSETS[subset].letters
    items, predicted, gold = [], [], []
    for text, reference in zip(answers, references):
        letter = extract_choice(text)
        drawn = letter is None
        if drawn:
            letter = rng.choice(list(letters))
        predicted.append(letter)
        gold.append(mcq_gold(subset, reference))
        items.append({"parsed": letter, "random": drawn, "gold": gold[-1],
                      "correct": float(letter == gold[-1])})
    notes = []
    if len(answers) != SUBSETS[subset].n:
        notes.append(f"the published script skips this file: it scores only complete runs of "
                     f"{SUBSETS[subset].n} answers (this run has {len(answers)})")
    accuracy = float(accuracy_score(gold, predicted)) if gold else None
    return {"metrics": {"Accuracy": accuracy}, "items": items,
            "unparsed": sum(i["random"] for i in items), "notes": notes}


# -- multi-label -----------------------------------------------------------------------------------

def substring_labels(text: str, labels) -> list[str]:
    """Q8: the labels that occur in ``text`` as case-sensitive substrings, in label order."""
    return [label for label in labels if label in text]


def code15_prediction(text: str, labels) -> list[str]:
    """Q9 for an answer: after the last "Answer:", NORM/ABNORMAL first, then substring labels."""
    if "Answer:" in text:
        text = text.split("Answer:")[-1]
    rest = substring_labels(text, [l for l in labels if l not in ("NORM", "ABNORMAL")])
    if "NORM" in text and "ABNORMAL" not in text:
        return ["NORM"] + rest
    if "ABNORMAL" in text:
        return ["ABNORMAL"] + rest
    return rest


def code15_gold(reference: str, labels) -> list[str]:
    """Q9 for a gold answer: exactly NORM or ABNORMAL, else its substring labels."""
    if reference in ("NORM", "ABNORMAL"):
        return [reference]
    return substring_labels(reference, [l for l in labels if l not in ("NORM", "ABNORMAL")])


def multilabel_metrics(predicted: list[list[str]], gold: list[list[str]]) -> dict:
    """Q10-Q11: the published ``compute_f1_auc`` (F1, AUC, hamming loss as fractions)."""
    from sklearn.metrics import f1_score, hamming_loss, roc_auc_score
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer()
    y_true = binarizer.fit_transform(gold)
    with warnings.catch_warnings():          # "unknown class(es) will be ignored": Q10
        warnings.simplefilter("ignore")
        y_pred = binarizer.transform(predicted)
        f1 = f1_score(y_true, y_pred, average=None)
        aucs = []
        for column in range(y_true.shape[1]):
            try:
                aucs.append(roc_auc_score(y_true[:, column], y_pred[:, column]))
            except ValueError:
                aucs.append(np.nan)
    return {"AUC": float(np.mean(aucs)), "F1": float(np.mean(f1)),
            "HL": float(hamming_loss(y_true, y_pred)),
            "classes": [str(c) for c in binarizer.classes_]}


def score_multilabel(subset: str, answers: list[str], references: list) -> dict:
    """F1 / AUC / HL of one multi-label subset, the published way."""
    labels = SUBSETS[subset].labels
    if subset == "code15-test":
        predicted = [code15_prediction(a, labels) for a in answers]
        gold = [code15_gold(r, labels) for r in references]
    else:
        predicted = [substring_labels(a, labels) for a in answers]
        gold = [substring_labels(r, labels) for r in references]
    items = [{"parsed": p, "gold": g, "correct": float(set(p) == set(g))}
             for p, g in zip(predicted, gold)]
    metrics = multilabel_metrics(predicted, gold) if items else {}
    notes = []
    if items and np.isnan(metrics["AUC"]):
        notes.append("AUC is NaN as in the published script: a class is present in every gold "
                     "answer, so its AUC is undefined and np.mean propagates it")
    return {"metrics": {k: metrics.get(k) for k in ("AUC", "F1", "HL")}, "items": items,
            "unparsed": sum(not p for p in predicted), "notes": notes,
            "classes": metrics.get("classes", [])}


# -- ECG-QA ----------------------------------------------------------------------------------------

def ecgqa_options(question: str) -> list[str]:
    """Q12: the option words as the published script cuts them out of the question."""
    tail = question.split("Options:")[-1].replace(ECGQA_INSTRUCTION, "")
    return [part.strip() for part in tail.split(",")]


def ecgqa_prediction(answer: str, options: list[str]) -> list[str]:
    """Q12: options that are substrings of the lower-cased answer (options keep their case)."""
    lowered = answer.lower()
    return [option for option in options if option in lowered]


def score_ecgqa(answers: list[str], questions: list[str], references: list) -> dict:
    """Accuracy with Q12-Q13."""
    items = []
    for answer, question, reference in zip(answers, questions, references):
        predicted = ecgqa_prediction(answer, ecgqa_options(question))
        items.append({"parsed": predicted, "gold": reference,
                      "correct": float(set(predicted) == set(reference))})        # Q13
    accuracy = sum(i["correct"] for i in items) / len(items) if items else None
    return {"metrics": {"Accuracy": accuracy}, "items": items,
            "unparsed": sum(not i["parsed"] for i in items), "notes": []}


# -- judge scores ----------------------------------------------------------------------------------

ARENA_KEYS = ("Accuracy", "Completeness", "Instruction Adherence")


def judge_key(item_id: str) -> str:
    """Q16: the name the published scripts file a judged item under."""
    return item_id.split("-")[-1]


def report_item_score(judgement: dict) -> float:
    """Q15: mean ``Score`` over every key of the judge's JSON, x 10 (KeyError/TypeError when a
    value has no ``Score``, as the script fails)."""
    return sum(float(value["Score"]) for value in judgement.values()) / len(judgement) * 10


def arena_item_scores(judgement: dict) -> list[float]:
    """Q15: the three named scores x 10 (KeyError when one is missing)."""
    return [float(judgement[key]["Score"]) * 10 for key in ARENA_KEYS]
