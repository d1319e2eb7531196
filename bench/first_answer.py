"""One first answer in the web app, before and after the one-core change: image decodes, image
encodes, database transactions (writes among them) and time, counted in the same run.

The scenario is what a clinician does: upload a photo, turn it a quarter turn, ask the first
question (the shipped mini model answers, greedy, ``--tokens`` tokens). It drives the app's real
handlers (no browser) on a fresh SQLite file. The baseline is the app as it was before the
change (main at ``--baseline``, default 0cc1ba7), taken from git into a temporary folder and run
in a subprocess of its own, exactly like ours. Counted by instrumenting the libraries in each
subprocess: ``PIL.Image.open`` (decodes), ``PIL.Image.Image.save`` (encodes), SQLAlchemy
``begin`` events (transactions) and INSERT/UPDATE/DELETE statements (write transactions).

    python -m bench.first_answer [--runs 5] [--tokens 16] [--baseline 0cc1ba7]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.git_baseline import baseline_tree, run_json

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO.parent / "shared" / "data" / "ecg-images" / "ecg00040.jpg"

SCENARIO = r'''
import json, statistics, sys, time
from pathlib import Path
import PIL.Image
from sqlalchemy import event
from sqlalchemy.engine import Engine

variant, model, image, data, tokens, runs = sys.argv[1:7]
counts = {"decodes": 0, "encodes": 0, "transactions": 0, "write_transactions": 0}
_open, _save = PIL.Image.open, PIL.Image.Image.save

def counted_open(*a, **k):
    counts["decodes"] += 1
    return _open(*a, **k)

def counted_save(self, *a, **k):
    counts["encodes"] += 1
    return _save(self, *a, **k)

PIL.Image.open, PIL.Image.Image.save = counted_open, counted_save
writing = set()

@event.listens_for(Engine, "begin")
def _begin(conn):
    counts["transactions"] += 1

@event.listens_for(Engine, "before_cursor_execute")
def _statement(conn, cursor, statement, *rest):
    if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
        writing.add(id(conn))

@event.listens_for(Engine, "commit")
def _commit(conn):
    if id(conn) in writing:
        writing.discard(id(conn))
        counts["write_transactions"] += 1

import gradio as gr
from pulse_app.settings import Settings
from pulse_app.ui.handlers import PulseUI
from pulse_app.auth import new_owner_token

settings = Settings.load(model=model, device="cpu", data_dir=data, cache_dir=data + "-cache",
                         temperature=0.0, max_new_tokens=int(tokens))
ui = PulseUI(settings)
ui.chat.backend.load()
request = gr.Request(session_hash="bench")

def first_answer():
    token = new_owner_token()
    if variant == "baseline":
        _, original, edit, *_ = ui.upload([image], 1)
        _, edit, session, _ = ui.rotate(original, edit, 0, 1)
        updates = list(ui.ask(token, session, original, edit, "What is the rhythm?", [], 0.0,
                              0.7, int(tokens), request))
    else:
        page = gr.Request(session_hash="bench", cookies={"pulse-owner": token})
        _, view, *_ = ui.upload([image], 1, page)
        _, view, _ = ui.rotate(view, 0, 1, page)
        updates = list(ui.ask(view, "What is the rhythm?", [], 0.0, 0.7, int(tokens), page))
    return updates[-1][0][-1]["content"]

first_answer()                                   # warm-up: caches, first-call costs
times, per_run = [], []
for _ in range(int(runs)):
    for key in counts:
        counts[key] = 0
    start = time.perf_counter()
    answer = first_answer()
    times.append(time.perf_counter() - start)
    per_run.append(dict(counts))
print(json.dumps({"counts": per_run[-1], "stable": all(r == per_run[0] for r in per_run),
                  "median_s": statistics.median(times), "answer": answer}))
'''


def run_variant(variant: str, pythonpath: Path, args, tmp: Path) -> dict:
    data = tmp / f"data-{variant}"
    model = str(REPO / "assets" / "pulse-mini")
    return run_json(SCENARIO, [variant, model, str(IMAGE), str(data), str(args.tokens),
                               str(args.runs)], pythonpath=pythonpath, cwd=tmp, timeout_s=1800,
                    env={"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                         "TRANSFORMERS_VERBOSITY": "error"}, what=variant)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--baseline", default="0cc1ba7",
                        help="git commit of the app before the change (default 0cc1ba7)")
    args = parser.parse_args(argv)
    if not IMAGE.is_file():
        print(f"first_answer: skipped, {IMAGE} not found (../shared beside the checkout)")
        return
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as folder:
        tmp = Path(folder)
        before = run_variant("baseline", baseline_tree(args.baseline, tmp), args, tmp)
        after = run_variant("ours", REPO, args, tmp)
    print(f"First answer (upload, quarter turn, first question; shipped mini model, "
          f"{args.tokens} tokens, median of {args.runs}):")
    print(f"  {'':24s} {'baseline ' + args.baseline:>18s} {'one core':>10s}")
    for key in ("decodes", "encodes", "transactions", "write_transactions"):
        print(f"  {key.replace('_', ' '):24s} {before['counts'][key]:>18d} "
              f"{after['counts'][key]:>10d}")
    print(f"  {'time (s)':24s} {before['median_s']:>18.3f} {after['median_s']:>10.3f}")
    print(f"  speed-up vs baseline {args.baseline}: {before['median_s'] / after['median_s']:.2f}x"
          f"  (same answer: {before['answer'] == after['answer']}; counts stable over runs: "
          f"{before['stable'] and after['stable']})")


if __name__ == "__main__":
    main()
