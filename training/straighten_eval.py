"""How well :func:`pulse_app.straighten.propose_straightening` recovers rotation and perspective.

Ground truth from the project's renderer: every page is drawn from a real record of
``../shared/data`` and photographed by :mod:`pulse_app.ecg.distort`, whose sidecar keeps the
page-to-image homography. Two disjoint sets (records *and* seeds differ):

- ``tuning``: the 6 CinC 2021 records of ``ecg-records/``, render seeds 1000 + i: what the
  method's constants were tuned on;
- ``evaluation``: every readable record of ``cpsc2018/`` (+ ``snomed-format/``), ``ptbxl/`` and
  ``cinc-rare-rhythms/``, render seeds i: never looked at while tuning.

Each page draws its grid (red, pink, grey, green, none), layout, header and framing from a
seeded generator: 3 in 4 are ``"phone"`` photos (whole page in view, rotated up to ±30°,
perspective, light, blur, noise, JPEG); 1 in 4 are tight ``"scan"`` shots (rotated up to ±10°
about the centre, corners cut off by the frame, paper effects, noise, JPEG).

Measured per page, with C = (proposed rectification) o (true page-to-image homography), which
maps the page onto the straightened output:

- residual rotation: angle of the page's horizontal midline after C (degrees);
- corner error: proposed corners taken back to page coordinates, mean distance to the true page
  corners, as a fraction of the page width;
- square error: |horizontal / vertical scale of C at the page centre - 1| (grid squares square);
- failure: no proposal, residual rotation over 3°, or corner error over 5 % of the width.

    python -m training.straighten_eval [--set evaluation|tuning] [--pages-per-record 10]
                                       [--save /tmp/straighten-eval]

The real photos and scans of ``../shared/data/ecg-images`` have no homography to compare with;
``--real FOLDER`` writes each one's before (the proposed page outlined) and after images there
(a folder outside the repository: the pictures are third-party) and prints the angle found
next to one measured by hand from its grid lines (:data:`HAND_MEASURED`):

    python -m training.straighten_eval --real /tmp/straighten-real
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pulse_app.ecg.records import read_record
from pulse_app.ecg.render import page_size_px, render_ecg
from pulse_app.errors import RecordUnreadable
from pulse_app.straighten import propose_straightening

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = {
    "tuning": (("ecg-records",), 1000),
    "evaluation": (("cpsc2018", "cpsc2018/snomed-format", "ptbxl", "cinc-rare-rhythms"), 0),
}
GRIDS = ("red", "pink", "grey", "green", "none")
GRID_WEIGHTS = (0.25, 0.2, 0.2, 0.2, 0.15)
LAYOUTS = ("3x4+II", "3x4", "6x2", "12x1", "3x4+II,V1,V5")
FAIL_ROTATION_DEG = 3.0
FAIL_CORNER = 0.05
#: Two points (x, y in the image's pixels) far apart on one horizontal grid line of each real
#: picture, read by eye from zoomed crops (the line followed through crops in between), and a
#: note. The hand angle is atan2(dy, dx): the same sign as ``Proposal.angle_deg`` (the turn
#: that levels the page, counter-clockwise; a line rising to the right gives a negative one).
HAND_MEASURED = {
    "00002_hr-0.png": ((100, 834.5), (2100, 834.5), "rendered by ecg-image-kit"),
    "00004_hr-0.png": ((100, 834.5), (2100, 834.5), "rendered by ecg-image-kit"),
    "JS00001-0.png": ((100, 858.5), (2100, 858.5), "rendered by ecg-image-kit"),
    "ecg00008.jpg": ((40, 221.9), (600, 220.5), "close-up photo; lines curve: the top one "
                     "rises 8.7 px (-0.86 deg), the bottom one 6.5 px (-0.66 deg)"),
    "ecg00010.png": ((30, 197.5), (740, 197.5), "digital printout"),
    "ecg00020.jpg": ((40, 164.7), (1140, 165.0), "grey scan"),
    "ecg00030.jpg": ((100, 201.2), (1100, 210.0), "photo; the line bends (0.8 deg on the left, "
                     "0.2 deg on the right)"),
    "ecg00040.jpg": ((100, 301.3), (1100, 244.4), "photo at an angle; 3.5 deg on the left, "
                     "2.9 deg on the right"),
    "ecg00053.png": ((60, 861.5), (2120, 861.5), "machine page"),
    "fullScan.png": ((40, 851.5), (2100, 851.5), "GE printout"),
}


@dataclass
class Page:
    record: str
    seed: int
    grid: str
    layout: str
    header: bool
    framing: str            # "phone" or "scan"
    true_angle_deg: float   # tilt of the page midline in the photo


def page_specs(set_name: str, data_dir: Path = DATA, pages_per_record: int = 10):
    """(record path, Page) for every page of a set, deterministic."""
    dirs, seed0 = SETS[set_name]
    paths = [p for d in dirs for p in sorted((data_dir / d).glob("*.hea"))]
    out = []
    for r_index, path in enumerate(paths):
        for i in range(pages_per_record):
            seed = seed0 + i
            rng = np.random.default_rng([seed, r_index, 7])
            grid = str(rng.choice(GRIDS, p=GRID_WEIGHTS))
            layout = str(rng.choice(LAYOUTS))
            header = bool(rng.random() < 0.7)
            framing = "phone" if rng.random() < 0.75 else "scan"
            out.append((path, Page(path.stem, seed, grid, layout, header, framing, 0.0)))
    return out


def distortion(framing: str, seed: int):
    """The renderer's distort argument for a framing."""
    if framing == "phone":
        return "phone"
    rng = np.random.default_rng([seed, 11])
    return {"yellowing": True, "rotation": {"angle_deg": round(float(rng.uniform(-10, 10)), 2)},
            "crop_pad": {"scale": 1.0, "shift": [0.0, 0.0]}, "noise": True, "jpeg": True}


