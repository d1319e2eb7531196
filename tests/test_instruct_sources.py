"""Instruction data from real records of every source format: labels read as the sources mean
them, no question without support, and every answer agreeing with the record's labels.

Real files come from ../shared/data (CinC 2021, CPSC 2018 in both Challenge formats, PTB-XL's
real database rows over its records); MIMIC-IV-ECG and CODE-15% are written here in their
published layouts (machine_measurements.csv + WFDB tree; exams.csv + HDF5)."""

from __future__ import annotations

import csv
import re


from pulse_app.ecg.labels import CHILDREN, known_absent
from pulse_app.ecg.records import find_records, read_record
from training.instruct import generate_samples
from training.instruct.generate import NEVER
from training.instruct.vocab import AXIS, FINDINGS, PATTERNS, find_labels
from training.metrics import score_answer
from tests.test_ecg_records import MIMIC_COLUMNS, write_code15, write_wfdb

ALL = tuple(FINDINGS) + tuple(CHILDREN)


def check(record) -> list:
    """Generate samples for ``record`` and assert each one is supported by its labels."""
    samples = generate_samples(record, "x.png", seed=0) + generate_samples(record, "x.png", seed=1)
    present = set(record.labels)
    present |= {p for p, kids in CHILDREN.items() if present & set(kids)}
    absent = known_absent(record.source, record.labels, record.possible)
    raw = [str(c) for codes in record.codes.values() for c in codes]
    for s in samples:
        meta, text = s.meta, s.reference
        where = (s.id, s.question, text)
        # no raw codes or internal names in what the model learns to say
        assert not re.search(r"\b\d{6,}\b|snomed|_ms\b|_bpm\b", text, re.I), where
        for code in raw:
            if not code.isdigit() and code not in ("AF", "PAC", "PVC", "RBBB", "LBBB", "Normal"):
                assert not re.search(rf"\b{re.escape(code)}\b", text), where
        assert score_answer(text, meta)["correct"] == 1.0, where
        claim = meta.get("claim")
        if meta["score"] == "yesno" and claim in ALL:
            assert (meta["answer"] == "yes") == (claim in present), where
            assert claim in present or claim in absent, where
        if claim == "no finding" and meta["answer"] == "yes":
            assert set(meta["vocabulary"]) <= absent, where
        if meta["score"] == "labels" or meta["kind"] == "report":
            assert set(meta["labels"]) <= present, where
            assert set(meta["vocabulary"]) - present <= absent, where
        if meta["kind"] == "rhythm":
            said = (meta.get("answer_text", "").lower() if meta["score"] == "choice"
                    else meta.get("claim") if meta["score"] == "yesno" else meta["answer"])
            assert said in present | absent, where
        if meta["kind"] == "axis":
            truth = meta["answer"] if meta["score"] != "yesno" else None
            if truth == "normal axis":
                assert set(AXIS) <= absent, where
        if meta["score"] == "choice" and meta["kind"] not in ("rate", "intervals", "axis"):
            for letter, option in meta["options"].items():
                if letter == meta["answer"] or option == "None of these":
                    continue
                named = {l for l in ALL if PATTERNS[l].search(option.lower())}
                named -= {p for p, kids in CHILDREN.items() if named & set(kids)}
                never = option.lower() in {n.lower() for n in NEVER}
                assert named and named <= absent or never and not named, where
                assert not never or record.source == "simulator", where
        # an answer asserts only present (or implied) findings
        asserted = find_labels(text, vocabulary=ALL)
        if meta["score"] == "option" and meta["answer"] == "absent":    # "T-wave inversion is
            assert "t-wave inversion" in absent, where                  # **absent**"
            asserted.discard("t-wave inversion")
        if "Possible " in text:                       # written as possible: neither way
            asserted -= set(record.possible)
        assert asserted <= present | {p for p in CHILDREN if asserted & set(CHILDREN[p])}, where
        if meta["kind"] == "report":
            if "normal ecg" in present:
                assert "abnormal ECG" not in text, where
            if "Conclusion: normal ECG" in text:
                assert "normal ecg" in present or set(FINDINGS) - present <= absent, where
        if meta["kind"] == "rate" and "measured_by" not in meta:
            assert "heart_rate_bpm" in record.measurements, where
    return samples


