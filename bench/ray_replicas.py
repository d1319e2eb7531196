"""The model on Ray Serve: answers per minute with 2 replicas vs 1 (the baseline), same run.

A local Ray cluster (``--cpus`` cores) serves the shipped mini model (``offline-default``) with
``python -m pulse_app serve-ray``'s deployment (:func:`pulse_app.engine.ray_serve.deploy`), one
core and one torch thread per replica. ``--clients`` concurrent clients send ``--requests``
chat completions in all (an example page from assets/examples, ``--max-tokens`` each, greedy)
through Ray's HTTP proxy, each client on one kept-alive connection; the same load runs against 1 replica, then against the same deployment
scaled to 2. Printed: answers per minute for each, the ratio, and how the answers spread over
the replicas. ``--rounds`` repeats the pair (1, 2, 1, 2, ...) and the ratio is of the medians.
(Single rounds once ranged 1.0-1.9x: Ray's router retried a busy replica after 0, 25, 75,
175, 375 ms, so a one-answer-at-a-time replica idled until then and the 1-replica rate jumped
between ~170 and ~286 answers/min; the deployment now retries within 20 ms,
:data:`pulse_app.engine.ray_serve.ROUTER_RETRY`.)

    python -m bench.ray_replicas [--requests 60] [--clients 4] [--max-tokens 96] [--cpus 2]
                                 [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import socket
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from pulse_app.settings import ASSETS_DIR, Settings

PAGE = ASSETS_DIR / "examples" / "01-sinus-rhythm.png"


def answers_per_minute(url: str, requests: int, clients: int, max_tokens: int
                       ) -> tuple[float, Counter]:
    import httpx

    from pulse_app.engine.ray_serve import REPLICA_HEADER

    image = "data:image/png;base64," + base64.b64encode(PAGE.read_bytes()).decode()
    local, opened = threading.local(), []

    def one(number: int) -> str:
        if not hasattr(local, "client"):       # one kept-alive connection per client thread,
            local.client = httpx.Client(timeout=600)        # as a load balancer keeps them
            opened.append(local.client)
        reply = local.client.post(f"{url}/chat/completions", json={
            "model": "offline-default", "max_tokens": max_tokens, "temperature": 0.0,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image}},
                {"type": "text", "text": f"What is the rhythm? ({number})"}]}]})
        reply.raise_for_status()
        assert reply.json()["choices"][0]["message"]["content"].strip()
        return reply.headers[REPLICA_HEADER.decode()]

    try:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, range(clients)))               # warm-up, not timed
            start = time.perf_counter()
            replicas = Counter(pool.map(one, range(requests)))
            elapsed = time.perf_counter() - start
    finally:
        for client in opened:
            client.close()
    return requests / elapsed * 60, replicas


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--cpus", type=int, default=2, help="cores of the local Ray cluster")
    parser.add_argument("--rounds", type=int, default=3, help="(1 replica, 2 replicas) pairs")
    args = parser.parse_args(argv)
    try:
        from pulse_app.engine import ray_serve
    except ImportError:
        print("ray_replicas: skipped, Ray Serve is not installed (requirements-ray.txt)")
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        for _ in range(args.rounds):
            for replicas in (1, 2):
                settings = Settings.load(model="offline-default", device="cpu",
                                         ray_replicas=replicas, temperature=0.0)
                url = ray_serve.deploy(settings, port, num_cpus=args.cpus)
                rate, spread = answers_per_minute(url, args.requests, args.clients,
                                                  args.max_tokens)
                rates[replicas].append(rate)
                print(f"{replicas} Ray replica(s): {rate:.1f} answers/min ({args.requests} "
                      f"answers, {args.clients} clients, {args.max_tokens} tokens max; per "
                      f"replica {sorted(spread.values())})")
    finally:
        ray_serve.shutdown()
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"2 Ray replicas vs 1 (baseline, same run): {two / one:.2f}x answers per minute "
          f"(medians of {args.rounds} rounds: {two:.1f} vs {one:.1f}) [{args.cpus} cores, one "
          f"torch thread per replica]")


if __name__ == "__main__":
    main()
