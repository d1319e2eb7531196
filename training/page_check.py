"""Checks of rendered pages read from their sidecars: no text touches the traces' ink.

Every text the renderer draws (lead labels, header lines) is listed in the sidecar with its box
(:func:`pulse_app.ecg.render.render_ecg`). A page is rendered once with ``draw_text=False`` (same
geometry, same sidecar, the texts left out of the pixels), and the trace ink inside each text's
box, grown by 1 px (touching counts), is counted: it must be 0.

    python -m training.page_check [--pages 500] [--seed 0] [--records DIR ...]

Pages vary over the layouts (500 each by default), gain 5/10/20 mm/mV, speed 25/50 mm/s, every
header style and 100/150/200 dpi; records are simulated (:func:`pulse_app.ecg.simulate.random_findings`,
a new seed per page) and, with ``--records``, real ones too (every 10th page). Half the pages are
clean (ink = any pixel darker than the paper, anti-aliasing included); the other half are folded
(creases, wrinkles) and photographed at an angle (rotation, perspective, crop), where ink = the
dark core of the line (every channel < 64: fold shading never gets paper that dark, the table
around the page is green). Prints a table per layout (labels: placed; label px: trace-ink pixels touching them; pages>0: pages where any did;
unlabelled: panels with no free place for a label; texts, text px: the same for header lines;
cut off: texts a photo's framing left outside the picture); the exit status is 1 if any label
touched ink.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from pulse_app.ecg.records import find_records, read_record
from pulse_app.ecg.render import render_ecg
from pulse_app.ecg.simulate import ecg_simulate, random_findings
from pulse_app.errors import PulseError

LAYOUTS = ("3x4", "3x4+II", "3x4+II,V1,V5", "6x2", "12x1")
HEADERS = (True, "neutral", False, "machine")
#: Distortions of the folded pages: paper folds, then a camera at an angle (over a green table,
#: which no ink threshold mistakes for ink).
FOLDED = {"wrinkles": True, "creases": True, "rotation": {"background": [40, 200, 40]},
          "perspective": True, "crop_pad": True}


def text_ink_overlap(record, **render_kwargs) -> dict:
    """Trace-ink pixels inside the boxes of the page's texts (grown by 1 px), by text kind.

    Returns ``{"label_px", "other_px", "labels", "texts", "outside", "unlabelled"}``: ink pixels
    touching lead labels and other texts, how many labels and other texts were drawn, how many
    texts a photo's framing left outside the picture, panels left unlabelled.
    ``grid`` is forced to "none" (the grid does not move anything).

    >>> from pulse_app.ecg.simulate import ecg_simulate
    >>> text_ink_overlap(ecg_simulate(seed=2), dpi=100)["label_px"]
    0
    """
    distort = render_kwargs.get("distort", "none")
    out = render_ecg(record, **{**render_kwargs, "grid": "none", "draw_text": False})
    if distort in ("none", None):
        ink = out.pixels.min(axis=2) < 250
    else:
        ink = out.pixels.max(axis=2) < 64
    h, w = ink.shape
    result = {"label_px": 0, "other_px": 0, "labels": 0, "texts": 0, "outside": 0,
              "unlabelled": list(out.sidecar["unlabelled"])}
    for text in out.sidecar["texts"]:
        label = text["kind"] == "lead_label"
        result["labels" if label else "texts"] += 1
        x0, y0, x1, y1 = text["box"]
        if x1 <= x0 or y1 <= y0:         # outside the picture (a photo that cut it off)
            result["outside"] += 1
            continue
        x0, y0 = max(0, int(np.floor(x0)) - 1), max(0, int(np.floor(y0)) - 1)
        x1, y1 = min(w, int(np.ceil(x1)) + 1), min(h, int(np.ceil(y1)) + 1)
        result["label_px" if label else "other_px"] += int(ink[y0:y1, x0:x1].sum())
    return result


def page_settings(layout: str, k: int, rng: np.random.Generator) -> dict:
    """The render settings of page ``k`` (deterministic)."""
    return {"layout": layout, "gain_mm_mV": float(rng.choice([5.0, 10.0, 10.0, 20.0])),
            "speed_mm_s": float(rng.choice([25.0, 25.0, 50.0])), "header": HEADERS[k % 4],
            "dpi": float(rng.choice([100.0, 150.0, 200.0])),
            "distort": "none" if k % 2 == 0 else FOLDED, "seed": int(rng.integers(2**31))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.page_check",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=500, help="pages per layout (default 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS))
    ap.add_argument("--records", nargs="*", default=[], help="real records (files or folders) "
                    "mixed in as every 10th page")
    args = ap.parse_args(argv)
    real = []
    for path in find_records(args.records) if args.records else []:
        try:
            real.append(read_record(path))
        except PulseError as error:
            print(f"skipped {path}: {error}", file=sys.stderr)
    print(f"{'layout':14s}{'pages':>6s}{'real':>6s}{'labels':>8s}{'label px':>9s}{'pages>0':>8s}"
          f"{'unlabelled':>11s}{'texts':>7s}{'text px':>8s}{'cut off':>8s}{'s/page':>8s}")
    worst = 0
    for layout in args.layouts:
        rng = np.random.default_rng([args.seed, sum(map(ord, layout))])
        totals = {"label_px": 0, "other_px": 0, "labels": 0, "texts": 0, "outside": 0,
                  "unlabelled": 0}
        bad_pages = n_real = 0
        start = time.process_time()
        for k in range(args.pages):
            settings = page_settings(layout, k, rng)
            if real and k % 10 == 9:
                record = real[(k // 10) % len(real)]
                n_real += 1
            else:
                sim_seed = int(rng.integers(2**31))
                record = ecg_simulate(random_findings(sim_seed), seed=sim_seed, noise_mV=0.01)
            got = text_ink_overlap(record, **settings)
            for key in ("label_px", "other_px", "labels", "texts", "outside"):
                totals[key] += got[key]
            totals["unlabelled"] += len(got["unlabelled"])
            bad_pages += got["label_px"] > 0
        per_page = (time.process_time() - start) / max(1, args.pages)
        worst = max(worst, totals["label_px"])
        print(f"{layout:14s}{args.pages:6d}{n_real:6d}{totals['labels']:8d}{totals['label_px']:9d}"
              f"{bad_pages:8d}{totals['unlabelled']:11d}{totals['texts']:7d}{totals['other_px']:8d}"
              f"{totals['outside']:8d}{per_page:8.3f}")
    print("labels touching trace ink: " + ("none" if worst == 0 else "YES"))
    return 0 if worst == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
