"""Reading real ECG records: the CinC 2021 fixtures, and PTB-XL / MIMIC-IV-ECG / CODE-15% / DICOM
files built in tmp_path from a real record with the formats' own libraries and column layouts."""

from __future__ import annotations

from pathlib import Path

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
    (tmp_path / "lonely.mat").write_bytes(b"MATLAB 5.0")
    with pytest.raises(RecordUnreadable, match="no lonely.hea header"):
        read_record(tmp_path / "lonely.mat")
    with pytest.raises(RecordUnreadable, match="is a folder"):
        read_record(tmp_path)
    broken = tmp_path / "broken.hea"
    broken.write_text("broken 12 500 5000\nbroken.mat 16x1+24 1000.0(0)/mV 16 0 0 0 0 I\n")
    with pytest.raises(RecordUnreadable, match="broken.hea") as info:
        read_record(broken)
    assert isinstance(info.value, PulseError) and info.value.exit_code == 8 and info.value.hint


# -- other formats, built in tmp_path from a real record ------------------------------------------


def write_wfdb(real, folder, name, *, lead_names=None, units="mV", scale=1.0, comments=None,
               **header):
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=real.fs, units=[units] * 12, sig_name=lead_names or list(real.leads),
                p_signal=real.signal.astype(np.float64) * scale, fmt=["16"] * 12,
                adc_gain=[1000.0 / scale] * 12, baseline=[0] * 12, comments=comments or [],
                write_dir=str(folder), **header)
    return folder / f"{name}.hea"


def test_ptbxl_tree_reads_scp_codes_superclasses_and_demographics(cinc_record, shared_data,
                                                                  tmp_path):
    root = tmp_path / "ptb-xl"
    root.mkdir()
    # PTB-XL's real header and first row (ecg_id 1: NORM, LVOLT, SR; 56-year-old woman)
    real = (shared_data / "labels" / "ptbxl_database.first10rows.csv").read_text().splitlines()
    (root / "ptbxl_database.csv").write_text("\n".join(real[:2]) + "\n")
    upper = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    hea = write_wfdb(cinc_record, root / "records500" / "00000", "00001_hr", lead_names=upper)
    rec = read_record(hea)
    assert rec.source == "ptbxl" and rec.record_id == "ptbxl-00001"
    assert rec.leads == list(STANDARD_LEADS)
    np.testing.assert_allclose(rec.signal, cinc_record.signal, atol=1e-3)
    assert (rec.age, rec.sex) == (56.0, "F")
    assert rec.codes["scp"] == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    assert sorted(rec.labels) == ["low qrs voltage", "normal ecg", "sinus rhythm"]
    assert rec.meta["superclasses"] == ["NORM"]           # from the shipped scp_statements.csv
    assert rec.report == "sinusrhythmus periphere niederspannung"
    assert (rec.meta["date"], rec.meta["device"]) == ("1984-11-09 09:17", "CS-12 E")
    # the dataset's own scp_statements.csv wins over the shipped copy
    table = (shared_data / "labels" / "scp_statements.csv").read_text()
    (root / "scp_statements.csv").write_text(table.replace(
        "NORM,normal ECG,1.0,,,NORM,NORM", "NORM,normal ECG,1.0,,,NORMAL,NORM"))
    assert read_record(hea).meta["superclasses"] == ["NORMAL"]
    # a record of the tree that the database does not list still reads, as plain WFDB
    other = read_record(write_wfdb(cinc_record, root / "records500" / "00000", "09999_hr"))
    assert other.source == "wfdb" and other.labels == []


def test_wfdb_microvolts_and_lower_case_lead_names(cinc_record, tmp_path):
    lower = [n.lower() for n in cinc_record.leads]
    import datetime

    rec = read_record(write_wfdb(cinc_record, tmp_path, "uv_rec", lead_names=lower, units="uV",
                                 scale=1000.0, base_date=datetime.date(2024, 3, 5),
                                 base_time=datetime.time(14, 7, 0)))
    assert rec.leads == list(STANDARD_LEADS)
    assert rec.meta["date"] == "2024-03-05 14:07"
    np.testing.assert_allclose(rec.signal, cinc_record.signal, atol=2e-3)


MIMIC_COLUMNS = (["subject_id", "study_id", "cart_id", "machine_name", "ecg_time"]
                 + [f"report_{i}" for i in range(18)]
                 + ["bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset",
                    "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis"])


