"""Reading real ECG records: the CinC 2021 fixtures, and PTB-XL / MIMIC-IV-ECG / CODE-15% / DICOM
files built in tmp_path from a real record with the formats' own libraries and column layouts."""

from __future__ import annotations

import numpy as np
import pytest

from pulse_app.ecg.records import (STANDARD_LEADS, find_records, normalize_lead_name, read_record,
                                   unit_scale_to_mv)
from pulse_app.errors import PulseError, RecordUnreadable

#: The README table of ../shared/data/ecg-records, as canonical labels.
EXPECTED = {
    "E07505": ["left ventricular hypertrophy"],
    "E07506": ["sinus rhythm"],
    "E07509": ["right bundle branch block", "sinus bradycardia"],
    "E07514": ["sinus tachycardia", "anterior ischemia", "t-wave inversion"],
    "JS20005": ["premature atrial contractions", "right ventricular hypertrophy",
                "sinus tachycardia", "premature ventricular contractions"],
    "JS20008": ["premature atrial contractions", "sinus arrhythmia"],
}


def test_every_cinc_fixture_loads_with_its_diagnoses(cinc_record_paths):
    for path in cinc_record_paths:
        rec = read_record(path)
        assert rec.record_id == path.stem
        assert rec.signal.shape == (5000, 12) and rec.signal.dtype == np.float32
        assert rec.fs == 500.0 and rec.duration_s == 10.0
        assert rec.leads == list(STANDARD_LEADS)
        assert rec.source == "cinc"
        assert sorted(rec.labels) == sorted(EXPECTED[path.stem]), path.stem
        assert rec.sex in ("M", "F") and rec.age is not None


def test_cinc_values_are_millivolts_and_demographics(shared_data):
    rec = read_record(shared_data / "ecg-records" / "E07509.hea")
    assert rec.codes["snomed"] == ["59118001", "426177001"]
    assert (rec.age, rec.sex) == (71.0, "M")
    # the header's first sample of lead I is -4 adu at 1000 adu/mV
    assert rec.lead("I")[0] == pytest.approx(-0.004, abs=1e-6)
    # a real ECG: R waves of roughly 0.3-3 mV, not µV or V
    assert 0.3 < np.percentile(np.abs(rec.signal), 99.9) < 5
    # Einthoven holds on the recorded leads (III = II - I within quantisation + filtering)
    assert np.median(np.abs(rec.lead("III") - (rec.lead("II") - rec.lead("I")))) < 0.02
    young = read_record(shared_data / "ecg-records" / "JS20008.hea")
    assert young.age == 5.0


def test_read_record_accepts_mat_and_bare_record_name(shared_data):
    base = shared_data / "ecg-records" / "E07506"
    a = read_record(base.with_suffix(".hea"))
    for variant in (base.with_suffix(".mat"), base):
        b = read_record(variant)
        assert b.record_id == a.record_id and np.array_equal(a.signal, b.signal)


def test_find_records_expands_directories(shared_data, tmp_path):
    found = find_records([shared_data / "ecg-records"])
    assert [p.stem for p in found] == sorted(EXPECTED)
    assert all(p.suffix == ".hea" for p in found)
    assert find_records(shared_data / "ecg-records" / "E07505.mat") == [
        shared_data / "ecg-records" / "E07505.hea"]


@pytest.mark.parametrize("raw, name", [("AVR", "aVR"), ("avr", "aVR"), ("aVL", "aVL"),
                                       ("Lead aVF", "aVF"), ("DII", "II"), ("v5", "V5"),
                                       ("MLII", "MLII"), ("Lead I (Einthoven)", "I")])
def test_lead_names_are_normalised(raw, name):
    assert normalize_lead_name(raw) == name


def test_units_scale_to_millivolts():
    assert unit_scale_to_mv("mV") == unit_scale_to_mv("mv") == 1.0
    assert unit_scale_to_mv("uV") == unit_scale_to_mv("µV") == 1e-3
    assert unit_scale_to_mv("V") == 1000.0


def test_unreadable_files_name_the_file(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not an ecg")
    with pytest.raises(RecordUnreadable, match="notes.txt"):
        read_record(junk)
    with pytest.raises(RecordUnreadable, match="does not exist"):
        read_record(tmp_path / "missing.hea")
    broken = tmp_path / "broken.hea"
    broken.write_text("broken 12 500 5000\nbroken.mat 16x1+24 1000.0(0)/mV 16 0 0 0 0 I\n")
    with pytest.raises(RecordUnreadable, match="broken.hea") as info:
        read_record(broken)
    assert isinstance(info.value, PulseError) and info.value.exit_code == 8 and info.value.hint
