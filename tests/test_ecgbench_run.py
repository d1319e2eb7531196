"""ECGBench end to end: a miniature in the released layout built from simulated and real records
(../shared/data, into a temp folder, never committed), scored with the shipped mini model through
``python -m training.evaluate --benchmark ecgbench``; the report and arena subsets answered and
judged through a real ``serve-openai`` on 127.0.0.1, then re-run with every judgement cached."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO
from training.ecgbench.build import FOLDERS, build
from training.ecgbench.data import read_subset
from training.ecgbench.subsets import SUBSETS
from training.evaluate import main


@pytest.fixture(scope="module")
def mini_bench(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("mini-ecgbench")
    counts = build(folder, simulated=4, shared=shared_data, per_subset=2, dpi=100)
    assert counts == dict.fromkeys(SUBSETS, 2)
    return folder


def test_miniature_is_in_the_released_layout(mini_bench):
    assert sorted(p.name for p in mini_bench.glob("*.json")) == sorted(f"{s}.json" for s in SUBSETS)
    assert {p.name for p in (mini_bench / "images").iterdir()} == set(FOLDERS.values())
    qa = json.loads((mini_bench / "ecgqa-test.json").read_text())
    assert all(isinstance(t["value"], list) for item in qa for t in item["conversations"])
    arena = json.loads((mini_bench / "arena.json").read_text())
    assert set(arena[0]["conversations"][0]) == {"question", "answer"}
    # real records come first: PTB-XL, CPSC 2018 and Georgia (G12EC) pages from ../shared
    assert {i.id for i in read_subset(mini_bench, "ptb-test")} == {"ptb-HR00002", "ptb-HR00004"}
    assert all(i.image.startswith("cpsc/A") for i in read_subset(mini_bench, "cpsc-test"))
    assert all(i.image.startswith("g12/E") for i in read_subset(mini_bench, "g12-test-no-cot"))
    for subset in SUBSETS:
        assert len(read_subset(mini_bench, subset)) == 2


@pytest.fixture(scope="module")
def mini_run(mini_bench, tmp_path_factory):
    """Every subset answered once by the shipped mini model (no judge): the output folder and
    what the command printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("mini-run")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("PULSE_CACHE_DIR", str(out / "cache"))
        assert main(["--benchmark", "ecgbench", "--data", str(mini_bench), "--subset", "all",
                     "--model", "offline-default", "--device", "cpu", "--max-new-tokens", "32",
                     "--out", str(out / "out")]) == 0
    return out / "out", printed.getvalue()