def _apply(m, pts):
    p = np.c_[pts, np.ones(len(pts))] @ np.asarray(m).T
    return p[:, :2] / p[:, 2:]


def midline_angle(m, width, height) -> float:
    """Angle (degrees, image y down) of the page's horizontal midline mapped by ``m``."""
    a, b = _apply(m, np.array([[0, height / 2], [width, height / 2]], float))
    return math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))


def score(proposal, page_to_image, width, height) -> dict:
    """Residual rotation, corner error and square error of one proposal (see the docstring)."""
    h_true = np.asarray(page_to_image, float)
    true_angle = midline_angle(h_true, width, height)
    if proposal.corners is None:
        return {"found": False, "rotation_deg": abs(true_angle), "corner_error": math.nan,
                "square_error": math.nan, "true_angle_deg": true_angle}
    quad = np.asarray(proposal.corners, float)
    w, h = proposal.page_size
    rect = cv2.getPerspectiveTransform(
        quad.astype(np.float32),
        np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])).astype(float)
    c = rect @ h_true
    rotation = midline_angle(c, width, height)
    on_page = _apply(np.linalg.inv(h_true), quad)
    truth = np.array([[0, 0], [width, 0], [width, height], [0, height]], float)
    corner = float(np.mean(np.linalg.norm(on_page - truth, axis=1)) / width)
    centre = np.array([[width / 2, height / 2], [width / 2 + 1, height / 2],
                       [width / 2, height / 2 + 1]])
    p0, px, py = _apply(c, centre)
    square = abs(np.linalg.norm(px - p0) / np.linalg.norm(py - p0) - 1.0)
    return {"found": True, "rotation_deg": abs(rotation), "corner_error": corner,
            "square_error": float(square), "true_angle_deg": true_angle}


def failed(row: dict) -> bool:
    return (not row["found"]) or row["rotation_deg"] > FAIL_ROTATION_DEG or \
        not row["corner_error"] <= FAIL_CORNER


