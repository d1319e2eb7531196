"""The model on Ray Serve: answers per minute with 2 replicas vs 1 (the baseline), same run.

A local Ray cluster (``--cpus`` cores) serves the shipped mini model (``offline-default``) with
``python -m pulse_app serve-ray``'s deployment (:func:`pulse_app.engine.ray_serve.deploy`), one
core and one torch thread per replica. ``--clients`` concurrent clients send ``--requests``
chat completions in all (an example page from assets/examples, ``--max-tokens`` each, greedy)
through Ray's HTTP proxy, each client on one kept-alive connection; the same load runs against
1 replica, then against the same deployment scaled to 2. Printed: answers per minute for each,
the ratio, how the answers spread over the replicas, and the CPU time per answer of the
replicas, the proxy and the rest (Linux ``/proc``), from which the best ratio the cores allow
follows. ``--rounds`` repeats the pair (1, 2, 1, 2, ...) and the ratio is of the medians.
(Single rounds once ranged 1.0-1.9x: Ray's router retried a busy replica after 0, 25, 75,
175, 375 ms, so a one-answer-at-a-time replica idled until then and the 1-replica rate jumped
between ~170 and ~286 answers/min; the deployment now retries within 20 ms,
:data:`pulse_app.engine.ray_serve.ROUTER_RETRY`.)

    python -m bench.ray_replicas [--requests 60] [--clients 4] [--max-tokens 96] [--cpus 2]
                                 [--rounds 3] [--ingress proxy|haproxy]
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from pulse_app.settings import ASSETS_DIR, Settings

PAGE = ASSETS_DIR / "examples" / "01-sinus-rhythm.png"


def cpu_by_role() -> Counter:
    """CPU seconds this machine's processes have used so far, by role: ``replicas`` (Ray Serve
    replicas), ``proxy`` (Ray's HTTP proxy) and ``rest`` (the clients, Ray's controller and
    daemons, anything else running). Linux ``/proc``; empty elsewhere."""
    used: Counter = Counter()
    if not os.path.isdir("/proc"):
        return used
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read()
        except OSError:                                   # ended meanwhile
            continue
        role = ("replicas" if b"ServeReplica" in command else
                "proxy" if b"ProxyActor" in command else "rest")
        used[role] += (int(fields[11]) + int(fields[12])) / tick     # user + system
    return used


def answers_per_minute(url: str, requests: int, clients: int, max_tokens: int
                       ) -> tuple[float, Counter, Counter]:
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
            start, cpu = time.perf_counter(), cpu_by_role()
            replicas = Counter(pool.map(one, range(requests)))
            elapsed = time.perf_counter() - start
            cpu = cpu_by_role() - cpu
    finally:
        for client in opened:
            client.close()
    return requests / elapsed * 60, replicas, Counter({k: v / requests for k, v in cpu.items()})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--cpus", type=int, default=2, help="cores of the local Ray cluster")
    parser.add_argument("--rounds", type=int, default=3, help="(1 replica, 2 replicas) pairs")
    parser.add_argument("--ingress", choices=("proxy", "haproxy"), default="proxy",
                        help="Ray's Python HTTP proxy or its HAProxy ingress (--ray-ingress)")
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
    costs: dict[int, list[Counter]] = {1: [], 2: []}
    try:
        for _ in range(args.rounds):
            for replicas in (1, 2):
                settings = Settings.load(model="offline-default", device="cpu",
                                         ray_replicas=replicas, temperature=0.0,
                                         ray_ingress=args.ingress)
                url = ray_serve.deploy(settings, port, num_cpus=args.cpus)
                rate, spread, cost = answers_per_minute(url, args.requests, args.clients,
                                                        args.max_tokens)
                rates[replicas].append(rate)
                costs[replicas].append(cost)
                print(f"{replicas} Ray replica(s): {rate:.1f} answers/min ({args.requests} "
                      f"answers, {args.clients} clients, {args.max_tokens} tokens max; per "
                      f"replica {sorted(spread.values())}; CPU ms per answer: "
                      + ", ".join(f"{k} {v * 1000:.0f}" for k, v in sorted(cost.items())) + ")")
    finally:
        ray_serve.shutdown()
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"2 Ray replicas vs 1 (baseline, same run): {two / one:.2f}x answers per minute "
          f"(medians of {args.rounds} rounds: {two:.1f} vs {one:.1f}) [{args.cpus} cores, one "
          f"torch thread per replica; ingress: {args.ingress}]")
    cost = {k: statistics.median(c[k] for c in costs[2]) for k in ("replicas", "proxy", "rest")}
    if cost["replicas"]:
        # one replica answers at most one per replica-CPU-time; two share the cores with the
        # proxy and the rest, which a single replica leaves to the other core
        ceiling = args.cpus * cost["replicas"] / sum(cost.values())
        print(f"CPU per answer with 2 replicas (medians): replica {cost['replicas'] * 1000:.0f} "
              f"ms, proxy {cost['proxy'] * 1000:.0f} ms, rest {cost['rest'] * 1000:.0f} ms: on "
              f"{args.cpus} cores 2 replicas can give at most {ceiling:.2f}x one replica's rate")


if __name__ == "__main__":
    main()
