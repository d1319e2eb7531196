"""The evaluation runner: answer parsers on tricky text, the majority baseline, macro F1, scoring
of files without generator meta, and an end-to-end run of a real tiny model on 4 samples."""

from __future__ import annotations

import json

import pytest

from training.evaluate import balanced_subset, evaluate, infer_meta, main
from training.instruct import Sample
from training.instruct.vocab import find_labels, first_label, RHYTHMS
from training.metrics import (MajorityBaseline, macro_f1, parse_choice, parse_intervals,
                              parse_option, parse_rate, parse_yes_no, score_answer)

OPTIONS = {"A": "Sinus rhythm", "B": "Atrial fibrillation", "C": "Atrial flutter",
           "D": "Sinus tachycardia"}


@pytest.mark.parametrize("text, letter", [
    ("B", "B"), ("(B)", "B"), ("B.", "B"), ("**B**", "B"), ("B) Atrial fibrillation", "B"),
    ("Answer: C", "C"), ("The answer is (D).", "D"), ("answer is C, atrial flutter", "C"),
    ("The correct option is A.", "A"), ("I would pick option B here", "B"),
    ("The rhythm is atrial flutter with 2:1 block.", "C"),
    ("A normal ECG would show P waves; here it is atrial fibrillation.", "B"),
    ("This is sinus tachycardia, not sinus rhythm.", "D"),
    ("It is not atrial fibrillation but atrial flutter.", "C"),
    ("Sinus tachycardia (above 100 bpm)", "D"),
    ("I cannot tell from this image.", None), ("", None),
])
def test_parse_choice(text, letter):
    assert parse_choice(text, OPTIONS) == letter


@pytest.mark.parametrize("text, answer", [
    ("Yes.", "yes"), ("yes, there is", "yes"), ("No", "no"), ("**No**, sinus rhythm.", "no"),
    ("No. There is no left bundle branch block.", "no"), ("Not present.", "no"),
    ("There is no atrial fibrillation here.", "no"), ("The answer is yes", "yes"),
    ("Right bundle branch block is present.", "yes"), ("Yes/No", None), ("yes or no", None),
    ("Nonspecific changes; normal tracing?", None), ("I can't tell.", None),
    ("No premature beats are seen. Answer: yes.", "yes"),     # the verdict, not the first word
    ("The rate is about 97 bpm and the rhythm is sinus rhythm, not atrial flutter. Answer: no.",
     "no"),
])
def test_parse_yes_no(text, answer):
    assert parse_yes_no(text) == answer


@pytest.mark.parametrize("text, bucket", [
    ("The heart rate is about 72 bpm (normal, 60-100 bpm).", "normal"),
    ("The heart rate is about 48 bpm (bradycardia, below 60 bpm).", "bradycardia"),
    ("Sinus tachycardia at 112 bpm", "tachycardia"), ("HR 130 bpm", "tachycardia"),
    ("rate 55 beats per minute", "bradycardia"), ("normal", "normal"),
    ("not tachycardic, rate within normal limits", "normal"),
    ("Atrial fibrillation with rapid ventricular response", "tachycardia"),
    ("The normal range is 60 to 100 bpm", "normal"), ("60 to 100 bpm", None), ("Axis is -45 degrees", None),
])
def test_parse_rate(text, bucket):
    assert parse_rate(text) == bucket


def test_labels_are_found_with_synonyms_and_negations():
    text = ("Normal sinus rhythm with PVCs. RBBB; 1st degree AV block. No LBBB, without "
            "ST depression. ST elevation in II, III and aVF. Inverted T waves in V1-V3. "
            "QTc prolonged. LVH.")
    assert find_labels(text) == {"sinus rhythm", "premature ventricular contractions",
                                 "right bundle branch block", "first-degree av block",
                                 "inferior st elevation", "t-wave inversion", "long qt",
                                 "left ventricular hypertrophy"}
    assert find_labels("There is no evidence of atrial fibrillation or flutter.") == set()
    assert first_label("AFib, previously read as atrial flutter.", RHYTHMS) == \
        "atrial fibrillation"
    assert first_label("Not sinus rhythm: atrial flutter", RHYTHMS) == "atrial flutter"


