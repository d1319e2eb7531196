"""The teaching tab's model-vs-truth checker (pulse_app.answer_check) against training.evaluate's
scoring of the same answers, on 200 simulated cases: the truth a case carries gives the same
expected answers as the instruction generator gives for its record, and the checker reads every
answer evaluate scores with the same parsers."""

from __future__ import annotations

import dataclasses

import pytest

from pulse_app.answer_check import ITEMS, check_case, checks_markdown, truth_metas
from pulse_app.ecg.simulate import ecg_simulate, random_findings
from pulse_app.ecg.vocab import CONDUCTION, ST_T
from pulse_app.teaching import truth_of
from training.instruct.generate import generate_samples
from training.metrics import score_answer

ST_LABELS = [label for label in ST_T if " st " in label]
#: Findings each label-set item covers, for answers evaluate scores as a set of findings.
ITEM_LABELS = {"conduction": list(CONDUCTION), "st": ST_LABELS}


def new_tally() -> dict:
    return {"pairs": 0, "agree": 0, "right": 0, "wrong": 0, "tolerance_differs": 0,
            "by_item": {item: [0, 0] for item in ITEMS}, "disagreements": []}


def compare(out: dict, truth: dict, sample, answer: str, where) -> None:
    """Score ``answer`` to ``sample`` with training.evaluate's scorer and with the checker;
    count, for every item both score, whether they give the same verdict."""
    evaluated = score_answer(answer, sample.meta)
    row = {r.item: r for r in check_case([answer], truth)}
    for item, meta in truth_metas(truth).items():
        if sample.meta.get("kind") == item and sample.meta["score"] == meta["score"]:
            expected = bool(evaluated["correct"])                  # the same question kind
            got = row[item].scored.get("correct")
            got = None if got is None else bool(got)
            same_error = evaluated.get("abs_error_bpm") == row[item].scored.get("abs_error_bpm")
        elif item in ITEM_LABELS and sample.meta["score"] == "labels" \
                and set(ITEM_LABELS[item]) <= set(sample.meta["vocabulary"]):
            labels = set(ITEM_LABELS[item])                        # a report, a findings list
            if not row[item].scored:                    # the answer does not speak about it
                if not set(evaluated["pred"]) & labels:
                    continue
                got, expected, same_error = None, True, True
            else:
                expected = set(evaluated["pred"]) & labels == set(evaluated["true"]) & labels
                got, same_error = bool(row[item].scored["correct"]), True
        else:
            continue
        out["pairs"] += 1
        out["by_item"][item][0] += 1
        if got == expected and same_error:
            out["agree"] += 1
            out["by_item"][item][1] += 1
            out["right" if expected else "wrong"] += 1
        else:
            out["disagreements"].append((where, item, answer, expected, got))
        if item == "rate" and got is not None and row[item].correct != got:
            out["tolerance_differs"] += 1


def agreement(cases: int = 200) -> dict:
    """Checker vs training.evaluate on ``cases`` simulated records: every generated sample's
    reference answer (right) and the same question's answer from the next case (often wrong)."""
    records = [ecg_simulate(random_findings(seed), seed=seed) for seed in range(cases + 1)]
    samples = [{(s.meta["task"], s.meta["qtype"]): s
                for s in generate_samples(r, f"{i}.png", seed=i)} for i, r in enumerate(records)]
    out = new_tally()
    for i in range(cases):
        truth = truth_of(records[i])
        for key, sample in samples[i].items():
            other = samples[i + 1].get(key)
            for answer in [sample.reference] + ([other.reference] if other else []):
                compare(out, truth, sample, answer, (i, key))
    return out


def check_off_topic_only(result: dict) -> None:
    """Where the checker reads an answer about an item it gives evaluate's verdict, always."""
    off_topic = result["disagreements"]
    assert all(got is None for *_, got in off_topic), [d for d in off_topic if d[-1] is not None]
    assert result["agree"] + len(off_topic) == result["pairs"]


