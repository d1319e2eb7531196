"""ECGBench scoring on hand-made answers: every quirk of the published PULSE scorers (``--scoring
paper``, Q1-Q16 of training/ecgbench/paper.py, each citing the AIMedLab/PULSE file and function it
comes from) and every path of ``--scoring strict``; the reader's errors; the judge's prompts,
reply parsing, cache and agreement."""

from __future__ import annotations

import json
import math

import pytest

from training.ecgbench import paper, strict
from training.ecgbench.data import BenchDataError, parse_item, read_subset
from training.ecgbench.judge import (Judgement, JudgeCache, agreement, arena_prompt, parse_reply,
                                     report_prompt)
from training.ecgbench.run import judge_prompts, judged_scores
from training.ecgbench.subsets import SUBSETS, UnknownSubset, resolve_subsets

CSN_QUESTION = ("Which statement fits this ECG?\nA. Sinus rhythm\nB. Atrial fibrillation\n"
                "C. Atrial flutter\nD. Sinus tachycardia\nE. Left bundle branch block\n"
                "F. Right bundle branch block\nG. Long QT\nH. Low QRS voltage")


# -- paper: multiple choice (evaluation/evaluate_ecgbench.py, extract) ------------------------------

@pytest.mark.parametrize("text, letter, rule", [
    ("C", "C", "Q1 the whole answer is a letter"),
    ("B. Atrial fibrillation", "B", "Q2 letter-dot"),
    ("B. Atrial fibrillation; A. would be wrong", "A", "Q2 alphabetical, not first position"),
    ("Atrial flutter is seen on this ECG.", "G", "Q2 'G.' inside 'ECG.'"),
    ("The correct option is D", "D", "Q3 after 'The correct option is '"),
    ("The correct option is A, no wait: The correct option is C", "C", "Q3 the last one"),
    ("The correct option is (B)", None, "Q3 a non-letter ends the search: no fallback"),
    ("Answer: D) LBBB", "B", "Q4 alphabetically first capital after 'Answer:' (LBBB has B)"),
    ("Answer: Atrial flutter", "A", "Q4 'A' of 'Atrial'"),
    ("Answer: d", None, "Q4 lower case letters are not letters"),
    ("(B)", None, "nothing matches '(B)': random fallback"),
    ("b", None, "lower case alone: random fallback"),
    ("", None, "empty: random fallback"),
])
def test_paper_extract_choice(text, letter, rule):
    assert paper.extract_choice(text) == letter, rule


def test_paper_random_fallback_is_one_seeded_stream_in_the_published_order():
    # Q5: random.seed(42) at import; eval_mmmu draws from A-D, eval_csn_test from A-H, later
    import random

    reference = random.Random(42)
    expected_mmmu = [reference.choice(["A", "B", "C", "D"]) for _ in range(3)]
    expected_csn = [reference.choice(list("ABCDEFGH")) for _ in range(2)]
    rng = paper.new_paper_random()
    mmmu = paper.score_mcq("mmmu-ecg", ["no idea"] * 3, ["A"] * 3, rng)
    csn = paper.score_mcq("csn-test-no-cot", ["unsure", "?"], ["A", "A"], rng)
    assert [i["parsed"] for i in mmmu["items"]] == expected_mmmu
    assert [i["parsed"] for i in csn["items"]] == expected_csn
    assert mmmu["unparsed"] == 3 and all(i["random"] for i in csn["items"])


def test_paper_gold_letter_is_first_character_for_csn_but_whole_answer_for_mmmu():
    # Q6: eval_csn_test / eval_g12_test read value[0]; eval_mmmu compares the whole value
    rng = paper.new_paper_random()
    csn = paper.score_mcq("csn-test-no-cot", ["B"], ["B. Atrial fibrillation"], rng)
    mmmu = paper.score_mcq("mmmu-ecg", ["B"], ["B. Atrial fibrillation"], rng)
    assert csn["metrics"]["Accuracy"] == 1.0
    assert mmmu["metrics"]["Accuracy"] == 0.0


def test_paper_notes_that_partial_runs_are_skipped_by_the_published_script():
    # Q7: `if len(predict_list) != 200: continue` (1611 for CSN, 2026 for G12EC)
    result = paper.score_mcq("g12-test-no-cot", ["A"], ["A"], paper.new_paper_random())
    assert result["metrics"]["Accuracy"] == 1.0
    assert "2026" in result["notes"][0]


# -- paper: multi-label (eval_ptb_test, eval_cpsc_test, eval_code15_test, compute_f1_auc) -----------

