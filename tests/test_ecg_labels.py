"""The project's own label table (pulse_app.ecg.labels) against the published tables in
../shared/data/labels, and how every real sample record's labels are read."""

from __future__ import annotations

import csv

import pytest

from pulse_app.ecg import labels
from pulse_app.ecg.records import find_records, read_record
from pulse_app.ecg.simulate import FINDINGS


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_scored_challenge_code_is_in_the_projects_table(shared_data):
    for row in _rows(shared_data / "labels" / "dx_mapping_scored.csv"):
        code = labels.SNOMED.get(row["SNOMEDCTCode"])
        assert code is not None, row
        assert code.abbreviation == row["Abbreviation"], row


def test_every_ptbxl_statement_is_in_the_projects_table(shared_data):
    rows = _rows(shared_data / "labels" / "scp_statements.csv")
    assert len(rows) == len(labels.SCP) == 71
    for row in rows:
        code = row[""]
        statement = labels.SCP[code]
        assert statement.superclass == row["diagnostic_class"], code
        assert statement.subclass == row["diagnostic_subclass"], code
        assert ("diagnostic" in statement.statement) == (row["diagnostic"] == "1.0"), code
        assert (statement.statement == "rhythm") == (row["rhythm"] == "1.0"), code


def test_every_finding_a_code_asserts_is_canonical_and_every_finding_has_a_code():
    known = set(labels.all_findings())
    asserted = set()
    for table in (labels.SNOMED, labels.SCP, labels.CPSC_TEXT, labels.CODE15_COLUMNS):
        for code in table.values():
            assert set(code.findings) <= known, code
            asserted.update(code.findings)
    for _, findings in labels.STATEMENT_PHRASES:
        assert set(findings) <= known
    # the generators ask about FINDINGS (+ the general ST findings): each has a code somewhere
    missing = set(FINDINGS) - asserted - {"anterior st elevation", "lateral st elevation",
                                          "inferior st elevation", "anterior st depression",
                                          "lateral st depression"}
    assert not missing, missing
    for exhaustive in labels.EXHAUSTIVE.values():
        assert set(exhaustive) <= known


def test_every_code_of_the_sample_records_is_mapped_without_a_raw_code(shared_data):
    paths = find_records([shared_data / d for d in ("ecg-records", "cpsc2018",
                                                    "cinc-rare-rhythms")])
    assert len(paths) == 27
    for path in paths:
        rec = read_record(path)
        assert "unmapped_codes" not in rec.meta, path
        assert rec.labels, path
        assert not any(ch.isdigit() for label in rec.labels for ch in label), rec.labels


CPSC = {"A0029": ["normal ecg"], "A0061": ["atrial fibrillation"],
        "A0039": ["first-degree av block"], "A0044": ["left bundle branch block"],
        "A0010": ["right bundle branch block"], "A0049": ["premature atrial contractions"],
        "A0025": ["premature ventricular contractions"], "A0100": ["st depression"],
        "A0021": ["st elevation"], "A0109": ["atrial fibrillation", "right bundle branch block"],
        "A0689": ["atrial fibrillation"],
        "A1041": ["atrial fibrillation", "left bundle branch block"],
        "A5215": ["right bundle branch block", "premature atrial contractions"],
        "A5432": ["premature atrial contractions"]}


def test_cpsc_text_and_snomed_labels_decode_to_the_same_findings(shared_data):
    for path in find_records(shared_data / "cpsc2018"):
        rec = read_record(path)
        assert rec.source == "cpsc2018", path
        assert rec.labels == CPSC[rec.record_id], path


def test_absence_is_negative_only_where_the_source_is_exhaustive():
    # CPSC labels its 8 abnormal classes exhaustively: an AF record has no LBBB, no STE
    cpsc = labels.known_absent("cpsc2018", ["atrial fibrillation"])
    assert {"left bundle branch block", "st elevation", "inferior st elevation",
            "sinus rhythm"} <= cpsc
    assert "left axis deviation" not in cpsc and "long qt" not in cpsc
    # a Georgia record labelled LVH says nothing about rhythm, axis or ST
    assert labels.known_absent("cinc", ["left ventricular hypertrophy"]) == set()
    # a rhythm label excludes the other rhythms, but not a coexisting sinus arrhythmia
    sb = labels.known_absent("cinc", ["sinus bradycardia", "sinus arrhythmia"])
    assert "atrial fibrillation" in sb and "sinus arrhythmia" not in sb
    # "normal ECG" excludes abnormal findings but a finding stated with it wins
    normal = labels.known_absent("ptbxl", ["normal ecg", "low qrs voltage"])
    assert "left bundle branch block" in normal and "low qrs voltage" not in normal
    # possible findings are neither present nor absent
    assert "left ventricular hypertrophy" not in labels.known_absent(
        "mimic-iv-ecg", ["sinus rhythm"], possible=["left ventricular hypertrophy"])
    # a territorial child present keeps its general parent
    assert "st elevation" not in labels.known_absent("cpsc2018", ["inferior st elevation"])


def test_a_datasets_own_challenge_table_names_codes(cinc_record_paths, shared_data, tmp_path):
    """With dx_mapping_*.csv beside the records, names come from it; findings from the code."""
    import shutil

    for name in ("E07514.hea", "E07514.mat"):
        shutil.copy(shared_data / "ecg-records" / name, tmp_path / name)
    assert "anterior ischemia" in read_record(tmp_path / "E07514.hea").labels
    for name in ("dx_mapping_scored.csv", "dx_mapping_unscored.csv"):
        text = (shared_data / "labels" / name).read_text()
        (tmp_path / name).write_text(text.replace("anterior ischemia,", "ischaemia of the "
                                                  "anterior wall,"))
    rec = read_record(tmp_path / "E07514.hea")
    assert "ischaemia of the anterior wall" in rec.labels
    assert "t-wave inversion" in rec.labels and "sinus tachycardia" in rec.labels


def test_georgia_headers_with_a_file_ending_in_the_record_line_read(shared_data):
    rec = read_record(shared_data / "cinc-rare-rhythms" / "E05526.hea")
    assert rec.signal.shape == (5000, 12)
    assert rec.labels == ["first-degree av block", "sinus bradycardia", "sinus arrhythmia"]


@pytest.mark.parametrize("text, findings, tentative", [
    ("Sinus rhythm", ("sinus rhythm",), False),
    ("Atrial fibrillation with rapid ventricular response", ("atrial fibrillation",), False),
    ("Incomplete right bundle branch block", (), False),
    ("Possible left ventricular hypertrophy", ("left ventricular hypertrophy",), True),
    ("Atrial fibrillation has replaced sinus rhythm", (), False),
    ("Normal ECG", ("normal ecg",), False),
    ("Abnormal ECG", (), False),
])
def test_machine_statements(text, findings, tentative):
    assert labels.statement_findings(text) == (findings, tentative)


def test_docstring_examples_run():
    import doctest

    assert doctest.testmod(labels).failed == 0
