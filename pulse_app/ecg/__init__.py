"""ECG signals shared by the app and training: records, simulator, renderer.

>>> from pulse_app.ecg import read_record, ecg_simulate
>>> ecg_simulate({"rate_bpm": 110}, seed=0).labels
['sinus tachycardia']

``records`` reads WFDB / PTB-XL / CinC / MIMIC-IV-ECG / CODE-15% / DICOM into one ``Record``;
``simulate`` makes labelled synthetic 12-lead ECGs; ``render`` draws a ``Record`` as paper.
"""

from pulse_app.ecg.records import (STANDARD_LEADS, Record, find_records, read_code15, read_record,
                                   write_dicom)
from pulse_app.ecg.simulate import FINDINGS, Findings, ecg_simulate, random_findings

__all__ = ["STANDARD_LEADS", "Record", "find_records", "read_code15", "read_record", "write_dicom",
           "FINDINGS", "Findings", "ecg_simulate", "random_findings"]