def evaluate(set_name: str, pages_per_record: int = 10, data_dir: Path = DATA,
             save: Path | None = None, limit: int | None = None, verbose: bool = False):
    rows = []
    records = {}
    specs = page_specs(set_name, data_dir, pages_per_record)
    if limit:
        specs = specs[:limit]
    skipped = set()
    for path, page in specs:
        if path not in records:
            try:
                records[path] = read_record(path)
            except RecordUnreadable:
                records[path] = None
        record = records[path]
        if record is None:
            skipped.add(path.name)
            continue
        out = render_ecg(record, layout=page.layout, grid=page.grid, header=page.header,
                         distort=distortion(page.framing, page.seed), seed=page.seed)
        width, height = page_size_px(out.sidecar["dpi"])
        start = time.process_time()
        proposal = propose_straightening(out.image)
        seconds = time.process_time() - start
        row = score(proposal, out.sidecar["page_to_image"], width, height)
        row.update(page.__dict__, method=proposal.method, confidence=proposal.confidence,
                   seconds=seconds, true_angle_deg=row["true_angle_deg"])
        row["failed"] = failed(row)
        rows.append(row)
        if verbose:
            print(f"{page.record:8s} s{page.seed:<5d} {page.grid:5s} {page.layout:13s} "
                  f"{page.framing:5s} true {row['true_angle_deg']:6.1f}  {proposal.method:15s} "
                  f"rot {row['rotation_deg']:6.2f}  corner {row['corner_error']:.4f}  "
                  f"sq {row['square_error']:.4f}{'  FAIL' if row['failed'] else ''}", flush=True)
        if save is not None and (row["failed"] or len(rows) <= 12):
            _save_pair(save, len(rows), page, out.image, proposal)
    return rows, sorted(skipped)


def _save_pair(folder: Path, index: int, page: Page, image, proposal) -> None:
    from pulse_app.straighten import apply_straightening

    folder.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(image).copy()
    if proposal.corners is not None:
        cv2.polylines(arr, [np.int32(np.round(proposal.corners))], True, (0, 160, 255), 4)
    name = f"{index:03d}-{page.record}-s{page.seed}-{page.grid}-{page.framing}"
    cv2.imwrite(str(folder / f"{name}-before.jpg"), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 80])
    if proposal.corners is not None:
        flat = apply_straightening(image, proposal.corners, proposal.page_size)
        flat.save(folder / f"{name}-after.jpg", quality=80)


def _stats(rows: list[dict]) -> dict:
    rot = np.array([r["rotation_deg"] for r in rows])
    corner = np.array([r["corner_error"] for r in rows if r["found"]])
    square = np.array([r["square_error"] for r in rows if r["found"]])
    return {"n": len(rows), "rot_median": float(np.median(rot)) if len(rot) else math.nan,
            "rot_p95": float(np.percentile(rot, 95)) if len(rot) else math.nan,
            "corner_median": float(np.median(corner)) if len(corner) else math.nan,
            "corner_p95": float(np.percentile(corner, 95)) if len(corner) else math.nan,
            "square_median": float(np.median(square)) if len(square) else math.nan,
            "failures": sum(r["failed"] for r in rows),
            "none": sum(not r["found"] for r in rows)}


def print_table(rows: list[dict], title: str) -> None:
    print(title)
    head = (f"{'group':22s}{'pages':>6s}{'rot med':>9s}{'rot p95':>9s}{'corner med':>12s}"
            f"{'corner p95':>12s}{'square med':>12s}{'failed':>8s}{'none':>6s}")
    print(head)
    print("-" * len(head))
    groups = [("all", rows)]
    for key in ("framing", "grid", "layout", "method"):
        for value in sorted({r[key] for r in rows}):
            groups.append((f"{key}={value}", [r for r in rows if r[key] == value]))
    for name, group in groups:
        s = _stats(group)
        print(f"{name:22s}{s['n']:6d}{s['rot_median']:8.2f}°{s['rot_p95']:8.2f}°"
              f"{100 * s['corner_median']:11.2f}%{100 * s['corner_p95']:11.2f}%"
              f"{100 * s['square_median']:11.2f}%{100 * s['failures'] / max(1, s['n']):7.1f}%"
              f"{s['none']:6d}")