def _kinds(samples) -> set:
    return {s.meta["kind"] for s in samples}


def test_cinc_snomed_records(shared_data):
    for path in find_records([shared_data / "ecg-records", shared_data / "cinc-rare-rhythms"]):
        record = read_record(path)
        assert record.source == "cinc"
        samples = check(record)
        assert samples, path
        assert all(s.meta["measured_by"]["heart_rate_bpm"].startswith("signal")
                   for s in samples if s.meta["kind"] == "rate")
    # LVH only (Georgia): nothing said about rhythm, axis, conduction or ectopy -> not asked
    lvh = check(read_record(shared_data / "ecg-records" / "E07505.hea"))
    assert _kinds(lvh) <= {"rate", "morphology", "report"}
    assert not [s for s in lvh if s.meta.get("answer") == "no"
                and s.meta.get("kind") != "rate"]
    report = next(s.reference for s in lvh if s.meta["kind"] == "report")
    assert "Conclusion: abnormal ECG (left ventricular hypertrophy" in report
    # sinus rhythm alone: a rhythm, but no "normal ECG" (the source does not say so)
    sinus = check(read_record(shared_data / "ecg-records" / "E07506.hea"))
    assert "rhythm" in _kinds(sinus)
    assert "normal ECG" not in next(s.reference for s in sinus if s.meta["kind"] == "report")


def test_cpsc_text_labels_are_decoded_and_exhaustive(shared_data):
    for path in find_records(shared_data / "cpsc2018"):
        check(read_record(path))
    af = check(read_record(shared_data / "cpsc2018" / "A0061.hea"))
    rhythm = [s for s in af if s.meta["kind"] == "rhythm" and s.meta["score"] != "yesno"]
    assert rhythm and all("atrial fibrillation" in (s.meta["answer"],
                                                     s.meta.get("answer_text", "").lower())
                          for s in rhythm)
    normal = check(read_record(shared_data / "cpsc2018" / "A0029.hea"))
    report = next(s.reference for s in normal if s.meta["kind"] == "report")
    assert report.endswith("Conclusion: normal ECG.") and "snomed" not in report
    ste = check(read_record(shared_data / "cpsc2018" / "A0021.hea"))
    assert any("ST elevation" in s.reference for s in ste)


def test_ptbxl_statements_with_likelihoods_and_report(shared_data, tmp_path):
    """The four real PTB-XL rows over their records, laid out as PTB-XL ships them."""
    root = tmp_path / "ptb-xl"
    (root).mkdir()
    (root / "ptbxl_database.csv").write_text(
        (shared_data / "ptbxl" / "ptbxl_database.excerpt.csv").read_text())
    records = {}
    for ecg_id in (2, 4, 7, 8):
        real = read_record(shared_data / "ptbxl" / f"HR{ecg_id:05d}.hea")
        hea = write_wfdb(real, root / "records500" / "00000", f"{ecg_id:05d}_hr",
                         scale=0.2)                         # the header's 200/mV are µV
        records[ecg_id] = read_record(hea)
    for record in records.values():
        assert record.source == "ptbxl"
        check(record)
    sb = records[2]                                         # NORM 80 + SBRAD
    assert sb.labels == ["normal ecg", "sinus bradycardia"]
    report = next(s.reference for s in check(sb) if s.meta["kind"] == "report")
    assert "abnormal ECG" not in report and "normal ECG" in report
    mi = records[8]                                         # IMI at likelihood 35: possible
    assert "inferior myocardial infarction" in mi.possible
    assert "inferior myocardial infarction" not in mi.labels
    report = next(s.reference for s in check(mi) if s.meta["kind"] == "report")
    assert "Possible inferior myocardial infarction" in report
    assert mi.report.startswith("sinusrhythmus linkstyp")