def test_every_subset_end_to_end_on_the_mini_model(mini_bench, mini_run, tmp_path,
                                                   monkeypatch):
    out, printed = mini_run
    assert "pulse-mini" in printed and "PULSE-7B" in printed and "82.9" in printed
    assert "Report Score" in printed and "(no judge)" in printed
    results = json.loads((out / "results.json").read_text())
    assert list(results["subsets"]) == ["ptb-test", "ptb-test-report", "code15-test",
                                        "ecgqa-test", "cpsc-test", "csn-test-no-cot",
                                        "g12-test-no-cot", "mmmu-ecg", "arena"]
    ptb = results["subsets"]["ptb-test"]["scores"]
    assert set(ptb["paper"]["metrics"]) == {"AUC", "F1", "HL"}
    assert ptb["strict"]["metrics"]["AUC"] is None and ptb["strict"]["metrics"]["F1"] is not None
    for line in (out / "mmmu-ecg.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["prompt"].startswith("Which of the following") and row["answer"]
        assert set(row["paper"]) >= {"parsed", "random", "correct"}
        assert set(row["strict"]) >= {"parsed", "gold", "correct"}
    arena = [json.loads(line) for line in (out / "arena.jsonl").read_text().splitlines()]
    assert all(len(r["answer"]) == 2 and all(r["answer"]) for r in arena)   # two turns answered
    # resumed: a second run answers nothing again and scores the same
    monkeypatch.setenv("PULSE_CACHE_DIR", str(tmp_path / "cache"))
    answers = {p.name: p.read_text() for p in (out / "answers").iterdir()}
    assert main(["--benchmark", "ecgbench", "--data", str(mini_bench), "--subset",
                 "ptb,code15,ecgqa,cpsc,csn,g12,mmmu", "--model", "offline-default", "--device",
                 "cpu", "--max-new-tokens", "32", "--out", str(out)]) == 0
    assert {p.name: p.read_text() for p in (out / "answers").iterdir()} == answers
    again = json.loads((out / "results.json").read_text())["subsets"]
    assert again["mmmu-ecg"] == results["subsets"]["mmmu-ecg"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def openai_server(tmp_path):
    """``python -m pulse_app serve-openai`` (the mini model) on 127.0.0.1; its base URL."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pulse_app", "serve-openai", "--host", "127.0.0.1", "--port",
         str(port), "--device", "cpu", "--cache-dir", str(tmp_path / "server-cache")],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            if process.poll() is not None:
                pytest.fail(f"serve-openai exited: {(tmp_path / 'server.log').read_text()}")
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("serve-openai did not come up in 120 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_judged_subsets_through_a_real_server_then_all_from_the_cache(mini_bench, tmp_path,
                                                                       monkeypatch, capsys,
                                                                       openai_server):
    monkeypatch.setenv("PULSE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    args = ["--benchmark", "ecgbench", "--data", str(mini_bench), "--subset", "report,arena",
            "--model", "offline-default", "--backend", "openai", "--url", openai_server,
            "--concurrency", "2", "--max-new-tokens", "24", "--out", str(out),
            "--judge-url", openai_server, "--judge-model", "offline-default",
            "--judge-cache", str(tmp_path / "judge.sqlite"), "--judge-max-tokens", "24",
            "--judge-retries", "0",         # serve-openai answers only with an ECG attached,
            #                                 and a re-ask with the picture exceeds its context
            "--judge-attach-image", str(next((mini_bench / "images").rglob("*.png")))]
    assert main(args) == 0
    first = json.loads((out / "results.json").read_text())
    # 2 report prompts + 2 arena prompts; the strict prompts equal the paper ones here (unique
    # ids, two arena turns), so strict reads them from the cache
    assert first["judge_cache"]["misses"] == 4 and first["judge_cache"]["hits"] == 4
    assert first["judge_cache"]["requests"] >= 4
    rows = [json.loads(line) for line in (out / "arena.jsonl").read_text().splitlines()]
    assert all(len(r["answer"]) == 2 for r in rows)              # two turns, through the server
    judged = rows[0]["strict"]["offline-default"]
    assert judged["judged"] and judged["judge_reply"] is not None
    # the mini model is no judge: its replies are not JSON, and that is counted, not hidden
    report = first["subsets"]["ptb-test-report"]["scores"]["strict"]["offline-default"]
    assert report["unparsed"] == 2 and report["metrics"]["Report Score"] is None
    assert "judgements failed" in capsys.readouterr().out
    assert main(args) == 0
    again = json.loads((out / "results.json").read_text())["judge_cache"]
    assert again == {"hits": 8, "misses": 0, "requests": 0}


def test_two_judges_give_an_agreement_table(mini_bench, mini_run, tmp_path, monkeypatch,
                                            capsys):
    """Judgements replayed from the cache (filled here with hand-written JSON replies for the
    exact prompts), so no judge server is contacted; the answers are the mini model's."""
    from training.ecgbench.judge import Judgement, JudgeCache
    from training.ecgbench.run import judge_prompts

    import shutil

    monkeypatch.setenv("PULSE_CACHE_DIR", str(tmp_path / "cache"))
    out, cache_file = tmp_path / "out", tmp_path / "judge.sqlite"
    shutil.copytree(mini_run[0] / "answers", out / "answers")    # the mini model's answers
    args = ["--benchmark", "ecgbench", "--data", str(mini_bench), "--subset", "report,arena",
            "--model", "offline-default", "--device", "cpu", "--max-new-tokens", "32",
            "--out", str(out), "--scoring", "strict"]
    cache = JudgeCache(cache_file)
    for subset, aspects in (("ptb-test-report", ("Diagnosis", "Waveform", "Rhythm")),
                            ("arena", ("Accuracy", "Completeness", "Instruction Adherence"))):
        items = read_subset(mini_bench, subset)
        answers = [json.loads(l)["answers"]
                   for l in (out / "answers" / f"{subset}.jsonl").read_text().splitlines()]
        prompts, _, _ = judge_prompts(subset, items, answers, "strict")
        for n, prompt in enumerate(prompts):
            for judge, score in (("judge-a", 2 + 4 * n), ("judge-b", 3 + 4 * n)):
                reply = json.dumps({a: {"Score": score, "Explanation": "."} for a in aspects})
                cache.put(judge, prompt, Judgement(reply, json.loads(reply)))
    cache.close()
    dead = f"http://127.0.0.1:{_free_port()}/v1"                 # nothing listens there
    assert main(args + ["--judge-url", dead, "--judge-model", "judge-a", "--judge-model",
                        "judge-b", "--judge-cache", str(cache_file)]) == 0
    printed = capsys.readouterr().out
    assert "Judge agreement" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["judge_cache"]["requests"] == 0
    report = results["subsets"]["ptb-test-report"]
    assert report["scores"]["strict"]["judge-a"]["metrics"]["Report Score"] == 40.0   # 20, 60
    assert report["scores"]["strict"]["judge-b"]["metrics"]["Report Score"] == 50.0   # 30, 70
    assert report["agreement"]["n"] == 2 and report["agreement"]["mean_abs_diff"] == 10.0