def test_mimic_iv_ecg_reads_machine_report_and_measurements(cinc_record, tmp_path):
    import csv

    root = tmp_path / "mimic-iv-ecg"
    mimic_order = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
    reordered = cinc_record.signal[:, [cinc_record.leads.index(n) for n in mimic_order]]
    fake = type(cinc_record)(record_id="x", signal=reordered, fs=500.0, leads=mimic_order)
    hea = write_wfdb(fake, root / "files" / "p1000" / "p10000032" / "s40689238", "40689238")
    row = dict.fromkeys(MIMIC_COLUMNS, "")
    row.update(subject_id="10000032", study_id="40689238", cart_id="6848296",
               machine_name="TC50", ecg_time="2180-07-23 08:44:00",
               report_0="Sinus bradycardia", report_1="Right bundle branch block",
               report_2="Borderline ECG", bandwidth="0.005-150 Hz",
               filtering="60 Hz notch Baseline filter",
               rr_interval="1100", p_onset="40", p_end="150", qrs_onset="210", qrs_end="350",
               t_end="640", p_axis="55", qrs_axis="75", t_axis="40")
    with open(root / "machine_measurements.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MIMIC_COLUMNS)
        writer.writeheader()
        writer.writerow(row)
    rec = read_record(hea)
    assert rec.source == "mimic-iv-ecg"
    assert rec.leads == list(STANDARD_LEADS)                  # aVF/aVL put in standard order
    np.testing.assert_allclose(rec.lead("aVL"), cinc_record.lead("aVL"), atol=1e-3)
    assert rec.report == "Sinus bradycardia\nRight bundle branch block\nBorderline ECG"
    assert rec.labels == ["sinus bradycardia", "right bundle branch block"]
    m = rec.measurements
    assert m["heart_rate_bpm"] == pytest.approx(54.5, abs=0.1)
    assert (m["pr_ms"], m["qrs_ms"], m["qt_ms"], m["axis_deg"]) == (170, 140, 430, 75)
    assert m["qtc_ms"] == pytest.approx(430 / np.sqrt(1.1), abs=0.1)
    assert (rec.meta["date"], rec.meta["device"]) == ("2180-07-23 08:44", "TC50")


def write_code15(real, folder):
    """A CODE-15%-layout part file (two exams + the all-zero filler) and its exams.csv."""
    import h5py
    from scipy.signal import resample_poly

    folder.mkdir(parents=True, exist_ok=True)
    at400 = resample_poly(real.signal.astype(np.float64), 4, 5, axis=0)      # 500 -> 400 Hz
    tracings = np.zeros((3, 4096, 12), dtype=np.float32)
    tracings[0, 48: 48 + len(at400)] = at400                                 # centred, zero-padded
    tracings[1, : len(at400)] = at400[::-1]
    with h5py.File(folder / "exams_part0.hdf5", "w") as f:
        f.create_dataset("tracings", data=tracings)
        f.create_dataset("exam_id", data=np.array([1169160, 2873686, 0], dtype=np.int64))
    (folder / "exams.csv").write_text(
        "exam_id,age,is_male,nn_predicted_age,1dAVb,RBBB,LBBB,SB,ST,AF,patient_id,death,timey,"
        "normal_ecg,trace_file\n"
        "1169160,71,True,68.2,False,True,False,True,False,False,523632,False,2.1,False,"
        "exams_part0.hdf5\n"
        "2873686,48,False,51.0,False,False,False,False,False,False,1724173,,,True,"
        "exams_part0.hdf5\n")
    return folder / "exams_part0.hdf5", at400


def test_code15_hdf5_exams_with_labels(cinc_record, tmp_path):
    from pulse_app.ecg.records import read_code15

    path, at400 = write_code15(cinc_record, tmp_path / "code15")
    first = read_record(path)
    assert first.record_id == "code15-1169160" and first.fs == 400.0
    assert first.signal.shape == (4000, 12)                  # padding removed
    np.testing.assert_allclose(first.signal, at400, atol=1e-5)
    assert (first.age, first.sex) == (71.0, "M")
    assert sorted(first.labels) == ["right bundle branch block", "sinus bradycardia"]
    by_id = read_record(f"{path}#2873686")
    by_index = read_record(f"{path}#1")
    assert by_id.record_id == by_index.record_id == "code15-2873686"
    assert by_id.sex == "F" and by_id.labels == ["normal ecg"] and by_id.meta["normal_ecg"] is True
    assert [r.record_id for r in read_code15(path)] == ["code15-1169160", "code15-2873686"]
    with pytest.raises(RecordUnreadable, match="no exam 7"):
        read_record(f"{path}#7")
    # one path per exam, which the batch renderer reads one by one
    exams = find_records([tmp_path / "code15"])
    assert exams == [Path(f"{path}#1169160"), Path(f"{path}#2873686")]
    assert [read_record(p).record_id for p in exams] == ["code15-1169160", "code15-2873686"]
    assert find_records(path, split_hdf5=False) == [path]


def test_dicom_round_trip_is_a_real_12_lead_ecg_file(cinc_record, tmp_path):
    import pydicom
    from pydicom.uid import TwelveLeadECGWaveformStorage

    from pulse_app.ecg.records import write_dicom

    path = write_dicom(cinc_record, tmp_path / "E07509.dcm")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == TwelveLeadECGWaveformStorage and ds.Modality == "ECG"
    assert ds.file_meta.MediaStorageSOPClassUID == TwelveLeadECGWaveformStorage
    group = ds.WaveformSequence[0]
    assert group.NumberOfWaveformChannels == 12 and float(group.SamplingFrequency) == 500
    assert group.ChannelDefinitionSequence[0].ChannelSourceSequence[0].CodeValue == "5.6.3-9-1"
    assert str(ds.PatientName) == "" and ds.PatientAge == "071Y"
    rec = read_record(path)
    assert rec.source == "dicom" and rec.leads == list(STANDARD_LEADS) and rec.fs == 500.0
    np.testing.assert_allclose(rec.signal, cinc_record.signal, atol=1e-3)   # 1 µV steps
    assert (rec.age, rec.sex) == (71.0, "M")
    assert rec.labels == cinc_record.labels
    assert rec.meta["device"] == "pulse_app" and len(rec.meta["date"]) == 16


def test_dicom_without_waveform_is_refused(tmp_path):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(tmp_path / "image.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.save_as(tmp_path / "image.dcm", enforce_file_format=True)
    with pytest.raises(RecordUnreadable, match="no ECG waveform"):
        read_record(tmp_path / "image.dcm")


def test_simulated_record_survives_dicom(simulated_record, tmp_path):
    from pulse_app.ecg.records import write_dicom

    rec = read_record(write_dicom(simulated_record, tmp_path / "sim.dcm"))
    np.testing.assert_allclose(rec.signal, simulated_record.signal, atol=1e-3)
    assert rec.labels == simulated_record.labels
