"""Run ECGBench: read the subsets, answer (batched / concurrent, resumable), score both ways,
judge, write per-item JSON lines, print the table in the paper's layout.

``python -m training.evaluate --benchmark ecgbench`` calls :func:`run_benchmark`. Output folder:

- ``answers/<subset>.jsonl``: the model's answers as they are written (resume file);
- ``<subset>.jsonl``: per item the prompt, the answer, the reference, and per scoring mode the
  parsed prediction and the item's score;
- ``results.json``: every metric, count and note; the table is printed from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.ecgbench import paper, strict
from training.ecgbench.data import image_folder, read_subset
from training.ecgbench.judge import arena_prompt, report_prompt
from training.ecgbench.subsets import ARENA, MCQ, MULTILABEL, PAPER_ORDER, REPORT, \
    SUBSETS, TABLE_ORDER
from training.generation import Request, run_requests

MODES = ("paper", "strict")


def answer_subset(backend, root, subset: str, out: Path, *, images=None, params, limit=None,
                  batch_size="auto", concurrency=4, progress=True):
    """The items of ``subset`` (first ``limit``) and the model's answers (a list per item)."""
    items = read_subset(root, subset, images=images)
    if limit:
        items = items[:limit]
    requests = [Request(f"{i:05d}|{item.id}", item.image, item.questions, group=subset)
                for i, item in enumerate(items)]
    answers = run_requests(backend, requests, image_root=image_folder(root, images),
                           params=params, answers_path=out / "answers" / f"{subset}.jsonl",
                           batch_size=batch_size, concurrency=concurrency, progress=progress,
                           label=subset)
    return items, [answers[r.id] for r in requests]


# -- rule-based subsets ----------------------------------------------------------------------------

def score_rule_based(subset: str, items, answers, mode: str, rng=None) -> dict:
    """One rule-based subset scored in ``mode`` (``rng``: the paper mode's shared stream)."""
    kind = SUBSETS[subset].kind
    texts = [a[0] for a in answers]
    questions = [item.question for item in items]
    references = [item.reference for item in items]
    if mode == "paper":
        if kind == MCQ:
            return paper.score_mcq(subset, texts, references, rng)
        if kind == MULTILABEL:
            return paper.score_multilabel(subset, texts, references)
        return paper.score_ecgqa(texts, questions, references)
    if kind == MCQ:
        return strict.score_mcq(subset, texts, questions, references)
    if kind == MULTILABEL:
        return strict.score_multilabel(subset, texts, references)
    return strict.score_ecgqa(texts, questions, references)


# -- judged subsets --------------------------------------------------------------------------------

def judge_prompts(subset: str, items, answers, mode: str) -> tuple[list[str], list[int], list[str]]:
    """The prompts to judge, the item index each one scores, and notes.

    Paper mode (Q16): one prompt per id suffix, built from the *last* item with that suffix, and
    only the first two arena turns (Q15). Strict mode: one prompt per item, every turn.
    """
    notes = []
    index = list(range(len(items)))
    if mode == "paper":
        last = {}
        for i, item in enumerate(items):
            last[paper.judge_key(item.id)] = i
        if len(last) < len(items):
            notes.append(f"{len(items)} items collapse to {len(last)} judged items: the "
                         "published script files judgements under the id's text after its last "
                         "'-' (Q16)")
        index = sorted(last.values())
    prompts = []
    for i in index:
        item, reply = items[i], answers[i]
        if SUBSETS[subset].kind == REPORT:
            prompts.append(report_prompt(str(item.reference), reply[0]))
        else:
            turns = 2 if mode == "paper" else len(item.questions)
            prompts.append(arena_prompt(item.questions[:turns],
                                        [str(r) for r in item.references[:turns]],
                                        reply[:turns]))
    return prompts, index, notes


def judged_scores(subset: str, judgement, mode: str) -> tuple[float | None, dict]:
    """An item's 0-100 score and its aspect scores (0-10) from one judgement; None if failed."""
    if judgement.parsed is None:
        return None, {}
    kind = SUBSETS[subset].kind
    try:
        if mode == "paper":
            if kind == REPORT:
                aspects = {k: float(v["Score"]) for k, v in judgement.parsed.items()}
                return paper.report_item_score(judgement.parsed), aspects
            scores = paper.arena_item_scores(judgement.parsed)
            return sum(scores) / len(scores), dict(zip(paper.ARENA_KEYS,
                                                       (s / 10 for s in scores)))
        aspects = strict.aspect_scores(judgement.parsed, strict.REPORT_ASPECTS if kind == REPORT
                                       else strict.ARENA_ASPECTS)
        return sum(aspects.values()) / len(aspects) * 10, aspects
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
        return None, {}


