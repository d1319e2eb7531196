"""The paper-ECG renderer, checked on its pixels: grid spacing, calibration pulse, lead boxes,
layouts, distortions (deterministic, recorded, geometric ones moving the boxes), sidecar JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pulse_app.ecg.distort import KINDS, plan_distortions
from pulse_app.ecg.records import STANDARD_LEADS, Record, read_record
from pulse_app.ecg.render import paper_grid, render_ecg
from pulse_app.ecg.simulate import ecg_simulate

FS = 500.0


def flat_record(record_id="flat", active=None, seconds=10.0) -> Record:
    """All 12 leads at 0 mV, except ``active`` which gets a 1.5 mV spiky wave."""
    n = int(seconds * FS)
    sig = np.zeros((n, 12), np.float32)
    if active is not None:
        t = np.arange(n) / FS
        wave = 0.5 * np.sin(2 * np.pi * 1.1 * t) + 1.0 * (np.mod(t, 0.8) < 0.04)
        sig[:, STANDARD_LEADS.index(active)] = wave
    return Record(record_id=record_id, signal=sig, fs=FS, leads=list(STANDARD_LEADS))


@pytest.fixture(scope="module")
def real(shared_data) -> Record:
    return read_record(shared_data / "ecg-records" / "E07509.hea")


def line_centres(profile: np.ndarray, threshold: float) -> np.ndarray:
    """Centres (px) of the runs of ``profile`` above ``threshold``."""
    on = np.concatenate([[False], profile > threshold, [False]])
    edges = np.flatnonzero(np.diff(on.astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]
    return (starts + ends - 1) / 2.0


@pytest.mark.parametrize("dpi", [100, 200, 300])
@pytest.mark.parametrize("grid", ["red", "grey"])
def test_grid_lines_are_1mm_and_5mm_apart_at_the_stated_dpi(dpi, grid):
    out = render_ecg(flat_record(), grid=grid, dpi=dpi, header=False)
    ppm = dpi / 25.4
    assert out.sidecar["px_per_mm"] == pytest.approx(ppm)
    assert out.image.size == (round(11 * dpi), round(8.5 * dpi))
    # A pixel row in the middle of a 5 mm square below the first baseline: grid only.
    base = out.sidecar["panels"][0]["baseline_px"]
    y = int(round(base + 2.5 * ppm))
    darkness = 255.0 - out.pixels[y, :, 1].astype(float)      # green channel: lines are darker
    paper = 255.0 - out.pixels[y, :, 1].max()
    minor = line_centres(darkness, paper + 15)
    spacing = (minor[-1] - minor[0]) / (len(minor) - 1)
    assert len(minor) == pytest.approx(280, abs=1)     # 279.4 mm of paper
    assert spacing == pytest.approx(ppm, rel=0.02)
    major = line_centres(darkness, darkness.max() - 15)
    major_spacing = (major[-1] - major[0]) / (len(major) - 1)
    assert major_spacing == pytest.approx(5 * ppm, rel=0.02)
    # The same along a column right of the traces (vertical spacing).
    x = int(round((max(p["x1_px"] for p in out.sidecar["panels"]) + 2.5 * ppm)))
    col = 255.0 - out.pixels[:, x, 1].astype(float)
    rows = line_centres(col, paper + 15)
    assert (rows[-1] - rows[0]) / (len(rows) - 1) == pytest.approx(ppm, rel=0.02)


def test_no_grid_is_plain_paper():
    img = paper_grid(2200, 1700, 200 / 25.4, "none")
    assert img.min() == 255


def ink_centre(column: np.ndarray, lo: int, hi: int) -> float:
    """Darkness-weighted centre (px) of the ink in column[lo:hi]."""
    w = 255.0 - column[lo:hi].astype(float)
    w[w < 40] = 0
    assert w.sum() > 0, "no ink there"
    return lo + float((np.arange(len(w)) * w).sum() / w.sum())


@pytest.mark.parametrize("gain", [5.0, 10.0, 20.0])
def test_calibration_pulse_is_1mV_tall(gain):
    out = render_ecg(flat_record(), gain_mm_mV=gain, grid="none", header=False, layout="3x4+II")
    ppm = out.sidecar["px_per_mm"]
    gray = out.pixels.mean(axis=2)
    for panel in out.sidecar["panels"]:
        if panel["col"] != 0:
            continue
        base = panel["baseline_px"]
        lo, hi = int(base - (gain + 3) * ppm), int(base + 3 * ppm)
        top = ink_centre(gray[:, int(11.5 * ppm)], lo, hi)      # middle of the pulse's plateau
        foot = ink_centre(gray[:, int(9.5 * ppm)], lo, hi)      # the flat lead-in
        assert foot == pytest.approx(base, abs=0.5)
        assert (foot - top) / ppm == pytest.approx(gain, rel=0.02)


def ink_outside(diff: np.ndarray, boxes: list[list[float]], pad: float = 0.0) -> int:
    inside = np.zeros_like(diff)
    for x0, y0, x1, y1 in boxes:
        inside[max(0, int(np.floor(y0 - pad))):int(np.ceil(y1 + pad)) + 1,
               max(0, int(np.floor(x0 - pad))):int(np.ceil(x1 + pad)) + 1] = True
    return int((diff & ~inside).sum())


def lead_ink(lead, layout, distort="none", record_id="flat"):
    """(pixels where ``lead``'s trace is, the sidecar): where the page of a record in which only
    ``lead`` moves is darker than the all-flat page (texts left out of both: labels follow the
    traces)."""
    kw = dict(layout=layout, grid="none", distort=distort, seed=7, draw_text=False)
    base = render_ecg(flat_record(record_id), **kw).pixels.astype(int)
    out = render_ecg(flat_record(record_id, active=lead), **kw)
    return (base - out.pixels.astype(int)).max(axis=2) > 40, out.sidecar


FOLDS = {"creases": {"lines": [[0.0, 0.3, 1.0, 0.33], [0.41, 0.0, 0.43, 1.0]], "ridge": [1, -1],
                     "lift_mm": 2.0},
         "wrinkles": {"count": 30, "lift_mm": 0.6}}
FOLDED_PHOTO = {**FOLDS, "rotation": {"angle_deg": 4.0}, "perspective": True, "crop_pad": True}


@pytest.mark.parametrize("layout, leads, distort", [
    ("3x4+II", STANDARD_LEADS, "none"),
    ("6x2", ("I", "aVF", "V1", "V6"), "none"),
    ("12x1", ("II", "aVL", "V3"), "none"),
    ("3x4+II,V1,V5", ("II", "V1", "V5", "V2"), "none"),
    ("3x4+II", ("I", "II", "aVF", "V2", "V6"), FOLDS),
    ("6x2", ("I", "V1", "V5"), FOLDED_PHOTO),
    ("3x4+II,V1,V5", ("II", "V1", "V5", "aVL"), FOLDED_PHOTO),
])
def test_each_lead_box_contains_the_ink_of_its_lead(layout, leads, distort):
    for lead in leads:
        diff, side = lead_ink(lead, layout, distort)
        boxes = [box for name, box in side["leads"].items() if name.split("-")[0] == lead]
        assert diff.sum() > 500, lead
        assert ink_outside(diff, boxes) == 0, lead
        for box in boxes:      # every panel of this lead holds some of it
            x0, y0, x1, y1 = (int(v) for v in box)
            assert diff[y0:y1 + 1, x0:x1 + 1].sum() > 100, (lead, box)


def test_folds_bend_the_traces_and_the_boxes_follow():
    """A crease across lead I moves its ink (a fold, not a stain) and its box with it."""
    crease = {"creases": {"lines": [[0.2, 0.0, 0.2, 1.0]], "ridge": [1], "lift_mm": 2.0,
                          "spread_mm": 8.0, "view_deg": 90.0}}
    flat_diff, flat_side = lead_ink("I", "3x4")
    fold_diff, fold_side = lead_ink("I", "3x4", crease)
    x = int(0.2 * fold_diff.shape[1])                      # the crease's column
    rows = np.nonzero(fold_diff[:, x - 3:x + 4].any(axis=1))[0]
    flat_rows = np.nonzero(flat_diff[:, x - 3:x + 4].any(axis=1))[0]
    # lifted by the fold and seen at a slant from above (view_deg 90: image down), the trace
    # on the crease is displaced by lift_mm (15.7 px)
    assert 12 < rows.min() - flat_rows.min() < 18
    assert ink_outside(fold_diff, [fold_side["leads"]["I"]]) == 0
    assert fold_side["leads"]["I"] != flat_side["leads"]["I"]
    # 35 mm from the crease (4.4 spreads) the trace is where it was, to a pixel
    far = x - int(35 * 200 / 25.4)
    moved = [np.nonzero(d[:, far - 3:far + 4].any(axis=1))[0] for d in (fold_diff, flat_diff)]
    assert abs(moved[0].min() - moved[1].min()) <= 1 and abs(moved[0].max() - moved[1].max()) <= 1


@pytest.mark.parametrize("layout, n_boxes, n_rows", [
    ("3x4", 12, 3), ("3x4+II", 13, 4), ("3x4+II,V1,V5", 15, 6), ("6x2", 12, 6), ("12x1", 12, 12)])
def test_layouts_give_the_right_panels(real, layout, n_boxes, n_rows):
    out = render_ecg(real, layout=layout)
    side = out.sidecar
    assert len(side["leads"]) == n_boxes
    assert len({p["row"] for p in side["panels"]}) == n_rows
    assert set(p["lead"] for p in side["panels"]) == set(STANDARD_LEADS)
    cols = max(p["col"] for p in side["panels"]) + 1
    for p in side["panels"]:
        span = side["window_s"] if p["name"].endswith("-rhythm") else side["window_s"] / cols
        assert p["t1_s"] - p["t0_s"] == pytest.approx(span, abs=0.01)
    # Real trace ink inside every box.
    gray = out.pixels.min(axis=2)
    for name, (x0, y0, x1, y1) in side["leads"].items():
        assert (gray[int(y0):int(y1) + 1, int(x0):int(x1) + 1] < 100).sum() > 200, name


def test_speed_sets_the_time_window(real):
    assert render_ecg(real, speed_mm_s=25).sidecar["window_s"] == pytest.approx(10.0)
    fast = render_ecg(real, speed_mm_s=50)
    assert fast.sidecar["window_s"] == pytest.approx(5.0)
    strip = fast.sidecar["panels"][-1]
    assert (strip["x1_px"] - strip["x0_px"]) / fast.sidecar["px_per_mm"] == pytest.approx(250, rel=0.01)


def test_sidecar_is_json_and_names_the_settings(real):
    out = render_ecg(real, layout="6x2", speed_mm_s=50, gain_mm_mV=5, grid="green", dpi=150,
                     distort="photo", seed=5)
    side = json.loads(json.dumps(out.sidecar))
    assert side == out.sidecar
    assert side["record_id"] == "E07509" and side["layout"] == "6x2"
    assert (side["speed_mm_s"], side["gain_mm_mV"], side["dpi"], side["grid"]) == (50, 5, 150, "green")
    assert [d["name"] for d in side["distortions"]] == [k for k in KINDS if k in
                                                          {d["name"] for d in side["distortions"]}]
    assert out.image.mode == "RGB" and out.image.size == (side["width"], side["height"])


def test_header_prints_text_only_when_asked(real):
    with_header = render_ecg(real, grid="none", header=True)
    without = render_ecg(real, grid="none", header=False)
    top = slice(0, int(25 * 200 / 25.4))
    assert (with_header.pixels[top].min(axis=2) < 100).sum() > 500     # age and sex
    assert (without.pixels[top].min(axis=2) < 100).sum() == 0
    assert {t["kind"] for t in without.sidecar["texts"]} == {"lead_label"}


def test_header_never_invents_a_date_or_a_device(real):
    """Header fields come from the record or stay blank."""
    bare = Record(**{**real.__dict__, "meta": {}})
    kinds = {t["kind"] for t in render_ecg(bare, seed=3).sidecar["texts"]}
    assert kinds == {"lead_label", "settings", "demographics"}
    dated = Record(**{**real.__dict__, "meta": {"date": "2021-03-04 10:15", "device": "MAC 5500"}})
    texts = {t["kind"]: t["text"] for t in render_ecg(dated, seed=3).sidecar["texts"]}
    assert texts["date"] == "2021-03-04 10:15" and texts["device"] == "MAC 5500"
    assert texts["settings"] == "25 mm/s   10 mm/mV"            # no made-up filter settings


@pytest.mark.parametrize("mode", ["photo", "all"])
def test_distortions_are_deterministic_per_seed_and_differ_across_seeds(real, mode):
    a = render_ecg(real, distort=mode, seed=3)
    b = render_ecg(real, distort=mode, seed=3)
    c = render_ecg(real, distort=mode, seed=4)
    assert np.array_equal(a.pixels, b.pixels) and a.sidecar == b.sidecar
    assert not np.array_equal(a.pixels, c.pixels)
    assert a.sidecar["distortions"] != c.sidecar["distortions"]
    other = Record(**{**real.__dict__, "record_id": "other"})
    assert render_ecg(other, distort=mode, seed=3).sidecar["distortions"] != a.sidecar["distortions"]


def test_training_mix_is_about_half_clean():
    plans = [plan_distortions("mix", np.random.default_rng(s)) for s in range(400)]
    clean = sum(not p for p in plans)
    assert 150 < clean < 250
    assert 0 < sum("grid_removal" in p for p in plans) < 20


@pytest.mark.parametrize("kind", KINDS)
def test_each_distortion_changes_the_page_and_is_recorded(real, kind):
    clean = render_ecg(real, seed=1)
    out = render_ecg(real, distort={kind: True}, seed=1)
    assert [d["name"] for d in out.sidecar["distortions"]] == [kind]
    changed = np.abs(out.pixels.astype(int) - clean.pixels.astype(int)).max(axis=2) > 8
    assert changed.mean() > 0.0005, kind
    json.dumps(out.sidecar)


def test_explicit_parameters_override_sampled_ones(real):
    out = render_ecg(real, distort={"rotation": {"angle_deg": 4.5}, "jpeg": {"quality": 30}})
    got = {d["name"]: d for d in out.sidecar["distortions"]}
    assert got["rotation"]["angle_deg"] == 4.5 and got["jpeg"]["quality"] == 30


def test_grid_removal_leaves_no_grid(real):
    out = render_ecg(real, distort={"grid_removal": True})
    px = out.pixels.astype(int)
    reddish = (px[..., 0] - px[..., 1]) > 30
    assert reddish.sum() == 0
    assert out.sidecar["grid"] == "red"     # what was asked; the distortion says it was removed


def test_the_warp_is_rebuilt_from_the_sidecar():
    """A folded photo's page -> image map comes back from its sidecar alone (what a consumer of
    training pages uses to place beats): the lead boxes it gives are the sidecar's."""
    from pulse_app.ecg.distort import warp_of

    out = render_ecg(ecg_simulate(seed=4), distort=FOLDED_PHOTO, seed=9)
    side = json.loads(json.dumps(out.sidecar))
    warp = warp_of(side)
    assert warp.shift is not None and np.abs(warp.shift).max() > 5
    largest = 0.0
    for panel in side["panels"]:
        x = np.linspace(panel["x0_px"], panel["x1_px"], 50)
        flat = np.c_[x, np.full(50, panel["baseline_px"])]
        moved = warp.points(flat)
        camera = np.c_[flat, np.ones(50)] @ np.array(side["page_to_image"]).T
        off = np.hypot(*(moved - camera[:, :2] / camera[:, 2:]).T)
        largest = max(largest, off.max())
        assert off.max() < (2.0 + 0.6) * 200 / 25.4 * 1.2          # up to lift_mm, both folds
        x0, y0, x1, y1 = side["leads"][panel["name"]]
        inside = moved[(moved[:, 0] > 1) & (moved[:, 0] < side["width"] - 1)]
        assert ((inside[:, 0] >= x0 - 1) & (inside[:, 0] <= x1 + 1) &
                (inside[:, 1] >= y0 - 1) & (inside[:, 1] <= y1 + 1)).all(), panel["name"]
    assert largest > 3          # the folds moved the baselines off the camera's homography


