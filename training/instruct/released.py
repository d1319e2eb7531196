"""The released ECGInstruct (HF dataset ``PULSE-ECG/ECGInstruct``): read, verify, mix.

As published, the set is one JSON list, ``ECGInstruct.json`` (about 1.3 GB, 1,156,110 items),
and images in ``shard_*.tar.gz`` archives that unpack into one folder per source
(``mimic/``, ``mimic_v4/``, ``ptb-xl/``, ``code15_v4/``, ...). An item is LLaVA's layout::

    {"id": "mimic-44111511", "image": "mimic/p1127/p11273115/s44111511/44111511-0.png",
     "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", ...}]}

with no task or question-type field. This module streams it through the one reader
(:func:`training.instruct.format.iter_samples`, ijson: memory stays flat), names each item's
source from its image folder or id, infers task and question type from the text
(:func:`infer_task`, :func:`infer_qtype`: heuristics, measured against generated data whose
meta is known), counts them like the paper's Table A1, checks images, and mixes the set with
generated data by ratio into one JSON-lines file that ``training.train`` reads directly::

    python -m training.instruct.released verify ECGInstruct.json --images /data/ecginstruct
    python -m training.instruct.released mix --out mixed.jsonl \\
        ECGInstruct.json=1.0@/data/ecginstruct data/sim/train.jsonl=0.25
    python -m training.train training/configs/pulse-7b-lora.yaml data=mixed.jsonl

>>> infer_qtype("Is there atrial fibrillation?", "No. Answer: no.")
'close'
>>> infer_task("What is the QRS axis?"), infer_task("Write a clinical report for this ECG.")
('basic', 'report')
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

from training.instruct.format import (QTYPE_NAMES, QTYPES, TASK_NAMES, TASKS,
                                      InstructFormatError, Sample, iter_items, normalise)
from training.instruct.shard import add_shard_argument

#: First folder of an image path (or id prefix) -> the source as Table A1 names it.
SOURCES = {"mimic": "MIMIC-ECG", "mimic_v4": "MIMIC-ECG", "ptb-xl": "PTB-XL", "ptbxl": "PTB-XL",
           "ecgqa": "ECG-QA", "ecg-qa": "ECG-QA", "code15": "CODE-15%", "code15_v4": "CODE-15%",
           "sim": "simulated"}


def item_source(sample: Sample) -> str:
    """The source of an item: its id prefix when it names one (``ecgqa-...``), else its image
    folder (``mimic/...`` -> MIMIC-ECG); unknown folders are returned as they are."""
    prefix = sample.id.split("-", 1)[0].lower()
    if prefix in ("ecgqa", "ecg_qa"):
        return "ECG-QA"
    folder = (sample.image or "").split("/", 1)[0]
    return SOURCES.get(folder, SOURCES.get(prefix, folder or "none"))


_OPTIONS = re.compile(r"(?m)^\s*\(?[A-D][.)]\s+\S")
_YES_NO_START = re.compile(r"^(?:is|are|does|do|did|can|could|was|were|has|have|would|should|"
                           r"will)\b", re.I)
_YES_NO_ANSWER = re.compile(r"^\W*(?:yes|no)\b|answer:\s*(?:yes|no)\b")
_REPORT = re.compile(r"(?:write|provide|generate|give|produce|draft)\b.{0,40}\breport|"
                     r"clinical report|structured report|\binterpret|full reading|"
                     r"expert diagnosis|comprehensive (?:analysis|assessment)")
_MORPHOLOGY = re.compile(r"\bst\b|st[- ]segment|t[- ]waves?|hypertroph|voltage|infarct|"
                         r"isch(?:a)?em|q waves?|morpholog|repolari|waveform")
_BASIC = re.compile(r"\brate\b|\baxis\b|interval|\bpr\b|qrs (?:duration|width|complex)|"
                    r"\bqtc?\b|\bduration\b|bpm|beats per minute|how fast|r-r")
_RHYTHM = re.compile(r"rhythm|fibrillation|flutter|brady|tachy|premature|ectop|block|"
                     r"conduction|\bpacs?\b|\bpvcs?\b|arrhythm|pacing|paced|junctional|"
                     r"early beats|extra beats|complexes arrive")


def infer_qtype(question: str, answer: str) -> str:
    """close (yes/no), mcq (options A-D), fill (a blank) or open, read from the text."""
    if len(_OPTIONS.findall(question)) >= 3:
        return "mcq"
    if "____" in question or re.search(r"fill in the blank|complete the sentence", question, re.I):
        return "fill"
    if _YES_NO_ANSWER.search(answer[:2000].lower()) and (_YES_NO_START.search(question.strip())
                                          or "?" in question):
        return "close"
    return "open"


def infer_task(question: str) -> str:
    """report, morphology, basic or rhythm, read from the question (before any options)."""
    first = question[:400].split("\nA.", 1)[0].lower()         # patterns are lower case
    for task, pattern in (("report", _REPORT), ("morphology", _MORPHOLOGY), ("basic", _BASIC),
                          ("rhythm", _RHYTHM)):
        if pattern.search(first):
            return task
    return "morphology"


def classify(sample: Sample) -> tuple[str, str, str]:
    """(source, task, question type) of an item; meta wins where the item has it."""
    turn = sample.turns[0]
    task = sample.meta.get("task") or infer_task(turn.question)
    qtype = sample.meta.get("qtype") or infer_qtype(turn.question, turn.answer)
    return item_source(sample), task, qtype


def iter_released(path: str | Path, *, shard: tuple[int, int] = (0, 1)
                  ) -> Iterator[tuple[str, dict]]:
    """(where, raw item) of every ``shard``-th item (item ``n`` goes to shard ``n % N``),
    streamed; the JSON is parsed by every shard, the work after it split."""
    index, count = shard
    for n, item in enumerate(iter_items(path)):
        if n % count == index:
            yield item


def verify(path: str | Path, *, image_root: str | Path | None = None,
           shard: tuple[int, int] = (0, 1), max_errors: int = 20, progress=None) -> dict:
    """Stream the file: count items per (source, task, question type), validate each through
    the one reader's rules, and with ``image_root`` check that its image exists there.

    Returns ``{"items", "valid", "counts": Counter, "errors": [...first max_errors],
    "error_count", "missing_images", "turns": Counter}``.
    """
    counts: Counter = Counter()
    turns: Counter = Counter()
    errors: list[str] = []
    report = {"items": 0, "valid": 0, "error_count": 0, "missing_images": 0}
    root = Path(image_root) if image_root is not None else None
    for where, raw in iter_released(path, shard=shard):
        report["items"] += 1
        try:
            sample = normalise(raw, where)
        except InstructFormatError as e:
            report["error_count"] += 1
            if len(errors) < max_errors:
                errors.append(str(e))
            continue
        report["valid"] += 1
        counts[classify(sample)] += 1
        turns[len(sample.conversations) // 2] += 1
        if root is not None and sample.image and not (root / sample.image).is_file():
            report["missing_images"] += 1
            if len(errors) < max_errors:
                errors.append(f"{where}: image {sample.image} not found under {root}")
        if progress and report["items"] % 100_000 == 0:
            progress(f"{report['items']:,} items")
    return {**report, "counts": counts, "errors": errors, "turns": turns}


def table_a1_rows(counts: Counter) -> list[tuple[str, str, str, int]]:
    """(source, task, type, count) rows in Table A1 order, with a total per source and overall."""
    rows = []
    for source in sorted({s for s, _, _ in counts}):
        for task in TASKS:
            for qtype in QTYPES:
                n = counts.get((source, task, qtype), 0)
                if n:
                    rows.append((source, TASK_NAMES[task], QTYPE_NAMES[qtype], n))
        rows.append((f"{source} Total", "", "", sum(n for (s, _, _), n in counts.items()
                                                      if s == source)))
    rows.append(("Total", "", "", sum(counts.values())))
    return rows


# -- mixing ---------------------------------------------------------------------------------------

def parse_part(text: str) -> tuple[Path, float, Path]:
    """``FILE=RATIO[@IMAGE_ROOT]`` -> (file, ratio, image root; default the file's folder)."""
    spec, _, root = text.partition("@")
    file, _, ratio = spec.rpartition("=")
    if not file:
        file, ratio = spec, "1"
    try:
        weight = float(ratio)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the ratio after '=' must be a number") \
            from None
    return Path(file), weight, Path(root) if root else Path(file).parent


def mix(parts: list[tuple[Path, float, Path]], out: str | Path, *, seed: int = 0,
        progress=None) -> Counter:
    """Write ``out`` (JSON lines): each part's items in order, ``ratio`` per item of the
    first part (1.0 = as many, 0.25 = one per four; above 1 items repeat in order), interleaved
    by a seeded generator, image paths rewritten relative to ``out``'s folder. Streams every
    part; items are validated by the one reader. Returns items written per part."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    written: Counter = Counter()
    streams = [(_relative_items(path, root, out.parent), ratio, path)
               for path, ratio, root in parts]
    base_ratio = streams[0][1] or 1.0
    credit = [0.0] * len(streams)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for item in streams[0][0]:
            order = [item]
            for k in range(1, len(streams)):
                credit[k] += streams[k][1] / base_ratio
                while credit[k] >= 1.0:
                    credit[k] -= 1.0
                    extra = next(streams[k][0], None)
                    if extra is None:
                        streams[k] = (_relative_items(parts[k][0], parts[k][2], out.parent),
                                      streams[k][1], streams[k][2])
                        extra = next(streams[k][0], None)
                    if extra is not None:
                        order.append(extra)
                        written[str(parts[k][0])] += 1
            written[str(parts[0][0])] += 1
            rng.shuffle(order)
            for row in order:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            if progress and sum(written.values()) % 100_000 < len(order):
                progress(f"{sum(written.values()):,} items")
    os.replace(tmp, out)
    return written


def _relative_items(path: Path, root: Path, folder: Path) -> Iterator[dict]:
    for where, raw in iter_items(path):
        sample = normalise(raw, where)
        if sample.image is not None:
            sample.image = os.path.relpath(Path(root).resolve() / sample.image, folder.resolve())
        yield sample.to_dict()


# -- command line ---------------------------------------------------------------------------------

def main(argv=None) -> int:
    from training.instruct.dataset import print_table

    parser = argparse.ArgumentParser(prog="python -m training.instruct.released",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="stream, validate and count a released file")
    check.add_argument("file", help="ECGInstruct.json (JSON list) or a .jsonl file")
    check.add_argument("--images", help="folder the image paths are relative to (checked)")
    add_shard_argument(check)
    blend = sub.add_parser("mix", help="mix files by ratio into one JSON-lines file")
    blend.add_argument("parts", nargs="+", type=parse_part, metavar="FILE=RATIO[@IMAGES]",
                       help="first: the base set; others: items per base item")
    blend.add_argument("--out", required=True)
    blend.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    say = lambda m: print(m, file=sys.stderr)                                   # noqa: E731
    try:
        if args.command == "verify":
            result = verify(args.file, image_root=args.images, shard=args.shard, progress=say)
            print_table(table_a1_rows(result["counts"]), f"{args.file} (shard "
                        f"{args.shard[0]}/{args.shard[1]})", ("Source", "Task", "Type", "#"))
            print(f"{result['items']:,} items, {result['valid']:,} valid, "
                  f"{result['error_count']:,} malformed, {result['missing_images']:,} "
                  f"images missing; turns per item: {dict(sorted(result['turns'].items()))}")
            for error in result["errors"]:
                print(f"  {error}")
            return 0 if not result["error_count"] and not result["missing_images"] else 1
        written = mix(args.parts, args.out, seed=args.seed, progress=say)
        for part, n in written.items():
            print(f"{n:,} items from {part}")
        return 0
    except InstructFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
