"""Evaluation speed: questions per second of the batched runner vs the per-item runner.

Baseline, measured in the same run on the same items and the same loaded model: the per-item
runner (``batch_size=1``: one streamed answer at a time, what ``training.evaluate`` did before
batching). Rounds alternate the two runners; both wall-clock and this process's CPU time are
reported (on a machine shared with other jobs the CPU-time ratio is the steadier one). Items: held-out simulated questions of every task and question type (the project's
generated questions, balanced), answered greedily by the shipped mini model
(``assets/pulse-mini``) on the CPU. Checks that both runners give the same answers.

    python -m bench.eval_batched [--items 128] [--batch-size auto] [--rounds 1] [--threads N]

On a CPU shared with other busy processes, use ``--threads 1``: with two threads every batched
matrix product waits at OpenMP barriers for a core the scheduler gave to someone else (measured:
8.2 CPU s instead of 1.1 for one batch of 16), which says nothing about the runner.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from pulse_app.engine.backend import GenerationParams


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=128, help="questions answered per runner")
    parser.add_argument("--records", type=int, help="simulated held-out records (default 16; "
                        "--one-per-image: --items)")
    parser.add_argument("--batch-size", default="auto", help="batched runner (auto: device)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=1, help="per-item, batched, repeated")
    parser.add_argument("--one-per-image", action="store_true", help="one question per ECG "
                        "(as ECGBench): no image's tiles or prompt prefix to share")
    parser.add_argument("--model", default="offline-default")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one "
                        "per core)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from training.evaluate import balanced_subset, heldout_split, load_backend
    from training.generation import Request, run_requests
    from training.instruct import read_samples

    with tempfile.TemporaryDirectory(prefix="pulse-bench-eval-") as folder:
        records = args.records or (args.items if args.one_per_image else 16)
        data = heldout_split(folder, records=records)
        samples = read_samples(data)
        if args.one_per_image:
            samples = list({s.image: s for s in reversed(samples)}.values())
        samples = balanced_subset(samples, args.items)
        backend = load_backend(args.model, device="cpu")
        params = GenerationParams(temperature=0.0, max_new_tokens=args.max_new_tokens, seed=0)
        requests = [Request(f"{i}|{s.id}", s.image, [s.question], history=s.turns[:-1],
                            group=f"{s.meta.get('task')}/{s.meta.get('qtype')}")
                    for i, s in enumerate(samples)]
        size = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
        run_requests(backend, requests[:4], image_root=data.parent, params=params,
                     batch_size=size, progress=False)                       # warm-up
        seconds = {"per-item": 0.0, "batched": 0.0}
        cpu = dict(seconds)
        answers = {}
        for _ in range(args.rounds):
            for name, batch in (("per-item", 1), ("batched", size)):
                start, start_cpu = time.perf_counter(), time.process_time()
                answers[name] = run_requests(backend, requests, image_root=data.parent,
                                             params=params, batch_size=batch, progress=False)
                seconds[name] += time.perf_counter() - start
                cpu[name] += time.process_time() - start_cpu
    n = len(requests) * args.rounds
    same = sum(answers["per-item"][r.id] == answers["batched"][r.id] for r in requests)
    rate = {name: n / s for name, s in seconds.items()}
    images = len({r.image for r in requests})
    print(f"model: {backend.info().label}; {len(requests)} questions about {images} ECGs x "
          f"{args.rounds} round(s), "
          f"greedy, max {args.max_new_tokens} new tokens; torch threads "
          f"{torch.get_num_threads()}; batch size {backend.batch_size(size)}")
    for name, label in (("per-item", "per-item runner (baseline)"), ("batched", "batched runner")):
        print(f"{label:27s} {rate[name]:6.2f} questions/s wall ({seconds[name]:.1f} s), "
              f"{n / cpu[name]:6.2f} per CPU-second ({cpu[name]:.1f} CPU s)")
    print(f"ratio batched / per-item: {rate['batched'] / rate['per-item']:.2f}x wall-clock, "
          f"{cpu['per-item'] / cpu['batched']:.2f}x CPU time; identical answers: "
          f"{same}/{len(requests)}")


if __name__ == "__main__":
    main()
