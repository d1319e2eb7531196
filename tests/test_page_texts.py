"""Texts on rendered pages, checked from the sidecar: every text drawn is listed with its box,
lead labels never touch trace ink, and teaching pages give nothing of the ground truth away."""

from __future__ import annotations

import numpy as np
import pytest

from pulse_app.ecg.records import STANDARD_LEADS, read_record
from pulse_app.ecg.render import MACHINE_CAPTION, parse_layout, render_ecg, revealing_texts
from pulse_app.ecg.simulate import FINDINGS, ecg_simulate, random_findings
from training.page_check import LAYOUTS, page_settings, text_ink_overlap


@pytest.fixture(scope="module")
def real(shared_data):
    return read_record(shared_data / "ecg-records" / "JS20005.hea")       # PACs, PVCs, RVH


def test_the_sidecar_lists_every_text_drawn_with_a_box_around_its_ink(real):
    kw = dict(layout="3x4+II,V1,V5", grid="none", header="machine", seed=2)
    drawn = render_ecg(real, **kw)
    blank = render_ecg(real, **kw, draw_text=False)
    assert drawn.sidecar == blank.sidecar              # same geometry, same texts listed
    text_ink = (blank.pixels.astype(int) - drawn.pixels.astype(int)).max(axis=2) > 0
    inside = np.zeros_like(text_ink)
    for text in drawn.sidecar["texts"]:
        x0, y0, x1, y1 = (int(v) for v in text["box"])
        assert text_ink[y0:y1 + 1, x0:x1 + 1].any(), text      # each box holds its text
        inside[y0:y1 + 1, x0:x1 + 1] = True
    assert text_ink.sum() > 2000
    assert (text_ink & ~inside).sum() == 0
    labels = [t["text"] for t in drawn.sidecar["texts"] if t["kind"] == "lead_label"]
    assert sorted(labels) == sorted([*STANDARD_LEADS, "II", "V1", "V5"])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lead_labels_never_touch_trace_ink(layout, real):
    """Six pages per layout (a real record and simulated ones, every header style, gains
    5-20 mm/mV, clean and folded photos); ``python -m training.page_check`` runs 500 each."""
    rows, strips = parse_layout(layout)
    panels = sum(len(r) for r in rows) + len(strips)
    rng = np.random.default_rng([7, len(layout)])
    records = [real] + [ecg_simulate(random_findings(s), seed=s, noise_mV=0.01) for s in range(5)]
    placed = 0
    for k, record in enumerate(records):
        got = text_ink_overlap(record, **page_settings(layout, k, rng))
        assert got["label_px"] == 0, (k, got)
        assert got["labels"] + len(got["unlabelled"]) == panels
        placed += got["labels"]
    assert placed >= 6 * panels - 1


def test_the_ink_check_sees_ink():
    """The checker counts ink where a trace is (so a 0 above means something)."""
    record = ecg_simulate(seed=3)
    page = render_ecg(record, grid="none", draw_text=False)
    fake = {**page.sidecar, "texts": [{"text": "I", "kind": "lead_label", "box": box}
                                      for box in page.sidecar["leads"].values()]}
    ink = page.pixels.min(axis=2) < 250
    touching = sum(int(ink[int(y0):int(y1), int(x0):int(x1)].sum())
                   for x0, y0, x1, y1 in (t["box"] for t in fake["texts"]))
    assert touching > 10_000


def settings_line(speed, gain):
    return f"{speed:g} mm/s   {gain:g} mm/mV"


def test_teaching_pages_never_show_the_truth():
    """200 random simulated cases rendered as teaching pages (header="neutral"): no text on the
    page holds a number or a finding name of the truth; the only texts are the lead names and
    the speed and gain, the same whatever the case."""
    rng = np.random.default_rng(19)
    flagged_machine = 0
    for case in range(200):
        seed = int(rng.integers(2**31))
        record = ecg_simulate(random_findings(seed), seed=seed, noise_mV=0.01)
        speed, gain = float(rng.choice([25.0, 50.0])), float(rng.choice([5.0, 10.0, 20.0]))
        layout = str(rng.choice(LAYOUTS))
        page = render_ecg(record, layout=layout, header="neutral", speed_mm_s=speed,
                          gain_mm_mV=gain, dpi=40, seed=seed,
                          distort=str(rng.choice(["none", "photo", "all"])))
        texts = page.sidecar["texts"]
        assert revealing_texts(page.sidecar, record) == [], case
        for t in texts:
            lowered = t["text"].lower()
            assert not any(name in lowered for name in FINDINGS), t
            if t["kind"] == "lead_label":
                assert t["text"] in STANDARD_LEADS
            else:
                assert (t["kind"], t["text"]) == ("settings", settings_line(speed, gain))
        # the explicit machine printout shows the measurements, captioned as such
        machine = render_ecg(record, layout=layout, header="machine", dpi=40, seed=seed)
        shown = revealing_texts(machine.sidecar, record)
        flagged_machine += bool(shown)
        assert MACHINE_CAPTION in [t["text"] for t in machine.sidecar["texts"]]
    assert flagged_machine == 200
