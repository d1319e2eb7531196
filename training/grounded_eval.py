"""The mini model (or any model) on pages rendered from REAL records, rate and rhythm questions,
grounded vs not, against the majority baseline (issue 16, item 5).

Every record under ``--records`` (default: ``../shared/data/{ptbxl,cpsc2018,cinc-rare-rhythms,
ecg-records}``; third-party data, never committed, nor any page made from it) is rendered as a
clean 3x4+II page (``pulse_app.ecg.render``), its rate and rhythm questions are generated
(``training.instruct``: the rate is measured on the original signal, the rhythm comes from the
record's labels) and each is answered twice through the app's one answer path
(:func:`pulse_app.answer.stream_answer`): as asked, and grounded — with the context the app
gives, built from the digitiser's reading of the same page (:func:`pulse_app.grounding.read_image`,
:func:`pulse_app.grounding.summary_context`). Answers are scored by ``training.metrics``.

Baselines in the same run: the majority answer per question kind (learned from ``--train``, an
ECGInstruct file, e.g. the mini model's training split; without it, the majority of the very
questions evaluated, which flatters the baseline) and, for rate questions, the digitiser alone
(its measured rate written as the answer).

These pages were never used to tune the digitiser's measurements for rate or the mini model
(it is trained on simulated records only); the digitiser's own tuning records are listed in
``training.digitize_eval``.

    python -m training.grounded_eval --model offline-default --out grounded-eval.json

``--probe PAGE`` asks instead whether the model reads its context at all
(:func:`context_sensitivity`): one page, digitised as the app reads it, one rate question, the
context's rate (only it) changed from 40 to 160 bpm; a model that uses it follows the rates, one
that does not answers the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from pathlib import Path

from pulse_app.settings import REPO_ROOT

SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_FOLDERS = ("ptbxl", "cpsc2018", "cinc-rare-rhythms", "ecg-records")
KINDS = ("rate", "rhythm")
log = logging.getLogger("training.grounded_eval")


def record_questions(record, image_name: str, seeds: int = 6) -> list:
    """A record's rate and rhythm questions: one per (kind, question type) the record supports,
    the first the generator draws over ``seeds`` seeds (it draws the kind per seed)."""
    from training.instruct import generate_samples

    found = {}
    for seed in range(seeds):
        for s in generate_samples(record, image_name, seed=seed, tasks=("basic", "rhythm")):
            key = (s.meta.get("kind"), s.meta.get("qtype"))
            if key[0] in KINDS and key not in found:
                found[key] = s
    return list(found.values())


def evaluate(backend, records, *, params, train=None, limit_pages: int | None = None,
             progress=None) -> dict:
    """Answer and score every record's questions grounded and not; returns the table and items.
    ``progress(items)`` is called after each record (e.g. to save what is done so far)."""
    from pulse_app.answer import stream_answer
    from pulse_app.ecg.render import render_ecg
    from pulse_app.grounding import read_image, summary_context
    from training.metrics import MajorityBaseline, score_answer

    items, samples, timings = [], [], defaultdict(float)
    for n, record in enumerate(records):
        if limit_pages is not None and n >= limit_pages:
            break
        t0 = time.perf_counter()
        page = render_ecg(record, distort="none", seed=0).image
        timings["render_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        _, summary = read_image(page)
        timings["digitise_s"] += time.perf_counter() - t0
        context = summary_context(summary)
        measured = (summary.get("measurements") or {}).get("heart_rate") or {}
        for sample in record_questions(record, f"{record.record_id}.png"):
            samples.append(sample)
            item = {"id": sample.id, "page": record.record_id, "kind": sample.meta["kind"],
                    "qtype": sample.meta["qtype"],
                    "answer": sample.meta.get("answer"), "question": sample.question}
            for mode, ctx in (("plain", None), ("grounded", context)):
                t0 = time.perf_counter()
                text = "".join(stream_answer(backend, page, [], sample.question, params,
                                             context=ctx))
                timings[f"answer_{mode}_s"] += time.perf_counter() - t0
                item[mode] = {"text": text, **score_answer(text, sample.meta)}
            if sample.meta["kind"] == "rate" and measured.get("value") is not None:
                alone = f"{measured['value']:.0f} bpm"
                if sample.meta.get("score") == "rate":
                    item["digitiser"] = score_answer(alone, sample.meta)
                    item["digitiser"]["text"] = alone
            items.append(item)
        log.info("%s: %d questions so far; digitiser rate %s bpm", record.record_id, len(items),
                 measured.get("value"))
        if progress is not None:
            progress(items)
    baseline = MajorityBaseline.fit(train if train is not None else samples)
    for item, sample in zip(items, samples):
        text = baseline.predict(sample)
        item["majority"] = {"text": text, **score_answer(text, sample.meta)}
    pages = len({item["page"] for item in items})
    return {"table": table(items), "items": items, "pages": pages,
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "majority_from": "train file" if train is not None else "the evaluated questions"}


def table(items: list[dict]) -> dict:
    """Accuracy (mean ``correct``) per kind and method, with the number of scored questions."""
    out = {}
    for kind in KINDS:
        mine = [i for i in items if i["kind"] == kind]
        row = {"n": len(mine)}
        for method in ("majority", "plain", "grounded", "digitiser"):
            scored = [i[method]["correct"] for i in mine
                      if method in i and i[method].get("correct") is not None]
            if scored:
                row[method] = round(sum(scored) / len(scored), 3)
                row[f"{method}_n"] = len(scored)
        out[kind] = row
    return out


PROBE_RATES = (40, 55, 72, 95, 120, 160)


def context_sensitivity(backend, image, params, *, rates=PROBE_RATES,
                        question: str = "What is the heart rate?",
                        measurements: dict | None = None) -> dict:
    """The rate the model states when the context (the app's words) gives each of ``rates``
    for the same ``image`` and ``question``, the rate's range flag as the digitiser would give
    it. ``measurements`` (a stored reading's, name -> fields: the page's own reading, as the app
    would give it) are kept, only the heart rate changed; without them the context holds the
    rate and one regular rhythm, both of high confidence. Returns ``answers`` (rate -> text),
    ``stated`` (rate -> the first number the answer gives, or None), ``follows`` (how many
    stated rates are within 10 % of the context's) and ``in_range`` (how many answers name the
    context's rate class, bradycardia / normal / tachycardia, as the answers are scored:
    :func:`pulse_app.answer_check.parse_rate`)."""
    import re

    from pulse_app.answer import stream_answer
    from pulse_app.answer_check import parse_rate
    from pulse_app.ecg.measure import Measurements, measured
    from pulse_app.ecg.vocab import rate_bucket
    from pulse_app.grounding import measurement_context

    base = measurements or Measurements({"rr_regularity": measured(
        "rr_regularity", 0.03, "II", 0.9)}).to_dict()["measurements"]
    lead = (base.get("heart_rate") or {}).get("lead") or "II"
    answers, stated = {}, {}
    for rate in rates:
        rate_only = Measurements({"heart_rate": measured("heart_rate", rate, lead, 0.9)})
        changed = {"heart_rate": rate_only.to_dict()["measurements"]["heart_rate"],
                   **{k: v for k, v in base.items() if k != "heart_rate"}}
        context = measurement_context(changed)
        answers[rate] = "".join(stream_answer(backend, image, [], question, params,
                                              context=context))
        number = re.search(r"\d+", answers[rate])
        stated[rate] = int(number.group()) if number else None
    follows = sum(1 for rate, n in stated.items() if n is not None and abs(n - rate) <= 0.1 * rate)
    in_range = sum(parse_rate(answers[rate]) == rate_bucket(rate) for rate in rates)
    return {"question": question, "answers": answers, "stated": stated, "follows": follows,
            "in_range": in_range, "of": len(rates)}


def real_record_paths() -> list[str]:
    """The default real records: the folders of ``../shared/data`` that are there."""
    return [str(SHARED / f) for f in DEFAULT_FOLDERS if (SHARED / f).is_dir()]


def load_model(model: str, max_new_tokens: int):
    """(settings, backend): ``model`` in the app's local backend on the CPU, answering greedily
    with at most ``max_new_tokens``."""
    from pulse_app.engine import make_backend
    from pulse_app.settings import Settings

    settings = Settings.load(model=model, device="cpu", temperature=0.0,
                             max_new_tokens=max_new_tokens)
    return settings, make_backend(settings)


def run(model: str, *, records=None, train=None, limit_pages: int | None = None,
        max_new_tokens: int = 40, out: str | Path | None = None) -> dict:
    """Load ``model`` in the app's local backend, :func:`evaluate` it on ``records`` (default
    :func:`real_record_paths`) with the majority baseline of ``train`` (an ECGInstruct file),
    save the result as JSON in ``out`` (also while it runs) and return it."""
    from training.instruct import read_samples
    from training.instruct.dataset import read_records

    settings, backend = load_model(model, max_new_tokens)

    def save_so_far(items):
        if out:
            Path(out).write_text(json.dumps({"partial": True, "table": table(items),
                                             "items": items}, indent=1, default=str))

    result = evaluate(backend, read_records(records or real_record_paths()),
                      params=settings.generation_params(),
                      train=list(read_samples(train)) if train else None,
                      limit_pages=limit_pages, progress=save_so_far)
    result["model"] = backend.info().label
    if out:
        Path(out).write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.grounded_eval",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="offline-default",
                        help="model of the app's local backend (default: the mini model)")
    parser.add_argument("--records", nargs="*", default=None,
                        help="record files or folders (default: ../shared/data's real records)")
    parser.add_argument("--limit-pages", type=int, default=None, help="first N records only")
    parser.add_argument("--train", default=None, help="ECGInstruct file for the majority "
                        "baseline (default: the evaluated questions' own majority)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--out", default=None, help="JSON file: table, items, timings")
    parser.add_argument("--probe", metavar="PAGE", default=None, help="instead: does the model "
                        "read the context? One page, the context's rate changed 40-160 bpm")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.probe:
        from PIL import Image

        from pulse_app.grounding import read_image

        settings, backend = load_model(args.model, args.max_new_tokens)
        with Image.open(args.probe) as page:
            page = page.convert("RGB")
            _, summary = read_image(page)
            probe = context_sensitivity(backend, page, settings.generation_params(),
                                        measurements=summary.get("measurements") or None)
        print(f"{backend.info().label}; {args.probe}; {probe['question']!r}")
        for rate, text in probe["answers"].items():
            print(f"context {rate:>3} bpm -> {text.strip()}")
        print(f"the stated rate follows the context's (within 10 %) for {probe['follows']} of "
              f"{probe['of']} rates; the answer names the context's rate class for "
              f"{probe['in_range']} of {probe['of']}")
        return 0

    result = run(args.model, records=args.records, train=args.train,
                 limit_pages=args.limit_pages, max_new_tokens=args.max_new_tokens,
                 out=args.out)
    print(f"{result['model']}; {result['pages']} pages; majority from "
          f"{result['majority_from']}")
    print(f"{'kind':8} {'n':>4} {'majority':>9} {'plain':>7} {'grounded':>9} {'digitiser':>10}")
    for kind, row in result["table"].items():
        print(f"{kind:8} {row['n']:>4} " + " ".join(
            f"{row.get(m, float('nan')):>{w}.3f}" for m, w in
            (("majority", 9), ("plain", 7), ("grounded", 9), ("digitiser", 10))))
    print("timings (s):", result["timings_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
