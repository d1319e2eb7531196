"""Streaming the released ECGInstruct layout: items/s and peak memory, vs json.load.

Writes a file in the released layout (one JSON list, LLaVA items with ``id``, ``image`` and
``conversations``, sources in Table A1's proportions, 3-5 turns per item from the generator's
questions), then, each in a fresh process so that peak memory (ru_maxrss) is its own:

- **streamed**: :func:`training.instruct.released.verify` over the whole file (ijson C backend,
  every item validated by the one reader and classified by source, task and type);
- **baseline**: ``json.load`` of a subset file (``--baseline-items``, where it fits in memory)
  and the same validation and classification per item, against the streamed read of that subset.

Target: 1.2 M items in <= 1 GB. ``--keep`` leaves the files in ``--dir``.

    python -m bench.instruct_stream [--items 1200000] [--baseline-items 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: ECGInstruct items per source (Table A1) -> the image folder the released archives use.
TABLE_A1 = {"mimic": 799_687, "ptb-xl": 149_425, "ecgqa": 139_358, "code15_v4": 67_640}


def write_released_layout(path: Path, items: int, seed: int = 0) -> int:
    """A JSON list of ``items`` items in the released layout; returns its size in bytes."""
    import random

    from training.instruct.dataset import simulated_records
    from training.instruct.generate import generate_samples

    rng = random.Random(seed)
    pool = []
    for record in simulated_records(120, seed):
        turns = [s.conversations for s in generate_samples(record, "x.png", seed=seed)]
        pool.append([t for pair in turns for t in pair])
    total = sum(TABLE_A1.values())
    folders = [(folder, n / total) for folder, n in TABLE_A1.items()]
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for n in range(items):
            folder = rng.choices([x for x, _ in folders], [w for _, w in folders])[0]
            record = pool[n % len(pool)]
            k = 3 + n % 3                                     # 3-5 turns per conversation
            start = 2 * (n % 5)
            conversations = [dict(c) for c in record[start: start + 2 * k]]
            conversations[0]["value"] = "<image>\n" + conversations[0]["value"].split("\n", 1)[-1]
            for c in conversations[1:]:
                c["value"] = c["value"].replace("<image>\n", "")
            study = 40_000_000 + n
            if folder == "mimic":
                image = f"mimic/p{1000 + n % 900}/p{10_000_000 + n}/s{study}/{study}-0.png"
                item_id = f"mimic-{study}"
            elif folder in ("ptb-xl", "ecgqa"):
                image = f"ptb-xl/{n % 21_000 // 1000:02d}000/{n % 21_000:05d}_hr-0.png"
                item_id = f"{'ecgqa' if folder == 'ecgqa' else 'ptbxl'}-{n}"
            else:
                image = f"code15_v4/{1_000_000 + n}-0.png"
                item_id = f"code15-{1_000_000 + n}"
            f.write(("," if n else "") + "\n" + json.dumps(
                {"id": item_id, "image": image, "conversations": conversations}))
        f.write("\n]\n")
    return path.stat().st_size


def subset(path: Path, out: Path, items: int) -> None:
    """The first ``items`` items of a JSON list, as a JSON list (streamed)."""
    from training.instruct.format import iter_items

    with open(out, "w", encoding="utf-8") as f:
        f.write("[")
        for n, (_, raw) in enumerate(iter_items(path)):
            if n == items:
                break
            f.write(("," if n else "") + "\n" + json.dumps(raw))
        f.write("\n]\n")


# -- the two readers, each run in its own process ---------------------------------------------

def run_streamed(path: str) -> dict:
    from training.instruct.released import verify

    result = verify(path)
    return {"items": result["items"], "valid": result["valid"],
            "counts": {"|".join(k): v for k, v in result["counts"].items()}}


def run_json_load(path: str) -> dict:
    from collections import Counter

    from training.instruct.format import normalise
    from training.instruct.released import classify

    with open(path, encoding="utf-8") as f:
        items = json.load(f)
    counts: Counter = Counter()
    for n, raw in enumerate(items):
        counts[classify(normalise(raw, f"item {n}"))] += 1
    return {"items": len(items), "valid": sum(counts.values()),
            "counts": {"|".join(k): v for k, v in counts.items()}}


def measure(reader: str, path: Path) -> dict:
    """Run ``reader`` on ``path`` in a fresh interpreter: result, seconds, peak RSS (MiB)."""
    code = ("import json, resource, sys, time; from bench.instruct_stream import {r}; "
            "t = time.perf_counter(); out = {r}(sys.argv[1]); "
            "out['seconds'] = time.perf_counter() - t; "
            "out['peak_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; "
            "print(json.dumps(out))").format(r=reader)
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def idle_peak_mib() -> float:
    """Peak RSS of a fresh interpreter that only imports the reader (what is not the data)."""
    code = ("import resource, training.instruct.released; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parent.parent)
    return float(done.stdout.strip())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_200_000)
    parser.add_argument("--baseline-items", type=int, default=100_000)
    parser.add_argument("--dir", default=None, help="where to write the files (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(dir=args.dir) if not args.keep else None
    folder = Path(tmp.name if tmp else (args.dir or "."))
    big, small = folder / "ECGInstruct-generated.json", folder / "subset.json"
    started = time.perf_counter()
    size = write_released_layout(big, args.items)
    print(f"wrote {args.items:,} items, {size / 2**20:,.0f} MiB ({size / args.items:.0f} B/item) "
          f"in {time.perf_counter() - started:.0f} s")
    subset(big, small, min(args.baseline_items, args.items))
    idle = idle_peak_mib()
    rows = [("streamed (ijson + validate)", args.items, measure("run_streamed", big)),
            ("streamed (ijson + validate)", args.baseline_items, measure("run_streamed", small)),
            ("baseline json.load + validate", args.baseline_items,
             measure("run_json_load", small))]
    assert rows[1][2]["counts"] == rows[2][2]["counts"], "the two readers disagree"
    print(f"\n{'reader':32s} {'items':>10s} {'s':>7s} {'items/s':>10s} {'peak MiB':>9s}")
    for name, items, r in rows:
        assert r["items"] == r["valid"] == items
        print(f"{name:32s} {items:10,d} {r['seconds']:7.1f} {items / r['seconds']:10,.0f} "
              f"{r['peak_mib']:9.0f}")
    print(f"(a fresh interpreter that imports the reader peaks at {idle:.0f} MiB)")
    stream, base = rows[1][2], rows[2][2]
    print(f"\nsame {args.baseline_items:,} items: streamed peak memory "
          f"{stream['peak_mib']:.0f} MiB vs json.load {base['peak_mib']:.0f} MiB "
          f"({base['peak_mib'] / stream['peak_mib']:.1f}x less), speed "
          f"{base['seconds'] / stream['seconds']:.2f}x json.load's")
    full = rows[0][2]
    verdict = "meets" if full["peak_mib"] <= 1024 else "MISSES"
    print(f"{args.items:,} items streamed in {full['peak_mib']:.0f} MiB peak: {verdict} the "
          f"1 GB target; {args.items / full['seconds']:,.0f} items/s")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