def test_paper_labels_are_case_sensitive_substrings():
    ptb, cpsc = SUBSETS["ptb-test"].labels, SUBSETS["cpsc-test"].labels
    assert paper.substring_labels("ABNORMAL ECG", ptb) == ["NORM"]                       # Q8
    assert paper.substring_labels("LAFB with STEMI", cpsc) == ["AF", "STE"]              # Q8
    assert paper.substring_labels("atrial fibrillation, right bundle branch block", cpsc) == []
    assert paper.substring_labels("MI, STTC", ptb) == ["MI", "STTC"]


def test_paper_code15_answer_rules():
    labels = SUBSETS["code15-test"].labels
    # Q9: only the text after the last "Answer:" counts
    assert paper.code15_prediction("RBBB seen. Answer: AF", labels) == ["AF"]
    assert paper.code15_prediction("NORMAL ECG", labels) == ["NORM"]
    assert paper.code15_prediction("ABNORMAL: RBBB(right bundle branch block)", labels) == \
        ["ABNORMAL", "RBBB"]
    # "ST" inside "STD", "ST-T" and "FIRST" (upper case) counts as sinus tachycardia
    assert paper.code15_prediction("FIRST DEGREE AV BLOCK", labels) == ["ST"]
    assert paper.code15_gold("NORM", labels) == ["NORM"]
    assert paper.code15_gold("SB(sinus bradycardia); 1dAVb(1st degree av block)", labels) == \
        ["1dAVb", "SB"]


