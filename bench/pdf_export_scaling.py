"""PDF export time vs the clinician note's length, and whether an export slows an answer.

1. Export time of a one-turn session with a note of 1, 2, 4 and 8 thousand lines: our
   ``session_pdf`` against the baseline, the report module as it was before the change (main at
   ``--baseline``, default e6ae9e8, taken from git and run in a subprocess of its own, like
   ``bench/first_answer.py``). Printed: seconds, the ratio between consecutive sizes (2.0 =
   linear, 4.0 = quadratic) and ours vs the baseline. The baseline is quadratic, so by default
   it runs up to ``--baseline-max-lines`` (4000: ~1.5 min here) and the 8000-line figure is
   left out.
2. One answer of the untrained tiny model (greedy; its random answers always run to
   ``--tokens`` tokens, where the mini model stops early), torch on one core (as a GPU server
   drives its model from one thread), alone, while exports of the 8000-line note run
   back to back in a thread of the same process (how the app made exports before: they compete
   for the interpreter), and while they run in the export process (``report.render_pdf``, how it
   does now: the other core); medians of ``--runs``, and each ratio vs the answer alone.

    python -m bench.pdf_export_scaling [--runs 5] [--tokens 200] [--baseline e6ae9e8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.git_baseline import baseline_tree, run_json

REPO = Path(__file__).resolve().parent.parent
ECG = REPO.parent / "shared" / "data" / "ecg-images" / "ecg00010.png"
LINES = (1000, 2000, 4000, 8000)

TIMING = r'''
import json, sys, time
from datetime import datetime, timezone
from PIL import Image
from pulse_app.intake import png_bytes
from pulse_app.report import session_pdf
from pulse_app.store import SessionRecord, TurnRecord

image, sizes = sys.argv[1], [int(n) for n in sys.argv[2:]]
png = png_bytes(Image.open(image).convert("RGB"))
now = datetime.now(timezone.utc)
turn = TurnRecord(id=1, session_id="s", index=0, question="What is the rhythm?",
                  answer="Sinus rhythm at about 72 bpm; normal axis and intervals.",
                  model_id="PULSE-7B", model_label="PULSE-7B (local, cuda bf16)",
                  params={"temperature": 0.2}, stopped=False, created_at=now)
session = SessionRecord(id="s", owner="user:bench", title="Benchmark", created_at=now,
                        updated_at=now, model_id="PULSE-7B", model_revision="main", params={},
                        original_png=png, edited_png=png, turns=[turn])
session_pdf(session, note="warm-up")
times = {}
for lines in sizes:
    note = "\n".join(f"Line {i:05d}: rhythm strip reviewed, no change since the last tracing."
                     for i in range(lines))
    start = time.perf_counter()
    session_pdf(session, note=note)
    times[lines] = time.perf_counter() - start
print(json.dumps(times))
'''


def export_times(pythonpath: Path, sizes: list[int]) -> dict[int, float]:
    """Seconds per note length, measured in a fresh interpreter on ``pythonpath``'s report."""
    if not sizes:
        return {}
    times = run_json(TIMING, [str(ECG), *map(str, sizes)], pythonpath=pythonpath,
                     cwd=pythonpath, what=f"export timing on {pythonpath}")
    return {int(k): v for k, v in times.items()}


def answers_during_exports(runs: int, tokens: int) -> dict[str, float]:
    """Median answer time alone, during in-process exports, during exports in their process."""
    import torch
    from PIL import Image

    from pulse_app.engine.backend import GenerationParams, answer
    from pulse_app.engine.local import LocalBackend
    from pulse_app.report import render_pdf, session_pdf
    from pulse_app.store import Store

    torch.set_num_threads(1)
    backend = LocalBackend("tiny-untrained", device="cpu")
    image = Image.open(ECG).convert("RGB")
    params = GenerationParams(temperature=0, max_new_tokens=tokens)
    note = "\n".join(f"Line {i:05d}: rhythm strip reviewed, no change since the last tracing."
                     for i in range(LINES[-1]))
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'bench.db'}")
        from pulse_app.intake import png_bytes

        png = png_bytes(image)
        record = store.create_session("user:bench", title="Bench", model_id="m",
                                      model_revision=None, original_png=png, edited_png=png)
        session = store.get_session("user:bench", record.id)
        store.close()
    answer(backend, image, [], "What is the rhythm?", params)          # warm-up
    render_pdf(session, note="warm-up")                                # starts the process

    def timed_answer(export=None) -> float:
        answering = threading.Event()

        def exports():
            while answering.is_set():                               # back to back
                export()

        answering.set()
        worker = threading.Thread(target=exports) if export else None
        if worker:
            worker.start()
            time.sleep(0.05)                                         # an export is running
        start = time.perf_counter()
        answer(backend, image, [], "What is the rhythm?", params)
        took = time.perf_counter() - start
        answering.clear()
        if worker:
            worker.join()
        return took

    variants = {"alone": None,
                "export in the server's process (before)": lambda: session_pdf(session,
                                                                                 note=note),
                "export in the export process (now)": lambda: render_pdf(session, note=note)}
    return {name: statistics.median(timed_answer(export) for _ in range(runs))
            for name, export in variants.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--baseline", default="e6ae9e8",
                        help="git commit of the app before the change (default e6ae9e8)")
    parser.add_argument("--baseline-max-lines", type=int, default=4000,
                        help="longest note the (quadratic) baseline is timed on")
    args = parser.parse_args(argv)
    if not ECG.is_file():
        print(f"pdf_export_scaling: skipped, {ECG} not found (../shared beside the checkout)")
        return
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as folder:
        ours = export_times(REPO, list(LINES))
        before = export_times(baseline_tree(args.baseline, Path(folder)),
                              [n for n in LINES if n <= args.baseline_max_lines])
    print("PDF export time vs note length (one-turn session, ECG image "
          f"{ECG.name}; ratio = time / time of half the lines: 2 = linear, 4 = quadratic)")
    print(f"  {'lines':>6s} {'baseline ' + args.baseline:>18s} {'ratio':>6s} {'ours':>9s} "
          f"{'ratio':>6s} {'baseline/ours':>14s}")
    for lines in LINES:
        half = lines // 2
        base, mine = before.get(lines), ours[lines]
        base_ratio = f"{base / before[half]:6.2f}" if base and half in before else f"{'':6s}"
        our_ratio = f"{mine / ours[half]:6.2f}" if half in ours else f"{'':6s}"
        base_text = f"{base:17.2f}s" if base else f"{'(not run)':>18s}"
        speedup = f"{base / mine:13.1f}x" if base else f"{'':14s}"
        print(f"  {lines:6d} {base_text} {base_ratio} {mine:8.2f}s {our_ratio} {speedup}")

    times = answers_during_exports(args.runs, args.tokens)
    alone = times["alone"]
    print(f"One answer of the tiny model ({args.tokens} tokens, greedy, torch on one core), "
          f"median of {args.runs}, while exports of the {LINES[-1]}-line note run:")
    for name, took in times.items():
        print(f"  {name:42s} {took:7.3f} s  ({took / alone:.2f}x the answer alone)")


if __name__ == "__main__":
    main()
