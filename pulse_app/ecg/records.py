"""ECG recordings from any source, as one standard :class:`Record`.

Loaders for WFDB (PTB-XL, PhysioNet/CinC 2020/2021, MIMIC-IV-ECG), CODE-15% HDF5 and DICOM
12-lead waveforms live here; the simulator returns the same object, the renderer draws it.
Well-kept libraries do the parsing (wfdb, h5py, pydicom); this module only normalises what they
return: lead names (``AVR``/``avr`` -> ``aVR``), units (µV, V -> mV), demographics and labels.

>>> rec = read_record("../shared/data/ecg-records/E07509.hea")      # doctest: +SKIP
>>> rec.signal.shape, rec.fs, rec.labels                             # doctest: +SKIP
((5000, 12), 500.0, ['right bundle branch block', 'sinus bradycardia'])

Labels use the canonical lower-case findings of :mod:`pulse_app.ecg.labels` where a code asserts
one; other diagnoses keep their name, lower-cased (never a raw code). What each source labels
exhaustively, and so what a missing label means, is declared there too.
"""

from __future__ import annotations

import ast
import csv
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from pulse_app.ecg.labels import (CODE15_COLUMNS, CPSC_SNOMED, CPSC_TEXT, SCP,
                                   SCP_ASSERTED_LIKELIHOOD, SNOMED, Code, canonical_finding,
                                   statement_findings)
from pulse_app.errors import RecordUnreadable

#: The standard 12 leads, in the order machines print them.
STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: File endings :func:`read_record` understands (``.dat``/``.mat`` need their ``.hea`` beside them).
RECORD_SUFFIXES = (".hea", ".h5", ".hdf5", ".dcm")


@dataclass
class Record:
    """One ECG recording.

    ``signal`` is (samples × leads) in millivolts, float32; ``leads`` names its columns with the
    normalised names of :data:`STANDARD_LEADS` (other leads keep their names). ``labels`` are
    human-readable statements (e.g. "sinus rhythm", "right bundle branch block"); ``codes`` keeps
    the source's codes per coding system (``{"snomed": [...], "scp": {...}}``); ``measurements``
    uses explicit units in its keys (``heart_rate_bpm``, ``pr_ms``, ``qrs_ms``, ``qt_ms``,
    ``qtc_ms``, ``axis_deg``); ``findings`` holds structured ground truth where the source has it
    (the simulator fills it; see ``pulse_app.ecg.simulate``). ``possible`` holds findings the
    source states as possible only (PTB-XL likelihood below 50, "possible ..." machine
    statements): neither present nor absent.
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
    possible: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.signal.shape[0] / self.fs

    def lead(self, name: str) -> np.ndarray:
        """One lead's samples in mV (``name`` as in :data:`STANDARD_LEADS`)."""
        return self.signal[:, self.leads.index(name)]


# -- names, units, labels ---------------------------------------------------------------------

_LEAD_BY_UPPER = {name.upper(): name for name in STANDARD_LEADS}
_LEAD_BY_UPPER.update({"DI": "I", "DII": "II", "DIII": "III"})      # CODE / Brazilian naming

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}


def normalize_lead_name(name: str) -> str:
    """``"AVR"``, ``"avr"``, ``"Lead aVR"``, ``"DII"`` -> ``"aVR"``/``"II"``; unknown names
    (``"MLII"``, ``"X"``) are returned stripped but otherwise unchanged."""
    text = re.sub(r"\(.*?\)", "", str(name)).strip()
    text = re.sub(r"^lead\s+", "", text, flags=re.IGNORECASE).strip()
    return _LEAD_BY_UPPER.get(text.upper(), text)


def unit_scale_to_mv(unit: str | None) -> float:
    """Factor turning values in ``unit`` into mV: ``"uV"`` -> 0.001. Empty/unknown -> 1 (mV,
    WFDB's default)."""
    return _UNIT_TO_MV.get((unit or "mV").strip().lower(), 1.0)