def test_geometric_distortions_move_the_boxes_with_the_ink():
    warp = {"rotation": {"angle_deg": -5.0}, "perspective": True, "crop_pad": {"scale": 0.9}}
    for lead in ("I", "V4", "aVF"):
        diff, side = lead_ink(lead, "3x4+II", warp, record_id="warp")
        boxes = [box for name, box in side["leads"].items() if name.split("-")[0] == lead]
        assert diff.sum() > 500
        assert ink_outside(diff, boxes) == 0, lead
    clean = render_ecg(flat_record("warp", active="I"), grid="none")
    assert clean.sidecar["leads"]["I"] != side["leads"]["I"]
    H = np.array(side["page_to_image"])
    assert not np.allclose(H, np.eye(3))


def test_bad_settings_are_refused(real):
    with pytest.raises(ValueError, match="layout"):
        render_ecg(real, layout="4x3")
    with pytest.raises(ValueError, match="rhythm"):
        render_ecg(real, layout="3x4+II,V1,V5,V6")
    with pytest.raises(ValueError, match="grid"):
        render_ecg(real, grid="blue")
    with pytest.raises(ValueError, match="distortion"):
        render_ecg(real, distort={"coffee": True})
    with pytest.raises(ValueError, match="distort mode"):
        render_ecg(real, distort="heavy")


def test_header_prints_the_measurements_the_record_has(real):
    def header_ink(record):
        px = render_ecg(record, grid="none", seed=1).pixels[: int(28 * 200 / 25.4), : int(150 * 200 / 25.4)]
        return int((px.min(axis=2) < 100).sum())

    measured = Record(**{**real.__dict__, "measurements": {
        "heart_rate_bpm": 55.0, "pr_ms": 170.0, "qrs_ms": 140.0, "qt_ms": 440.0, "qtc_ms": 425.0,
        "axis_deg": 30.0}})
    anonymous = Record(**{**real.__dict__, "age": None, "sex": None})
    assert header_ink(measured) > 3 * header_ink(real) > 0
    assert header_ink(anonymous) == 0


def test_docstring_examples_run():
    import doctest

    import pulse_app.ecg.distort
    import pulse_app.ecg.render

    for module in (pulse_app.ecg.render, pulse_app.ecg.distort):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
