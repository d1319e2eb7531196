"""Build an instruction set: records (simulated or read) -> pages -> samples -> one file.

The library behind ``python -m training.instruct``: where records come from, the loop that
renders each record through :func:`training.render.write_page` and asks its questions
(:func:`training.instruct.generate.generate_samples`), sharding (:mod:`training.instruct.shard`)
and the Table A1-style statistics.

>>> rows = statistics_rows([])
>>> rows
[('Total', '', 0)]
"""

from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path

from training.instruct.format import QTYPE_NAMES, QTYPES, TASK_NAMES, TASKS, write_samples
from training.instruct.generate import generate_samples
from training.instruct.shard import shard_range


def simulated_records(count: int, seed: int, start: int = 0):
    """``count`` simulated records with ids ``sim-<seed>-<n>`` (random_findings per record),
    ``n`` from ``start``."""
    from pulse_app.ecg.simulate import ecg_simulate, random_findings

    for n in range(start, start + count):
        record_seed = zlib.crc32(f"{seed}|{n}".encode())
        findings = random_findings(record_seed)
        record = ecg_simulate(findings, seed=record_seed, noise_mV=0.01 * (record_seed % 4),
                              baseline_wander=record_seed % 3 == 0)
        record.record_id = f"sim-{seed}-{n:06d}"
        yield record


def read_records(paths):
    """Real records from files or folders (WFDB, CODE-15%, DICOM) via pulse_app.ecg.records,
    in :func:`~pulse_app.ecg.records.find_records` order."""
    from pulse_app.ecg.records import find_records, read_record

    for path in find_records(paths):
        yield read_record(path)


def record_source(*, count: int = 100, seed: int = 0, start: int = 0, paths=None,
                  shard: tuple[int, int] = (0, 1)):
    """(records of block ``shard``, index of its first record among all): the simulated
    records ``start..start+count-1``, or the records under ``paths``."""
    if paths:
        from pulse_app.ecg.records import find_records, read_record

        found = find_records(paths)
        block = shard_range(len(found), shard)
        return (read_record(found[i]) for i in block), block.start
    block = shard_range(count, shard)
    return simulated_records(len(block), seed, start + block.start), block.start


def build_dataset(records, out: str | Path, *, seed: int = 0, render: bool = True,
                  dpi: int = 100, distort: str = "mix", name: str = "train.json",
                  first_index: int = 0, progress=None) -> tuple[Path, list]:
    """Render each record into ``out/images`` and write all samples to ``out/<name>``.

    Record ``i`` (counted from ``first_index``, its place among all records when this is one
    shard) gets renderer seed ``seed * 7919 + i``, so a shard draws the pages the whole run
    would. JSON lines for ``.jsonl``, else one JSON list."""
    from training.render import write_page

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    for i, record in enumerate(records, start=first_index):
        image = f"images/{record.record_id}.png"
        if render:
            write_page(record, out / "images", record.record_id, seed=seed * 7919 + i,
                       dpi=dpi, distort=distort)
        samples.extend(generate_samples(record, image, seed=seed))
        if progress and (i + 1 - first_index) % 50 == 0:
            progress(f"{i + 1 - first_index} records, {len(samples)} samples")
    return write_samples(samples, out / name), samples


def shard_file_name(name: str, shard: tuple[int, int]) -> str:
    """``train.jsonl`` for one machine; ``train-00001-of-00004.jsonl`` for shard 1 of 4
    (``cat train-*-of-00004.jsonl`` is the one-machine file)."""
    index, count = shard
    if count == 1:
        return name
    path = Path(name)
    return f"{path.stem}-{index:05d}-of-{count:05d}{path.suffix}"


def statistics_rows(samples) -> list[tuple[str, str, int]]:
    """(task name, question type name, count) rows in Table A1 order, plus a total row."""
    counts = Counter((s.meta.get("task"), s.meta.get("qtype")) for s in samples)
    rows = [(TASK_NAMES[t], QTYPE_NAMES[q], counts[(t, q)])
            for t in TASKS for q in QTYPES if counts[(t, q)]]
    rows.append(("Total", "", len(samples)))
    return rows


def print_table(rows, title: str, columns=("Task", "Type", "# Samples")) -> None:
    """Rows as a rich table (plain text without rich); repeated first cells left blank."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:                               # plain text without rich
        for row in rows:
            print("  ".join(f"{cell}" for cell in row))
        return
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if i == len(columns) - 1 else "left")
    previous = None
    for row in rows:
        cells = [str(c) if not isinstance(c, int) else f"{c:,}" for c in row]
        table.add_row(cells[0] if row[0] != previous else "", *cells[1:])
        previous = row[0]
    Console().print(table)


def print_statistics(samples, title: str = "Instruction data") -> None:
    print_table(statistics_rows(samples), title)