def _add_label(labels: list[str], name: str) -> None:
    """Add a finding (its canonical form where one fits, else the name, lower-cased)."""
    label = canonical_finding(name) or name.strip().lower()
    if label and label not in labels:
        labels.append(label)


def _add_code(rec: Record, code, name: str | None = None, possible: bool = False) -> None:
    """A code's findings (or, for a code that asserts none, its name) into ``rec.labels``;
    into ``rec.possible`` instead when the source states it as possible only."""
    target = rec.possible if possible else rec.labels
    for item in (code.findings or (name or code.name,)):
        if item not in target and item not in rec.labels:
            target.append(item)


@lru_cache(maxsize=16)
def _dx_mapping(folder: str) -> dict[str, tuple[str, str]]:
    """SNOMED code -> (name, abbreviation) from the Challenge's ``dx_mapping_*.csv`` in
    ``folder`` (empty when the folder has none)."""
    table: dict[str, tuple[str, str]] = {}
    for name in ("dx_mapping_unscored.csv", "dx_mapping_scored.csv"):
        path = Path(folder) / name
        if path.is_file():
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    table[row["SNOMEDCTCode"].strip()] = (row["Dx"].strip(),
                                                          row["Abbreviation"].strip())
    return table


def snomed_table(dataset_dir: Path | None = None) -> dict[str, tuple[str, str]]:
    """SNOMED CT code -> (name, abbreviation): the project's table
    (:data:`pulse_app.ecg.labels.SNOMED`), overridden by the dataset's own
    ``dx_mapping_*.csv`` when ``dataset_dir`` or a folder above it (5 levels) has them."""
    table = {code: (c.name, c.abbreviation) for code, c in SNOMED.items()}
    own = _find_upwards(dataset_dir, "dx_mapping_scored.csv") if dataset_dir else None
    if own is not None:
        table.update(_dx_mapping(str(own.parent)))
    return table


@lru_cache(maxsize=8)
def _scp_csv(path: str) -> dict[str, dict]:
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        return {row[0]: dict(zip(header[1:], row[1:])) for row in rows if row}


def scp_table(dataset_dir: Path | None = None) -> dict[str, dict]:
    """PTB-XL SCP code -> ``{"description", "diagnostic", "form", "rhythm",
    "diagnostic_class", "diagnostic_subclass"}``: the dataset's own ``scp_statements.csv`` when
    ``dataset_dir`` has one, else the project's table (:data:`pulse_app.ecg.labels.SCP`)."""
    own = dataset_dir / "scp_statements.csv" if dataset_dir else None
    if own is not None and own.is_file():
        return _scp_csv(str(own))
    return {code: {"description": s.name, "diagnostic": "1.0" if "diagnostic" in s.statement
                   else "", "form": "1.0" if "form" in s.statement else "",
                   "rhythm": "1.0" if s.statement == "rhythm" else "",
                   "diagnostic_class": s.superclass, "diagnostic_subclass": s.subclass}
            for code, s in SCP.items()}


# -- finding files ----------------------------------------------------------------------------