def test_parse_option_and_intervals():
    choices = ["elevated", "depressed", "isoelectric"]
    assert parse_option("The ST segments are **depressed** in II.", choices) == "depressed"
    assert parse_option("They are not elevated; they look isoelectric.", choices) == "isoelectric"
    assert parse_option("none of those", choices) is None
    assert parse_option("I see PVCs", ["premature ventricular contractions", "none"]) == \
        "premature ventricular contractions"
    assert parse_intervals("PR interval 240 ms, QRS duration 96 ms. QT 380 ms. QTc 420 ms.") == \
        {"pr_ms": 240, "qrs_ms": 96, "qt_ms": 380, "qtc_ms": 420}
    meta = {"score": "intervals", "value": {"pr_ms": 160, "qrs_ms": 90, "qtc_ms": 400}}
    assert score_answer("PR 175 ms, QRS 150 ms, QTc 410 ms", meta)["correct"] == pytest.approx(2 / 3)


def test_macro_f1_matches_a_hand_count():
    true = [["a", "b"], ["a"], ["c"], []]
    pred = [["a"], ["a", "c"], [], ["b"]]
    # a: tp 2 fp 0 fn 0 -> 1; b: tp 0 fp 1 fn 1 -> 0; c: tp 0 fp 1 fn 1 -> 0
    assert macro_f1(true, pred) == pytest.approx(1 / 3)
    assert macro_f1([[]], [[]]) == 1.0


def _sample(i, meta, reference="x"):
    return Sample(f"s{i}", None, [{"from": "human", "value": "q"},
                                  {"from": "gpt", "value": reference}], meta)


def test_majority_baseline_is_the_most_frequent_answer_per_kind():
    close = {"task": "rhythm", "qtype": "close", "kind": "rhythm", "score": "yesno"}
    fill = {"task": "basic", "qtype": "fill", "kind": "rate", "score": "rate"}
    mcq = {"task": "rhythm", "qtype": "mcq", "kind": "rhythm", "score": "choice"}
    found = {"task": "report", "qtype": "open", "kind": "report", "score": "labels",
             "vocabulary": ["sinus rhythm", "long qt", "atrial fibrillation"]}
    train = ([_sample(i, {**close, "answer": a}) for i, a in enumerate("yes no no no".split())]
             + [_sample(i, {**fill, "answer": a}) for i, a in
                enumerate(["normal", "tachycardia", "normal"])]
             + [_sample(i, {**mcq, "answer": "A", "answer_text": t}) for i, t in
                enumerate(["Sinus rhythm", "Sinus rhythm", "Atrial flutter"])]
             + [_sample(i, {**found, "labels": l}) for i, l in
                enumerate([["sinus rhythm"], ["sinus rhythm", "long qt"], ["atrial fibrillation"]])])
    baseline = MajorityBaseline.fit(train)
    test = [_sample(0, {**close, "answer": "no"}), _sample(1, {**close, "answer": "yes"}),
            _sample(2, {**fill, "answer": "normal"}), _sample(3, {**fill, "answer": "bradycardia"}),
            _sample(4, {**mcq, "answer": "C", "options": {"A": "Atrial flutter", "B": "x",
                                                         "C": "Sinus rhythm", "D": "y"}}),
            _sample(5, {**found, "labels": ["sinus rhythm", "long qt"]})]
    answers = [baseline.predict(s) for s in test]
    assert answers[:5] == ["no", "no", "normal", "normal", "C."]
    assert answers[5] == "sinus rhythm"                      # only label in more than half
    result = evaluate(test, {}, train=train)
    rows = {r["group"]: r for r in result["rows"]}
    assert rows["Heart Rhythm Analysis / Close-ended QA"]["majority"] == 0.5
    assert rows["Basic Feature Recognition / Fill-in-blank"]["majority"] == 0.5
    assert rows["Heart Rhythm Analysis / Multi-choice QA"]["majority"] == 1.0
    # report findings: sinus rhythm tp, long qt fn -> F1 1 and 0
    assert rows["Clinical Report / findings named"]["majority"] == 0.5