def test_paper_multilabel_metrics_follow_compute_f1_auc():
    gold = [["MI"], ["NORM"], ["MI", "STTC"], ["NORM"]]
    predicted = [["MI"], ["NORM", "HYP"], ["MI"], ["MI"]]
    m = paper.multilabel_metrics(predicted, gold)
    assert m["classes"] == ["MI", "NORM", "STTC"]            # Q10: HYP (not in gold) dropped
    # per class F1: MI 2*2/(2*2+1+0)=0.8, NORM 2/3, STTC 0 -> mean
    assert m["F1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    # Q11: AUC of 0/1 predictions = (TPR + TNR) / 2 per class
    assert m["AUC"] == pytest.approx(((1 + 0.5) / 2 + (0.5 + 1) / 2 + 0.5) / 3)
    # STTC missed in item 3, MI wrong and NORM missed in item 4: 3 of 3 classes x 4 items
    assert m["HL"] == pytest.approx(3 / 12)


def test_paper_auc_is_nan_when_a_gold_class_is_always_present():
    # Q11: roc_auc_score raises, NaN is stored, np.mean propagates it
    result = paper.score_multilabel("ptb-test", ["MI", "MI, STTC"], ["MI", "MI, STTC"])
    assert math.isnan(result["metrics"]["AUC"]) and result["notes"]
    assert result["metrics"]["F1"] == 1.0


# -- paper: ECG-QA (eval_ecgqa_test) ---------------------------------------------------------------

QA = ("Question: Does this ECG show symptoms of atrial fibrillation?\nOptions: yes, no, "
      "not sure, None\n\nOnly answer based on the given Options without any explanation.")


def test_paper_ecgqa_options_and_matching():
    options = paper.ecgqa_options(QA)
    assert options == ["yes", "no", "not sure", "None"]                          # Q12
    assert paper.ecgqa_prediction("Not sure.", options) == ["no", "not sure"]   # "no" in "not"
    assert paper.ecgqa_prediction("None", options) == ["no"]     # "None" keeps its capital
    result = paper.score_ecgqa(["yes", "not sure", "None"], [QA] * 3,
                               [["yes"], ["not sure"], ["none"]])
    assert [i["correct"] for i in result["items"]] == [1.0, 0.0, 0.0]


def test_paper_ecgqa_gold_string_is_a_set_of_characters():
    # Q13: set(golden) of a string is its characters
    assert paper.score_ecgqa(["yes"], [QA], ["yes"])["metrics"]["Accuracy"] == 0.0
    assert paper.score_ecgqa(["yes"], [QA], [["yes"]])["metrics"]["Accuracy"] == 1.0


# -- paper: judge (eval_report.py, eval_arena.py) --------------------------------------------------

def test_judge_prompts_are_laid_out_as_the_published_scripts_write_them():
    # Q14: f"{prompt} \n [The Start of Ground Truth Report]\n {golden}\n ..."
    prompt = report_prompt("Sinus rhythm.", "Atrial fibrillation.")
    assert prompt.startswith("Evaluate the alignment and quality of a generated ECG report")
    assert prompt.endswith("$EXPLANATION$}} \n [The Start of Ground Truth Report]\n Sinus rhythm."
                           "\n [The End of Ground Truth Report]\n [The Start of Generated Report]"
                           "\n Atrial fibrillation.\n [The End of Generated Report]")
    arena = arena_prompt(["Q1?", "Q2?"], ["T1", "T2"], ["M1", "M2"])
    assert "[The Start of Ground Truth Answer]\n **Question:**\nQ1?\n\n**Ground Truth Answer:** "\
           "T1\n\n**Question:**\nQ2?\n\n**Ground Truth Answer:** T2\n [The End of Ground Truth " \
           "Answer]\n\n [The Start of Model's Response]\n **Question:**\nQ1?\n\n**Model's " \
           "Response:** M1" in arena
    assert arena.endswith("M2\n [The End of Model's Response]")


def test_paper_judge_scores():
    # Q15: every key's Score averaged (report); the three named scores (arena)
    report = {"Diagnosis": {"Score": 8}, "Form": {"Score": 7}, "Rhythm": {"Score": 10},
              "Overall": {"Score": 1}}
    assert paper.report_item_score(report) == pytest.approx(65.0)
    with pytest.raises(KeyError):
        paper.report_item_score({"Diagnosis": {"score": 8}})
    arena = {"Accuracy": {"Score": 5}, "Completeness": {"Score": 6},
             "Instruction Adherence": {"Score": 7}}
    assert paper.arena_item_scores(arena) == [50.0, 60.0, 70.0]
    with pytest.raises(KeyError):
        paper.arena_item_scores({"accuracy": {"Score": 5}})


def test_paper_judge_keys_collapse_ids_and_use_two_arena_turns():
    # Q16: datum['id'].split('-')[-1]
    items = [parse_item({"id": i, "image": "a.png", "conversation": [
        {"from": "user", "value": "Write a report."}, {"from": "assistant", "value": gold}]},
        "ptb-test-report", "test") for i, gold in
        (("ptb-report-07190_hr-0", "first"), ("ptb-report-02627_hr-0", "last"),
         ("ptb-report-00001", "own"))]
    answers = [["a"], ["b"], ["c"]]
    prompts, index, notes = judge_prompts("ptb-test-report", items, answers, "paper")
    assert index == [1, 2] and "3 items collapse to 2" in notes[0]
    assert "\n last\n" in prompts[0] and "\n b\n" in prompts[0]
    prompts, index, _ = judge_prompts("ptb-test-report", items, answers, "strict")
    assert index == [0, 1, 2]
    arena = [parse_item({"id": "arena-1", "image": "a.png", "conversations": [
        {"question": f"Q{n}", "answer": f"T{n}"} for n in (1, 2, 3)]}, "arena", "test")]
    (paper_prompt,), _, _ = judge_prompts("arena", arena, [["M1", "M2", "M3"]], "paper")
    (strict_prompt,), _, _ = judge_prompts("arena", arena, [["M1", "M2", "M3"]], "strict")
    assert "M3" not in paper_prompt and "M3" in strict_prompt


def test_failed_judgements_score_nothing_in_either_mode():
    unparsed = Judgement("I think it is fine.", None)
    assert judged_scores("ptb-test-report", unparsed, "paper") == (None, {})
    lower = Judgement("", {"diagnosis": {"score": 8}, "waveform": {"score": "6"},
                           "rhythm": {"Score": 10}})
    assert judged_scores("ptb-test-report", lower, "paper") == (None, {})     # KeyError: Score
    score, aspects = judged_scores("ptb-test-report", lower, "strict")
    assert score == pytest.approx(80.0) and aspects["waveform"] == 6.0
    out_of_range = Judgement("", {"Accuracy": {"Score": 12}, "Completeness": {"Score": 5},
                                  "Instruction Adherence": {"Score": 5}})
    assert judged_scores("arena", out_of_range, "strict") == (None, {})
    assert judged_scores("arena", out_of_range, "paper")[0] == pytest.approx(220 / 3)


# -- strict ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, subset, labels", [
    ("ABNORMAL ECG", "ptb-test", []),
    ("Normal ECG.", "ptb-test", ["NORM"]),
    ("Inferior myocardial infarction with ST-T changes.", "ptb-test", ["MI", "STTC"]),
    ("right bundle branch block; LVH", "ptb-test", ["CD", "HYP"]),
    ("No evidence of myocardial infarction. Normal ECG.", "ptb-test", ["NORM"]),
    ("LAFB with STEMI", "cpsc-test", []),
    ("atrial fibrillation, RBBB, ST elevation in V1-V4", "cpsc-test", ["AF", "RBBB", "STE"]),
    ("first-degree AV block (I-AVB) and PVCs", "cpsc-test", ["I-AVB", "PVC"]),
    ("ST depression in the lateral leads", "code15-test", []),
    ("ST(sinus tachycardia); 1dAVb(1st degree av block)", "code15-test", ["1dAVb", "ST"]),
    ("sinus tachycardia without atrial fibrillation", "code15-test", ["ST"]),
    ("ABNORMAL: SB", "code15-test", ["ABNORMAL", "SB"]),
])
def test_strict_labels_word_boundaries_synonyms_negation(text, subset, labels):
    assert strict.find_bench_labels(text, SUBSETS[subset].labels) == labels


