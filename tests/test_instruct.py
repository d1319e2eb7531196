"""ECGInstruct-format data: the reader, the generators, the report template and the CLI.

Records come from the real simulator (random_findings: every finding the vocabulary knows shows
up in a few hundred records) and from real CinC files; the answers are checked against each
record's labels and measurements, re-derived independently of the generator's own code paths.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from training.instruct import (InstructFormatError, Sample, generate_samples, read_samples,
                               write_samples)
from training.instruct.report import build_report
from training.instruct.vocab import (AXIS, FINDINGS, RHYTHMS, TASK_LABELS, find_labels,
                                     rate_bucket)
from training.metrics import parse_choice, parse_yes_no, score_answer

N_RECORDS = 300


@pytest.fixture(scope="module")
def records():
    from pulse_app.ecg.simulate import ecg_simulate, random_findings

    out = []
    for n in range(N_RECORDS):
        record = ecg_simulate(random_findings(n), seed=n, duration_s=2.0, fs=250)
        record.record_id = f"sim-{n:04d}"
        out.append(record)
    return out


@pytest.fixture(scope="module")
def samples(records):
    return [s for r in records for s in generate_samples(r, f"images/{r.record_id}.png", seed=1)]


def test_vocabulary_is_the_simulators():
    from pulse_app.ecg import simulate

    from training.instruct.vocab import GROUPS

    assert FINDINGS is simulate.FINDINGS
    grouped = [label for group in GROUPS.values() for label in group]
    assert sorted(grouped) == sorted(FINDINGS) and len(set(grouped)) == len(grouped)
    assert set(TASK_LABELS["report"]) == set(FINDINGS)


def test_every_task_and_type_is_generated(samples, records):
    counts = Counter((s.meta["task"], s.meta["qtype"]) for s in samples)
    for task in ("basic", "rhythm", "morphology"):
        for qtype in ("close", "open", "fill", "mcq"):
            assert counts[(task, qtype)] == N_RECORDS, (task, qtype)
    assert counts[("report", "open")] == N_RECORDS
    kinds = Counter(s.meta["kind"] for s in samples)
    assert {"rate", "axis", "intervals", "rhythm", "ectopy", "conduction", "morphology",
            "report"} <= set(kinds)
    seen = Counter(l for r in records for l in r.labels)
    assert set(seen) == set(FINDINGS), "the simulator mix should cover every label"


def test_many_phrasings_per_kind(samples):
    questions: dict[tuple, set] = {}
    for s in samples:
        first_line = s.question.splitlines()[0]
        questions.setdefault((s.meta["kind"], s.meta["qtype"]), set()).add(first_line)
    thin = {k: len(v) for k, v in questions.items() if len(v) < 5}
    assert not thin, f"fewer than 5 phrasings: {thin}"


def test_reference_answers_score_perfectly(samples):
    """Each reference answer, read back by the evaluation parsers, gives the canonical answer."""
    bad = []
    for s in samples:
        result = score_answer(s.reference, s.meta)
        if result["correct"] != 1.0:
            bad.append((s.id, s.meta["score"], s.meta["answer"], result["parsed"], s.reference))
    assert not bad, bad[:5]


def test_answers_agree_with_the_record(samples, records):
    by_id = {r.record_id: r for r in records}
    for s in samples:
        record = by_id[s.id.rsplit("-", 2)[0]]
        labels, meta = set(record.labels), s.meta
        rate = record.measurements["heart_rate_bpm"]
        if meta["kind"] == "rate" and meta["score"] in ("rate", "choice"):
            bucket = meta.get("rate_answer", meta["answer"])
            assert bucket == ("bradycardia" if rate < 60 else "tachycardia" if rate > 100
                              else "normal")
            assert f"{round(rate)} bpm" in s.reference
        if meta["score"] == "yesno":
            assert s.reference.endswith(f"Answer: {meta['answer']}.")     # reading, then verdict
            assert parse_yes_no(s.reference) == meta["answer"]
            claim = meta.get("claim")
            if claim in FINDINGS:
                assert (meta["answer"] == "yes") == (claim in labels), s.id
            if claim == "no finding":                                # "is the group normal?"
                assert (meta["answer"] == "yes") == (not meta["labels"]), s.id
            if claim == "normal axis":
                assert (meta["answer"] == "yes") == (not labels & set(AXIS))
            if meta["kind"] == "rate":
                assert (meta["answer"] == "yes") == (claim == rate_bucket(rate))
        if meta["kind"] == "rhythm" and meta["score"] != "yesno":
            rhythm = next(l for l in record.labels if l in RHYTHMS)
            assert rhythm in (meta["answer"], meta.get("answer_text", "").lower())
        if meta["score"] == "labels":
            assert set(meta["labels"]) == labels & set(meta["vocabulary"]), s.id
        if meta["kind"] == "axis" and meta["score"] == "label":
            assert meta["answer"] == next((l for l in record.labels if l in AXIS), "normal axis")


def test_mcq_options_are_shuffled_and_the_letter_is_right(samples):
    mcqs = [s for s in samples if s.meta["qtype"] == "mcq"]
    letters = Counter(s.meta["answer"] for s in mcqs)
    assert set(letters) == set("ABCD")
    assert min(letters.values()) > len(mcqs) / 8, letters           # roughly uniform
    for s in mcqs:
        options = s.meta["options"]
        assert list(options) == list("ABCD") and len(set(options.values())) == 4
        letter = s.meta["answer"]
        assert options[letter] == s.meta["answer_text"]
        assert s.reference.endswith(f"Answer: {letter}. {options[letter]}.")   # reading first
        assert parse_choice(s.reference, options) == letter
        for key, text in options.items():                            # options are in the question
            assert f"{key}. {text}" in s.question


def test_same_seed_same_samples_other_seed_other_phrasing(records):
    a = [s.to_dict() for r in records[:40] for s in generate_samples(r, "x.png", seed=5)]
    b = [s.to_dict() for r in records[:40] for s in generate_samples(r, "x.png", seed=5)]
    c = [s.to_dict() for r in records[:40] for s in generate_samples(r, "x.png", seed=6)]
    assert a == b
    assert a != c
    assert json.dumps(a) == json.dumps(b)


def test_report_names_every_label_and_the_measurements(records):
    import random

    for n, record in enumerate(records):
        text = build_report(record.labels, record.measurements, rng=random.Random(n))
        assert find_labels(text) == set(record.labels), (record.labels, text)
        assert f"{round(record.measurements['heart_rate_bpm'])} bpm" in text
        assert f"QRS duration {round(record.measurements['qrs_ms'])} ms" in text
        assert ("Conclusion: normal ECG" in text) == (record.labels == ["sinus rhythm"])


def test_report_keeps_labels_outside_the_vocabulary():
    text = build_report(["sinus rhythm", "old inferior myocardial infarction"],
                        {"heart_rate_bpm": 64})
    assert "old inferior myocardial infarction" in text and "abnormal" in text


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_written_samples_read_back_identically(samples, tmp_path, suffix):
    subset = samples[:60]
    (tmp_path / "images").mkdir()
    for s in subset:
        (tmp_path / s.image).write_bytes(b"\x89PNG")                 # existence is what counts
    path = write_samples(subset, tmp_path / f"train{suffix}")
    if suffix == ".jsonl":
        assert len(path.read_text().splitlines()) == len(subset)
    else:
        assert path.read_text().lstrip().startswith("[")
    back = read_samples(path)
    assert [s.to_dict() for s in back] == [s.to_dict() for s in subset]
    assert back[0].conversations[0]["value"].startswith("<image>\n")
    assert "<image>" not in back[0].question


def _write(tmp_path, rows, name="d.json"):
    (tmp_path / "a.png").write_bytes(b"png")
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    return path


def test_reader_accepts_the_released_ecgbench_layout(tmp_path):
    # ECGBench test files: "conversation", user/assistant roles, no <image> in the question
    path = _write(tmp_path, [{"id": "ptb-report-1", "image": "a.png", "conversation": [
        {"from": "user", "value": "Please write a clinical report based on this ECG image."},
        {"from": "assistant", "value": "Sinus rhythm. Normal ECG."}]}])
    [sample] = read_samples(path)
    assert sample.conversations[0] == {"from": "human", "value": "<image>\nPlease write a "
                                       "clinical report based on this ECG image."}
    assert sample.conversations[1]["from"] == "gpt"
    assert sample.reference == "Sinus rhythm. Normal ECG."


def test_reader_moves_a_trailing_image_token_to_the_front(tmp_path):
    path = _write(tmp_path, [{"id": "1", "image": "a.png", "conversations": [
        {"from": "human", "value": "What is the rhythm?\n<image>"},
        {"from": "gpt", "value": "Sinus rhythm."},
        {"from": "human", "value": "And the rate?"}, {"from": "gpt", "value": "72 bpm."}]}])
    [sample] = read_samples(path)
    assert sample.conversations[0]["value"] == "<image>\nWhat is the rhythm?"
    assert [t.question for t in sample.turns] == ["What is the rhythm?", "And the rate?"]


@pytest.mark.parametrize("conversations, message", [
    ([{"from": "human", "value": "<image>\n<image>\nRate?"}, {"from": "gpt", "value": "72"}],
     "exactly once"),
    ([{"from": "human", "value": "<image>\nRate?"}, {"from": "human", "value": "?"}],
     "alternate"),
    ([{"from": "gpt", "value": "<image>\nRate?"}, {"from": "human", "value": "72"}], "alternate"),
    ([{"from": "human", "value": "<image>\nRate?"}], "alternate"),
    ([{"from": "doctor", "value": "<image>\nRate?"}, {"from": "gpt", "value": "72"}],
     "unknown role"),
    ([{"from": "human", "value": "Rate?"}, {"from": "gpt", "value": "72 <image>"}],
     "exactly once"),
])
def test_reader_rejects_malformed_samples(tmp_path, conversations, message):
    path = _write(tmp_path, [{"id": "1", "image": "a.png", "conversations": conversations}])
    with pytest.raises(InstructFormatError, match=message) as info:
        read_samples(path)
    assert "d.json item 0" in str(info.value)


def test_reader_names_missing_images_and_bad_lines(tmp_path):
    ok = {"id": "1", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nRate?"}, {"from": "gpt", "value": "72 bpm."}]}
    missing = dict(ok, id="2", image="images/none.png")
    path = _write(tmp_path, [ok, missing])
    with pytest.raises(InstructFormatError, match="images/none.png"):
        read_samples(path)
    assert len(read_samples(path, check_images=False)) == 2
    lines = tmp_path / "d.jsonl"
    lines.write_text(json.dumps(ok) + "\n\n{not json\n")
    with pytest.raises(InstructFormatError, match="line 3"):
        read_samples(lines)


def test_sample_turns_for_multi_turn_dialogues():
    s = Sample("x", "a.png", [{"from": "human", "value": "<image>\nQ1"},
                              {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"},
                              {"from": "gpt", "value": "A2"}])
    assert s.question == "Q2" and s.reference == "A2"
    assert s.turns[0].question == "Q1"


def test_generators_work_on_real_records(cinc_record_paths):
    from pulse_app.ecg.records import read_record

    for path in cinc_record_paths:
        record = read_record(path)
        out = generate_samples(record, "x.png", seed=0)
        assert out and all(s.reference for s in out)
        for s in out:
            assert score_answer(s.reference, s.meta)["correct"] == 1.0, (s.id, s.reference)


def test_cli_renders_and_writes_a_dataset(tmp_path, capsys):
    from training.instruct.__main__ import main

    assert main(["--records", "4", "--out", str(tmp_path), "--seed", "3", "--dpi", "40"]) == 0
    samples = read_samples(tmp_path / "train.json")                  # images exist: checked
    assert len(samples) == 4 * 13
    images = sorted((tmp_path / "images").glob("*.png"))
    assert len(images) == 4
    from PIL import Image

    assert Image.open(images[0]).size == (440, 340)                  # US letter at 40 dpi
    out = capsys.readouterr().out
    assert "Heart Rhythm Analysis" in out and "Multi-choice QA" in out and "52" in out


def test_cli_builds_from_real_records(shared_data, tmp_path):
    from training.instruct.__main__ import main

    assert main(["--from-records", str(shared_data / "ecg-records"), "--out", str(tmp_path),
                 "--dpi", "30", "--distort", "none", "--name", "cinc.jsonl"]) == 0
    samples = read_samples(tmp_path / "cinc.jsonl")
    assert {s.image for s in samples} == {f"images/{p.stem}.png" for p in
                                          (shared_data / "ecg-records").glob("*.hea")}
    report = next(s for s in samples if s.id == "E07509-report-open")
    assert {"right bundle branch block", "sinus bradycardia"} <= find_labels(report.reference)


def test_docstring_examples_run():
    import doctest

    import training.evaluate
    import training.instruct.format
    import training.instruct.generate
    import training.instruct.report
    import training.instruct.vocab
    import training.metrics

    for module in (training.instruct.format, training.instruct.generate, training.instruct.report,
                   training.instruct.vocab, training.metrics, training.evaluate):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__


def test_shards_concatenate_to_the_one_machine_output(tmp_path):
    """--shard i/4 builds block i; the four files concatenated are byte for byte the single
    run's file, and every page is the same image."""
    from training.instruct.__main__ import main

    common = ["--records", "6", "--seed", "2", "--dpi", "30", "--name", "train.jsonl"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    for i in range(4):
        assert main(common + ["--out", str(tmp_path / "four"), "--shard", f"{i}/4"]) == 0
    parts = sorted((tmp_path / "four").glob("train-*-of-00004.jsonl"))
    assert [p.name for p in parts] == [f"train-0000{i}-of-00004.jsonl" for i in range(4)]
    one = (tmp_path / "one" / "train.jsonl").read_bytes()
    assert b"".join(p.read_bytes() for p in parts) == one and len(one.splitlines()) == 6 * 13
    images = sorted(p.name for p in (tmp_path / "one" / "images").iterdir())
    assert images == sorted(p.name for p in (tmp_path / "four" / "images").iterdir())
    for name in images:
        assert (tmp_path / "one" / "images" / name).read_bytes() == \
            (tmp_path / "four" / "images" / name).read_bytes()
    with pytest.raises(SystemExit):
        main(["--records", "2", "--out", str(tmp_path / "x"), "--shard", "4/4"])
