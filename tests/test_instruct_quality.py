"""The per-source quality report: judge scores, rejection reasons, near duplicates, answer
lengths and labels, from template data of real records and the synthesis' judged.jsonl."""

from __future__ import annotations

from training.instruct.dataset import build_dataset, read_records
from training.instruct.quality import collect, main, near_duplicates, report_markdown
from training.instruct.synth import Candidate, seed_of, write_outputs


def test_report_per_source(shared_data, tmp_path, capsys):
    records = list(read_records([shared_data / "cpsc2018" / "A0061.hea",
                                 shared_data / "ecg-records" / "E07509.hea"]))
    build_dataset(records, tmp_path / "data", render=False, name="train.jsonl")
    seed = seed_of(records[0])
    write_outputs([Candidate(seed, 0, "open", "What is the rhythm?", "Atrial fibrillation.",
                             5.0, "accepted"),
                   Candidate(seed, 1, "mcq", "Pick the rhythm.", "A.", 1.0, "low_score"),
                   Candidate(seed, 2, "close", reason="teacher_unparseable")],
                  tmp_path / "llm", teacher="t", judge="j", prompts=["task_v1", "judge_v1"])
    files = [tmp_path / "data" / "train.jsonl", tmp_path / "llm" / "judged.jsonl",
             tmp_path / "llm" / "accepted.jsonl"]
    stats = collect(files)
    assert set(stats) == {"cpsc2018", "cinc"}
    cpsc = stats["cpsc2018"]
    assert cpsc.reasons == {"accepted": 1, "low_score": 1, "teacher_unparseable": 1}
    assert cpsc.scores["5"] == 2 and cpsc.scores["1"] == 1 and cpsc.scores["none"] == 1
    assert cpsc.labels["atrial fibrillation"] > 0 and stats["cinc"].labels["sinus bradycardia"]
    assert main([str(f) for f in files] + ["--out", str(tmp_path / "q.md")]) == 0
    text = (tmp_path / "q.md").read_text()
    assert "## cpsc2018" in text and "## cinc" in text and "low_score: 1" in text
    assert "Answer length (words)" in text and "Judge scores: 0: 0, 1: 1" in text
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    assert report_markdown(stats) == text


def test_near_duplicates_ignore_numbers_and_find_rewordings():
    questions = ["what is the heart rate on this tracing? # bpm",
                 "what is the heart rate on this tracing? # bpm",
                 "what is the heart rate shown on this tracing? # bpm",
                 "describe the st segments in v1 to v4.", "is there left bundle branch block?"]
    exact, near, examples = near_duplicates(questions, threshold=0.8)
    assert exact == 1 and near == 2
    assert examples[0] == ("what is the heart rate on this tracing? # bpm",
                           "what is the heart rate shown on this tracing? # bpm")