def test_strict_multilabel_metrics_over_the_label_space_without_auc():
    result = strict.score_multilabel("ptb-test", ["Inferior MI.", "I cannot tell.", "NORM"],
                                     ["MI", "NORM", "NORM"])
    assert result["metrics"]["AUC"] is None and "AUC not computed" in result["notes"][0]
    assert result["unparsed"] == 1
    assert result["metrics"]["F1"] == pytest.approx((1 + 2 / 3) / 2)   # MI 1, NORM 2/3
    assert result["metrics"]["HL"] == pytest.approx(1 / 15)             # 5 labels x 3 items
    scored = strict.score_multilabel("ptb-test", ["MI", "NORM"], ["MI", "NORM"],
                                     scores=[{"MI": 0.9, "NORM": 0.2}, {"MI": 0.1, "NORM": 0.7}])
    assert scored["metrics"]["AUC"] == 1.0


@pytest.mark.parametrize("text, letter", [
    ("B", "B"), ("(E)", "E"), ("Answer: D) LBBB", "D"), ("The answer is option C.", "C"),
    ("This ECG shows atrial fibrillation.", "B"), ("Left bundle branch block.", "E"),
    ("Atrial flutter is seen on this ECG.", "C"), ("no idea", None), ("", None),
])
def test_strict_choice(text, letter):
    result = strict.score_mcq("csn-test-no-cot", [text], [CSN_QUESTION], ["B"])
    assert result["items"][0]["parsed"] == letter
    assert result["unparsed"] == (letter is None)
    assert result["items"][0]["correct"] == float(letter == "B")


def test_strict_gold_letter_and_no_random_fallback():
    assert [strict.gold_letter(r) for r in ("B", "(B)", "B. Atrial fibrillation", ["C"], "Both")] \
        == ["B", "B", "B", "C", None]
    result = strict.score_mcq("mmmu-ecg", ["no idea"] * 4, ["Q? A. a B. b C. c D. d"] * 4, ["A"] * 4)
    assert result["metrics"]["Accuracy"] == 0.0 and result["unparsed"] == 4


def test_strict_ecgqa_whole_words_any_case_longest_first():
    options = paper.ecgqa_options(QA)
    assert strict.ecgqa_prediction("Not sure.", options) == ["not sure"]
    assert strict.ecgqa_prediction("None of them", options) == ["none"]
    assert strict.ecgqa_prediction("No, it does not.", options) == ["no"]
    result = strict.score_ecgqa(["Yes", "not sure", "None", "maybe"], [QA] * 4,
                                [["yes"], ["not sure"], ["none"], ["no"]])
    assert [i["correct"] for i in result["items"]] == [1.0, 1.0, 1.0, 0.0]
    assert result["unparsed"] == 1


# -- subsets and reader ----------------------------------------------------------------------------

def test_subset_names_and_aliases():
    assert resolve_subsets("mmmu,ptb") == ["ptb-test", "mmmu-ecg"]
    assert len(resolve_subsets("all")) == 9
    with pytest.raises(UnknownSubset, match="no ECGBench subset 'ptbx'"):
        resolve_subsets("ptbx")


def test_reader_accepts_the_released_shapes(tmp_path):
    (tmp_path / "images" / "ptb-xl").mkdir(parents=True)
    (tmp_path / "images" / "ptb-xl" / "1.png").write_bytes(b"png")
    (tmp_path / "ecgqa-test.json").write_text(json.dumps([{
        "id": "q1", "image": "ptb-xl/1.png", "conversations": [
            {"from": "human", "value": ["<image>\nQuestion: Is it AF?\nOptions: yes, no"]},
            {"from": "gpt", "value": ["no"]}]}]))
    (tmp_path / "arena.json").write_text(json.dumps([{
        "id": "arena-1", "image": "ptb-xl/1.png", "conversations": [
            {"question": "<image>\nWhat do you see?", "answer": "Sinus rhythm."},
            {"question": "Why?", "answer": "P waves."}]}]))
    (item,) = read_subset(tmp_path, "ecgqa-test")
    assert item.question == "Question: Is it AF?\nOptions: yes, no" and item.reference == ["no"]
    (arena,) = read_subset(tmp_path, "arena")
    assert arena.questions == ["What do you see?", "Why?"]
    assert arena.references == ["Sinus rhythm.", "P waves."]


