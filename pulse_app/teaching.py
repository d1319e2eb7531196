"""Teaching cases: a synthetic ECG with chosen findings, drawn as a printed page that gives
nothing away (neutral header: no measurements, no diagnosis; checked from the renderer's sidecar),
and its ground truth, kept on the server until a teacher reveals it.

A :class:`Case` is (findings, seed, picture style) in canonical form (whole bpm and ms, ST in
hundredths of a mV); its :attr:`Case.code` (:mod:`pulse_app.codes`) opens the same page, to the
byte, for anyone. The web app's Teaching tab (:mod:`pulse_app.ui.teaching`) only maps its
controls to a findings dict and calls :meth:`pulse_app.chat.ChatService.open_teaching_case`,
which draws the case with :func:`case_page`; the truth rides with the case (and its stored
session, under :data:`TRUTH_KEY`) so a reopened case can still be revealed.

>>> image, truth = simulate_case({"rhythm": "afib", "qrs": "rbbb"}, seed=3)
>>> image.size, "atrial fibrillation" in truth["labels"]
((2200, 1700), True)
>>> case = Case.make({"rhythm": "afib", "rate_bpm": 96.4}, seed=3)
>>> case.findings["rate_bpm"], Case.from_code(case.code) == case
(96.0, True)
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pulse_app.errors import FindingsInvalid, PulseError

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


def record_of(truth: dict):
    """A case's truth as a signal-less simulated :class:`~pulse_app.ecg.records.Record`: what
    the question builders (:mod:`pulse_app.questions`) and the answer checker read.

    >>> record_of({"labels": ["sinus rhythm"], "measurements": {"pr_ms": 160.0}}).source
    'simulator'
    """
    import numpy as np

    from pulse_app.ecg.records import STANDARD_LEADS, Record

    return Record("teaching-case", np.zeros((0, 12), "float32"), 500.0, list(STANDARD_LEADS),
                  source="simulator", labels=list(truth.get("labels") or []),
                  measurements={k: v for k, v in (truth.get("measurements") or {}).items()
                                if v is not None},
                  findings=dict(truth.get("findings") or {}))


def _check_picture(distort: str) -> None:
    if distort not in DISTORTIONS:
        raise FindingsInvalid(f"unknown picture style {distort!r}",
                              hint=f"choose one of {', '.join(DISTORTIONS)}")


def _findings(findings: dict):
    from pulse_app.ecg.simulate import Findings

    try:
        return Findings(**findings)
    except TypeError as error:
        raise FindingsInvalid(f"unknown finding in {sorted(findings)}",
                              hint="use the simulator's finding names") from error


def _simulate(findings: dict, seed: int):
    """The record of a teaching case (the one simulator call of every page and truth)."""
    from pulse_app.ecg.simulate import ecg_simulate

    return ecg_simulate(_findings(findings), seed=int(seed), noise_mV=0.01)


def simulate_case(findings: dict, *, distort: str = "none", seed: int = 0
                  ) -> tuple["Image", dict]:
    """A printed synthetic 12-lead ECG with ``findings`` (the simulator's ``Findings`` fields)
    and its ground truth. Raises :class:`~pulse_app.errors.FindingsInvalid` for impossible
    requests."""
    from pulse_app.ecg.render import render_ecg, revealing_texts

    _check_picture(distort)
    record = _simulate(findings, seed)
    page = render_ecg(record, distort=distort, seed=int(seed), header="neutral")
    revealing = revealing_texts(page.sidecar, record)
    if revealing:                       # never show a page that gives the answer away
        raise FindingsInvalid(f"the page would print {revealing[0]!r} before Reveal",
                              hint="report this as a bug; choose other findings meanwhile")
    return page.image, truth_of(record)


@dataclass(frozen=True)
class Case:
    """A teaching case: what is simulated, with which seed, drawn in which picture style. Make
    one with :meth:`make` (canonical, checked) or :meth:`from_code`."""

    findings: dict
    seed: int = 0
    distort: str = "none"

    @classmethod
    def make(cls, findings: dict, *, seed: int = 0, distort: str = "none") -> "Case":
        """The canonical case: whole bpm and ms, ST shifts in hundredths of a mV (zero shifts
        dropped), sorted territories; :class:`~pulse_app.errors.FindingsInvalid` when it cannot
        be simulated or shared."""
        from dataclasses import asdict

        from pulse_app.codes import pack_case

        _check_picture(distort)
        f = asdict(_findings(findings))
        f.update(rate_bpm=float(round(f["rate_bpm"])), pr_ms=float(round(f["pr_ms"])),
                 st={t: round(v, 2) for t, v in sorted(f["st"].items()) if round(v, 2)},
                 t_inversion=sorted(f["t_inversion"]))
        case = cls(asdict(_findings(f)), int(seed), distort)
        pack_case(case.findings, seed=case.seed, distort=distort)      # shareable, or refused
        return case

    @classmethod
    def from_code(cls, code: str) -> "Case":
        """The case a code holds; :class:`~pulse_app.codes.CodeInvalid` when it holds none."""
        from pulse_app.codes import KIND_CASE, CodeInvalid, decode, unpack_case

        kind, payload = decode(code)
        if kind != KIND_CASE:
            raise CodeInvalid("this is a deck code, not a case code",
                              hint="open it in the Decks tab")
        findings, seed, distort = unpack_case(payload)
        try:
            return cls.make(findings, seed=seed, distort=distort)
        except PulseError as error:
            raise CodeInvalid(f"this code holds a case that cannot be drawn ({error.message})",
                              hint="ask for the code again") from None

    @property
    def code(self) -> str:
        """The code that opens this case (see :mod:`pulse_app.codes`)."""
        from pulse_app.codes import KIND_CASE, encode, pack_case

        return encode(KIND_CASE, pack_case(self.findings, seed=self.seed, distort=self.distort))


@functools.lru_cache(maxsize=8)
def _page_of(code: str) -> tuple["Image", dict]:
    case = Case.from_code(code)
    return simulate_case(case.findings, distort=case.distort, seed=case.seed)


def case_page(case: Case) -> tuple["Image", dict]:
    """The printed page and truth of ``case`` (the last few are kept: a deck's pages are
    opened by the presenter, the handout and every student). Do not modify the image."""
    image, truth = _page_of(case.code)
    return image, json.loads(json.dumps(truth))


def case_truth(case: Case) -> dict:
    """The ground truth of ``case`` without drawing its page (the same as :func:`case_page`'s).

    >>> case_truth(Case.make({"qrs": "lbbb"}, seed=2))["labels"]
    ['sinus rhythm', 'left bundle branch block']
    """
    return truth_of(_simulate(case.findings, case.seed))


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
