"""Straightening speed: seconds per 12-megapixel phone photo on one core, ours vs the same
method without the downscale-first design.

Photos: the renderer's hand-held "phone" photos (whole page in view, rotated up to ±30°,
perspective, shadow, blur, noise, JPEG) of a real 10 s record (CinC E07509) at 360 dpi, i.e.
3960 x 3060 px = 12.1 megapixels, a new seed per photo.

- ours: :func:`pulse_app.straighten.propose_straightening` (reduces the photo to
  :data:`~pulse_app.straighten.WORK_SIDE_PX` px a side first, then analyses);
- baseline, same run: the same analysis on the full-resolution photo
  (``work_side`` = the photo's long side): what the design saves;
- for scale, also timed: a plain Hough transform of the full photo (OpenCV Canny +
  ``HoughLines`` at 0.1° over ±30°), which finds lines but neither the page nor perspective.

One core: OpenCV's and BLAS threads are set to 1 and times are this process's CPU seconds
(``time.process_time``). Target: <= 0.5 s per photo.

    python -m bench.straighten_speed [--runs 5] [--baseline-runs 2]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import math
import statistics
from pathlib import Path

import cv2
import numpy as np

from bench.render_speed import timed
from pulse_app.ecg.records import read_record
from pulse_app.ecg.render import render_ecg
from pulse_app.straighten import WORK_SIDE_PX, propose_straightening

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO.parent / "shared" / "data" / "ecg-records" / "E07509.hea"
DPI = 360                       # 3960 x 3060 px: 12.1 megapixels
TARGET_S = 0.5


def hough_lines(image) -> int:
    """The plain way: Canny edges of the full photo, then the Hough transform."""
    gray = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, 50, 150)
    lines = cv2.HoughLines(edges, 1, math.radians(0.1), 800, min_theta=math.radians(60),
                           max_theta=math.radians(120))
    return 0 if lines is None else len(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="photos timed for ours")
    ap.add_argument("--baseline-runs", type=int, default=2, help="photos timed for the baseline")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    record = read_record(RECORD)
    photos = [render_ecg(record, distort="phone", dpi=DPI, seed=seed).image
              for seed in range(max(args.runs, args.baseline_runs))]
    propose_straightening(photos[0])                                     # warm up
    ours = timed(lambda i: propose_straightening(photos[i]), args.runs)
    full = timed(lambda i: propose_straightening(photos[i], work_side=max(photos[i].size)),
                 args.baseline_runs)
    hough = timed(lambda i: hough_lines(photos[i]), args.baseline_runs)
    t_ours, t_full, t_hough = (statistics.median(x) for x in (ours, full, hough))
    w, h = photos[0].size
    print(f"{len(photos[:args.runs])} phone photos of {record.record_id}, {w}x{h} px "
          f"({w * h / 1e6:.1f} MP); one core; median CPU seconds per photo")
    rows = ((f"ours (analysis at {WORK_SIDE_PX} px a side)", t_ours, ""),
            ("baseline: the same method at full resolution", t_full, ""),
            ("for scale: plain Hough transform, full photo", t_hough,
             "  (lines only: no page, no perspective)"))
    for name, seconds, note in rows:
        print(f"  {name:46s}{seconds:7.3f} s{note}")
    print(f"ratio baseline / ours: {t_full / t_ours:.1f}x")
    print(f"target <= {TARGET_S} s per 12 MP photo: {'met' if t_ours <= TARGET_S else 'NOT met'}")


if __name__ == "__main__":
    main()