def test_reader_errors_name_what_is_missing(tmp_path):
    with pytest.raises(BenchDataError, match=f"ECGBench folder {tmp_path / 'nope'} not found"):
        read_subset(tmp_path / "nope", "ptb-test")
    with pytest.raises(BenchDataError, match="no ptb-test.json in"):
        read_subset(tmp_path, "ptb-test")
    (tmp_path / "ptb-test.json").write_text(json.dumps([{
        "id": "p1", "image": "ptb-xl/00001_hr-0.png", "conversations": [
            {"from": "human", "value": "<image>\nWhich?"}, {"from": "gpt", "value": "NORM"}]}]))
    with pytest.raises(BenchDataError) as error:
        read_subset(tmp_path, "ptb-test")
    message = str(error.value)
    assert "image ptb-xl/00001_hr-0.png of ptb-test item p1 not found under" in message
    assert "\n" not in message
    with pytest.raises(BenchDataError, match="image folder .*elsewhere not found"):
        read_subset(tmp_path, "ptb-test", images=tmp_path / "elsewhere")
    (tmp_path / "mmmu-ecg.json").write_text("[{\"id\": 1}]")
    with pytest.raises(BenchDataError, match="no 'conversations' list"):
        read_subset(tmp_path, "mmmu-ecg")


# -- judge plumbing --------------------------------------------------------------------------------

@pytest.mark.parametrize("reply, parsed", [
    ('{"Diagnosis": {"Score": 8}}', {"Diagnosis": {"Score": 8}}),
    ('```json\n{"Rhythm": {"Score": 5, "Explanation": "ok"}}\n```',
     {"Rhythm": {"Score": 5, "Explanation": "ok"}}),
    ("{Diagnosis: {Score: 8}}", None),            # the paper's own example is not JSON
    ("Score: 8", None), ("[1, 2]", None), ("", None), (None, None),
])
def test_parse_reply(reply, parsed):
    assert parse_reply(reply) == parsed


def test_judge_cache_keys_on_model_and_prompt(tmp_path):
    cache = JudgeCache(tmp_path / "cache.sqlite")
    cache.put("gpt-4o", "prompt", Judgement('{"a": 1}', {"a": 1}, attempts=2))
    assert cache.get("gpt-4o", "prompt").parsed == {"a": 1}
    assert cache.get("gpt-4o", "prompt ") is None and cache.get("other", "prompt") is None
    cache.close()
    again = JudgeCache(tmp_path / "cache.sqlite")
    hit = again.get("gpt-4o", "prompt")
    assert hit.cached and hit.attempts == 2 and (again.hits, again.misses) == (1, 0)


def test_agreement_of_two_judges():
    first = {str(i): {"score": s, "aspects": {"diagnosis": s / 10}} for i, s in
             enumerate([80, 60, 40, 20])}
    second = {str(i): {"score": s, "aspects": {"diagnosis": s / 10}} for i, s in
              enumerate([70, 60, 50, 10])}
    a = agreement(first, second)
    assert a["n"] == 4 and a["mean_abs_diff"] == pytest.approx(7.5)
    assert a["spearman"] == pytest.approx(1.0) and 0.9 < a["pearson"] < 1
    assert a["aspects"]["diagnosis"]["exact"] == 0.25
    assert 0 < a["aspects"]["diagnosis"]["kappa"] < 1


def test_an_unreachable_judge_ends_the_run(tmp_path):
    import socket

    from pulse_app.engine.openai_compat import OpenAIBackend
    from pulse_app.errors import BackendUnreachable
    from training.ecgbench.judge import Judge

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = JudgeCache(tmp_path / "cache.sqlite")
    judge = Judge(OpenAIBackend(f"http://127.0.0.1:{port}/v1", "gpt-4o", timeout_s=5), cache,
                  transport_retries=1)
    with pytest.raises(BackendUnreachable, match="cannot connect"):
        judge("prompt")
    assert judge.requests == 2 and cache.get("gpt-4o", "prompt") is None
