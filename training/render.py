"""Batch rendering: ECG records -> paper-ECG PNGs + JSON sidecars, on every core.

    python -m training.render RECORD_OR_DIR... --out DIR [--layout 3x4+II] [--distort mix]
                              [--seed 0] [--workers N] [--variants K] [--grid red] [--dpi 200]

Records are any format :func:`pulse_app.ecg.records.read_record` reads (directories are searched).
Each record gives ``K`` variants ``DIR/<record>_<k>.png`` + ``DIR/<record>_<k>.json`` (the
renderer's sidecar, plus ``image``, ``source`` and ``variant``; ``--format jpg`` writes JPEGs).
Variant ``k`` of a record is the same image for the same ``--seed``, whatever the number of
workers or the order of the work. ``--layout`` and ``--grid`` may be given
several times: each variant then picks one (deterministically). ``--distort mix`` (default) is
the PULSE training mix: about half the pages clean, half distorted.

Resumable: a variant whose ``.json`` exists is skipped (the PNG is written first, the sidecar last,
both atomically). A record that cannot be read is reported by name and skipped; the others are
still rendered and the exit status is 1 at the end.

From Python, :func:`render_records` runs a list of :class:`Job` the same way; a job may also name
a record that a function makes (``load``, e.g. a simulator), give the renderer's seed of each
variant (``render_seeds``) and store its pages resized to a width (``width_px``; the sidecar's
``image_scale`` then maps its pixel coordinates onto the stored image).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from pulse_app.ecg.distort import KINDS
from pulse_app.ecg.records import Record, find_records, read_record
from pulse_app.ecg.render import GRIDS, parse_layout, render_ecg
from pulse_app.errors import PulseError

#: JPEG quality of ``--format jpg`` (distorted pages: ~0.6 MB and ~7 ms instead of ~4 MB and
#: ~0.1 s as PNG, because sensor noise does not compress).
JPEG_QUALITY = 92


@dataclass(frozen=True)
class Job:
    """Everything a worker needs for one record (all its variants)."""

    path: str                                 # a record file, or what ``load`` makes a record of
    out: str
    layouts: tuple[str, ...] = ("3x4+II",)
    grids: tuple[str, ...] = ("red",)
    distort: str = "mix"
    seed: int = 0
    variants: int = 1
    dpi: float = 200.0
    speed_mm_s: float = 25.0
    gain_mm_mV: float = 10.0
    png_compression: int = 1
    image_format: str = "png"
    #: path -> Record, a module-level function (workers get it by name)
    load: Callable[[str], Record] = read_record
    #: the renderer's seed of each variant; empty: :func:`variant_seed` of ``seed``
    render_seeds: tuple[int, ...] = ()
    #: store each page resized to this width in pixels (bicubic); None: as rendered
    width_px: int | None = None


def output_name(path: str | Path) -> str:
    """File-name stem for a record path: ``.../E07509.hea`` -> ``E07509``; HDF5 ``f.hdf5#12`` -> ``f-12``."""
    text = str(path)
    base, _, selector = text.partition("#")
    stem = Path(base).stem
    return f"{stem}-{selector}" if selector else stem


def variant_seed(seed: int, variant: int) -> int:
    """Renderer seed of one variant (independent streams for every (seed, variant))."""
    return int(np.random.SeedSequence([seed, variant]).generate_state(1)[0])


def encode_image(pixels: np.ndarray, image_format: str = "png", png_compression: int = 1) -> bytes:
    """RGB pixels -> PNG (zlib level ``png_compression``, "up" row filter: on these pages ~2x
    faster than libpng's adaptive filters and as small) or JPEG (quality :data:`JPEG_QUALITY`)."""
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if image_format == "png":
        options = [cv2.IMWRITE_PNG_COMPRESSION, png_compression,
                   cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    else:
        options = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    ok, data = cv2.imencode(f".{image_format}", bgr, options)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image_format} image")
    return data.tobytes()


def write_page(record, folder: str | Path, stem: str, *, seed: int, layout: str = "3x4+II",
               grid: str = "red", dpi: float = 200.0, speed_mm_s: float = 25.0,
               gain_mm_mV: float = 10.0, distort: str = "mix", image_format: str = "png",
               png_compression: int = 1, width_px: int | None = None) -> dict:
    """Render one :class:`~pulse_app.ecg.records.Record` into ``folder/<stem>.<image_format>``
    (written atomically) and return the renderer's sidecar with ``image`` set to that name.
    ``width_px``: store the page resized to this width (bicubic); the sidecar's
    ``image_scale`` maps its coordinates onto the stored image. The one record -> page step
    of every batch (this CLI, the instruction-data builder, the mini model)."""
    out = render_ecg(record, layout=layout, grid=grid, dpi=dpi, speed_mm_s=speed_mm_s,
                     gain_mm_mV=gain_mm_mV, distort=distort, seed=seed)
    pixels, sidecar = out.pixels, dict(out.sidecar)
    if width_px:
        height = round(out.image.height * width_px / out.image.width)
        pixels = np.asarray(out.image.resize((width_px, height), Image.BICUBIC))
        sidecar["image_scale"] = width_px / out.image.width
    name = f"{stem}.{image_format}"
    _write_atomic(Path(folder, name), encode_image(pixels, image_format, png_compression))
    return {**sidecar, "image": name}


