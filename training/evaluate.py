"""Score a model: on ECGInstruct-format files (the project's questions), or on ECGBench.

    python -m training.evaluate --model assets/pulse-mini --limit 200 --out eval.json
    python -m training.evaluate --model DIR --train data/sim/train.json --compare tiny-untrained
    python -m training.evaluate --benchmark ecgbench --data ECGBench/ --subset all \
        --model PULSE-ECG/PULSE-7B --judge-url https://api.openai.com/v1 --judge-model gpt-4o

Both answer through one runner (``training.generation``: batched on the local backend,
concurrent on remote ones, resumable, with a progress bar). ``--benchmark ecgbench`` reads the
released subset files, scores them the paper's way and a strict way (``--scoring``), judges the
report and arena subsets with an LLM (``--judge-model``) and prints the paper's table with
PULSE-7B's published numbers beside ours (see ``training.ecgbench`` and docs/ecgbench.md).

Each sample's last gpt turn is the reference; the model answers the last human question (earlier
turns are given as history) greedily through the app's own engine (``pulse_app.engine``, local
backend). Without ``--data`` a held-out synthetic split is simulated and rendered with a seed far
from the training seeds. Scores (see ``training.metrics``): accuracy for close-ended (yes/no
parsed), multiple choice (letter or option text parsed), fill-in-the-blank and rate (exact bucket:
bradycardia/normal/tachycardia); macro F1 over the findings named in open answers and reports
(an answer naming none counts as the class "no finding").
Every score is printed next to a majority-class baseline (most frequent answer per question kind
in ``--train``, or in the evaluated data itself) and, with ``--compare``, a second model (e.g.
``tiny-untrained``, the untrained tiny model of the same class).

Samples without generator ``meta`` (e.g. the released ECGBench files) are scored by what their
reference looks like: a single letter -> multiple choice, yes/no -> close-ended, otherwise findings
F1 over the labels the reference names.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from pulse_app import settings as settings_module
from pulse_app.errors import PulseError
from training.instruct.format import QTYPE_NAMES, QTYPES, TASK_NAMES, TASKS, read_samples
from training.instruct.vocab import FINDINGS, find_labels
from training.metrics import MajorityBaseline, macro_f1, score_answer

#: Seed of the held-out synthetic split (training data uses small seeds).
HELDOUT_SEED = 90_210
MAJORITY = "majority"
#: The class an empty set of findings counts as in macro F1 (like PTB-XL's NORM).
NO_FINDING = "(no finding)"


# -- data ------------------------------------------------------------------------------------------

def infer_meta(sample, label_space=None) -> dict:
    """Scoring meta for a sample without generator meta, from its reference answer.

    With ``label_space`` (e.g. ECGBench PTB-XL's ``["NORM", "MI", "STTC", "CD", "HYP"]``) the
    labels are found as case-sensitive substrings of reference and answer, as the released
    ECGBench scorer does.
    """
    meta = dict(sample.meta)
    if meta.get("score"):
        return meta
    reference = sample.reference.strip()
    if label_space:
        from training.ecgbench.paper import substring_labels

        labels = substring_labels(reference, label_space)
        meta.update(score="labels", labels=labels, answer=labels, vocabulary=list(label_space),
                    match="substring", qtype="open")
        meta.setdefault("task", "labels")
        meta.setdefault("kind", "labels")
        return meta
    letter = re.fullmatch(r"\(?([A-H])\)?[.)]?(?:\s.*)?", reference, flags=re.S)
    options = dict(re.findall(r"(?m)^\s*\(?([A-H])[.)]\s*(.+?)\s*$", sample.question))
    if letter and (options or len(reference) <= 3):
        meta.update(score="choice", answer=letter.group(1), options=options, qtype="mcq")
    elif reference.lower().rstrip(".") in ("yes", "no"):
        meta.update(score="yesno", answer=reference.lower().rstrip("."), qtype="close")
    else:
        labels = sorted(find_labels(reference), key=FINDINGS.index)
        meta.update(score="labels", labels=labels, answer=labels, vocabulary=list(FINDINGS),
                    qtype="open")
    meta.setdefault("task", "report" if meta["score"] == "labels" else "unknown")
    meta.setdefault("kind", meta["task"])
    return meta


def balanced_subset(samples, limit: int | None):
    """The first ``limit`` samples taken round-robin over (task, question type) groups."""
    if not limit or limit >= len(samples):
        return list(samples)
    groups = defaultdict(list)
    for s in samples:
        groups[(s.meta.get("task"), s.meta.get("qtype"))].append(s)
    queues = list(groups.values())
    out = []
    while len(out) < limit:
        for queue in queues:
            if queue and len(out) < limit:
                out.append(queue.pop(0))
    return out


def heldout_split(folder: str | Path, *, records: int = 50, seed: int = HELDOUT_SEED,
                  dpi: int = 100) -> Path:
    """Simulate and render a held-out split into ``folder``; returns its ``test.json``."""
    from training.instruct.dataset import build_dataset, simulated_records

    path, _ = build_dataset(simulated_records(records, seed), folder, seed=seed, dpi=dpi,
                            name="test.json")
    return path


# -- running models --------------------------------------------------------------------------------

def load_backend(model: str, *, device: str | None = "auto", precision: str | None = "auto",
                 backend: str | None = "local", url: str | None = None):
    """The app's backend for ``model`` (``tiny-untrained``: the untrained tiny model); local
    by default, or ``openai``/``space`` at ``url`` (key: ``PULSE_API_KEY``); None: the
    ``PULSE_*`` setting."""
    from pulse_app.engine import make_backend
    from pulse_app.settings import Settings

    settings = Settings.load(backend=backend, model=model, url=url, device=device,
                             precision=precision)
    engine = make_backend(settings, progress=lambda m: print(m, file=sys.stderr))
    if hasattr(engine, "load"):
        engine.load()
    return engine


def predict(backend, samples, image_root: str | Path, *, max_new_tokens: int = 128,
            progress=True, batch_size: int | str = "auto", concurrency: int = 4,
            answers_path: str | Path | None = None) -> list[str]:
    """The backend's greedy answer to each sample's last question (earlier turns as history),
    through :func:`training.generation.run_requests` (batched, resumable with
    ``answers_path``)."""
    from pulse_app.engine.backend import GenerationParams
    from training.generation import Request, run_requests

    params = GenerationParams(temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    requests = [Request(f"{i:06d}|{s.id}", s.image, [s.question], history=s.turns[:-1],
                        group=f"{s.meta.get('task')}/{s.meta.get('qtype')}/{s.meta.get('kind')}")
                for i, s in enumerate(samples)]
    answers = run_requests(backend, requests, image_root=image_root, params=params,
                           answers_path=answers_path, batch_size=batch_size,
                           concurrency=concurrency, progress=bool(progress))
    return [answers[r.id][0] for r in requests]


# -- scoring ---------------------------------------------------------------------------------------

def score_rows(samples, predictions: dict[str, list[str]]) -> tuple[list[dict], list[dict]]:
    """Table rows (one per group and metric) and per-sample results, for every named predictor."""
    scored = {name: [score_answer(p, s.meta) for p, s in zip(preds, samples)]
              for name, preds in predictions.items()}
    rows = []

    def add(group: str, metric: str, index: list[int]):
        if not index:
            return
        row = {"group": group, "metric": metric, "n": len(index)}
        for name, results in scored.items():
            if metric == "macro F1":                       # "no finding" counts as a class
                row[name] = macro_f1([results[i]["true"] or [NO_FINDING] for i in index],
                                     [results[i]["pred"] or [NO_FINDING] for i in index])
            elif metric == "MAE bpm":
                errors = [results[i].get("abs_error_bpm") for i in index]
                known = [e for e in errors if e is not None]
                row[name] = sum(known) / len(known) if known else None
            else:
                row[name] = sum(results[i]["correct"] for i in index) / len(index)
        rows.append(row)

    usable = [i for i, s in enumerate(samples) if s.meta.get("score")]
    tasks = list(TASKS) + sorted({s.meta.get("task") for s in samples} - set(TASKS) - {None})
    for task in tasks:
        for qtype in QTYPES:
            index = [i for i in usable if samples[i].meta.get("task") == task
                     and samples[i].meta.get("qtype") == qtype]
            add(f"{TASK_NAMES.get(task, task)} / {QTYPE_NAMES[qtype]}", "accuracy", index)
        findings = [i for i in usable if samples[i].meta.get("task") == task
                    and samples[i].meta.get("score") == "labels"]
        add(f"{TASK_NAMES.get(task, task)} / findings named", "macro F1", findings)
    rate = [i for i in usable if samples[i].meta.get("kind") == "rate"]
    add("Rate: bucket, all question types", "accuracy", rate)
    add("Rate: bucket, open + fill answers", "accuracy",
        [i for i in rate if samples[i].meta.get("score") == "rate"])
    add("Rate: bpm error of open answers", "MAE bpm",
        [i for i in rate if samples[i].meta.get("qtype") == "open"])
    add("Rhythm: rhythm label, all question types", "accuracy",
        [i for i in usable if samples[i].meta.get("kind") == "rhythm"])
    add("All questions", "accuracy", usable)
    per_sample = []
    for i, s in enumerate(samples):
        per_sample.append({"id": s.id, "task": s.meta.get("task"), "qtype": s.meta.get("qtype"),
                           "kind": s.meta.get("kind"), "question": s.question,
                           "reference": s.reference,
                           "predictions": {n: predictions[n][i] for n in predictions},
                           "correct": {n: scored[n][i]["correct"] for n in scored}})
    return rows, per_sample


def evaluate(samples, predictions: dict[str, list[str]], train=None) -> dict:
    """Add the majority baseline (fitted on ``train`` or on ``samples``) and score everything."""
    baseline = MajorityBaseline.fit(train if train is not None else samples)
    predictions = {**predictions, MAJORITY: [baseline.predict(s) for s in samples]}
    rows, per_sample = score_rows(samples, predictions)
    return {"predictors": list(predictions), "rows": rows, "samples": per_sample}


def print_table(result: dict, title: str = "Evaluation") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("Task / type", "Metric", "n", *result["predictors"]):
        table.add_column(column, justify="left" if column in ("Task / type", "Metric") else "right")
    for row in result["rows"]:
        values = []
        for name in result["predictors"]:
            v = row.get(name)
            values.append("-" if v is None else f"{v:.1f}" if row["metric"] == "MAE bpm"
                          else f"{100 * v:.1f}")
        table.add_row(row["group"], row["metric"], str(row["n"]), *values)
    Console(width=140).print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of both evaluations (ECGInstruct files and ``--benchmark ecgbench``)."""
    parser.add_argument("--model", required=True, help="folder, hub id, offline-default or "
                        "tiny-untrained (local); the served model's name with --backend openai")
    parser.add_argument("--data", help="ECGInstruct-format file (default: simulate a held-out "
                        "split); with --benchmark ecgbench: the ECGBench folder")
    parser.add_argument("--image-root", "--images", help="folder image paths are relative to "
                        "(default: the data file's folder; ECGBench: <data>/images, else <data>)")
    parser.add_argument("--train", help="train split for the majority baseline (default: the "
                        "evaluated data)")
    parser.add_argument("--compare", help="a second model scored alongside (e.g. tiny-untrained)")
    parser.add_argument("--limit", type=int, help="score at most N samples (balanced over "
                        "task/type; ECGBench: the first N of each subset)")
    parser.add_argument("--label-space", help="comma-separated labels for files without meta, "
                        "matched as substrings (ECGBench style), e.g. NORM,MI,STTC,CD,HYP")
    parser.add_argument("--max-new-tokens", type=int, help="longest answer (default 128; "
                        "ECGBench 1024, as the paper)")
    parser.add_argument("--records", type=int, default=50, help="held-out split: records")
    parser.add_argument("--seed", type=int, default=HELDOUT_SEED, help="held-out split: seed")
    parser.add_argument("--dpi", type=int, default=100, help="held-out split: image dpi")
    parser.add_argument("--workdir", help="where the held-out split is written (default: temp)")
    settings_module.add_arguments(parser, ["backend", "url", "device", "precision"])
    parser.add_argument("--batch-size", default="auto", help="local backend: questions per "
                        "generate call (auto: for the device; 1: one streamed answer at a time)")
    parser.add_argument("--concurrency", type=int, default=4, help="remote backends: requests "
                        "in flight")
    parser.add_argument("--threads", type=int, help="local backend on the CPU: torch threads "
                        "(default one per core; 1 is faster for batches on a CPU other busy "
                        "jobs share, see docs/ecgbench.md#speed)")
    parser.add_argument("--answers", help="JSON-lines file of answers to resume from and add to "
                        "(ECGInstruct files; ECGBench keeps them in <out>/answers/)")
    parser.add_argument("--out", help="JSON file of the table and every answer; with "
                        "--benchmark ecgbench: the output folder (default ecgbench-results)")
    bench = parser.add_argument_group("ECGBench (--benchmark ecgbench)")
    bench.add_argument("--benchmark", choices=("ecgbench",), help="score a released benchmark")
    bench.add_argument("--subset", default="all", help="comma-separated subsets or aliases "
                       "(ptb, report, code15, ecgqa, cpsc, csn, g12, mmmu, arena) or all")
    bench.add_argument("--scoring", default="both", choices=("paper", "strict", "both"),
                       help="paper: the published scorers, quirks included; strict: word "
                            "boundaries, synonyms, no random fallback (docs/ecgbench.md)")
    bench.add_argument("--judge-url", help="OpenAI-compatible server of the LLM judge (key: "
                       "PULSE_JUDGE_API_KEY)")
    bench.add_argument("--judge-model", action="append", default=[],
                       help="judge model (paper: gpt-4o); give two for an agreement table; "
                            "MODEL@URL for a judge on another server")
    bench.add_argument("--judge-cache", help="SQLite cache of judge replies (default: "
                       "<cache dir>/judge-cache.sqlite)")
    bench.add_argument("--judge-concurrency", type=int, default=8)
    bench.add_argument("--judge-retries", type=int, default=2, help="re-asks when a reply is "
                       "not a JSON object")
    bench.add_argument("--judge-max-tokens", type=int, default=1024)
    bench.add_argument("--judge-attach-image", metavar="FILE", default=None,
                       help="send this ECG picture with every judge prompt (for a judge server "
                            "that answers only about an ECG, such as serve-openai)")


def batch_size_arg(value: str) -> int | str:
    return value if value == "auto" else int(value)


def make_judges(args) -> list:
    """One :class:`training.ecgbench.judge.Judge` per ``--judge-model``, sharing one cache."""
    from pulse_app.engine.openai_compat import OpenAIBackend
    from pulse_app.settings import Settings
    from training.ecgbench.judge import Judge, JudgeCache

    if not args.judge_model:
        return []
    settings = Settings.load()
    cache = JudgeCache(args.judge_cache or Path(settings.cache_dir) / "judge-cache.sqlite")
    judges = []
    names = [spec.partition("@")[0] for spec in args.judge_model]
    if len(names) > 2 or len(set(names)) < len(names):
        raise PulseError("give one judge, or two different ones for an agreement table",
                         hint="e.g. --judge-model gpt-4o --judge-model claude@https://...")
    image = None
    if getattr(args, "judge_attach_image", None):
        from pulse_app.intake import load_upload

        image = load_upload([args.judge_attach_image]).image
    for spec in args.judge_model:
        model, _, url = spec.partition("@")
        url = url or args.judge_url
        if not url:
            raise PulseError(f"judge {model!r} has no server", hint="pass --judge-url URL or "
                             "--judge-model MODEL@URL")
        judges.append(Judge(OpenAIBackend(url, model, settings.judge_api_key,
                                          settings.timeout_s), cache,
                            retries=args.judge_retries, max_tokens=args.judge_max_tokens,
                            image=image))
    return judges


def run_ecgbench(args) -> int:
    """``--benchmark ecgbench``: answer, score, judge, print the paper's table."""
    from pulse_app.engine.backend import GenerationParams
    from training.ecgbench.run import print_table as print_bench_table, run_benchmark
    from training.ecgbench.subsets import resolve_subsets

    if not args.data:
        raise PulseError("--benchmark ecgbench needs the ECGBench folder",
                         hint="pass --data DIR (see docs/ecgbench.md)")
    subsets = resolve_subsets(args.subset)
    judges = make_judges(args)
    backend = load_backend(args.model, device=args.device, precision=args.precision,
                           backend=args.backend, url=args.url)
    params = GenerationParams(temperature=0.0, max_new_tokens=args.max_new_tokens or 1024,
                              seed=0)
    modes = ("paper", "strict") if args.scoring == "both" else (args.scoring,)
    started = time.monotonic()
    results = run_benchmark(backend, args.data, subsets, args.out or "ecgbench-results",
                            images=args.image_root, params=params, modes=modes,
                            limit=args.limit, batch_size=batch_size_arg(args.batch_size),
                            concurrency=args.concurrency, judges=judges,
                            judge_concurrency=args.judge_concurrency, progress=True)
    print_bench_table(results)
    print(f"{sum(e['n'] for e in results['subsets'].values())} items in "
          f"{time.monotonic() - started:.0f} s; per-item answers and scores in "
          f"{args.out or 'ecgbench-results'}/", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)

    started = time.monotonic()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.benchmark == "ecgbench":
            return run_ecgbench(args)
        data = args.data
        if data is None:
            folder = args.workdir or tempfile.mkdtemp(prefix="pulse-heldout-")
            data = heldout_split(folder, records=args.records, seed=args.seed, dpi=args.dpi)
        samples = read_samples(data, image_root=args.image_root)
        image_root = Path(args.image_root) if args.image_root else Path(data).parent
        label_space = [l.strip() for l in args.label_space.split(",")] if args.label_space \
            else None
        for s in samples:
            s.meta = infer_meta(s, label_space)
        samples = balanced_subset(samples, args.limit)
        train = read_samples(args.train, check_images=False) if args.train else None
        predictions, labels = {}, {}
        for n, model in enumerate([args.model] + ([args.compare] if args.compare else [])):
            backend = load_backend(model, device=args.device, precision=args.precision,
                                   backend=args.backend if n == 0 else "local", url=args.url)
            labels[model] = backend.info().label
            answers = (Path(args.answers).with_suffix(f".{n}.jsonl") if n and args.answers
                       else args.answers)
            predictions[model] = predict(
                backend, samples, image_root, max_new_tokens=args.max_new_tokens or 128,
                batch_size=batch_size_arg(args.batch_size), concurrency=args.concurrency,
                answers_path=answers)
            del backend
    except PulseError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    result = evaluate(samples, predictions, train)
    result.update(model=args.model, compare=args.compare, model_labels=labels, data=str(data),
                  train=args.train,
                  n=len(samples), seconds=round(time.monotonic() - started, 1))
    print_table(result, title=f"{args.model} on {data} ({len(samples)} samples)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
