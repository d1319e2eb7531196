"""ECG recordings from any source, as one standard :class:`Record`.

Loaders for WFDB (PTB-XL, PhysioNet/CinC 2020/2021, MIMIC-IV-ECG), CODE-15% HDF5 and DICOM
12-lead waveforms live here; the simulator returns the same object, the renderer draws it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The standard 12 leads, in the order machines print them.
STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


@dataclass
class Record:
    """One ECG recording.

    ``signal`` is (samples × leads) in millivolts, float32; ``leads`` names its columns with the
    normalised names of :data:`STANDARD_LEADS` (other leads keep their names). ``labels`` are
    human-readable statements (e.g. "sinus rhythm", "right bundle branch block"); ``codes`` keeps
    the source's codes per coding system (``{"snomed": [...], "scp": {...}}``); ``measurements``
    uses explicit units in its keys (``heart_rate_bpm``, ``pr_ms``, ``qrs_ms``, ``qt_ms``,
    ``qtc_ms``, ``axis_deg``); ``findings`` holds structured ground truth where the source has it
    (the simulator fills it; see ``pulse_app.ecg.simulate``).
    """

    record_id: str
    signal: np.ndarray
    fs: float
    leads: list[str]
    source: str = "unknown"
    age: float | None = None
    sex: str | None = None               # "M", "F" or None
    labels: list[str] = field(default_factory=list)
    codes: dict = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    findings: dict = field(default_factory=dict)
    report: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.signal.shape[0] / self.fs

    def lead(self, name: str) -> np.ndarray:
        """One lead's samples in mV (``name`` as in :data:`STANDARD_LEADS`)."""
        return self.signal[:, self.leads.index(name)]
