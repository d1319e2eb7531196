"""Confusion table of :func:`pulse_app.readability.check_readability` on known-good and known-bad
pictures.

Conditions (the truth of each picture):

- ``clean``: rendered pages from real records as printed (``distort="none"``), as phone photos
  (``"photo"``: tilt, perspective, shadow, blur up to 0.2 mm, noise, JPEG) and as hand-held
  photos of the whole page (``"phone"``); and the real photos and scans of
  ``../shared/data/ecg-images`` (all readable);
- ``blurred``: a rendered page (as printed or as a phone photo at full scale) with a Gaussian
  blur of 0.6-1.2 mm of paper (clean photos keep the renderer's blur: up to 0.2 mm of the
  picture, 0.4 mm of paper on pages zoomed out to half size);
- ``dark``: brightness times 0.08-0.25, plus sensor noise;
- ``overexposed``: a gamma of 0.12-0.25 (white paper, pale grid and ink), then a gain;
- ``small``: the page shrunk to 18-35 % of the frame's width on a table;
- ``non-ECG``: pages of text, ruled notebook paper, sensor noise, smooth photo-like gradients
  with blobs, and cartoon-like shapes (drawn here, never from a third party).

Two sets, as for the straightening: ``tuning`` (records of ``ecg-records/``, seeds 1000 + i,
what the thresholds were set on) and ``evaluation`` (every other readable record, seeds i).
A picture counts as flagged for a condition when a finding of that kind is returned; a clean
picture is right when nothing is returned.

    python -m training.readability_eval [--set evaluation|tuning] [--per-condition 30]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pulse_app.ecg.records import read_record
from pulse_app.ecg.render import GRIDS, render_ecg
from pulse_app.errors import RecordUnreadable
from pulse_app.intake import load_image
from pulse_app.readability import KINDS, check_readability

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = {
    "tuning": (("ecg-records",), 1000),
    "evaluation": (("cpsc2018", "cpsc2018/snomed-format", "ptbxl", "cinc-rare-rhythms"), 0),
}
CONDITIONS = ("clean", "blurred", "dark", "overexposed", "small", "non-ECG")
#: The finding kind that is right for each bad condition.
EXPECTED = {"blurred": "blurred", "dark": "dark", "overexposed": "overexposed",
            "small": "small", "non-ECG": "no_ecg"}
LAYOUTS = ("3x4+II", "3x4", "6x2", "12x1", "3x4+II,V1,V5")
_WORDS = ("patient", "report", "the", "and", "results", "blood", "pressure", "normal", "date",
          "signed", "clinic", "of", "to", "follow", "up", "weeks", "dose", "mg", "daily")


def _records(set_name: str, data_dir: Path):
    dirs, seed0 = SETS[set_name]
    out = []
    for path in (p for d in dirs for p in sorted((data_dir / d).glob("*.hea"))):
        try:
            out.append(read_record(path))
        except RecordUnreadable:
            continue
    return out, seed0


def _page(record, rng, seed, distort=None):
    grid = str(rng.choice([g for g in GRIDS]))
    layout = str(rng.choice(LAYOUTS))
    distort = distort or str(rng.choice(["none", "photo", "phone"]))
    return render_ecg(record, layout=layout, grid=grid, header=bool(rng.random() < 0.7),
                      distort=distort, seed=seed).pixels


def blurred(page: np.ndarray, rng) -> np.ndarray:
    sigma_px = rng.uniform(0.6, 1.2) * 200 / 25.4
    return cv2.GaussianBlur(page, (0, 0), sigma_px)


def dark(page: np.ndarray, rng) -> np.ndarray:
    out = page.astype(np.float32) * rng.uniform(0.08, 0.25)
    out += rng.normal(0, rng.uniform(1.0, 3.0), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def overexposed(page: np.ndarray, rng) -> np.ndarray:
    out = 255.0 * (page.astype(np.float32) / 255.0) ** rng.uniform(0.12, 0.25)
    return np.clip(out * rng.uniform(1.0, 1.15), 0, 255).astype(np.uint8)


def small(page: np.ndarray, rng) -> np.ndarray:
    h, w = page.shape[:2]
    share = rng.uniform(0.18, 0.35)
    pw, ph = int(w * share), int(h * share)
    table = np.empty_like(page)
    table[:] = rng.integers(30, 160, 3)
    table = np.clip(table + rng.normal(0, 4, table.shape), 0, 255).astype(np.uint8)
    x, y = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
    table[y:y + ph, x:x + pw] = cv2.resize(page, (pw, ph), interpolation=cv2.INTER_AREA)
    return table


def non_ecg(kind: str, rng, size=(2200, 1700)) -> np.ndarray:
    """A picture with no ECG in it: text, ruled paper, noise, gradient, shapes."""
    w, h = size
    if kind == "text":
        img = np.full((h, w, 3), 250, np.uint8)
        y = 120
        while y < h - 80:
            words = " ".join(rng.choice(_WORDS, int(rng.integers(4, 12))))
            cv2.putText(img, words, (100, y), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (20, 20, 25), 3,
                        cv2.LINE_AA)
            y += int(rng.integers(60, 90))
        angle = rng.uniform(-20, 20)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, rng.uniform(0.7, 0.95))
        return cv2.warpAffine(img, m, (w, h), borderValue=tuple(int(v) for v in
                                                                 rng.integers(40, 140, 3)))
    if kind == "ruled":
        img = np.full((h, w, 3), (250, 250, 240), np.uint8)
        for y in range(150, h, 60):
            cv2.line(img, (0, y), (w, y), (200, 170, 140), 3)
        cv2.line(img, (200, 0), (200, h), (120, 120, 230), 3)
        return img
    if kind == "noise":
        return rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    if kind == "gradient":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([(xx / w) * rng.uniform(80, 255), (yy / h) * rng.uniform(80, 255),
                         np.full_like(xx, rng.uniform(40, 200))], 2)
        for _ in range(6):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(100, 500)
            base += rng.uniform(-80, 80) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2)
                                                  / (2 * r * r))[..., None]
        return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
    img = np.empty((h, w, 3), np.uint8)                           # shapes
    img[:] = rng.integers(0, 255, 3)
    for _ in range(25):
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            cv2.circle(img, (int(rng.uniform(0, w)), int(rng.uniform(0, h))),
                       int(rng.uniform(30, 300)), colour, -1, cv2.LINE_AA)
        else:
            x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
            cv2.rectangle(img, (x, y), (x + int(rng.uniform(50, 600)),
                                        y + int(rng.uniform(50, 600))), colour, -1)
    return cv2.GaussianBlur(img, (0, 0), 2.0)


NON_ECG_KINDS = ("text", "ruled", "noise", "gradient", "shapes")


def pictures(set_name: str, per_condition: int = 30, data_dir: Path = DATA):
    """(condition, name, RGB array) for every test picture of a set, deterministic."""
    records, seed0 = _records(set_name, data_dir)
    degrade = {"blurred": blurred, "dark": dark, "overexposed": overexposed, "small": small}
    for condition in CONDITIONS:
        for i in range(per_condition):
            seed = seed0 + i
            rng = np.random.default_rng([seed, CONDITIONS.index(condition), 3])
            if condition == "non-ECG":
                kind = NON_ECG_KINDS[i % len(NON_ECG_KINDS)]
                yield condition, f"{kind}-{seed}", non_ecg(kind, rng)
                continue
            record = records[i % len(records)]
            page = _page(record, rng, seed,
                         str(rng.choice(["none", "photo"])) if condition == "blurred" else None)
            if condition != "clean":
                page = degrade[condition](page, rng)
            yield condition, f"{record.record_id}-{seed}", page
    if set_name == "evaluation":
        for path in sorted((data_dir / "ecg-images").glob("*")):
            yield "clean", f"real:{path.name}", np.asarray(load_image(path).image)


def evaluate(set_name: str, per_condition: int = 30, data_dir: Path = DATA,
             verbose: bool = False):
    rows = []
    for condition, name, pixels in pictures(set_name, per_condition, data_dir):
        start = time.process_time()
        findings = check_readability(Image.fromarray(pixels))
        seconds = time.process_time() - start
        kinds = [f.kind for f in findings]
        rows.append({"condition": condition, "name": name, "kinds": kinds, "seconds": seconds})
        if verbose:
            details = "; ".join(f"{f.kind} {f.value:.3g}" for f in findings)
            print(f"{condition:12s}{name:28s}{details or '-'}", flush=True)
    return rows


def print_table(rows: list[dict], title: str) -> None:
    print(title)
    columns = list(KINDS) + ["nothing"]
    print(f"{'truth':14s}{'pictures':>9s}" + "".join(f"{c:>13s}" for c in columns)
          + f"{'right':>9s}")
    right_all = 0
    for condition in CONDITIONS:
        group = [r for r in rows if r["condition"] == condition]
        if not group:
            continue
        counts = Counter(k for r in group for k in r["kinds"])
        counts["nothing"] = sum(not r["kinds"] for r in group)
        if condition == "clean":
            right = counts["nothing"]
        else:
            right = sum(EXPECTED[condition] in r["kinds"] for r in group)
        right_all += right
        print(f"{condition:14s}{len(group):9d}" + "".join(f"{counts[c]:13d}" for c in columns)
              + f"{100 * right / len(group):8.0f}%")
    print(f"right overall: {right_all} of {len(rows)} ({100 * right_all / len(rows):.1f} %); "
          "a picture may have several findings, so a row can add up to more than its count")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=tuple(SETS), default="evaluation")
    ap.add_argument("--per-condition", type=int, default=30)
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per picture")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    rows = evaluate(args.set, args.per_condition, args.data, args.verbose)
    real = sum(r["name"].startswith("real:") for r in rows)
    print_table(rows, f"readability check, {args.set} set: {len(rows)} pictures "
                      f"({real} real photos/scans among the clean ones); median "
                      f"{np.median([r['seconds'] for r in rows]):.3f} CPU s each")
    wrong = [r for r in rows if (r["condition"] == "clean" and r["kinds"]) or
             (r["condition"] != "clean" and EXPECTED[r["condition"]] not in r["kinds"])]
    if wrong:
        print("wrong: " + ", ".join(f"{r['condition']}/{r['name']} -> "
                                    f"{'+'.join(r['kinds']) or 'nothing'}" for r in wrong))


if __name__ == "__main__":
    main()