def test_the_checker_agrees_with_training_evaluate_on_200_cases():
    """Where the checker reads an answer about an item it gives evaluate's verdict, always. An
    answer about something else (the next case's answer to another question) is "not said" for
    the checker, which does not know the question; evaluate, which does, scores it wrong, or
    right by silence ("no block" unsaid) or by a stray word ("normal" of "normal axis" read as
    a normal rate)."""
    result = agreement(200)
    print({k: v for k, v in result.items() if k != "disagreements"})
    check_off_topic_only(result)
    assert result["pairs"] > 1000 and result["wrong"] > 200, "right and wrong answers both seen"
    assert all(read > 100 for _, read in result["by_item"].values()), result["by_item"]


def test_a_case_table_reads_the_last_answer_about_each_item():
    truth = truth_of(ecg_simulate({"rate_bpm": 130, "rhythm": "sinus", "qrs": "lbbb",
                                   "st": {"inferior": 0.25}}, seed=4))
    answers = [("Sinus tachycardia at 128 bpm with left bundle branch block.", "model-a"),
               ("ST elevation in II, III and aVF; normal axis.", "model-a"),
               ("On reflection: the rate is 90 bpm.", "model-b")]
    rows = {r.item: r for r in check_case(answers, truth)}
    assert rows["rate"].said == "90 bpm" and rows["rate"].correct is False
    assert rows["rate"].turn == 2 and rows["rate"].model == "model-b"
    assert rows["rhythm"].correct is True and rows["rhythm"].turn == 0
    assert rows["conduction"].said == "left bundle branch block" and rows["conduction"].correct
    assert rows["st"].said == "inferior st elevation" and rows["st"].correct
    assert rows["axis"].said == "normal axis"
    table = checks_markdown(list(rows.values()))
    assert "❌ wrong" in table and "✅ right" in table and "model-a, model-b" in table


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_checker_agrees_with_evaluate_on_the_mini_models_answers(tmp_path):
    """The same comparison on what a model really writes: the shipped mini model answers the
    open questions (rate/axis/intervals, rhythm/ectopy/conduction, morphology) of 200 teaching
    cases drawn as the app draws them, and writes the report of the first 40, through
    training.evaluate's own predict() (about half an hour on two busy cores)."""
    from pulse_app.settings import REPO_ROOT
    from pulse_app.teaching import Case, _simulate, case_page
    from training.evaluate import load_backend, predict

    backend = load_backend(str(REPO_ROOT / "assets" / "pulse-mini"), device="cpu")
    truths, samples = [], []
    for seed in range(200):
        case = Case.make(dataclasses.asdict(random_findings(seed)), seed=seed)
        image, truth = case_page(case)
        image.save(tmp_path / f"{seed}.png")
        tasks = ("basic", "rhythm", "morphology") + (("report",) if seed < 40 else ())
        for sample in generate_samples(_simulate(case.findings, case.seed), f"{seed}.png",
                                       seed=seed, tasks=tasks, qtypes=("open",)):
            truths.append(truth)
            samples.append(sample)
    answers = predict(backend, samples, tmp_path, max_new_tokens=160)
    out = new_tally()
    for truth, sample, answer in zip(truths, samples, answers):
        compare(out, truth, sample, answer, sample.id)
    print({k: v for k, v in out.items() if k != "disagreements"}, len(answers), "answers")
    check_off_topic_only(out)
    assert out["right"] > 50 and out["wrong"] > 50


@pytest.mark.parametrize("answer, item, said, correct", [
    ("There is no ST elevation.", "st", "none named", False),
    ("I cannot comment on the axis.", "axis", "none named", False),
    ("Normal sinus rhythm.", "axis", None, None),                    # not said: not checked
    ("The rate is 104 bpm.", "rate", "104 bpm", True),               # within 10 bpm of 96
    ("Bradycardia.", "rate", "bradycardia", False),
    ("<b>atrial flutter</b>", "rhythm", "atrial flutter", False),
])
def test_one_answer_per_item(answer, item, said, correct):
    truth = truth_of(ecg_simulate({"rate_bpm": 96, "st": {"inferior": 0.3}}, seed=1))
    row = next(r for r in check_case([answer], truth) if r.item == item)
    assert (row.said, row.correct) == (said, correct)
    assert "<b>" not in checks_markdown([row]), "the table holds labels, never the answer's text"