def test_scoring_two_models_side_by_side():
    meta = {"task": "rhythm", "qtype": "mcq", "kind": "rhythm", "score": "choice",
            "answer": "B", "answer_text": "Atrial fibrillation", "options": OPTIONS}
    samples = [_sample(i, meta) for i in range(4)]
    result = evaluate(samples, {"good": ["B", "(B)", "Answer: B", "atrial fibrillation"],
                                "bad": ["A", "C", "", "sinus rhythm"]})
    row = next(r for r in result["rows"] if r["group"] == "Heart Rhythm Analysis / Multi-choice QA")
    assert (row["good"], row["bad"], row["majority"]) == (1.0, 0.0, 1.0)
    assert result["predictors"] == ["good", "bad", "majority"]


def test_files_without_meta_are_scored_by_their_reference():
    mcq = Sample("m", "a.png", [{"from": "human", "value": "<image>\nWhich rhythm?\nA. Sinus "
                                "rhythm\nB. Atrial fibrillation"}, {"from": "gpt", "value": "B"}])
    yes = Sample("y", "a.png", [{"from": "human", "value": "<image>\nIs there AF?"},
                                {"from": "gpt", "value": "Yes"}])
    rep = Sample("r", "a.png", [{"from": "human", "value": "<image>\nReport."},
                                {"from": "gpt", "value": "Sinus rhythm. Left axis deviation."}])
    assert infer_meta(mcq)["options"] == {"A": "Sinus rhythm", "B": "Atrial fibrillation"}
    assert score_answer("the answer is atrial fibrillation", infer_meta(mcq))["correct"] == 1
    assert infer_meta(yes)["score"] == "yesno"
    meta = infer_meta(rep)
    assert meta["labels"] == ["sinus rhythm", "left axis deviation"]
    assert score_answer("Sinus rhythm, normal axis.", meta)["correct"] == 0


def test_ecgbench_label_spaces_match_as_substrings():
    ptb = Sample("p", "a.png", [{"from": "human", "value": "<image>\nWhich classes?"},
                                {"from": "gpt", "value": "MI, STTC"}])
    meta = infer_meta(ptb, ["NORM", "MI", "STTC", "CD", "HYP"])
    assert meta["labels"] == ["MI", "STTC"]
    assert score_answer("The answer is STTC and MI.", meta)["correct"] == 1
    assert score_answer("NORM", meta)["pred"] == ["NORM"]


def test_balanced_subset_covers_every_group():
    samples = [_sample(i, {"task": t, "qtype": q}) for i, (t, q) in
               enumerate([("basic", "close")] * 10 + [("rhythm", "mcq")] * 10 + [("report", "open")])]
    subset = balanced_subset(samples, 3)
    assert {(s.meta["task"], s.meta["qtype"]) for s in subset} == \
        {("basic", "close"), ("rhythm", "mcq"), ("report", "open")}


def test_evaluate_runs_a_real_tiny_model_end_to_end(tiny_model_dir, tmp_path, monkeypatch):
    from training.instruct.dataset import build_dataset, simulated_records

    monkeypatch.setenv("PULSE_CACHE_DIR", str(tmp_path / "cache"))
    data, _ = build_dataset(simulated_records(1, seed=77), tmp_path / "data", seed=77, dpi=40,
                            name="test.jsonl")
    out = tmp_path / "eval.json"
    assert main(["--model", str(tiny_model_dir), "--data", str(data), "--limit", "4",
                 "--max-new-tokens", "6", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 4 and len(result["samples"]) == 4
    assert result["predictors"] == [str(tiny_model_dir), "majority"]
    assert "UNTRAINED" in result["model_labels"][str(tiny_model_dir)]
    for sample in result["samples"]:
        assert set(sample["predictions"]) == {str(tiny_model_dir), "majority"}
        assert isinstance(sample["predictions"][str(tiny_model_dir)], str)
    groups = {r["group"] for r in result["rows"]}
    assert "All questions" in groups and any("Close-ended" in g for g in groups)
