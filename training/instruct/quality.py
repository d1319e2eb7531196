"""A quality report per source of instruction data: judge scores, rejection reasons, near-
duplicate questions, answer lengths and labels.

Reads ECGInstruct files (template data, teacher output, the released set) and the synthesis'
``judged.jsonl`` (every teacher candidate with its score or rejection reason), streamed, and
writes a Markdown report (``--out``) with one section per source::

    python -m training.instruct.quality data/sim/train.jsonl data/llm/judged.jsonl \\
        --out data/quality.md

Near duplicates: questions with the numbers masked, compared as TF-IDF vectors of character
3-5-grams (scikit-learn); a pair at cosine similarity >= ``--near`` (0.9) counts, exact repeats
(after masking) are counted apart. At most ``--max-near`` questions per source are compared
(the first ones, in file order).

>>> answer_words("The rate is about 72 bpm.")
6
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from training.instruct.format import InstructFormatError, iter_items, normalise

SCORES = ("0", "1", "2", "3", "4", "5", "none")


def answer_words(text: str) -> int:
    return len(text.split())


def mask(question: str) -> str:
    """Lower case, numbers as '#', the image token and option letters' spacing removed."""
    text = question.replace("<image>", "").lower()
    return " ".join(re.sub(r"\d+(?:\.\d+)?", "#", text).split())


class SourceStats:
    """What the report needs about one source, gathered item by item."""

    def __init__(self):
        self.items = 0
        self.scores: Counter = Counter()
        self.reasons: Counter = Counter()
        self.tasks: Counter = Counter()
        self.labels: Counter = Counter()
        self.answer_words: list[int] = []
        self.questions: list[str] = []

    def add_sample(self, sample) -> None:
        self.items += 1
        turn = sample.turns[0]
        self.questions.append(mask(turn.question))
        self.answer_words += [answer_words(t.answer) for t in sample.turns]
        self.tasks[(sample.meta.get("task", "?"), sample.meta.get("qtype", "?"))] += 1
        self.labels.update(sample.meta.get("record_labels", []))
        if sample.meta.get("judge_score") is not None:
            self.scores[_score_bin(sample.meta["judge_score"])] += 1

    def add_judged(self, row: dict) -> None:
        self.items += 1
        self.reasons[row.get("reason") or "?"] += 1
        self.scores[_score_bin(row.get("score"))] += 1
        if row.get("question"):
            self.questions.append(mask(row["question"]))
        if row.get("answer"):
            self.answer_words.append(answer_words(row["answer"]))
        self.labels.update(row.get("labels", []))


def _score_bin(score) -> str:
    return "none" if score is None else str(int(round(float(score))))


def source_of(sample) -> str:
    from training.instruct.released import item_source

    if sample.meta.get("source"):
        return sample.meta["source"]
    if sample.id.startswith("sim-"):
        return "simulator"
    return item_source(sample)


def collect(paths, *, progress=None) -> dict[str, SourceStats]:
    """Stream every file: ``judged*.jsonl`` rows (they have a ``reason``) or samples."""
    stats: dict[str, SourceStats] = defaultdict(SourceStats)
    for path in paths:
        for where, raw in iter_items(path):
            if "reason" in raw and "conversations" not in raw:
                stats[raw.get("source") or "?"].add_judged(raw)
                continue
            try:
                sample = normalise(raw, where)
            except InstructFormatError:
                stats["(malformed)"].items += 1
                continue
            stats[source_of(sample)].add_sample(sample)
    return dict(stats)


def near_duplicates(questions: list[str], threshold: float = 0.9, limit: int = 20000
                    ) -> tuple[int, int, list[tuple[str, str]]]:
    """(exact repeats, questions with a near duplicate, a few example pairs) among the first
    ``limit`` questions; repeats are questions equal (after :func:`mask`) to an earlier one."""
    questions = questions[:limit]
    exact = len(questions) - len(set(questions))
    unique = sorted(set(questions))
    if len(unique) < 2:
        return exact, 0, []
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import NearestNeighbors

    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=1,
                              dtype=np.float32).fit_transform(unique)
    index = NearestNeighbors(n_neighbors=2, metric="cosine").fit(vectors)
    distance, neighbour = index.kneighbors(vectors)
    close = distance[:, 1] <= 1.0 - threshold
    examples = [(unique[i], unique[neighbour[i, 1]]) for i in np.flatnonzero(close)[:3]]
    return exact, int(close.sum()), examples


def percentiles(values: list[int]) -> str:
    if not values:
        return "-"
    p = np.percentile(values, [0, 10, 50, 90, 100])
    return " / ".join(f"{x:.0f}" for x in p)


def report_markdown(stats: dict[str, SourceStats], *, threshold: float = 0.9,
                    limit: int = 20000) -> str:
    """The report: a summary table, then one section per source."""
    lines = ["# Instruction data quality report", "",
             "| source | items | judged | accepted | exact repeats | near duplicates | "
             "answer words (min/p10/p50/p90/max) |", "|---|---:|---:|---:|---:|---:|---|"]
    details = []
    for source in sorted(stats):
        s = stats[source]
        exact, near, examples = near_duplicates(s.questions, threshold, limit)
        judged = sum(s.reasons.values())
        lines.append(f"| {source} | {s.items:,} | {judged:,} | {s.reasons.get('accepted', 0):,}"
                     f" | {exact:,} | {near:,} | {percentiles(s.answer_words)} |")
        details += ["", f"## {source}", "", f"{s.items:,} items; questions compared for near "
                    f"duplicates: {min(len(s.questions), limit):,} (cosine >= {threshold})."]
        if s.scores:
            details += ["", "Judge scores: " + ", ".join(f"{k}: {s.scores.get(k, 0)}"
                                                       for k in SCORES)]
        if s.reasons:
            details += ["", "Results: " + ", ".join(f"{k}: {n}" for k, n in
                                                    s.reasons.most_common())]
        if s.tasks:
            details += ["", "Task / type: " + ", ".join(f"{t}/{q}: {n}" for (t, q), n in
                                                        sorted(s.tasks.items()))]
        if s.answer_words:
            hist, edges = np.histogram(s.answer_words, bins=[0, 5, 10, 20, 40, 80, 160, 10**6])
            details += ["", "Answer length (words): " + ", ".join(
                f"{int(a)}-{int(b) - 1 if b < 10**6 else '...'}: {n}"
                for a, b, n in zip(edges[:-1], edges[1:], hist))]
        if s.labels:
            details += ["", "Labels: " + ", ".join(f"{k}: {n}" for k, n in
                                                   s.labels.most_common(25))]
        for a, b in examples:
            details += ["", f"- near duplicate: `{a[:120]}` ~ `{b[:120]}`"]
    return "\n".join(lines + details) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.instruct.quality",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="ECGInstruct files and judged.jsonl files")
    parser.add_argument("--out", default=None, help="write the Markdown report here")
    parser.add_argument("--near", type=float, default=0.9, help="cosine similarity threshold")
    parser.add_argument("--max-near", type=int, default=20000,
                        help="questions per source compared for near duplicates")
    args = parser.parse_args(argv)
    try:
        stats = collect([Path(f) for f in args.files])
    except InstructFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    text = report_markdown(stats, threshold=args.near, limit=args.max_near)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
