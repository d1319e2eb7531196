"""Teacher-LLM synthesis and the LLM judge, end to end against a real OpenAI-compatible server:
``python -m pulse_app serve-openai`` on 127.0.0.1 with the shipped mini model, started here.

The mini model answers ECG questions, not the teacher's and judge's prompts: its replies are
neither the JSON task the teacher prompt asks for nor a "Score: N" line, which is what the
pipeline must handle. Scoring and the threshold are checked on judge replies written the way
the prompt asks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO, SHARED_DATA
from tests.fixtures_ui import free_port
from training.instruct import generate_samples, read_samples, write_samples
from training.instruct.dataset import simulated_records
from training.instruct.synth import (LLM, load_prompt, main, pairs_from_samples, parse_score,
                                     parse_task, seed_of, synthesize, verdict)


@pytest.fixture(scope="module")
def mini_server(tmp_path_factory):
    """serve-openai with the shipped mini model (the offline default) on a free local port."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    process = subprocess.Popen([sys.executable, "-m", "pulse_app", "serve-openai", "--port",
                                str(port), "--device", "cpu"], cwd=REPO,
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
            if process.poll() is not None:
                pytest.fail(f"serve-openai exited: {log.read_text()[-2000:]}")
        else:
            pytest.fail(f"serve-openai did not start: {log.read_text()[-2000:]}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


ECG = SHARED_DATA / "ecg-images" / "ecg00010.png"


def _llm(url, cache, **kw):
    """serve-openai answers only about an ECG: every request carries the same picture."""
    from pulse_app.intake import load_upload

    return LLM(url, cache_dir=cache, max_tokens=12, image=load_upload([ECG]).image, **kw)


def test_teacher_and_judge_end_to_end_with_the_cache(mini_server, tmp_path, capsys):
    records = list(simulated_records(2, seed=5))
    seeds = [seed_of(r) for r in records]
    assert all(s.report_kind == "template" and "Conclusion" in s.report for s in seeds)
    cache = tmp_path / "cache"
    # 1. the teacher's replies are not the JSON task asked for: rejected, the run goes on
    teacher, judge = _llm(mini_server, cache), _llm(mini_server, cache, temperature=0.0)
    done, stats = synthesize(seeds, teacher, judge, per_record=1, concurrency=2)
    assert [c.reason for c in done] == ["teacher_unparseable"] * 2
    assert teacher.counts["sent"] == 2 and teacher.counts["estimated"] == 2   # no usage sent
    # dialogues (Fig. A6) and report revision (Fig. A7) go to the same server
    from training.instruct.synth import Seed

    german = Seed("ptbxl-00007", "images/ptbxl-00007.png", "ptbxl",
                  "sinusrhythmus linkstyp t abnormal", "source")
    talk, _ = synthesize([german], teacher, judge, per_record=0, dialogues=1, revise=True)
    assert [c.target for c in talk] == ["dialogue"] and talk[0].reason == "teacher_unparseable"
    assert teacher.counts["sent"] == 4                 # + the revision and the dialogue
    assert german.report_kind in ("source", "source-revised")
    # 2. the judge on template pairs of the same records: no "Score: N" -> not accepted
    samples = [s for r in records for s in generate_samples(r, "x.png", seed=0)[:1]]
    pairs = pairs_from_samples(samples, {s.record_id: s for s in seeds})
    judged, _ = synthesize(seeds, teacher, judge, pairs=pairs, concurrency=2)
    assert [c.reason for c in judged] == ["judge_unparseable"] * 2
    assert judge.counts["sent"] == 2
    # 3. a re-run sends nothing: every reply comes from the content-addressed cache
    teacher2, judge2 = _llm(mini_server, cache), _llm(mini_server, cache, temperature=0.0)
    again, _ = synthesize(seeds, teacher2, judge2, per_record=1, concurrency=2)
    again_judged, _ = synthesize(seeds, teacher2, judge2, pairs=pairs_from_samples(
        samples, {s.record_id: s for s in seeds}), concurrency=2)
    assert teacher2.counts.get("sent", 0) == judge2.counts.get("sent", 0) == 0
    assert teacher2.counts["cache_hits"] == judge2.counts["cache_hits"] == 2      # 100 %
    assert [c.reason for c in again + again_judged] == [c.reason for c in done + judged]
    # 4. the command line: outputs, the one reader, the statistics table
    out = tmp_path / "out"
    (tmp_path / "template.jsonl").write_text("".join(json.dumps(s.to_dict()) + "\n"
                                                     for s in samples))
    argv = ["--records", "2", "--seed", "5", "--per-record", "1", "--out", str(out),
            "--teacher-url", mini_server, "--max-tokens", "12", "--attach-image", str(ECG),
            "--cache", str(cache)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "cache hit rate" in table and "100 %" in table and "teacher_unparseable" in table
    rows = [json.loads(line) for line in (out / "judged.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rows] == ["teacher_unparseable"] * 2
    assert rows[0]["prompts"] == ["task_v1", "judge_v1"] and rows[0]["source"] == "simulator"
    assert read_samples(out / "accepted.jsonl", check_images=False) == []
    assert main(argv + ["--judge-only", str(tmp_path / "template.jsonl"), "--temperature",
                        "0"]) == 0
    assert "judge_unparseable" in capsys.readouterr().out
    # 5. shards: the judged files of --shard 0/2 and 1/2 concatenate to the one-machine file
    assert main(argv + ["--out", str(tmp_path / "single")]) == 0
    for i in range(2):
        assert main(argv + ["--out", str(tmp_path / "sharded"), "--shard", f"{i}/2"]) == 0
    capsys.readouterr()
    assert b"".join((tmp_path / "sharded" / f"judged-0000{i}-of-00002.jsonl").read_bytes()
                    for i in range(2)) == (tmp_path / "single" / "judged.jsonl").read_bytes()
    # 6. a dry run prints what it would send and sends nothing
    fresh = tmp_path / "fresh-cache"
    assert main(argv[:-1] + [str(fresh), "--dry-run"]) == 0           # --cache is the last
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if line.startswith("{")]
    assert len(printed) == 2 and printed[0]["messages"][0]["role"] == "user"
    assert "ECG report:" in printed[0]["messages"][0]["content"][-1]["text"]
    assert printed[0]["messages"][0]["content"][0]["image_url"]["url"].startswith("sha256:")
    assert not fresh.exists() or not any(fresh.rglob("*.json"))


def test_teacher_replies_parse_and_the_judge_threshold_rejects_low_scores(tmp_path):
    assert parse_task('Sure!\n```json\n{"task": "What is the rhythm?", "response": "Sinus '
                      'rhythm at 72 bpm."}\n```') == ("What is the rhythm?",
                                                      "Sinus rhythm at 72 bpm.")
    assert parse_task("Task: Is the axis normal? Answer yes or no.\nResponse: Yes.") == \
        ("Is the axis normal? Answer yes or no.", "Yes.")
    assert parse_task('{"task": "What is the rate?", "response": ') is None      # cut off
    assert parse_task("No premature beats are seen. Answer: yes.") is None
    from training.instruct.synth import parse_dialogue

    assert parse_dialogue("Human: What is the rate?\nAssistant: About 72 bpm.\nHuman: And "
                          "the rhythm?\nAssistant: Sinus rhythm.") == [
        ("What is the rate?", "About 72 bpm."), ("And the rhythm?", "Sinus rhythm.")]
    assert parse_dialogue('{"turns": [{"human": "Rate?", "assistant": "72 bpm."}]}') is None
    judge_replies = {"Relevant, accurate, no invention.\nScore: 5": 5.0,
                     "It quotes the report word for word.\nScore: 2": 2.0,
                     'Good.\n{"score": 4}': 4.0, "Score: 7": None, "The rate is 72 bpm.": None}
    for reply, score in judge_replies.items():
        assert parse_score(reply) == score, reply
    assert [verdict(parse_score(r), 4.0) for r in judge_replies] == \
        ["accepted", "low_score", "accepted", "judge_unparseable", "judge_unparseable"]


def test_prompts_are_versioned_files_and_part_of_the_cache_key(tmp_path):
    task = load_prompt("task")
    assert (task.name, task.version, task.id) == ("task", "v1", "task_v1")
    assert load_prompt("task_v1") == task
    filled = task.fill(report="Sinus rhythm.", target="mcq")
    assert "Sinus rhythm." in filled and "{report}" not in filled and '{"task"' in filled
    for name in ("judge", "dialogue", "revise"):
        assert "{report}" in load_prompt(name).text
    llm = LLM("http://127.0.0.1:9/v1", model="m", cache_dir=tmp_path)
    a = llm.key(llm.request(task.fill(report="A", target="mcq")))
    assert a != llm.key(llm.request(task.fill(report="A", target="open")))
    assert a == llm.key(llm.request(task.fill(report="A", target="mcq")))


def test_accepted_samples_are_read_by_the_one_reader(tmp_path):
    from training.instruct.synth import Candidate, write_outputs

    seed = seed_of(next(simulated_records(1, seed=2)))
    good = Candidate(seed, 0, "open", task="What is the rhythm?", response="Sinus rhythm.",
                     score=5.0, reason="accepted")
    low = Candidate(seed, 1, "mcq", task="Pick one.", response="A.", score=1.0,
                    reason="low_score")
    accepted, judged = write_outputs([good, low], tmp_path, teacher="t", judge="j",
                                     prompts=["task_v1", "judge_v1"])
    [sample] = read_samples(accepted, check_images=False)
    assert sample.image == seed.image and sample.meta["judge_score"] == 5.0
    assert sample.conversations[0]["value"] == "<image>\nWhat is the rhythm?"
    assert len(judged.read_text().splitlines()) == 2
    write_samples([sample], tmp_path / "again.jsonl")                        # valid as written
    talk = Candidate(seed, 2, "dialogue", task="Rate?\nRhythm?", response="72.\n\nSinus.",
                     score=4.0, reason="accepted", turns=[("Rate?", "72."), ("Rhythm?", "Sinus.")])
    accepted, _ = write_outputs([talk], tmp_path / "talk", teacher="t", judge="j", prompts=[])
    [dialogue] = read_samples(accepted, check_images=False)
    assert [t.question for t in dialogue.turns] == ["Rate?", "Rhythm?"]