def hand_angle(name: str) -> float | None:
    """The hand-measured angle (degrees, Proposal.angle_deg's sign) of a real picture."""
    if name not in HAND_MEASURED:
        return None
    (x0, y0), (x1, y1), _ = HAND_MEASURED[name]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def real_images(out: Path, data_dir: Path = DATA) -> list[dict]:
    """Straighten every real picture: before/after JPEGs in ``out``, one row each."""
    from pulse_app.intake import load_image
    from pulse_app.readability import check_readability
    from pulse_app.straighten import analyse_page, apply_straightening, proposal_from

    repo = Path(__file__).resolve().parent.parent
    if out.resolve().is_relative_to(repo):
        raise SystemExit(f"{out} is inside the repository; the pictures are third-party: "
                         "write them outside it (e.g. /tmp/straighten-real)")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted((data_dir / "ecg-images").iterdir()):
        image = load_image(path).image
        start = time.process_time()
        analysis = analyse_page(image)
        proposal = proposal_from(analysis)
        seconds = time.process_time() - start
        findings = check_readability(image, analysis=analysis)
        before = np.asarray(image).copy()
        if proposal.corners is not None:
            width = max(2, round(max(image.size) / 400))
            cv2.polylines(before, [np.int32(np.round(proposal.corners))], True, (0, 160, 255),
                          width, cv2.LINE_AA)
            apply_straightening(image, proposal.corners, proposal.page_size).save(
                out / f"{path.stem}-after.jpg", quality=90)
        Image.fromarray(before).save(out / f"{path.stem}-before.jpg", quality=90)
        rows.append({"name": path.name, "size": image.size, "method": proposal.method,
                     "confidence": proposal.confidence, "found": proposal.angle_deg,
                     "hand": hand_angle(path.name), "seconds": seconds,
                     "findings": [f.kind for f in findings], "message": proposal.message})
    return rows


def print_real(rows: list[dict], out: Path) -> None:
    print(f"real pictures of ../shared/data/ecg-images: before/after images in {out}")
    print("angles in degrees: the turn that levels the page (counter-clockwise; negative = the "
          "page's lines rise to the right)")
    print(f"{'picture':16s}{'size':>11s}  {'method':16s}{'conf':>5s}{'found':>8s}{'hand':>8s}"
          f"{'diff':>7s}{'CPU s':>7s}  readability")
    for r in rows:
        hand = r["hand"]
        diff = "" if hand is None else f"{r['found'] - hand:7.2f}"
        size = f"{r['size'][0]}x{r['size'][1]}"
        print(f"{r['name']:16s}{size:>11s}  {r['method']:16s}{r['confidence']:5.2f}"
              f"{r['found']:8.2f}{'' if hand is None else f'{hand:8.2f}'}{diff}"
              f"{r['seconds']:7.2f}  {', '.join(r['findings']) or 'nothing to warn about'}")
    diffs = [abs(r["found"] - r["hand"]) for r in rows if r["hand"] is not None]
    print(f"|found - hand|: median {np.median(diffs):.2f}, max {max(diffs):.2f} degrees over "
          f"{len(diffs)} pictures")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=tuple(SETS), default="evaluation")
    ap.add_argument("--pages-per-record", type=int, default=10)
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--limit", type=int, help="only the first N pages (quick looks)")
    ap.add_argument("--save", type=Path, help="write before/after JPEGs of failures (and the "
                    "first pages) here; outside the repository: images from third-party records")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per page")
    ap.add_argument("--real", type=Path, metavar="FOLDER", help="instead: straighten the real "
                    "pictures of ecg-images into FOLDER (outside the repository) and compare "
                    "with the hand-measured angles")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    if args.real:
        print_real(real_images(args.real, args.data), args.real)
        return
    rows, skipped = evaluate(args.set, args.pages_per_record, args.data, args.save, args.limit,
                             args.verbose)
    seconds = [r["seconds"] for r in rows]
    print_table(rows, f"straightening, {args.set} set: {len(rows)} rendered pages "
                      f"({len({r['record'] for r in rows})} records); median "
                      f"{np.median(seconds):.3f} CPU s per 2200x1700 photo")
    if skipped:
        print(f"records the reader refused (skipped): {', '.join(skipped)}")
    s = _stats(rows)
    met = s["rot_median"] <= 0.5 and s["rot_p95"] <= 1.5 and s["corner_median"] <= 0.01
    rate = 100 * s["failures"] / max(1, s["n"])
    print(f"targets (rotation median <= 0.5°, p95 <= 1.5°, corner median <= 1 %): "
          f"{'met' if met else 'NOT met'}; failure rate {rate:.1f} %")


if __name__ == "__main__":
    main()