def score_judged(subset: str, items, answers, mode: str, judge, *, concurrency=8,
                 progress=True) -> dict:
    """One judged subset in ``mode`` with one judge: mean score, failures, per-item scores."""
    prompts, index, notes = judge_prompts(subset, items, answers, mode)
    judgements = judge.many(prompts, concurrency=concurrency, progress=progress,
                            label=f"{subset} judge")
    items_out = [{"judged": False} for _ in items]
    scores, per_item = [], {}
    for i, judgement in zip(index, judgements):
        score, aspects = judged_scores(subset, judgement, mode)
        items_out[i] = {"judged": True, "score": score, "aspects": aspects,
                        "judge_attempts": judgement.attempts, "judge_cached": judgement.cached,
                        "judge_error": judgement.error, "judge_reply": judgement.raw}
        if score is not None:
            scores.append(score)
            per_item[items[i].id] = {"score": score, "aspects": aspects}
    failed = len(index) - len(scores)
    if failed:
        notes.append(f"{failed} of {len(index)} judgements failed (no JSON after retries, a "
                     "missing aspect, or a server error) and are left out of the mean")
    metric = SUBSETS[subset].metrics[0]
    return {"metrics": {metric: sum(scores) / len(scores) if scores else None},
            "items": items_out, "unparsed": failed, "notes": notes, "judge": judge.model,
            "per_item": per_item}


# -- the whole run ---------------------------------------------------------------------------------

def run_benchmark(backend, root, subsets: list[str], out, *, images=None, params,
                  modes=MODES, limit=None, batch_size="auto", concurrency=4, judges=(),
                  judge_concurrency=8, progress=True) -> dict:
    """Answer and score ``subsets``; write the output folder; return ``results.json``'s dict."""
    from training.ecgbench.judge import agreement

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    answered = {}
    for subset in subsets:
        answered[subset] = answer_subset(backend, root, subset, out, images=images, params=params,
                                         limit=limit, batch_size=batch_size,
                                         concurrency=concurrency, progress=progress)
    results = {"model": backend.info().label, "model_id": backend.info().model_id,
               "data": str(root), "params": params.as_dict(), "modes": list(modes),
               "judges": [j.model for j in judges], "subsets": {}}
    rng = paper.new_paper_random()           # Q5: one stream, in the published order
    order = [s for s in PAPER_ORDER if s in answered] + [s for s in answered
                                                          if s not in PAPER_ORDER]
    for subset in order:
        items, answers = answered[subset]
        entry = {"title": SUBSETS[subset].title, "n": len(items), "scores": {}}
        for mode in modes:
            if SUBSETS[subset].kind in (REPORT, ARENA):
                entry["scores"][mode] = {j.model: score_judged(
                    subset, items, answers, mode, j, concurrency=judge_concurrency,
                    progress=progress) for j in judges}
            else:
                entry["scores"][mode] = score_rule_based(subset, items, answers, mode, rng)
        if SUBSETS[subset].kind in (REPORT, ARENA) and len(judges) == 2 and "strict" in modes:
            first, second = (entry["scores"]["strict"][j.model]["per_item"] for j in judges)
            entry["agreement"] = agreement(first, second)
        write_items(out / f"{subset}.jsonl", subset, items, answers, entry)
        results["subsets"][subset] = entry
    results["subsets"] = {s: results["subsets"][s] for s in TABLE_ORDER
                          if s in results["subsets"]}
    if judges:
        cache = judges[0].cache
        results["judge_cache"] = {"hits": cache.hits, "misses": cache.misses,
                                  "requests": sum(j.requests for j in judges)}
    (out / "results.json").write_text(json.dumps(_slim(results), indent=1,
                                                 ensure_ascii=False) + "\n")
    return results


def _slim(results: dict) -> dict:
    """``results`` without per-item lists (those are in the JSON-lines files)."""
    def strip(score):
        return {k: v for k, v in score.items() if k not in ("items", "per_item")}

    out = dict(results, subsets={})
    for name, entry in results["subsets"].items():
        scores = {}
        for mode, score in entry["scores"].items():
            kind = SUBSETS[name].kind
            scores[mode] = ({j: strip(s) for j, s in score.items()} if kind in (REPORT, ARENA)
                            else strip(score))
        out["subsets"][name] = dict(entry, scores=scores)
    return out


