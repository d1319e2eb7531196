"""Digitising speed and memory: seconds per 2200×1700 page on one core, peak and after RSS.

The page: CinC record E07509 (../shared/data; a simulated record when absent) rendered as a
3x4+II page at 200 dpi, clean and as a phone photo (straightened with the renderer's known
homography). Each is digitised ``--runs`` times by :func:`pulse_app.ecg.digitize.ecg_digitize`
in a fresh worker process with one thread (OpenCV, BLAS), timed in CPU seconds
(``time.process_time``), so that other programs on a shared machine do not count.

Memory, in that worker: RSS after imports and loading the page, peak RSS (``ru_maxrss``) after
the runs, and RSS after the runs (what the process keeps).

Baseline, measured in the same run: a naive tracer — grey level, then in every pixel column of
each row band the darkest pixel — given the true layout, row bands, baselines and scale from
the renderer's sidecar (everything ours has to find by itself). Its SNR (Challenge 2024
definition, ``training.digitize_eval``) is printed beside ours.

    python -m bench.digitize_speed [--runs 5]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO.parent / "shared" / "data" / "ecg-records" / "E07509.hea"
TARGET_S = 2.0


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _worker(path: str, runs: int, queue) -> None:
    import cv2
    from PIL import Image

    from pulse_app.ecg.digitize import ecg_digitize

    cv2.setNumThreads(1)
    page = np.asarray(Image.open(path).convert("RGB"))
    ecg_digitize(page)                                   # warm: imports, caches
    before = _rss_mb()
    times = []
    for _ in range(runs):
        start = time.process_time()
        ecg_digitize(page)
        times.append(time.process_time() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((times, before, peak, _rss_mb()))


def measure_ours(page: np.ndarray, runs: int) -> tuple[list[float], float, float, float]:
    """(CPU seconds per run, RSS before, peak RSS, RSS after) in MB, in a fresh process."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "page.png")
        Image.fromarray(page).save(path)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_worker, args=(path, runs, queue))
        proc.start()
        result = queue.get()
        proc.join()
    return result


def naive_trace(page: np.ndarray, sidecar: dict, fs: float = 500.0) -> np.ndarray:
    """The baseline: per row band, per column, the darkest pixel; geometry from the sidecar."""
    from pulse_app.ecg.records import STANDARD_LEADS

    grey = page.mean(axis=2)
    ppm = sidecar["px_per_mm"]
    px_per_s = ppm * sidecar["speed_mm_s"]
    px_per_mv = ppm * sidecar["gain_mm_mV"]
    n = int(round(sidecar["window_s"] * fs))
    out = np.full((n, len(STANDARD_LEADS)), np.nan)
    bases = sorted({p["baseline_px"] for p in sidecar["panels"]})
    gap = float(np.median(np.diff(bases))) if len(bases) > 1 else 200.0
    for p in sidecar["panels"]:
        b = p["baseline_px"]
        y0, y1 = int(b - gap / 2), int(b + gap / 2)
        x0, x1 = int(p["x0_px"]), int(np.ceil(p["x1_px"])) + 1
        rows = np.argmin(grey[y0:y1, x0:x1], axis=0) + y0
        t = (np.arange(x0, x1) - p["x0_px"]) / px_per_s + p["t0_s"]
        k = np.arange(int(np.ceil(p["t0_s"] * fs)), int(p["t1_s"] * fs) + 1)
        k = k[k < n]
        out[k, STANDARD_LEADS.index(p["lead"])] = np.interp(k / fs, t, (b - rows) / px_per_mv)
    return out


def mean_snr(record, sidecar, signal) -> float:
    from pulse_app.ecg.records import STANDARD_LEADS
    from training.digitize_eval import challenge_snr, reference_signals

    ref = reference_signals(record, sidecar, 500.0)
    n = min(len(ref), len(signal))
    vals = [challenge_snr(ref[:n, c], signal[:n, c], 500.0) for c in range(len(STANDARD_LEADS))
            if np.isfinite(ref[:n, c]).any()]
    return float(np.nanmean(vals))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="digitisations per page")
    args = ap.parse_args(argv)
    import cv2

    from pulse_app.ecg.digitize import ecg_digitize
    from pulse_app.ecg.records import read_record
    from pulse_app.ecg.render import render_ecg
    from pulse_app.ecg.simulate import ecg_simulate
    from training.digitize_eval import straighten_oracle

    cv2.setNumThreads(1)
    record = read_record(RECORD) if RECORD.exists() else ecg_simulate(seed=0)
    clean = render_ecg(record, layout="3x4+II", seed=0)
    photo = render_ecg(record, layout="3x4+II", distort="photo", seed=0)
    photo_page = straighten_oracle(photo.pixels, photo.sidecar)
    print(f"record {record.record_id}, 3x4+II page {clean.pixels.shape[1]}x{clean.pixels.shape[0]}"
          f" px (200 dpi); one core; CPU seconds per page (median of {args.runs})")
    rows = []
    for name, page, sidecar in (("clean", clean.pixels, clean.sidecar),
                                ("photo, straightened", photo_page, photo.sidecar)):
        times, before, peak, after = measure_ours(page, args.runs)
        t_ours = statistics.median(times)
        t0 = time.process_time()
        for _ in range(args.runs):
            naive = naive_trace(page, sidecar)
        t_naive = (time.process_time() - t0) / args.runs
        snr_ours = mean_snr(record, sidecar, ecg_digitize(page).signal)
        snr_naive = mean_snr(record, sidecar, naive)
        rows.append((name, t_ours, t_naive, before, peak, after, snr_ours, snr_naive))
    print(f"{'page':22s}{'ours s':>8s}{'naive s':>9s}{'ratio':>7s}{'RSS MB: before':>16s}"
          f"{'peak':>7s}{'after':>7s}{'SNR ours':>10s}{'naive':>7s}")
    for name, t_ours, t_naive, before, peak, after, s_ours, s_naive in rows:
        print(f"{name:22s}{t_ours:8.3f}{t_naive:9.3f}{t_ours / t_naive:6.1f}x{before:16.0f}"
              f"{peak:7.0f}{after:7.0f}{s_ours:9.1f} dB{s_naive:6.1f} dB")
    print("ratio = ours / naive darkest-pixel tracer (which is told the layout, bands and scale)")
    worst = max(r[1] for r in rows)
    print(f"target <= {TARGET_S:g} s per page: {'met' if worst <= TARGET_S else 'NOT met'} "
          f"(slowest {worst:.2f} s)")


if __name__ == "__main__":
    main()
