"""Build an ECGInstruct-format training set: simulate (or read) records, render, ask, answer.

    python -m training.instruct --records 500 --out data/sim --seed 0
    python -m training.instruct --from-records ../shared/data/cinc --out data/cinc

writes ``DIR/images/<id>.png`` (about half clean, half with photo/scan distortions, as in the
paper) and ``DIR/train.json``, then prints the counts per task and question type like the
paper's Table A1.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

from training.instruct.format import QTYPE_NAMES, QTYPES, TASK_NAMES, TASKS, write_samples
from training.instruct.generate import generate_samples


def simulated_records(count: int, seed: int, start: int = 0):
    """``count`` simulated records with ids ``sim-<seed>-<n>`` (random_findings per record)."""
    from pulse_app.ecg.simulate import ecg_simulate, random_findings

    for n in range(start, start + count):
        record_seed = zlib.crc32(f"{seed}|{n}".encode())
        findings = random_findings(record_seed)
        record = ecg_simulate(findings, seed=record_seed, noise_mV=0.01 * (record_seed % 4),
                              baseline_wander=record_seed % 3 == 0)
        record.record_id = f"sim-{seed}-{n:06d}"
        yield record


def read_records(paths):
    """Real records from files or folders (WFDB, CODE-15%, DICOM) via pulse_app.ecg.records."""
    from pulse_app.ecg.records import find_records, read_record

    for path in find_records(paths):
        yield read_record(path)


def build_dataset(records, out: str | Path, *, seed: int = 0, render: bool = True,
                  dpi: int = 100, distort: str = "mix", name: str = "train.json",
                  progress=None) -> tuple[Path, list]:
    """Render each record into ``out/images`` and write all samples to ``out/<name>``."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    for i, record in enumerate(records):
        image = f"images/{record.record_id}.png"
        if render:
            from pulse_app.ecg.render import render_ecg

            rendered = render_ecg(record, dpi=dpi, distort=distort, seed=seed * 7919 + i)
            rendered.image.save(out / image, optimize=False)
        samples.extend(generate_samples(record, image, seed=seed))
        if progress and (i + 1) % 50 == 0:
            progress(f"{i + 1} records, {len(samples)} samples")
    return write_samples(samples, out / name), samples


def statistics_rows(samples) -> list[tuple[str, str, int]]:
    """(task name, question type name, count) rows in Table A1 order, plus a total row."""
    counts = Counter((s.meta.get("task"), s.meta.get("qtype")) for s in samples)
    rows = [(TASK_NAMES[t], QTYPE_NAMES[q], counts[(t, q)])
            for t in TASKS for q in QTYPES if counts[(t, q)]]
    rows.append(("Total", "", len(samples)))
    return rows


def print_statistics(samples, title: str = "Instruction data") -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:                               # plain text without rich
        for task, qtype, n in statistics_rows(samples):
            print(f"{task:42s} {qtype:16s} {n:8d}")
        return
    table = Table(title=title)
    table.add_column("Task")
    table.add_column("Type")
    table.add_column("# Samples", justify="right")
    previous = None
    for task, qtype, n in statistics_rows(samples):
        table.add_row(task if task != previous else "", qtype, f"{n:,}")
        previous = task
    Console().print(table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.instruct", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100, help="simulated records to generate")
    parser.add_argument("--from-records", nargs="+", metavar="PATH",
                        help="use real records (files or folders) instead of simulating")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed (records, images, questions)")
    parser.add_argument("--start", type=int, default=0, help="first simulated record number")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=True,
                        help="render images (--no-render writes the JSON only)")
    parser.add_argument("--dpi", type=int, default=100, help="image resolution (paper is 200)")
    parser.add_argument("--distort", default="mix",
                        help="render_ecg distort: mix (about 1:1 clean:distorted), none, "
                             "photo, all")
    parser.add_argument("--name", default="train.json", help="output file (.jsonl for JSON lines)")
    args = parser.parse_args(argv)
    from pulse_app.errors import PulseError

    started = time.monotonic()
    try:
        records = (read_records(args.from_records) if args.from_records
                   else simulated_records(args.records, args.seed, args.start))
        path, samples = build_dataset(records, args.out, seed=args.seed, render=args.render,
                                      dpi=args.dpi, distort=args.distort, name=args.name,
                                      progress=lambda m: print(m, file=sys.stderr))
    except PulseError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print_statistics(samples, title=f"{path} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
