"""The project's own example pages: simulated ECGs drawn by the project's renderer.

Two sets, both made from :func:`pulse_app.ecg.simulate.ecg_simulate` records only (no third-party
record or picture), reproducibly from a seed:

- :data:`EXAMPLES`: the app's Examples tab (``assets/examples/``): a spread of findings, clean
  printouts and photo-like pages. A deployer shows their own licensed pictures instead with
  ``PULSE_EXAMPLES_DIR`` (:mod:`pulse_app.settings`).
- :data:`GALLERY`: the renderer's gallery in the docs (``docs/gallery/`` + ``docs/gallery.md``):
  layouts, grids, headers, distortions, and the same pages before and after folding.

    python -m pulse_app.examples                 # assets/examples/   (make examples)
    python -m pulse_app.examples --gallery       # docs/gallery/ and docs/gallery.md (make gallery)

>>> [e.name for e in EXAMPLES][:2]
['01-sinus-rhythm', '02-atrial-fibrillation-photo']
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pulse_app.settings import ASSETS_DIR, REPO_ROOT

#: Resolution of the docs gallery's pages (the app's examples: 150 dpi).
GALLERY_DPI = 120
#: JPEG quality of the written pages.
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Example:
    """One page: file name (no suffix), simulator findings, renderer settings, a caption."""

    name: str
    findings: dict
    render: dict = field(default_factory=dict)
    caption: str = ""


_FOLDS = {"wrinkles": True, "creases": True}

EXAMPLES = (
    Example("01-sinus-rhythm", {"rate_bpm": 72}, {"header": "neutral"},
            "normal sinus rhythm, clean printout"),
    Example("02-atrial-fibrillation-photo", {"rhythm": "afib", "rate_bpm": 110},
            {"distort": "photo", "header": "neutral"}, "atrial fibrillation, phone photo"),
    Example("03-inferior-st-elevation", {"rate_bpm": 88, "st": {"inferior": 0.25, "lateral": -0.1}},
            {"header": "machine"}, "inferior ST elevation, machine printout with measurements"),
    Example("04-left-bundle-branch-block", {"qrs": "lbbb", "rate_bpm": 80},
            {"layout": "6x2", "grid": "grey", "header": "neutral"}, "LBBB, 6×2 layout, grey grid"),
    Example("05-first-degree-av-block-folded", {"rate_bpm": 54, "pr_ms": 280},
            {"distort": {**_FOLDS, "yellowing": True}, "header": "neutral"},
            "sinus bradycardia, first-degree AV block, folded paper"),
    Example("06-atrial-flutter-photo", {"rhythm": "aflutter", "rate_bpm": 100},
            {"distort": "all", "header": "neutral", "layout": "3x4+II,V1,V5"},
            "atrial flutter, folded page photographed"),
    Example("07-rbbb-left-axis", {"qrs": "rbbb", "axis": "left", "rate_bpm": 66},
            {"layout": "12x1", "grid": "pink", "header": "neutral"},
            "RBBB with left axis deviation, 12×1 layout"),
    Example("08-ventricular-ectopics-photo", {"ectopy": "pvc", "rate_bpm": 78},
            {"distort": "photo", "header": "machine"}, "premature ventricular contractions, photo"),
)

GALLERY = (
    Example("clean-3x4+II-red", {"rate_bpm": 64}, {"layout": "3x4+II", "grid": "red"},
            "`layout=\"3x4+II\", grid=\"red\"`, 25 mm/s, 10 mm/mV, header from the record "
            "(a simulated record has measurements only)"),
    Example("clean-6x2-grey", {"rate_bpm": 112, "st": {"anterior": -0.15},
                               "t_inversion": ["anterior"]},
            {"layout": "6x2", "grid": "grey", "header": "neutral"},
            "`layout=\"6x2\", grid=\"grey\", header=\"neutral\"` (speed and gain only)"),
    Example("clean-12x1-pink-50mms", {"ectopy": "pac", "rate_bpm": 105},
            {"layout": "12x1", "grid": "pink", "speed_mm_s": 50, "header": False},
            "`layout=\"12x1\", grid=\"pink\", speed_mm_s=50, header=False` (5 s window)"),
    Example("photo", {"qrs": "lbbb", "rate_bpm": 76}, {"distort": "photo"},
            "`distort=\"photo\"`: yellowing, rotation, perspective, shadow, blur, noise, JPEG"),
    Example("all-distortions", {"rhythm": "afib", "rate_bpm": 95},
            {"layout": "3x4+II,V1,V5", "grid": "green", "distort": "all"},
            "`layout=\"3x4+II,V1,V5\", grid=\"green\", distort=\"all\"`: also wrinkles, creases, "
            "pen marks, crop"),
    Example("folds-before", {"rate_bpm": 70, "axis": "left"}, {"header": "neutral"},
            "before folding: a clean page"),
    Example("folds-after", {"rate_bpm": 70, "axis": "left"},
            {"header": "neutral", "distort": {"creases": {"lines": [[0.0, 0.5, 1.0, 0.52],
                                                                    [0.5, 0.0, 0.49, 1.0]],
                                                          "ridge": [1, -1]},
                                              "wrinkles": True}},
            "the same page folded in four and crumpled (`creases`, `wrinkles`): the grid and the "
            "traces bend where they cross a fold"),
    Example("folds-after-photo", {"rate_bpm": 70, "axis": "left"},
            {"header": "neutral", "distort": {"creases": {"lines": [[0.0, 0.5, 1.0, 0.52],
                                                                    [0.5, 0.0, 0.49, 1.0]],
                                                          "ridge": [1, -1]},
                                              "wrinkles": True, "rotation": True,
                                              "perspective": True, "shadow": True}},
            "the folded page photographed at an angle (`rotation`, `perspective`, `shadow`)"),
)


def render_example(example: Example, seed: int = 0, dpi: float = 150):
    """The :class:`~pulse_app.ecg.render.Rendered` page of ``example`` (deterministic)."""
    from pulse_app.ecg.render import render_ecg
    from pulse_app.ecg.simulate import ecg_simulate

    record = ecg_simulate(example.findings, seed=seed, noise_mV=0.01)
    return render_ecg(record, **{"dpi": dpi, "seed": seed, **example.render})


def write_pages(examples, folder: Path, seed: int = 0, dpi: float = 150) -> list[Path]:
    """Render ``examples`` into ``folder`` (created; its old pages removed): clean pages as PNG
    (flat colours: small and exact), distorted ones as JPEG (quality :data:`JPEG_QUALITY`)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for old in (*folder.glob("*.jpg"), *folder.glob("*.png")):
        old.unlink()
    written = []
    for example in examples:
        pixels = render_example(example, seed, dpi).pixels
        clean = example.render.get("distort", "none") == "none"
        path = folder / f"{example.name}.{'png' if clean else 'jpg'}"
        options = ([cv2.IMWRITE_PNG_COMPRESSION, 9] if clean
                   else [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        ok, data = cv2.imencode(path.suffix, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), options)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {path.name}")
        path.write_bytes(data.tobytes())
        written.append(path)
    return written


def gallery_markdown(seed: int = 0) -> str:
    """docs/gallery.md for :data:`GALLERY`."""
    rows = ["| | simulated findings | settings |", "|---|---|---|"]
    for example in GALLERY:
        findings = ", ".join(f"{k}={v!r}" for k, v in example.findings.items())
        suffix = "png" if example.render.get("distort", "none") == "none" else "jpg"
        rows.append(f"| ![](gallery/{example.name}.{suffix}) | `{findings}` | {example.caption} |")
    return f"""# Rendered ECG gallery

What `pulse_app.ecg.render.render_ecg` draws, from records made by the project's simulator
(`pulse_app.ecg.simulate.ecg_simulate`, seed {seed}, 0.01 mV noise); no third-party record is
used. Pages are rendered at {GALLERY_DPI:g} dpi ({round(11 * GALLERY_DPI)}×{round(8.5 * GALLERY_DPI)} px), clean ones stored as PNG,
distorted ones as JPEG (quality {JPEG_QUALITY}).
Every page also has a JSON sidecar (record id, settings, every distortion with its parameters,
px/mm, each lead's pixel box, every text drawn with its box). Lead labels sit where they touch no
trace ink (`python -m training.page_check` checks 500 pages of every layout).

{chr(10).join(rows)}

Distortion kinds (`pulse_app.ecg.distort.KINDS`, applied in this order): grid removal (p = 0.02),
yellowing / colour cast, wrinkles, creases, handwritten marks, rotation, perspective, crop/padding,
shadow / uneven light, blur, sensor noise, JPEG. Wrinkles and creases are relief: they shade the
paper and move it, so traces bend across a fold and the sidecar's boxes follow.
`distort="mix"` is the training mix: half the pages clean, the other half each kind with
`PROBABILITIES`.

Regenerate (from the repository root): `make gallery`, i.e.
`python -m pulse_app.examples --gallery --seed {seed}`. Pages drawn from real records are not kept
in the repository: render them locally with `python -m training.render ../shared/data/ecg-records
--out /tmp/pages` (see `training/render.py`). Speed: `python -m bench.render_speed`.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pulse_app.examples",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--gallery", action="store_true",
                    help="write the docs gallery (docs/gallery/, docs/gallery.md) instead of the "
                    "app's examples")
    ap.add_argument("--out", type=Path, help="folder (default assets/examples, or docs/gallery)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.gallery:
        out = args.out or REPO_ROOT / "docs" / "gallery"
        if out.is_dir():
            shutil.rmtree(out)
        written = write_pages(GALLERY, out, args.seed, GALLERY_DPI)
        (out.parent / "gallery.md").write_text(gallery_markdown(args.seed), encoding="utf-8")
    else:
        written = write_pages(EXAMPLES, args.out or ASSETS_DIR / "examples", args.seed)
    print(f"{len(written)} pages written to {written[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
