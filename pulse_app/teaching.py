"""Teaching cases: a synthetic ECG with chosen findings, drawn as a printed page that gives
nothing away (neutral header: no measurements, no diagnosis; checked from the renderer's sidecar),
and its ground truth, kept on the server until a teacher reveals it.

The web app's Teaching tab (:mod:`pulse_app.ui.teaching`) only maps its controls to a findings
dict and calls :meth:`pulse_app.chat.ChatService.open_teaching_case`, which calls
:func:`simulate_case` here; the truth rides with the case (and its stored session, under
:data:`TRUTH_KEY`) so a reopened case can still be revealed.

>>> image, truth = simulate_case({"rhythm": "afib", "qrs": "rbbb"}, seed=3)
>>> image.size, "atrial fibrillation" in truth["labels"]
((2200, 1700), True)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

#: Key of the ground truth in a draft's extras and in the stored session's params.
TRUTH_KEY = "teaching_truth"
#: Picture styles a teacher may choose (the renderer's distortion presets).
DISTORTIONS = ("none", "photo", "all")
MEASUREMENT_NAMES = {"heart_rate_bpm": ("Heart rate", "bpm"), "pr_ms": ("PR", "ms"),
                     "qrs_ms": ("QRS", "ms"), "qt_ms": ("QT", "ms"), "qtc_ms": ("QTc", "ms"),
                     "axis_deg": ("Axis", "°")}


def truth_of(record) -> dict:
    """A simulated record's ground truth, JSON-able: labels, measurements (ms, bpm, degrees; None
    where not defined) and the requested findings.

    >>> from pulse_app.ecg.simulate import Findings, ecg_simulate
    >>> sorted(truth_of(ecg_simulate(Findings(), seed=0)))
    ['findings', 'labels', 'measurements']
    """
    return {"labels": [str(label) for label in record.labels],
            "measurements": {str(k): None if v is None else float(v)
                             for k, v in record.measurements.items()},
            "findings": json.loads(json.dumps(record.findings, default=float))}


def simulate_case(findings: dict, *, distort: str = "none", seed: int = 0
                  ) -> tuple["Image", dict]:
    """A printed synthetic 12-lead ECG with ``findings`` (the simulator's ``Findings`` fields)
    and its ground truth. Raises :class:`~pulse_app.errors.FindingsInvalid` for impossible
    requests."""
    from pulse_app.ecg.render import render_ecg, revealing_texts
    from pulse_app.ecg.simulate import Findings, ecg_simulate
    from pulse_app.errors import FindingsInvalid

    if distort not in DISTORTIONS:
        raise FindingsInvalid(f"unknown picture style {distort!r}",
                              hint=f"choose one of {', '.join(DISTORTIONS)}")
    try:
        wanted = Findings(**findings)
    except TypeError as error:
        raise FindingsInvalid(f"unknown finding in {sorted(findings)}",
                              hint="use the simulator's finding names") from error
    record = ecg_simulate(wanted, seed=int(seed), noise_mV=0.01)
    page = render_ecg(record, distort=distort, seed=int(seed), header="neutral")
    revealing = revealing_texts(page.sidecar, record)
    if revealing:                       # never show a page that gives the answer away
        raise FindingsInvalid(f"the page would print {revealing[0]!r} before Reveal",
                              hint="report this as a bug; choose other findings meanwhile")
    return page.image, truth_of(record)


def truth_markdown(truth: dict | None) -> str:
    """Ground truth as a short list a teacher reads out."""
    if not truth:
        return "Generate an ECG first."
    labels = truth.get("labels") or ["(no labelled finding)"]
    lines = ["**Simulated findings:** " + ", ".join(labels), ""]
    for key, value in (truth.get("measurements") or {}).items():
        name, unit = MEASUREMENT_NAMES.get(key, (key, ""))
        shown = "—" if value is None else f"{value:.0f} {unit}".strip()
        lines.append(f"- {name}: {shown}")
    return "\n".join(lines)