def test_mimic_machine_statements_and_measurements(cinc_record, tmp_path):
    root = tmp_path / "mimic-iv-ecg"
    rows = [("40689238", ["Sinus bradycardia", "Right bundle branch block",
                          "Possible left ventricular hypertrophy", "Abnormal ECG"],
             dict(rr_interval="1100", p_onset="40", p_end="150", qrs_onset="210",
                  qrs_end="350", t_end="640", p_axis="55", qrs_axis="75", t_axis="40")),
            ("40689239", ["Atrial fibrillation", "Left axis deviation", "Low QRS voltages"],
             dict(rr_interval="600", p_onset="29999", p_end="29999", qrs_onset="200",
                  qrs_end="290", t_end="560", p_axis="29999", qrs_axis="-50", t_axis="30"))]
    with open(root.mkdir(parents=True) or root / "machine_measurements.csv", "w",
              newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MIMIC_COLUMNS)
        writer.writeheader()
        for study, statements, measures in rows:
            row = dict.fromkeys(MIMIC_COLUMNS, "")
            row.update(subject_id="10000032", study_id=study, machine_name="TC50",
                       **{f"report_{i}": t for i, t in enumerate(statements)}, **measures)
            writer.writerow(row)
    order = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
    mimic = type(cinc_record)(record_id="x", fs=500.0, leads=order, signal=cinc_record.signal[
        :, [cinc_record.leads.index(n) for n in order]])
    recs = [read_record(write_wfdb(mimic, root / "files" / "p1000" / "p10000032" / f"s{study}",
                                   study)) for study, _, _ in rows]
    sb, af = recs
    assert sb.source == af.source == "mimic-iv-ecg"
    assert sb.labels == ["sinus bradycardia", "right bundle branch block"]
    assert sb.possible == ["left ventricular hypertrophy"]
    samples = check(sb) + check(af)
    sb_samples = [s for s in samples if s.id.startswith("40689238")]
    intervals = [s for s in samples if s.meta["kind"] == "intervals"]
    assert intervals and all("measured_by" not in s.meta for s in intervals)   # the machine's
    assert af.measurements["heart_rate_bpm"] == 100.0 and "pr_ms" not in af.measurements
    from training.instruct.generate import Facts, axis_truth

    # the machine states axis deviations exhaustively: no statement + 75 degrees is normal
    assert axis_truth(Facts(af)) == "left axis deviation"
    assert axis_truth(Facts(sb)) == "normal axis"
    lvh = [s for s in sb_samples if s.meta.get("claim") == "left ventricular hypertrophy"]
    assert not lvh                                   # possible only: never asked


def test_code15_exam_labels(cinc_record, tmp_path):
    folder = tmp_path / "code15"
    write_code15(cinc_record, folder)                       # two exams + the zero filler
    rbbb, normal = [read_record(p) for p in find_records(folder)]
    assert rbbb.labels == ["right bundle branch block", "sinus bradycardia"]
    assert normal.labels == ["normal ecg"]
    check(rbbb)
    from training.instruct.generate import Facts

    # the six columns are explicit True/False: LBBB, AF and AV block are known absent
    assert {"left bundle branch block", "atrial fibrillation",
            "first-degree av block"} <= Facts(rbbb).absent
    report = next(s.reference for s in check(normal) if s.meta["kind"] == "report")
    assert "abnormal ECG" not in report


def test_simulated_records_keep_their_questions():
    """The simulator labels everything: every question kind and type is still asked."""
    from pulse_app.ecg.simulate import ecg_simulate, random_findings

    kinds = set()
    for n in range(40):
        record = ecg_simulate(random_findings(n), seed=n, duration_s=2.0, fs=250)
        record.record_id = f"sim-{n}"
        samples = check(record)
        assert len(samples) == 2 * 13
        kinds |= _kinds(samples)
    assert kinds == {"rate", "axis", "intervals", "rhythm", "ectopy", "conduction",
                     "morphology", "report"}