def _pending(job: Job) -> list[int]:
    stem = output_name(job.path)
    return [k for k in range(job.variants) if not Path(job.out, f"{stem}_{k}.json").exists()]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def render_job(job: Job) -> tuple[str, int, str | None]:
    """Render the missing variants of one record. Returns (path, images written, error or None)."""
    pending = _pending(job)
    if not pending:
        return job.path, 0, None
    try:
        record = job.load(job.path)
    except PulseError as err:
        return job.path, 0, str(err)
    except Exception as err:      # a corrupt file in a format library: report it, keep going
        return job.path, 0, f"{type(err).__name__}: {err}"
    stem = output_name(job.path)
    written = 0
    for k in pending:
        seed = job.render_seeds[k] if job.render_seeds else variant_seed(job.seed, k)
        pick = np.random.default_rng([seed, zlib.crc32(record.record_id.encode())])
        layout = job.layouts[int(pick.integers(len(job.layouts)))]
        grid = job.grids[int(pick.integers(len(job.grids)))]
        try:
            sidecar = write_page(record, job.out, f"{stem}_{k}", seed=seed, layout=layout,
                                 grid=grid, dpi=job.dpi, speed_mm_s=job.speed_mm_s,
                                 gain_mm_mV=job.gain_mm_mV, distort=job.distort,
                                 image_format=job.image_format,
                                 png_compression=job.png_compression, width_px=job.width_px)
        except Exception as err:
            return job.path, written, f"cannot render: {type(err).__name__}: {err}"
        sidecar = {**sidecar, "source": job.path, "variant": k}
        _write_atomic(Path(job.out, f"{stem}_{k}.json"), json.dumps(sidecar).encode())
        written += 1
    return job.path, written, None


def _init_worker() -> None:
    cv2.setNumThreads(1)     # one process per core; OpenCV's own threads would fight them


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m training.render", description=__doc__.split("\n")[0])
    ap.add_argument("records", nargs="+", help="record files or directories (searched recursively)")
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--layout", action="append", help="3x4, 3x4+II (default), 3x4+II,V1,V5, 6x2, 12x1; "
                    "repeat to mix")
    ap.add_argument("--grid", action="append", help=f"{', '.join(GRIDS)} (default red); repeat to mix")
    ap.add_argument("--distort", default="mix", choices=("none", "photo", "phone", "all", "mix"),
                    help="mix (default): ~half clean, half with random distortions: "
                    + ", ".join(KINDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", type=int, default=1, help="images per record (default 1)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dpi", type=float, default=200.0)
    ap.add_argument("--speed", type=float, default=25.0, help="paper speed, mm/s")
    ap.add_argument("--gain", type=float, default=10.0, help="gain, mm/mV")
    ap.add_argument("--png-compression", type=int, default=1, choices=range(10), metavar="0-9",
                    help="zlib level of the PNGs (default 1: fast)")
    ap.add_argument("--format", default="png", choices=("png", "jpg"),
                    help="image files: png (default, lossless) or jpg (quality 92; much smaller and "
                    "faster for distorted pages)")
    args = ap.parse_args(argv)
    args.layout = tuple(args.layout or ["3x4+II"])
    args.grid = tuple(args.grid or ["red"])
    for layout in args.layout:
        try:
            parse_layout(layout)
        except ValueError as err:
            ap.error(str(err))
    for grid in args.grid:
        if grid not in GRIDS:
            ap.error(f"unknown grid {grid!r}: use {', '.join(GRIDS)}")
    if args.variants < 1 or args.workers < 1:
        ap.error("--variants and --workers must be at least 1")
    return args


def render_records(jobs: list[Job], workers: int = 1,
                   desc: str = "rendering") -> tuple[int, int, list[tuple[str, str]]]:
    """Render every job's missing variants on ``workers`` processes. Returns (images written,
    jobs already done, [(path, error)] of the records that failed)."""
    for out in {job.out for job in jobs}:
        Path(out).mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs if _pending(j)]
    failed: list[tuple[str, str]] = []
    written, cv2_threads = 0, cv2.getNumThreads()
    bar = tqdm(total=len(todo), unit="record", desc=desc, file=sys.stderr)
    if workers == 1 or len(todo) <= 1:
        _init_worker()
        results = map(render_job, todo)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(min(workers, len(todo)), _init_worker)
        results = pool.imap_unordered(render_job, todo, chunksize=1)
    try:
        for path, n, error in results:
            written += n
            if error:
                failed.append((path, error))
                tqdm.write(f"skipped {path}: {error}", file=sys.stderr)
            bar.update(1)
    finally:
        bar.close()
        cv2.setNumThreads(cv2_threads)
        if pool is not None:
            pool.close()
            pool.join()
    return written, len(jobs) - len(todo), failed


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = find_records(args.records)
    jobs = [Job(str(p), str(out), args.layout, args.grid, args.distort, args.seed, args.variants,
                args.dpi, args.speed, args.gain, args.png_compression, args.format) for p in paths]
    written, done_before, failed = render_records(jobs, args.workers)
    print(f"{written} images written to {out}, {done_before} records already done, "
          f"{len(failed)} failed", file=sys.stderr)
    if failed:
        print("failed records: " + ", ".join(Path(p).name for p, _ in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
