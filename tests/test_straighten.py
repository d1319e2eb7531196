"""Straightening and the readability check, on rendered pages with known homographies, on a real
photo, and on pictures with no ECG in them; the accepted correction as an edit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pulse_app.ecg.distort import PHONE_MAX_ROTATION_DEG, plan_distortions
from pulse_app.ecg.render import page_size_px, render_ecg
from pulse_app.errors import ImageRejected
from pulse_app.intake import edit_image, load_image
from pulse_app.readability import check_readability
from pulse_app.straighten import (analyse_page, apply_straightening, proposal_from,
                                  propose_straightening)
from training.straighten_eval import HAND_MEASURED, hand_angle, score

PAGE_W, PAGE_H = page_size_px(200)


def photo(record, grid="red", **distort):
    """A rendered page photographed with exactly these distortion parameters."""
    return render_ecg(record, grid=grid, layout="3x4+II", distort=distort, seed=5)


def recovered(out) -> tuple[dict, object]:
    proposal = propose_straightening(out.image)
    return score(proposal, out.sidecar["page_to_image"], PAGE_W, PAGE_H), proposal


FIT = {"fit": 0.05, "shift": [0.0, 0.0], "background": [58, 52, 48]}


@pytest.mark.parametrize("grid, angle, shift", [
    ("red", 18.0, [[0.05, 0.0], [0.0, 0.02], [0.03, 0.06], [0.0, 0.0]]),
    ("green", -27.0, [[0.0, 0.06], [0.04, 0.0], [0.0, 0.0], [0.02, 0.03]]),
    ("grey", 6.5, [[0.0, 0.0], [0.06, 0.05], [0.0, 0.0], [0.0, 0.0]]),
])
def test_known_rotation_and_perspective_are_recovered(cinc_record, grid, angle, shift):
    out = photo(cinc_record, grid, rotation={"angle_deg": angle},
                perspective={"corner_shift": shift}, crop_pad=FIT, noise=True, jpeg=True)
    result, proposal = recovered(out)
    assert proposal.method == "grid"
    assert abs(result["true_angle_deg"]) > 4                  # it was tilted to begin with
    assert result["rotation_deg"] < 0.5
    assert result["corner_error"] < 0.01                      # of the page's width
    assert result["square_error"] < 0.01                      # grid squares square
    assert proposal.angle_deg == pytest.approx(result["true_angle_deg"], abs=0.5)


def test_page_cut_off_by_the_frame_keeps_the_grid_direction(cinc_record):
    out = photo(cinc_record, "pink", rotation={"angle_deg": -4.0},
                crop_pad={"scale": 1.0, "shift": [0.0, 0.0], "background": [200, 200, 196]})
    result, proposal = recovered(out)
    assert proposal.method == "grid"
    assert result["rotation_deg"] < 0.3 and result["corner_error"] < 0.02


def test_page_without_grid_is_straightened_from_its_edges_and_baselines(cinc_record):
    out = photo(cinc_record, "none", rotation={"angle_deg": -12.0},
                perspective={"corner_shift": [[0.03, 0.0], [0.0, 0.04], [0.0, 0.0], [0.02, 0.0]]},
                crop_pad=FIT, noise=True)
    result, proposal = recovered(out)
    assert proposal.method == "page edges"
    assert result["rotation_deg"] < 0.5 and result["corner_error"] < 0.01


@pytest.mark.parametrize("kind", ["noise", "gradient"])
def test_a_picture_without_an_ecg_says_it_found_nothing(kind):
    rng = np.random.default_rng(1)
    if kind == "noise":
        pixels = rng.integers(0, 256, (900, 1200, 3)).astype(np.uint8)
    else:
        yy, xx = np.mgrid[0:900, 0:1200]
        pixels = np.stack([xx / 1200 * 255, yy / 900 * 200, np.full(xx.shape, 90)], 2)
        pixels = pixels.astype(np.uint8)
    proposal = propose_straightening(Image.fromarray(pixels))
    assert not proposal.found and proposal.method == "none" and proposal.corners is None
    assert "no ECG grid, tracing or page edge was found" in proposal.message
    assert [f.kind for f in check_readability(Image.fromarray(pixels))][0] == "no_ecg"


@pytest.mark.parametrize("kind, seed", [("noise", 1003), ("text", 1000), ("ruled", 1001)])
def test_noise_text_and_ruled_paper_are_not_taken_for_an_ecg(kind, seed):
    from training.readability_eval import non_ecg

    pixels = non_ecg(kind, np.random.default_rng([seed, 5, 3]))   # noise 1003 once had "traces"
    proposal = propose_straightening(Image.fromarray(pixels))
    assert proposal.method == "none"


def test_real_photo_at_an_angle_matches_the_hand_measured_angle(shared_data):
    image = load_image(shared_data / "ecg-images" / "ecg00040.jpg").image
    proposal = propose_straightening(image)
    assert proposal.method == "grid" and proposal.found
    assert "ecg00040.jpg" in HAND_MEASURED
    assert proposal.angle_deg == pytest.approx(hand_angle("ecg00040.jpg"), abs=0.5)
    assert "tilted 3.2 degrees, seen at an angle" in proposal.message


def test_straight_scan_is_left_alone(shared_data):
    image = load_image(shared_data / "ecg-images" / "fullScan.png").image
    proposal = propose_straightening(image)
    assert proposal.corners == ((0.0, 0.0), (2199.0, 0.0), (2199.0, 1699.0), (0.0, 1699.0))
    assert proposal.page_size == image.size and proposal.angle_deg == 0.0
    assert "already straight" in proposal.message
    assert np.array_equal(np.asarray(edit_image(image, **_edit(proposal))), np.asarray(image))


def _edit(proposal, **more) -> dict:
    edit = proposal.edit()
    edit.update(more)
    return edit


def test_edit_with_corners_reproduces_the_warp_and_composes_with_rotate_and_crop(cinc_record):
    out = photo(cinc_record, "red", rotation={"angle_deg": 15.0}, crop_pad=FIT)
    proposal = propose_straightening(out.image)
    edit = proposal.edit()
    assert set(edit) == {"corners", "page_size", "rotate90", "angle_deg", "crop"}
    flat = apply_straightening(out.image, proposal.corners, proposal.page_size)
    assert flat.size == proposal.page_size
    assert np.array_equal(np.asarray(edit_image(out.image, **edit)), np.asarray(flat))
    # the stored edit (corners first, then quarter turn, fine angle, crop) replays exactly
    stored = _edit(proposal, rotate90=1, angle_deg=2.0, crop=(20, 30, 820, 1030))
    replay = edit_image(out.image, **stored)
    by_hand = flat.transpose(Image.Transpose.ROTATE_90).rotate(
        2.0, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255)).crop(
        (20, 30, 820, 1030))
    assert replay.size == (800, 1000)
    assert np.array_equal(np.asarray(replay), np.asarray(by_hand))
    assert edit_image(out.image, corners=None).size == out.image.size     # no straightening


def test_straightened_page_is_upright_with_the_traces_level(cinc_record):
    out = photo(cinc_record, "grey", rotation={"angle_deg": -22.0}, crop_pad=FIT)
    proposal = propose_straightening(out.image)
    flat = apply_straightening(out.image, proposal.corners, proposal.page_size)
    again = analyse_page(flat)
    assert abs(again.tilt_deg) < 0.3
    assert proposal_from(again).method == "grid"
    w, h = flat.size
    assert w / h == pytest.approx(PAGE_W / PAGE_H, rel=0.02)        # letter page, squares square


@pytest.mark.parametrize("corners, match", [
    ([(0, 0), (100, 0)], "not four"),
    ([(0, 0), (300, 300), (300, 0), (0, 300)], "cross or fold"),
    ([(0, 0), (50, 0), (50, 40), (0, 40)], "only 51 x 41 pixels"),
    ([(0, 0), (float("nan"), 0), (300, 300), (0, 300)], "not four"),
])
def test_corners_that_make_no_page_are_refused(ecg_image, corners, match):
    with pytest.raises(ImageRejected, match=match):
        edit_image(ecg_image, corners=corners)


def test_phone_mode_keeps_the_whole_page_in_view_and_other_modes_their_range(cinc_record):
    out = render_ecg(cinc_record, distort="phone", seed=11)
    h = np.asarray(out.sidecar["page_to_image"])
    corners = np.c_[[[0, 0], [PAGE_W, 0], [PAGE_W, PAGE_H], [0, PAGE_H]], np.ones(4)] @ h.T
    corners = corners[:, :2] / corners[:, 2:]
    assert np.all(corners >= 0) and np.all(corners <= [PAGE_W, PAGE_H])
    angles = [plan_distortions("phone", np.random.default_rng(s))["rotation"]["angle_deg"]
              for s in range(200)]
    assert max(map(abs, angles)) <= PHONE_MAX_ROTATION_DEG and max(map(abs, angles)) > 20
    photos = [plan_distortions("photo", np.random.default_rng(s))["rotation"]["angle_deg"]
              for s in range(200)]
    assert max(map(abs, photos)) <= 6


# -- readability ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def printed(shared_data):
    from pulse_app.ecg.records import read_record

    record = read_record(shared_data / "cpsc2018" / "A0010.hea")
    return render_ecg(record, grid="pink", layout="6x2", seed=2).pixels


def test_readability_passes_a_clean_page_and_flags_blur_and_darkness(printed):
    import cv2

    assert check_readability(Image.fromarray(printed)) == []
    blurred = cv2.GaussianBlur(printed, (0, 0), 1.0 * 200 / 25.4)          # 1 mm of paper
    findings = check_readability(Image.fromarray(blurred))
    assert "blurred" in [f.kind for f in findings]
    blur = next(f for f in findings if f.kind == "blurred")
    assert "hold the phone still and parallel to the paper" in str(blur)
    dark = (printed * 0.15).astype(np.uint8)
    found = {f.kind: f for f in check_readability(Image.fromarray(dark))}
    assert "dark" in found and "add light" in found["dark"].hint


def test_readability_flags_washed_out_and_too_small(printed):
    washed = (255 * (printed / 255.0) ** 0.15).astype(np.uint8)
    assert "overexposed" in [f.kind for f in check_readability(Image.fromarray(washed))]
    table = np.full((1700, 2200, 3), 90, np.uint8)
    small = np.asarray(Image.fromarray(printed).resize((550, 425), Image.Resampling.BOX))
    table[600:1025, 800:1350] = small
    findings = check_readability(Image.fromarray(table))
    assert [f.kind for f in findings] == ["small"]
    assert "move closer" in findings[0].hint