def find_records(paths: Iterable[str | Path] | str | Path, *,
                 split_hdf5: bool = True) -> list[Path]:
    """Record paths under ``paths`` (files kept, directories searched recursively), sorted.

    A ``.dat``/``.mat`` with a ``.hea`` beside it counts as that ``.hea``. A CODE-15% HDF5 file
    holds many exams: with ``split_hdf5`` it becomes one ``file.hdf5#<exam_id>`` path per exam
    (what :func:`read_record` reads); ``file.hdf5#id`` paths given are kept as they are.
    Example: ``find_records(["data/ptbxl/records500", "data/code15/exams_part0.hdf5"])``.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            found += [f for f in sorted(p.rglob("*")) if f.suffix.lower() in RECORD_SUFFIXES
                      and f.is_file()]
        elif p.suffix.lower() in (".dat", ".mat") and p.with_suffix(".hea").exists():
            found.append(p.with_suffix(".hea"))
        else:
            found.append(p)
    unique: list[Path] = []
    seen: set[Path] = set()
    for f in found:
        for g in (_code15_exam_paths(f) if split_hdf5 else [f]):
            if g not in seen:
                seen.add(g)
                unique.append(g)
    return unique


def _code15_exam_paths(path: Path) -> list[Path]:
    """``file.hdf5`` -> ``[file.hdf5#<exam_id>, ...]`` (the all-zero filler exam 0 left out);
    anything else, or a file h5py cannot open, is returned unchanged (reading it reports why)."""
    if path.suffix.lower() not in (".h5", ".hdf5") or not path.is_file():
        return [path]
    import h5py

    try:
        with h5py.File(path, "r") as f:
            ids = [int(i) for i in np.asarray(f["exam_id"][()]).ravel()]
    except (OSError, KeyError):
        return [path]
    return [Path(f"{path}#{i}") for i in ids if i != 0] or [path]


def read_record(path: str | Path) -> Record:
    """Read one ECG record into a :class:`Record` (signal in mV, normalised lead names).

    ``path`` may be a WFDB header (``.hea``, or its ``.dat``/``.mat``, or the record name without
    ending), a CODE-15% HDF5 file (``exams_part0.hdf5``; ``exams_part0.hdf5#<exam_id or index>``
    picks one exam, otherwise the first), or a DICOM 12-lead ECG (``.dcm``).
    Raises :class:`~pulse_app.errors.RecordUnreadable` naming the file and why.
    """
    text = str(path)
    selector = None
    if "#" in text and Path(text.split("#", 1)[0]).suffix.lower() in (".h5", ".hdf5"):
        text, selector = text.split("#", 1)
    p = Path(text)
    suffix = p.suffix.lower()
    if suffix in (".dat", ".mat"):                          # the signal file of a WFDB record
        if p.exists() and not p.with_suffix(".hea").exists():
            raise RecordUnreadable(f"{p.name} has no {p.stem}.hea header beside it",
                                   hint="WFDB records need their .hea file next to the .dat/.mat")
        p, suffix = p.with_suffix(".hea"), ".hea"
    elif suffix not in RECORD_SUFFIXES and p.with_name(p.name + ".hea").exists():   # bare name
        p, suffix = p.with_name(p.name + ".hea"), ".hea"
    if not p.exists():
        raise RecordUnreadable(f"ECG record {p} does not exist", hint="check the path")
    if p.is_dir():
        raise RecordUnreadable(f"{p} is a folder, not one record",
                               hint="give a record file, or let find_records search the folder")
    if suffix == ".hea":
        return read_wfdb(p)
    if suffix in (".h5", ".hdf5"):
        return read_code15_exam(p, selector)
    if suffix == ".dcm" or _is_dicom(p):
        return read_dicom(p)
    raise RecordUnreadable(
        f"{p.name} is not an ECG record format we read",
        hint="use WFDB (.hea with .dat/.mat), CODE-15% HDF5 (.hdf5) or a DICOM 12-lead ECG (.dcm)")


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM"


def _unreadable(path: Path, why: object) -> RecordUnreadable:
    return RecordUnreadable(f"cannot read ECG record {path.name}: {why}",
                            hint="check that the file is complete and in a supported format")


def _find_upwards(start: Path, name: str, levels: int = 5) -> Path | None:
    """``name`` in ``start`` or one of its parents (at most ``levels`` up)."""
    for folder in [start, *start.parents][: levels + 1]:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _finish(rec: Record) -> Record:
    """float32 mV without NaNs; the standard leads first, in :data:`STANDARD_LEADS` order
    (MIMIC-IV-ECG stores aVF before aVL), other leads after them."""
    rec.signal = np.nan_to_num(np.asarray(rec.signal, dtype=np.float32), copy=False)
    if rec.signal.ndim != 2 or rec.signal.shape[1] != len(rec.leads) or rec.signal.shape[0] == 0:
        raise _unreadable(Path(rec.meta.get("path", rec.record_id)), "no samples in it")
    rank = {name: i for i, name in enumerate(STANDARD_LEADS)}
    order = sorted(range(len(rec.leads)), key=lambda i: (rank.get(rec.leads[i], len(rank)), i))
    if order != list(range(len(rec.leads))):
        rec.signal = np.ascontiguousarray(rec.signal[:, order])
        rec.leads = [rec.leads[i] for i in order]
    rec.fs = float(rec.fs)
    return rec


# -- WFDB: CinC 2020/2021, PTB-XL, MIMIC-IV-ECG, plain WFDB ----------------------------------

def read_wfdb(path: str | Path) -> Record:
    """A WFDB record (``.hea`` + ``.dat``/``.mat``), with the metadata its dataset keeps beside it:
    CinC ``# Age/# Sex/# Dx`` header lines, PTB-XL's ``ptbxl_database.csv``, MIMIC-IV-ECG's
    ``machine_measurements.csv`` (searched in the record's folder and up to five above)."""
    import wfdb

    hea = Path(path)
    try:
        raw = wfdb.rdrecord(str(hea.with_suffix("")), physical=True)
    except Exception as exc:  # wfdb raises many types for broken files
        raw = _read_georgia_quirk(hea)
        if raw is None:
            raise _unreadable(hea, exc) from exc
    if raw.p_signal is None or not raw.sig_name:
        raise _unreadable(hea, "it holds no signals")
    scale = np.array([unit_scale_to_mv(u) for u in (raw.units or ["mV"] * raw.n_sig)], np.float32)
    rec = Record(record_id=raw.record_name, signal=raw.p_signal.astype(np.float32) * scale,
                 fs=float(raw.fs), leads=[normalize_lead_name(n) for n in raw.sig_name],
                 source="wfdb", meta={"path": str(hea), "format": "wfdb"})
    if raw.base_date is not None:
        rec.meta["date"] = f"{raw.base_date.isoformat()}" + (
            f" {raw.base_time.strftime('%H:%M')}" if raw.base_time is not None else "")
    _apply_header_comments(rec, raw.comments or [], hea.parent)
    if (db := _find_upwards(hea.parent, "ptbxl_database.csv")) is not None:
        _apply_ptbxl(rec, hea, db)
    elif (mm := _find_upwards(hea.parent, "machine_measurements.csv")) is not None:
        _apply_mimic(rec, mm)
    return _finish(rec)


def _read_georgia_quirk(hea: Path):
    """Some Georgia (G12EC) headers name the record with its file ending (``E05526.mat 12 500
    ...``), which wfdb rejects: read such a record through a corrected copy of the header
    (the signal file is linked, not copied). None for any other problem."""
    import tempfile

    import wfdb

    try:
        lines = hea.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    first = lines[0].split() if lines else []
    if not first or Path(first[0]).suffix.lower() not in (".mat", ".dat"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        name = Path(first[0]).stem
        (Path(tmp) / f"{name}.hea").write_text("\n".join([" ".join([name] + first[1:])]
                                                          + lines[1:]) + "\n")
        for line in lines[1:]:
            part = line.split()[0] if line.strip() and not line.startswith("#") else ""
            if part and (hea.parent / part).is_file() and not (Path(tmp) / part).exists():
                os.symlink((hea.parent / part).resolve(), Path(tmp) / part)
        try:
            return wfdb.rdrecord(str(Path(tmp) / name), physical=True)
        except Exception:
            return None


def _apply_header_comments(rec: Record, comments: list[str], folder: Path | None = None) -> None:
    """CinC 2020/2021 header lines: ``Age: 71``, ``Sex: Male``, ``Dx: 59118001,426177001``, or
    the CPSC 2018 text labels of the first 2020 release (``Dx: AF,RBBB``).

    Source: "cpsc2018" for CPSC records (text labels, or ``A*`` records whose SNOMED codes are
    the nine CPSC classes), else "cinc". Codes no table knows are kept in ``codes`` and
    ``meta["unmapped_codes"]``, never written into ``labels``."""
    fields = {}
    for line in comments:
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    rec.age = _number(fields.get("age"))
    rec.sex = _sex(fields.get("sex"))
    codes = [c.strip() for c in fields.get("dx", "").split(",") if c.strip()]
    if codes:
        unmapped = []
        if all(c in CPSC_TEXT for c in codes):
            rec.source = "cpsc2018"
            rec.codes["cpsc"] = codes
            for code in codes:
                _add_code(rec, CPSC_TEXT[code])
        else:
            rec.codes["snomed"] = codes
            cpsc = rec.record_id.startswith("A") and all(c in CPSC_SNOMED for c in codes)
            rec.source = "cpsc2018" if cpsc else "cinc"
            names = snomed_table(folder)
            for code in codes:
                if cpsc and code == "426783006":          # CPSC's "Normal", recoded
                    _add_code(rec, CPSC_TEXT["Normal"])
                elif code in SNOMED:
                    _add_code(rec, SNOMED[code], names[code][0])
                elif code in names:
                    _add_code(rec, Code(code, names[code][0], names[code][1], "other"))
                else:
                    unmapped.append(code)
        if unmapped:
            rec.meta["unmapped_codes"] = unmapped
    for key in ("rx", "hx", "sx"):
        if fields.get(key, "Unknown") not in ("Unknown", "Unknows", ""):
            rec.meta[key] = fields[key]


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(value) else value


def _sex(text) -> str | None:
    t = str(text or "").strip().lower()
    if t in ("m", "male", "man"):
        return "M"
    if t in ("f", "female", "woman"):
        return "F"
    return None


@lru_cache(maxsize=4)
def _csv_index(path: str, mtime: float, key_columns: tuple[str, ...]) -> dict[str, dict]:
    """Rows of a (large) CSV keyed by the values of ``key_columns``; cached per file version."""
    index: dict[str, dict] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for col in key_columns:
                if row.get(col):
                    index[row[col].strip()] = row
    return index


def _apply_ptbxl(rec: Record, hea: Path, database: Path) -> None:
    root = database.parent
    rows = _csv_index(str(database), database.stat().st_mtime, ("filename_hr", "filename_lr"))
    try:
        relative = hea.with_suffix("").resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return
    row = rows.get(relative)
    if row is None:
        return
    rec.source = "ptbxl"
    rec.record_id = f"ptbxl-{int(float(row['ecg_id'])):05d}"
    age = _number(row.get("age"))
    rec.age = 90.0 if age is not None and age >= 300 else age   # PTB-XL writes 300 for > 89
    rec.sex = {"0": "M", "1": "F"}.get(str(row.get("sex", "")).strip().split(".")[0])
    rec.report = (row.get("report") or "").strip() or None
    scp = ast.literal_eval(row.get("scp_codes") or "{}")
    rec.codes["scp"] = scp
    table = scp_table(root)
    rec.labels, rec.possible = [], []
    superclasses = []
    for code, likelihood in scp.items():
        entry = table.get(code, {})
        known = SCP.get(code)
        sure = not likelihood or float(likelihood) >= SCP_ASSERTED_LIKELIHOOD
        name = (entry.get("description") or (known.name if known else "")).strip().lower()
        if known is not None:
            _add_code(rec, known, name or None, possible=not sure)
        elif name:
            _add_code(rec, Code(code, name, code, "other"), possible=not sure)
        else:
            rec.meta.setdefault("unmapped_codes", []).append(code)
        if str(entry.get("diagnostic", "")).startswith("1") and entry.get("diagnostic_class"):
            if entry["diagnostic_class"] not in superclasses:
                superclasses.append(entry["diagnostic_class"])
    rec.meta["superclasses"] = superclasses
    if row.get("heart_axis"):
        rec.meta["heart_axis"] = row["heart_axis"]
    _set_date_device(rec, row.get("recording_date"), row.get("device"))


_MIMIC_MISSING = 29999      # MIMIC-IV-ECG writes this for an interval the machine did not find


def _apply_mimic(rec: Record, measurements: Path) -> None:
    rows = _csv_index(str(measurements), measurements.stat().st_mtime, ("study_id",))
    row = rows.get(rec.record_id)
    if row is None:
        return
    rec.source = "mimic-iv-ecg"
    lines = [(row.get(f"report_{i}") or "").strip() for i in range(18)]
    lines = [line for line in lines if line]
    rec.report = "\n".join(lines) or None
    for line in lines:
        findings, tentative = statement_findings(line)
        for finding in findings:
            target = rec.possible if tentative else rec.labels
            if finding not in rec.labels and finding not in target:
                target.append(finding)
    rec.possible = [f for f in rec.possible if f not in rec.labels]
    v = {k: _number(row.get(k)) for k in ("rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end",
                                          "t_end", "p_axis", "qrs_axis", "t_axis")}
    ok = {k: x for k, x in v.items() if x is not None and abs(x) < _MIMIC_MISSING}
    m = rec.measurements
    if ok.get("rr_interval"):
        m["heart_rate_bpm"] = round(60000.0 / ok["rr_interval"], 1)
    if "p_onset" in ok and "qrs_onset" in ok:
        m["pr_ms"] = ok["qrs_onset"] - ok["p_onset"]
    if "qrs_onset" in ok and "qrs_end" in ok:
        m["qrs_ms"] = ok["qrs_end"] - ok["qrs_onset"]
    if "qrs_onset" in ok and "t_end" in ok:
        m["qt_ms"] = ok["t_end"] - ok["qrs_onset"]
        if ok.get("rr_interval"):
            m["qtc_ms"] = round(m["qt_ms"] / np.sqrt(ok["rr_interval"] / 1000.0), 1)
    for src, key in (("qrs_axis", "axis_deg"), ("p_axis", "p_axis_deg"), ("t_axis", "t_axis_deg")):
        if src in ok:
            m[key] = ok[src]
    rec.meta["subject_id"] = row.get("subject_id")
    _set_date_device(rec, row.get("ecg_time"), row.get("machine_name"))


def _set_date_device(rec: Record, date: str | None, device: str | None) -> None:
    """``meta["date"]`` as "YYYY-MM-DD HH:MM" and ``meta["device"]`` (what the renderer prints)."""
    if date and date.strip():
        rec.meta["date"] = date.strip()[:16]
    if device and device.strip():
        rec.meta["device"] = " ".join(device.split())


# -- CODE-15% HDF5 ----------------------------------------------------------------------------

#: CODE-15% tracings are float mV at 400 Hz (as the PhysioNet Challenge 2025 conversion treats
#: them); 7 s exams are zero-padded, centred, to 4096 samples.
CODE15_FS = 400.0
CODE15_LABEL_COLUMNS = tuple(CODE15_COLUMNS)


def read_code15(path: str | Path) -> Iterator[Record]:
    """Every exam of a CODE-15% HDF5 file (``tracings`` N×4096×12 at 400 Hz, ``exam_id``), with
    age, sex and the six labels of ``exams.csv`` when it lies beside/above the file. The zero
    padding around shorter tracings is removed; the all-zero filler exam (id 0) is skipped."""
    import h5py

    p = Path(path)
    try:
        with h5py.File(p, "r") as f:
            ids = np.asarray(f["exam_id"][()])
            for i in range(len(ids)):
                if int(ids[i]) == 0 and not np.any(f["tracings"][i]):
                    continue
                yield _code15_record(p, int(ids[i]), f["tracings"][i])
    except RecordUnreadable:
        raise
    except (OSError, KeyError) as exc:
        raise _unreadable(p, exc) from exc


def read_code15_exam(path: str | Path, selector: str | None = None) -> Record:
    """One exam of a CODE-15% file: ``selector`` is an exam_id in it, else an index (0-based);
    ``None`` gives the first exam."""
    import h5py

    p = Path(path)
    try:
        with h5py.File(p, "r") as f:
            ids = np.asarray(f["exam_id"][()])
            if selector is None:
                index = 0
            else:
                try:
                    wanted = int(selector)
                except ValueError:
                    raise _unreadable(p, f"'#{selector}' is not an exam id or index") from None
                hits = np.flatnonzero(ids == wanted)
                index = int(hits[0]) if len(hits) else wanted
                if not 0 <= index < len(ids):
                    raise _unreadable(p, f"no exam {wanted} in it ({len(ids)} exams)")
            return _code15_record(p, int(ids[index]), f["tracings"][index])
    except RecordUnreadable:
        raise
    except (OSError, KeyError) as exc:
        raise _unreadable(p, exc) from exc


def _code15_record(path: Path, exam_id: int, tracing: np.ndarray) -> Record:
    signal = np.asarray(tracing, dtype=np.float32)
    nonzero = np.flatnonzero(np.any(signal != 0, axis=1))
    if len(nonzero):
        signal = signal[nonzero[0]: nonzero[-1] + 1]
    rec = Record(record_id=f"code15-{exam_id}", signal=signal, fs=CODE15_FS,
                 leads=list(STANDARD_LEADS), source="code15",
                 meta={"path": str(path), "format": "code15-hdf5", "exam_id": exam_id})
    exams = _find_upwards(path.parent, "exams.csv")
    if exams is not None:
        row = _csv_index(str(exams), exams.stat().st_mtime, ("exam_id",)).get(str(exam_id))
        if row is not None:
            rec.age = _number(row.get("age"))
            rec.sex = {"true": "M", "false": "F"}.get(str(row.get("is_male", "")).strip().lower())
            codes = [c for c in CODE15_LABEL_COLUMNS
                     if str(row.get(c, "")).strip().lower() == "true"]
            rec.codes["code15"] = codes
            for c in codes:
                _add_code(rec, CODE15_COLUMNS[c])
            rec.meta["normal_ecg"] = str(row.get("normal_ecg", "")).strip().lower() == "true"
            if rec.meta["normal_ecg"]:
                _add_code(rec, CPSC_TEXT["Normal"])
            rec.meta["patient_id"] = row.get("patient_id")
    return _finish(rec)


# -- DICOM 12-lead ECG waveform ---------------------------------------------------------------

#: SCP-ECG lead codes (DICOM CID 3001, scheme "SCPECG") for the standard 12 leads.
SCPECG_LEAD_CODES = {"I": "5.6.3-9-1", "II": "5.6.3-9-2", "V1": "5.6.3-9-3", "V2": "5.6.3-9-4",
                     "V3": "5.6.3-9-5", "V4": "5.6.3-9-6", "V5": "5.6.3-9-7", "V6": "5.6.3-9-8",
                     "III": "5.6.3-9-61", "aVR": "5.6.3-9-62", "aVL": "5.6.3-9-63",
                     "aVF": "5.6.3-9-64"}
_LEAD_BY_SCPECG = {code: lead for lead, code in SCPECG_LEAD_CODES.items()}


def read_dicom(path: str | Path) -> Record:
    """A DICOM ECG waveform (12-Lead / General ECG Waveform Storage): the multiplex group with the
    most channels, scaled by each channel's sensitivity (µV/mV) to mV."""
    import pydicom

    p = Path(path)
    try:
        ds = pydicom.dcmread(p)
    except Exception as exc:
        raise _unreadable(p, f"not a DICOM file ({exc})") from exc
    groups = ds.get("WaveformSequence")
    if not groups:
        raise _unreadable(p, "the DICOM file holds no ECG waveform (no WaveformSequence)")
    index = max(range(len(groups)), key=lambda i: int(groups[i].NumberOfWaveformChannels))
    group = groups[index]
    try:
        data = np.asarray(ds.waveform_array(index), dtype=np.float64)
    except Exception as exc:
        raise _unreadable(p, f"its waveform data cannot be decoded ({exc})") from exc
    leads, scale = [], []
    for ch in group.ChannelDefinitionSequence:
        source = ch.ChannelSourceSequence[0]
        code = str(source.get("CodeValue", ""))
        leads.append(_LEAD_BY_SCPECG.get(code)
                     or normalize_lead_name(source.get("CodeMeaning", code)))
        units = ch.get("ChannelSensitivityUnitsSequence")
        scale.append(unit_scale_to_mv(units[0].CodeValue if units else "uV"))
    rec = Record(record_id=p.stem, signal=data * np.asarray(scale),
                 fs=float(group.SamplingFrequency), leads=leads, source="dicom",
                 meta={"path": str(p), "format": "dicom"})
    age = str(ds.get("PatientAge", "") or "")
    if age[:3].isdigit() and age.endswith("Y"):
        rec.age = float(age[:3])
    rec.sex = _sex(ds.get("PatientSex"))
    when = str(ds.get("AcquisitionDateTime", "") or "")
    if len(when) >= 12 and when[:12].isdigit():
        rec.meta["date"] = f"{when[:4]}-{when[4:6]}-{when[6:8]} {when[8:10]}:{when[10:12]}"
    _set_date_device(rec, None, str(ds.get("Manufacturer", "") or ""))
    texts = [str(a.UnformattedTextValue) for a in ds.get("WaveformAnnotationSequence", [])
             if "UnformattedTextValue" in a]
    for text in texts:
        _add_label(rec.labels, text)
    return _finish(rec)


def write_dicom(record: Record, path: str | Path) -> Path:
    """Write ``record`` as a DICOM 12-Lead ECG Waveform Storage file (int16 samples, µV
    sensitivity chosen so the largest sample fits, SCP-ECG lead codes, labels as unformatted-text
    waveform annotations). No patient identity is written. Returns ``path``."""
    import datetime

    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, TwelveLeadECGWaveformStorage, generate_uid

    p = Path(path)
    signal = np.asarray(record.signal, dtype=np.float64)
    peak_uv = float(np.max(np.abs(signal))) * 1000.0 if signal.size else 0.0
    sensitivity = max(1.0, np.ceil(peak_uv / 32000.0))            # µV per stored unit
    samples = np.round(signal * 1000.0 / sensitivity).astype("<i2")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = TwelveLeadECGWaveformStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(p), {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.datetime.now()
    ds.SOPClassUID = TwelveLeadECGWaveformStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "ECG"
    ds.Manufacturer = "pulse_app"
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.PatientName, ds.PatientID = "", ""
    ds.PatientBirthDate, ds.StudyDate, ds.StudyTime = "", ds.ContentDate, ds.ContentTime
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.PatientAge = f"{int(record.age):03d}Y" if record.age is not None else ""
    ds.PatientSex = record.sex or ""

    group = Dataset()
    group.WaveformOriginality = "ORIGINAL"
    group.MultiplexGroupLabel = "RHYTHM"
    group.NumberOfWaveformChannels = samples.shape[1]
    group.NumberOfWaveformSamples = samples.shape[0]
    group.SamplingFrequency = f"{record.fs:g}"
    group.WaveformBitsAllocated, group.WaveformBitsStored = 16, 16
    group.WaveformSampleInterpretation = "SS"
    channels = []
    for name in record.leads:
        source = Dataset()
        source.CodeValue = SCPECG_LEAD_CODES.get(name, name)
        source.CodingSchemeDesignator = "SCPECG" if name in SCPECG_LEAD_CODES else "99PULSE"
        source.CodingSchemeVersion = "1.3"
        source.CodeMeaning = f"Lead {name}"
        units = Dataset()
        units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "uV", "UCUM", "microvolt"
        ch = Dataset()
        ch.ChannelSourceSequence = Sequence([source])
        ch.ChannelSensitivity = f"{sensitivity:g}"
        ch.ChannelSensitivityUnitsSequence = Sequence([units])
        ch.ChannelSensitivityCorrectionFactor = "1"
        ch.ChannelBaseline = "0"
        ch.ChannelSampleSkew = "0"
        ch.WaveformBitsStored = 16
        channels.append(ch)
    group.ChannelDefinitionSequence = Sequence(channels)
    group.WaveformData = samples.tobytes()
    ds.WaveformSequence = Sequence([group])
    notes = []
    for label in record.labels:
        note = Dataset()
        note.UnformattedTextValue = label
        note.ReferencedWaveformChannels = [1, 0]
        notes.append(note)
    if notes:
        ds.WaveformAnnotationSequence = Sequence(notes)
    ds.save_as(p, enforce_file_format=True)
    return p
