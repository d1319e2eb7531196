"""Score a model on an ECGInstruct-format file: per task and question type, vs. baselines.

    python -m training.evaluate --model assets/pulse-mini --limit 200 --out eval.json
    python -m training.evaluate --model PULSE-ECG/PULSE-7B --data ECGBench/mmmu-ecg.json
    python -m training.evaluate --model DIR --train data/sim/train.json --compare tiny-untrained

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
        labels = [l for l in label_space if l in reference]
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

def load_backend(model: str, *, device: str = "auto", precision: str = "auto"):
    """The app's local backend for ``model`` (``tiny-untrained``: the untrained tiny model)."""
    from pulse_app.engine import make_backend
    from pulse_app.settings import Settings

    settings = Settings.load(backend="local", model=model, device=device, precision=precision)
    backend = make_backend(settings, progress=lambda m: print(m, file=sys.stderr))
    backend.load()
    return backend


def predict(backend, samples, image_root: str | Path, *, max_new_tokens: int = 128,
            progress=None) -> list[str]:
    """The backend's greedy answer to each sample's last question (earlier turns as history)."""
    from PIL import Image

    from pulse_app.engine.backend import GenerationParams, answer

    params = GenerationParams(temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    out = []
    for i, sample in enumerate(samples):
        image = None
        if sample.image is not None:
            with Image.open(Path(image_root) / sample.image) as img:
                image = img.convert("RGB")
        out.append(answer(backend, image, sample.turns[:-1], sample.question, params))
        if progress:
            progress(i + 1, len(samples))
    return out


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="folder, hub id, offline-default or "
                        "tiny-untrained")
    parser.add_argument("--data", help="ECGInstruct-format file (default: simulate a held-out "
                        "split)")
    parser.add_argument("--image-root", help="folder image paths are relative to (default: the "
                        "data file's folder)")
    parser.add_argument("--train", help="train split for the majority baseline (default: the "
                        "evaluated data)")
    parser.add_argument("--compare", help="a second model scored alongside (e.g. tiny-untrained)")
    parser.add_argument("--limit", type=int, help="score at most N samples (balanced over "
                        "task/type)")
    parser.add_argument("--label-space", help="comma-separated labels for files without meta, "
                        "matched as substrings (ECGBench style), e.g. NORM,MI,STTC,CD,HYP")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--records", type=int, default=50, help="held-out split: records")
    parser.add_argument("--seed", type=int, default=HELDOUT_SEED, help="held-out split: seed")
    parser.add_argument("--dpi", type=int, default=100, help="held-out split: image dpi")
    parser.add_argument("--workdir", help="where the held-out split is written (default: temp)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", help="write the table and every answer to this JSON file")
    args = parser.parse_args(argv)
    from pulse_app.errors import PulseError

    started = time.monotonic()
    try:
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
        for model in [args.model] + ([args.compare] if args.compare else []):
            backend = load_backend(model, device=args.device, precision=args.precision)
            labels[model] = backend.info().label
            predictions[model] = predict(
                backend, samples, image_root, max_new_tokens=args.max_new_tokens,
                progress=lambda i, n: print(f"{model}: {i}/{n}", file=sys.stderr)
                if i % 20 == 0 or i == n else None)
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
