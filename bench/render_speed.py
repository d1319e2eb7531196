"""Rendering speed: paper-ECG images per second per core, ours vs a straightforward matplotlib page.

The same 10 s 12-lead record (CinC E07509, 500 Hz) drawn as a 3x4+II page, 200 dpi, 2200×1700 px:

- ours, clean: ``render_ecg(record)`` (numpy + OpenCV), pixels in memory;
- ours, fully distorted: ``render_ecg(record, distort="all")`` (every distortion kind), a new seed
  per image so every image gets other parameters;
- PNG encoding, timed separately (``training.render.encode_image``: OpenCV, zlib level 1, "up"
  filter, as the batch CLI writes them), and JPEG for comparison;
- finished JPEG files (render + ``encode_image(..., "jpg")``, quality 92), each image a new seed:
  clean, ``distort="photo"`` and the full photo-like mode ``distort="all"`` (folds, pen marks,
  camera, light, blur, noise; target <= 0.25 s), against matplotlib saving the clean page as JPEG;
- baseline: matplotlib (Agg) drawing the same page the plain way (1 mm / 5 mm grid from minor and
  major ticks + ``ax.grid``, as ecg_plot and ecg-image-kit do; 13 traces, calibration pulses,
  labels), timed as ``fig.canvas.draw()`` (pixels in memory) and as ``savefig`` to PNG (what
  ecg-image-kit does per image); also a tuned matplotlib variant (grid as line collections).

One core: OpenCV's and BLAS threads are set to 1, and times are this process's CPU seconds
(``time.process_time``), so a busy shared machine does not count against either side. Prints the ratios and the projection for the
1.2 M images of ECGInstruct on 16 cores (half clean, half distorted, as in the PULSE paper).
The ecg-image-kit anchor (../shared/notes/ecg-image-kit-baseline.md, measured on this kind of
machine, not in this run) is printed for reference.

    python -m bench.render_speed [--runs 20] [--baseline-runs 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import io
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from pulse_app.ecg.records import read_record
from pulse_app.ecg.render import LAYOUT_3X4, render_ecg
from training.render import encode_image

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO.parent / "shared" / "data" / "ecg-records" / "E07509.hea"
IMAGES = 1_200_000
CORES = 16
#: ecg-image-kit, one core, 3x4+II at 200 dpi (seconds per image; see the note named above).
KIT_CLEAN_S, KIT_DISTORTED_S = 1.9, 7.0


def timed(fn, runs: int) -> list[float]:
    """CPU seconds of this process per call (one thread: = one core's time, even when other
    programs share the machine; wall time would count their turns too)."""
    out = []
    for i in range(runs):
        start = time.process_time()
        fn(i)
        out.append(time.process_time() - start)
    return out


def matplotlib_page(record, *, png: bool = False, grid: str = "ticks", save: str | None = None):
    """The plain matplotlib way: a letter-size figure in mm coordinates, grid lines, 13 traces.

    ``grid="ticks"``: the usual idiom (ecg_plot, ecg-image-kit): major ticks every 5 mm, minor
    every 1 mm, ``ax.grid`` on both. ``grid="collection"``: a tuned variant, the grid as four
    line collections (``vlines``/``hlines``). ``png=True`` (or ``save="png"``/``"jpg"``) writes
    the file to memory, as ``savefig`` would to disk.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MultipleLocator

    fig = plt.figure(figsize=(11, 8.5), dpi=200)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 279.4)
    ax.set_ylim(215.9, 0)
    if grid == "ticks":
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MultipleLocator(5))
            axis.set_minor_locator(MultipleLocator(1))
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        ax.grid(which="major", color="#ee8080", linewidth=0.8)
        ax.grid(which="minor", color="#fac4c4", linewidth=0.4)
        for spine in ax.spines.values():
            spine.set_visible(False)
    else:
        ax.axis("off")
        ax.vlines(np.arange(0, 280), 0, 215.9, colors="#fac4c4", linewidth=0.4)
        ax.hlines(np.arange(0, 216), 0, 279.4, colors="#fac4c4", linewidth=0.4)
        ax.vlines(np.arange(0, 280, 5), 0, 215.9, colors="#ee8080", linewidth=0.8)
        ax.hlines(np.arange(0, 216, 5), 0, 279.4, colors="#ee8080", linewidth=0.8)
    fs, speed, gain = record.fs, 25.0, 10.0
    rows = [(r, False) for r in LAYOUT_3X4] + [(("II",), True)]
    for i, (leads, _) in enumerate(rows):
        base = 30 + (i + 0.6) * 43
        ax.plot([9, 10, 10, 13, 13, 14], [base, base, base - gain, base - gain, base, base], "k", lw=1)
        col_s = 10.0 / len(leads)
        for j, lead in enumerate(leads):
            y = record.lead(lead)[int(j * col_s * fs):int((j + 1) * col_s * fs)]
            x = 15 + (j * col_s + np.arange(len(y)) / fs) * speed
            ax.plot(x, base - y * gain, "k", lw=1)
            ax.text(x[0] + 1, base - 14, lead, fontsize=9)
    save = "png" if png else save
    if save:
        buf = io.BytesIO()
        kwargs = {"pil_kwargs": {"quality": 92}} if save == "jpg" else {}
        fig.savefig(buf, format=save, dpi=200, **kwargs)
    else:
        fig.canvas.draw()
        np.asarray(fig.canvas.buffer_rgba())
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="images per measurement of ours")
    ap.add_argument("--baseline-runs", type=int, default=3, help="images per matplotlib measurement")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    record = read_record(RECORD)
    render_ecg(record), render_ecg(record, distort="all")            # warm caches and imports
    matplotlib_page(record, png=False)

    clean = timed(lambda i: render_ecg(record, seed=i), args.runs)
    distorted = timed(lambda i: render_ecg(record, distort="all", seed=i), args.runs)
    pages = [render_ecg(record, distort=d, seed=1).pixels for d in ("none", "all")]
    n_enc = max(3, args.runs // 4)
    png_clean = timed(lambda i: encode_image(pages[0], "png"), n_enc)
    png_all = timed(lambda i: encode_image(pages[1], "png"), n_enc)
    jpg_all = timed(lambda i: encode_image(pages[1], "jpg"), n_enc)
    sizes = [len(encode_image(pages[0], "png")), len(encode_image(pages[1], "png")),
             len(encode_image(pages[1], "jpg"))]
    mpl_draw = timed(lambda i: matplotlib_page(record, png=False), args.baseline_runs)
    mpl_png = timed(lambda i: matplotlib_page(record, png=True), args.baseline_runs)
    mpl_tuned = timed(lambda i: matplotlib_page(record, png=False, grid="collection"),
                      args.baseline_runs)
    jpeg_files = {mode: timed(lambda i, m=mode: encode_image(
        render_ecg(record, distort=m, seed=1000 + i).pixels, "jpg"), args.runs)
        for mode in ("none", "photo", "all")}
    mpl_jpg = timed(lambda i: matplotlib_page(record, save="jpg"), args.baseline_runs)

    med = statistics.median
    t_clean, t_all, t_pc, t_pa, t_ja = map(med, (clean, distorted, png_clean, png_all, jpg_all))
    t_mdraw, t_mpng, t_mtuned = med(mpl_draw), med(mpl_png), med(mpl_tuned)
    print(f"record {record.record_id}: {record.duration_s:g} s, {len(record.leads)} leads, "
          f"{record.fs:g} Hz; page 2200x1700 px (200 dpi), 3x4+II; one core; median CPU s")
    print(f"{'':36s}{'s/image':>9s}{'images/s':>10s}")
    for name, t in (("ours, clean (no encoding)", t_clean), ("ours, all distortions (no encoding)", t_all),
                    ("PNG encoding, clean page", t_pc), ("PNG encoding, distorted page", t_pa),
                    ("JPEG q92 encoding, distorted page", t_ja),
                    ("matplotlib draw (no encoding)", t_mdraw), ("matplotlib savefig PNG", t_mpng),
                    ("matplotlib, tuned grid, draw", t_mtuned)):
        print(f"{name:36s}{t:9.4f}{1 / t:10.1f}")
    print(f"file sizes: clean PNG {sizes[0] / 1e6:.2f} MB, distorted PNG {sizes[1] / 1e6:.2f} MB, "
          f"distorted JPEG q92 {sizes[2] / 1e6:.2f} MB")
    print("ratios (baseline time / ours, same run):")
    print(f"  clean drawing, both without encoding:       {t_mdraw / t_clean:6.1f}x")
    print(f"  clean PNG files, both with encoding:        {t_mpng / (t_clean + t_pc):6.1f}x")
    print(f"  distorted vs matplotlib clean draw:         {t_mdraw / t_all:6.1f}x")
    print(f"  clean drawing vs tuned matplotlib grid:     {t_mtuned / t_clean:6.1f}x")
    print(f"  vs ecg-image-kit anchor (not this run): clean {KIT_CLEAN_S / t_clean:.0f}x, "
          f"distorted {KIT_DISTORTED_S / t_all:.0f}x (without encoding)")
    targets = (t_clean <= 0.08, t_all <= 0.2)
    print(f"targets <= 0.08 s clean, <= 0.2 s distorted: {'met' if all(targets) else 'NOT met'}")
    f_clean, f_photo, f_all = (med(jpeg_files[m]) for m in ("none", "photo", "all"))
    t_mjpg = med(mpl_jpg)
    print("finished JPEG files (render + JPEG q92 encoding), s/image, same run:")
    for name, t in (("ours, clean", f_clean), ('ours, distort="photo"', f_photo),
                    ('ours, full photo-like (distort="all")', f_all),
                    ("matplotlib savefig JPEG, clean", t_mjpg)):
        print(f"  {name:38s}{t:8.4f}{1 / t:8.1f}/s")
    print(f"  ratios: full photo-like / ours clean {f_all / f_clean:.1f}x; matplotlib clean / ours "
          f"clean {t_mjpg / f_clean:.1f}x, / ours photo {t_mjpg / f_photo:.1f}x, / ours full "
          f"{t_mjpg / f_all:.1f}x")
    print(f"  target full photo-like <= 0.25 s per finished JPEG: "
          f"{'met' if f_all <= 0.25 else 'NOT met'} ({f_all:.3f} s)")
    half = IMAGES / 2
    for label, extra_clean, extra_all in (("without encoding", 0.0, 0.0),
                                          ("with PNG files", t_pc, t_pa),
                                          ("PNG clean + JPEG distorted", t_pc, t_ja)):
        hours = half * (t_clean + extra_clean + t_all + extra_all) / CORES / 3600
        print(f"projection, {IMAGES / 1e6:.1f} M images (half clean) on {CORES} cores, {label}: "
              f"{hours:.2f} h")
    kit_hours = half * (KIT_CLEAN_S + KIT_DISTORTED_S) / CORES / 3600
    mpl_hours = half * 2 * t_mpng / CORES / 3600
    print(f"  same for matplotlib PNG pages (clean only!): {mpl_hours:.1f} h; "
          f"ecg-image-kit anchor: {kit_hours:.0f} h")


if __name__ == "__main__":
    main()