def write_items(path: Path, subset: str, items, answers, entry: dict) -> None:
    """Per-item JSON lines: prompt, answer, reference, per mode (and judge) parse and score."""
    kind = SUBSETS[subset].kind
    lines = []
    for i, (item, reply) in enumerate(zip(items, answers)):
        row = {"id": item.id, "subset": subset, "image": item.image,
               "prompt": item.questions if kind == ARENA else item.question,
               "answer": reply if kind == ARENA else reply[0],
               "reference": item.references if kind == ARENA else item.reference}
        for mode, score in entry["scores"].items():
            if kind in (REPORT, ARENA):
                row[mode] = {judge: s["items"][i] for judge, s in score.items()}
            else:
                row[mode] = score["items"][i]
        lines.append(json.dumps(row, ensure_ascii=False))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    tmp.replace(path)


# -- the table -------------------------------------------------------------------------------------

def table_rows(results: dict) -> list[dict]:
    """Rows in the paper's order (Table 2 then Table 3): dataset, metric, n, ours per mode (and
    judge), PULSE-7B as published, unparsed counts."""
    rows = []
    for name, entry in results["subsets"].items():
        subset = SUBSETS[name]
        judged = subset.kind in (REPORT, ARENA)
        for metric in subset.metrics:
            for judge in (results["judges"] or [None]) if judged else [None]:
                row = {"table": subset.table, "dataset": subset.title, "metric": metric,
                       "n": entry["n"], "judge": judge, "paper_pulse7b": subset.paper.get(metric),
                       "random": subset.random.get(metric)}
                for mode, score in entry["scores"].items():
                    if judged:
                        score = score.get(judge) if judge else None
                    value = (score or {}).get("metrics", {}).get(metric)
                    row[mode] = None if value is None else (
                        value if judged else round(100 * value, 1))
                    row[f"{mode}_unparsed"] = (score or {}).get("unparsed")
                rows.append(row)
    return rows


def print_table(results: dict, console=None) -> None:
    """The results beside the paper's PULSE-7B (and Random) column, then the notes."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=150)
    modes = results["modes"]
    table = Table(title=f"ECGBench: {results['model']} (percent; HL lower is better)")
    for column in ("Table", "Dataset", "Metric", "n", *[f"ours, {m} scoring" for m in modes],
                   *[f"unparsed ({m})" for m in modes], "PULSE-7B (paper)", "Random (paper)"):
        table.add_column(column, justify="left" if column in ("Dataset", "Metric") else "right")

    def cell(value):
        if value is None:
            return "n/a"
        return "NaN" if value != value else f"{value:.1f}"

    for row in table_rows(results):
        metric = row["metric"] + (f" ({row['judge']})" if row["judge"] else "")
        if row["judge"] is None and row["metric"] in ("Report Score", "Arena Score"):
            metric += " (no judge)"
        table.add_row(str(row["table"]), row["dataset"], metric, str(row["n"]),
                      *[cell(row.get(m)) for m in modes],
                      *[str(row.get(f"{m}_unparsed") if row.get(f"{m}_unparsed") is not None
                            else "-") for m in modes],
                      cell(row["paper_pulse7b"]), cell(row["random"]))
    console.print(table)
    for name, entry in results["subsets"].items():
        for mode, score in entry["scores"].items():
            scores = score.values() if SUBSETS[name].kind in (REPORT, ARENA) else [score]
            for s in scores:
                for note in s.get("notes", []):
                    console.print(f"- {SUBSETS[name].title}, {mode}: {note}")
    agreements = {name: e["agreement"] for name, e in results["subsets"].items()
                  if e.get("agreement")}
    if agreements:
        first, second = results["judges"][:2]
        table = Table(title=f"Judge agreement (strict scores): {first} vs {second}")
        for column in ("Dataset", "n", f"mean {first}", f"mean {second}", "mean |diff|",
                       "Pearson", "Spearman", "aspect: exact / weighted kappa"):
            table.add_column(column, justify="left" if column == "Dataset" else "right")
        for name, a in agreements.items():
            aspects = "; ".join(f"{k} {v['exact']:.2f} / {_fmt(v['kappa'])}"
                                for k, v in a.get("aspects", {}).items())
            table.add_row(SUBSETS[name].title, str(a["n"]), _fmt(a.get("mean_first"), 1),
                          _fmt(a.get("mean_second"), 1), _fmt(a.get("mean_abs_diff"), 1),
                          _fmt(a.get("pearson")), _fmt(a.get("spearman")), aspects or "-")
        console.print(table)
    if results.get("judge_cache"):
        c = results["judge_cache"]
        console.print(f"- judge cache: {c['hits']} hits, {c['misses']} misses, "
                      f"{c['requests']} requests sent")


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
