"""Synthetic 12-lead ECGs per second: ``pulse_app.ecg.simulate.ecg_simulate`` vs NeuroKit2.

Baseline, measured in the same run on the same core: NeuroKit2 0.2's 12-lead simulator
(``neurokit2.ecg_simulate(method="multileads")``, the installable peer that also returns 12
leads), 10 s at 500 Hz. Ours is timed on ``random_findings`` requests (the training-data mix)
and on plain normal sinus rhythm. Target: < 30 ms per record (thousands per training set).

    python -m bench.simulate_speed [--records 200] [--baseline-runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from pulse_app.ecg.simulate import ecg_simulate, random_findings


def time_per_call(fn, runs: int) -> float:
    """Median seconds per call over ``runs`` calls (after one warm-up call)."""
    fn(0)
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i + 1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--baseline-runs", type=int, default=5)
    args = parser.parse_args()

    import neurokit2 as nk

    mixed = time_per_call(lambda s: ecg_simulate(random_findings(s), seed=s, noise_mV=0.01,
                                                 baseline_wander=True), args.records)
    normal = time_per_call(lambda s: ecg_simulate(None, seed=s), args.records)
    base = time_per_call(lambda s: nk.ecg_simulate(duration=10, sampling_rate=500, heart_rate=75,
                                                   method="multileads", random_state=s),
                         args.baseline_runs)
    print("10 s, 500 Hz, 12 leads; median seconds per record on one core")
    print(f"  neurokit2 ecg_simulate(method='multileads'): {base * 1000:8.1f} ms  (baseline)")
    print(f"  ours, normal sinus rhythm                  : {normal * 1000:8.1f} ms  "
          f"({base / normal:.0f}x faster)")
    print(f"  ours, random_findings mix + noise + wander : {mixed * 1000:8.1f} ms  "
          f"({base / mixed:.0f}x faster)")
    print(f"  -> {1 / mixed:.0f} records/s/core; 100k training records in "
          f"{100_000 * mixed / 60:.1f} min on one core")


if __name__ == "__main__":
    main()
