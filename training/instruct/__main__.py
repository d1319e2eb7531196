"""Build an ECGInstruct-format training set: simulate (or read) records, render, ask, answer.

    python -m training.instruct --records 500 --out data/sim --seed 0
    python -m training.instruct --from-records ../shared/data/cinc --out data/cinc
    python -m training.instruct --records 100000 --out data/sim --name train.jsonl --shard 3/64

writes ``DIR/images/<id>.png`` (about half clean, half with photo/scan distortions, as in the
paper) and ``DIR/train.json``, then prints the counts per task and question type like the
paper's Table A1. With ``--shard i/N`` it builds block i of N (JSON lines only) into
``train-0000i-of-0000N.jsonl``; the N files concatenated are the one-machine ``train.jsonl``.
"""

from __future__ import annotations

import argparse
import sys
import time

from training.instruct.dataset import (build_dataset, print_statistics, record_source,
                                       shard_file_name)
from training.instruct.shard import add_shard_argument


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
    add_shard_argument(parser)
    args = parser.parse_args(argv)
    if args.shard[1] > 1 and not args.name.endswith(".jsonl"):
        parser.error("--shard writes JSON lines: give --name train.jsonl")
    from pulse_app.errors import PulseError

    started = time.monotonic()
    try:
        records, first = record_source(count=args.records, seed=args.seed, start=args.start,
                                       paths=args.from_records, shard=args.shard)
        path, samples = build_dataset(records, args.out, seed=args.seed, render=args.render,
                                      dpi=args.dpi, distort=args.distort,
                                      name=shard_file_name(args.name, args.shard),
                                      first_index=first,
                                      progress=lambda m: print(m, file=sys.stderr))
    except PulseError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print_statistics(samples, title=f"{path} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
