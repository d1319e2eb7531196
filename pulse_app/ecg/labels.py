"""What ECG label codes mean: the project's own table, and what each source labels exhaustively.

Written here from the published code lists as facts (code, name, abbreviation, class, and the
findings a code asserts), so that a fresh checkout reads labels without third-party tables:

- :data:`SNOMED`: the SNOMED CT codes of the PhysioNet/CinC Challenges 2020/2021 (``# Dx:`` lines);
- :data:`SCP`: the 71 SCP-ECG statements of PTB-XL (``scp_codes`` of ``ptbxl_database.csv``);
- :data:`CPSC_TEXT`: the nine text labels of the CPSC 2018 records as the 2020 Challenge first
  released them (``#Dx: AF,RBBB``);
- :data:`CODE15_COLUMNS`: the six exam columns of CODE-15% ``exams.csv``;
- :data:`STATEMENT_PHRASES`: machine-statement phrases of MIMIC-IV-ECG reports.

A dataset folder that carries its own table (PTB-XL's ``scp_statements.csv``, the Challenge's
``dx_mapping_*.csv``) is read by :mod:`pulse_app.ecg.records` for names and classes; the findings
a code asserts always come from here (codes are stable, names are not).

Findings are the canonical lower-case labels of ``pulse_app.ecg.simulate.FINDINGS`` plus
:data:`OTHER_FINDINGS` (what real sources state and the simulator does not make). What a record
*does not* say is only a negative where its source labels the finding exhaustively
(:data:`EXHAUSTIVE`) or another label excludes it (:func:`known_absent`).

>>> SNOMED["59118001"].name, SNOMED["59118001"].findings
('right bundle branch block', ('right bundle branch block',))
>>> "left bundle branch block" in known_absent("cpsc2018", ["atrial fibrillation"])
True
>>> "left bundle branch block" in known_absent("cinc", ["atrial fibrillation"])
False
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Code:
    """One code of a label system: what it is called and which findings it asserts."""

    code: str
    name: str               # lower case, as a report writes it
    abbreviation: str
    kind: str               # rhythm | ectopy | conduction | axis | st_t | hypertrophy |
                            # infarction | voltage | interval | normal | other
    findings: tuple[str, ...] = ()


# -- canonical findings beyond the simulator's ------------------------------------------------

#: Findings real sources state that the simulator does not make (still canonical strings).
OTHER_FINDINGS = ("normal ecg", "st elevation", "st depression", "paced rhythm")

#: Territorial findings under a general one: absence of the parent means absence of each child;
#: a child present means the parent is present.
CHILDREN = {
    "st elevation": ("inferior st elevation", "anterior st elevation", "lateral st elevation"),
    "st depression": ("inferior st depression", "anterior st depression", "lateral st depression"),
}

_SINUS_RATE = ("sinus rhythm", "sinus bradycardia", "sinus tachycardia")
_ATRIAL = ("atrial fibrillation", "atrial flutter")
#: A present finding (key) excludes these (one rhythm at a time; one axis deviation at a time).
EXCLUDES: dict[str, tuple[str, ...]] = {
    **{r: tuple(x for x in _SINUS_RATE if x != r) + _ATRIAL for r in _SINUS_RATE},
    "sinus arrhythmia": _ATRIAL,
    "atrial fibrillation": _SINUS_RATE + ("sinus arrhythmia", "atrial flutter"),
    "atrial flutter": _SINUS_RATE + ("sinus arrhythmia", "atrial fibrillation"),
    "left axis deviation": ("right axis deviation",),
    "right axis deviation": ("left axis deviation",),
    "left bundle branch block": ("right bundle branch block",),
    "right bundle branch block": ("left bundle branch block",),
}
#: What a "normal ECG" statement excludes (a sinus rate name may still come with it, as in
#: PTB-XL's "sinus bradycardia, otherwise normal ECG"; any finding stated explicitly wins).
NORMAL_EXCLUDES = (
    "atrial fibrillation", "atrial flutter", "premature ventricular contractions",
    "premature atrial contractions", "first-degree av block", "right bundle branch block",
    "left bundle branch block", "left axis deviation", "right axis deviation",
    *CHILDREN["st elevation"], *CHILDREN["st depression"], "st elevation", "st depression",
    "t-wave inversion", "long qt", "low qrs voltage", "left ventricular hypertrophy",
    "paced rhythm")


# -- SNOMED CT (CinC 2020/2021) ---------------------------------------------------------------

def _table(rows) -> dict[str, Code]:
    return {row[0]: Code(*row[:4], tuple(row[4:])) for row in rows}


#: SNOMED CT code -> Code. Names and abbreviations as the CinC 2021 mapping lists them.
SNOMED: dict[str, Code] = _table([
    # rhythm
    ("426783006", "sinus rhythm", "NSR", "rhythm", "sinus rhythm"),
    ("426177001", "sinus bradycardia", "SB", "rhythm", "sinus bradycardia"),
    ("427084000", "sinus tachycardia", "STach", "rhythm", "sinus tachycardia"),
    ("427393009", "sinus arrhythmia", "SA", "rhythm", "sinus arrhythmia"),
    ("164889003", "atrial fibrillation", "AF", "rhythm", "atrial fibrillation"),
    ("164890007", "atrial flutter", "AFL", "rhythm", "atrial flutter"),
    ("426749004", "chronic atrial fibrillation", "CAF", "rhythm", "atrial fibrillation"),
    ("314208002", "rapid atrial fibrillation", "RAF", "rhythm", "atrial fibrillation"),
    ("282825002", "paroxysmal atrial fibrillation", "PAF", "rhythm"),
    ("195080001", "atrial fibrillation and flutter", "AFAFL", "rhythm"),
    ("10370003", "pacing rhythm", "PR", "rhythm", "paced rhythm"),
    ("426627000", "bradycardia", "Brady", "rhythm"),
    ("713422000", "atrial tachycardia", "ATach", "rhythm"),
    ("426761007", "supraventricular tachycardia", "SVT", "rhythm"),
    ("67198005", "paroxysmal supraventricular tachycardia", "PSVT", "rhythm"),
    ("164895002", "ventricular tachycardia", "VTach", "rhythm"),
    ("29320008", "atrioventricular junctional rhythm", "AVJR", "rhythm"),
    ("106068003", "atrial rhythm", "ARH", "rhythm"),
    ("195101003", "wandering atrial pacemaker", "WAP", "rhythm"),
    ("17366009", "sinus atrium to atrial wandering rhythm", "SAAWR", "rhythm"),
    ("251268003", "atrial pacing pattern", "AP", "rhythm"),
    ("251266004", "ventricular pacing pattern", "VPP", "rhythm"),
    # ectopy
    ("284470004", "premature atrial contraction", "PAC", "ectopy",
     "premature atrial contractions"),
    ("63593006", "supraventricular premature beats", "SVPB", "ectopy",
     "premature atrial contractions"),
    ("427172004", "premature ventricular contractions", "PVC", "ectopy",
     "premature ventricular contractions"),
    ("17338001", "ventricular premature beats", "VPB", "ectopy",
     "premature ventricular contractions"),
    ("164884008", "ventricular ectopics", "VEB", "ectopy", "premature ventricular contractions"),
    ("11157007", "ventricular bigeminy", "VBig", "ectopy", "premature ventricular contractions"),
    ("251180001", "ventricular trigeminy", "VTrig", "ectopy",
     "premature ventricular contractions"),
    ("251173003", "atrial bigeminy", "AB", "ectopy", "premature atrial contractions"),
    # conduction
    ("270492004", "first degree av block", "IAVB", "conduction", "first-degree av block"),
    ("164947007", "prolonged pr interval", "LPR", "conduction", "first-degree av block"),
    ("195042002", "second degree av block", "IIAVB", "conduction"),
    ("27885002", "complete heart block", "CHB", "conduction"),
    ("233917008", "av block", "AVB", "conduction"),
    ("59118001", "right bundle branch block", "RBBB", "conduction", "right bundle branch block"),
    ("713427006", "complete right bundle branch block", "CRBBB", "conduction",
     "right bundle branch block"),
    ("164909002", "left bundle branch block", "LBBB", "conduction", "left bundle branch block"),
    ("733534002", "complete left bundle branch block", "CLBBB", "conduction",
     "left bundle branch block"),
    ("713426002", "incomplete right bundle branch block", "IRBBB", "conduction"),
    ("251120003", "incomplete left bundle branch block", "ILBBB", "conduction"),
    ("6374002", "bundle branch block", "BBB", "conduction"),
    ("445118002", "left anterior fascicular block", "LAnFB", "conduction"),
    ("445211001", "left posterior fascicular block", "LPFB", "conduction"),
    ("698252002", "nonspecific intraventricular conduction disorder", "NSIVCB", "conduction"),
    ("74390002", "wolff-parkinson-white pattern", "WPW", "conduction"),
    # axis
    ("39732003", "left axis deviation", "LAD", "axis", "left axis deviation"),
    ("47665007", "right axis deviation", "RAD", "axis", "right axis deviation"),
    ("251200008", "indeterminate cardiac axis", "ICA", "axis"),
    # ST-T, QT, voltage, hypertrophy, infarction, other
    ("59931005", "t wave inversion", "TInv", "st_t", "t-wave inversion"),
    ("164934002", "t wave abnormal", "TAb", "st_t"),
    ("428750005", "nonspecific st t abnormality", "NSSTTA", "st_t"),
    ("429622005", "st depression", "STD", "st_t", "st depression"),
    ("164931005", "st elevation", "STE", "st_t", "st elevation"),
    ("704997005", "inferior st segment depression", "ISTD", "st_t", "inferior st depression"),
    ("55930002", "st changes", "STC", "st_t"),
    ("164930006", "st interval abnormal", "STIAb", "st_t"),
    ("426434006", "anterior ischemia", "AnMIs", "st_t"),
    ("425419005", "inferior ischaemia", "IIs", "st_t"),
    ("425623009", "lateral ischaemia", "LIs", "st_t"),
    ("164861001", "myocardial ischemia", "MIs", "st_t"),
    ("111975006", "prolonged qt interval", "LQT", "interval", "long qt"),
    ("251146004", "low qrs voltages", "LQRSV", "voltage", "low qrs voltage"),
    ("164873001", "left ventricular hypertrophy", "LVH", "hypertrophy",
     "left ventricular hypertrophy"),
    ("55827005", "left ventricular high voltage", "LVHV", "voltage"),
    ("89792004", "right ventricular hypertrophy", "RVH", "hypertrophy"),
    ("67741000119109", "left atrial enlargement", "LAE", "hypertrophy"),
    ("164865005", "myocardial infarction", "MI", "infarction"),
    ("164867002", "old myocardial infarction", "OldMI", "infarction"),
    ("54329005", "anterior myocardial infarction", "AnMI", "infarction"),
    ("57054005", "acute myocardial infarction", "AMI", "infarction"),
    ("164917005", "q wave abnormal", "QAb", "infarction"),
    ("365413008", "poor r wave progression", "PRWP", "other"),
    ("164951009", "abnormal qrs", "abQRS", "other"),
    ("428417006", "early repolarization", "ERe", "other"),
    ("251199005", "counterclockwise rotation", "CCR", "other"),
    ("251198002", "clockwise rotation", "CR", "other"),
    ("418818005", "brugada pattern", "BRU", "other"),
])

#: The CPSC 2018 text labels (``#Dx:`` of the first 2020 Challenge release) -> Code.
CPSC_TEXT: dict[str, Code] = _table([
    ("Normal", "normal ecg", "Normal", "normal", "normal ecg"),
    ("AF", "atrial fibrillation", "AF", "rhythm", "atrial fibrillation"),
    ("I-AVB", "first degree av block", "I-AVB", "conduction", "first-degree av block"),
    ("LBBB", "left bundle branch block", "LBBB", "conduction", "left bundle branch block"),
    ("RBBB", "right bundle branch block", "RBBB", "conduction", "right bundle branch block"),
    ("PAC", "premature atrial contraction", "PAC", "ectopy", "premature atrial contractions"),
    ("PVC", "premature ventricular contraction", "PVC", "ectopy",
     "premature ventricular contractions"),
    ("STD", "st depression", "STD", "st_t", "st depression"),
    ("STE", "st elevation", "STE", "st_t", "st elevation"),
])
#: The SNOMED codes the 2020 Challenge gave the nine CPSC classes (the same labels, recoded).
CPSC_SNOMED = ("426783006", "164889003", "270492004", "164909002", "59118001", "284470004",
               "164884008", "429622005", "164931005")


# -- PTB-XL SCP-ECG statements ----------------------------------------------------------------

@dataclass(frozen=True)
class Statement(Code):
    """An SCP-ECG statement of PTB-XL: ``statement`` is diagnostic | form | rhythm (a few are
    both diagnostic and form); ``superclass``/``subclass`` are PTB-XL's diagnostic classes."""

    statement: str = ""
    superclass: str = ""
    subclass: str = ""


def _scp(rows) -> dict[str, Statement]:
    out = {}
    for code, name, statement, superclass, subclass, kind, *findings in rows:
        out[code] = Statement(code, name, code, kind, tuple(findings), statement, superclass,
                              subclass)
    return out


#: PTB-XL SCP code -> Statement (all 71 statements of PTB-XL 1.0.x).
SCP: dict[str, Statement] = _scp([
    # diagnostic (superclass NORM, MI, STTC, CD, HYP)
    ("NORM", "normal ecg", "diagnostic", "NORM", "NORM", "normal", "normal ecg"),
    ("IMI", "inferior myocardial infarction", "diagnostic", "MI", "IMI", "infarction"),
    ("ASMI", "anteroseptal myocardial infarction", "diagnostic", "MI", "AMI", "infarction"),
    ("ILMI", "inferolateral myocardial infarction", "diagnostic", "MI", "IMI", "infarction"),
    ("AMI", "anterior myocardial infarction", "diagnostic", "MI", "AMI", "infarction"),
    ("ALMI", "anterolateral myocardial infarction", "diagnostic", "MI", "AMI", "infarction"),
    ("INJAS", "subendocardial injury in anteroseptal leads", "diagnostic", "MI", "AMI",
     "infarction"),
    ("LMI", "lateral myocardial infarction", "diagnostic", "MI", "LMI", "infarction"),
    ("INJAL", "subendocardial injury in anterolateral leads", "diagnostic", "MI", "AMI",
     "infarction"),
    ("IPLMI", "inferoposterolateral myocardial infarction", "diagnostic", "MI", "IMI",
     "infarction"),
    ("IPMI", "inferoposterior myocardial infarction", "diagnostic", "MI", "IMI", "infarction"),
    ("INJIN", "subendocardial injury in inferior leads", "diagnostic", "MI", "IMI", "infarction"),
    ("INJLA", "subendocardial injury in lateral leads", "diagnostic", "MI", "AMI", "infarction"),
    ("PMI", "posterior myocardial infarction", "diagnostic", "MI", "PMI", "infarction"),
    ("INJIL", "subendocardial injury in inferolateral leads", "diagnostic", "MI", "IMI",
     "infarction"),
    ("NDT", "non-diagnostic t abnormalities", "diagnostic+form", "STTC", "STTC", "st_t"),
    ("NST_", "non-specific st changes", "diagnostic+form", "STTC", "NST_", "st_t"),
    ("DIG", "digitalis effect", "diagnostic+form", "STTC", "STTC", "st_t"),
    ("LNGQT", "long qt interval", "diagnostic+form", "STTC", "STTC", "interval", "long qt"),
    ("ISC_", "non-specific ischemic changes", "diagnostic", "STTC", "ISC_", "st_t"),
    ("ISCAL", "ischemic changes in anterolateral leads", "diagnostic", "STTC", "ISCA", "st_t"),
    ("ISCIN", "ischemic changes in inferior leads", "diagnostic", "STTC", "ISCI", "st_t"),
    ("ISCIL", "ischemic changes in inferolateral leads", "diagnostic", "STTC", "ISCI", "st_t"),
    ("ISCAS", "ischemic changes in anteroseptal leads", "diagnostic", "STTC", "ISCA", "st_t"),
    ("ISCLA", "ischemic changes in lateral leads", "diagnostic", "STTC", "ISCA", "st_t"),
    ("ISCAN", "ischemic changes in anterior leads", "diagnostic", "STTC", "ISCA", "st_t"),
    ("ANEUR", "st-t changes compatible with ventricular aneurysm", "diagnostic", "STTC", "STTC",
     "st_t"),
    ("EL", "electrolyte disturbance or drug effect", "diagnostic", "STTC", "STTC", "st_t"),
    ("LVH", "left ventricular hypertrophy", "diagnostic", "HYP", "LVH", "hypertrophy",
     "left ventricular hypertrophy"),
    ("LAO/LAE", "left atrial overload/enlargement", "diagnostic", "HYP", "LAO/LAE",
     "hypertrophy"),
    ("RVH", "right ventricular hypertrophy", "diagnostic", "HYP", "RVH", "hypertrophy"),
    ("RAO/RAE", "right atrial overload/enlargement", "diagnostic", "HYP", "RAO/RAE",
     "hypertrophy"),
    ("SEHYP", "septal hypertrophy", "diagnostic", "HYP", "SEHYP", "hypertrophy"),
    ("LAFB", "left anterior fascicular block", "diagnostic", "CD", "LAFB/LPFB", "conduction"),
    ("LPFB", "left posterior fascicular block", "diagnostic", "CD", "LAFB/LPFB", "conduction"),
    ("IRBBB", "incomplete right bundle branch block", "diagnostic", "CD", "IRBBB", "conduction"),
    ("ILBBB", "incomplete left bundle branch block", "diagnostic", "CD", "ILBBB", "conduction"),
    ("1AVB", "first degree av block", "diagnostic", "CD", "_AVB", "conduction",
     "first-degree av block"),
    ("2AVB", "second degree av block", "diagnostic", "CD", "_AVB", "conduction"),
    ("3AVB", "third degree av block", "diagnostic", "CD", "_AVB", "conduction"),
    ("IVCD", "non-specific intraventricular conduction disturbance", "diagnostic", "CD", "IVCD",
     "conduction"),
    ("CRBBB", "complete right bundle branch block", "diagnostic", "CD", "CRBBB", "conduction",
     "right bundle branch block"),
    ("CLBBB", "complete left bundle branch block", "diagnostic", "CD", "CLBBB", "conduction",
     "left bundle branch block"),
    ("WPW", "wolff-parkinson-white syndrome", "diagnostic", "CD", "WPW", "conduction"),
    # form
    ("ABQRS", "abnormal qrs", "form", "", "", "other"),
    ("PVC", "ventricular premature complex", "form", "", "", "ectopy",
     "premature ventricular contractions"),
    ("STD_", "non-specific st depression", "form", "", "", "st_t", "st depression"),
    ("VCLVH", "voltage criteria for left ventricular hypertrophy", "form", "", "", "voltage"),
    ("QWAVE", "q waves present", "form", "", "", "infarction"),
    ("LOWT", "low amplitude t waves", "form", "", "", "st_t"),
    ("NT_", "non-specific t wave changes", "form", "", "", "st_t"),
    ("PAC", "atrial premature complex", "form", "", "", "ectopy",
     "premature atrial contractions"),
    ("LPR", "prolonged pr interval", "form", "", "", "conduction", "first-degree av block"),
    ("INVT", "inverted t waves", "form", "", "", "st_t", "t-wave inversion"),
    ("LVOLT", "low qrs voltage", "form", "", "", "voltage", "low qrs voltage"),
    ("HVOLT", "high qrs voltage", "form", "", "", "voltage"),
    ("TAB_", "t wave abnormality", "form", "", "", "st_t"),
    ("STE_", "non-specific st elevation", "form", "", "", "st_t", "st elevation"),
    ("PRC(S)", "premature complexes", "form", "", "", "ectopy"),
    # rhythm
    ("SR", "sinus rhythm", "rhythm", "", "", "rhythm", "sinus rhythm"),
    ("AFIB", "atrial fibrillation", "rhythm", "", "", "rhythm", "atrial fibrillation"),
    ("STACH", "sinus tachycardia", "rhythm", "", "", "rhythm", "sinus tachycardia"),
    ("SARRH", "sinus arrhythmia", "rhythm", "", "", "rhythm", "sinus arrhythmia"),
    ("SBRAD", "sinus bradycardia", "rhythm", "", "", "rhythm", "sinus bradycardia"),
    ("PACE", "normally functioning artificial pacemaker", "rhythm", "", "", "rhythm",
     "paced rhythm"),
    ("SVARR", "supraventricular arrhythmia", "rhythm", "", "", "rhythm"),
    ("BIGU", "bigeminal pattern", "rhythm", "", "", "rhythm"),
    ("AFLT", "atrial flutter", "rhythm", "", "", "rhythm", "atrial flutter"),
    ("SVTAC", "supraventricular tachycardia", "rhythm", "", "", "rhythm"),
    ("PSVT", "paroxysmal supraventricular tachycardia", "rhythm", "", "", "rhythm"),
    ("TRIGU", "trigeminal pattern", "rhythm", "", "", "rhythm"),
])

#: A diagnostic SCP statement is asserted when its likelihood is 0 (not stated, as for every
#: form and rhythm statement) or at least this; 15 and 35 make it possible only (neither
#: present nor absent for the questions; "possible ..." in a report).
SCP_ASSERTED_LIKELIHOOD = 50.0


# -- CODE-15% and machine statements ----------------------------------------------------------

#: CODE-15% ``exams.csv`` label columns -> Code (True/False for every exam).
CODE15_COLUMNS: dict[str, Code] = _table([
    ("1dAVb", "first degree av block", "1dAVb", "conduction", "first-degree av block"),
    ("RBBB", "right bundle branch block", "RBBB", "conduction", "right bundle branch block"),
    ("LBBB", "left bundle branch block", "LBBB", "conduction", "left bundle branch block"),
    ("SB", "sinus bradycardia", "SB", "rhythm", "sinus bradycardia"),
    ("ST", "sinus tachycardia", "ST", "rhythm", "sinus tachycardia"),
    ("AF", "atrial fibrillation", "AF", "rhythm", "atrial fibrillation"),
])

#: Phrases of machine statements (MIMIC-IV-ECG ``report_N``), lower case with hyphens as
#: spaces -> findings; the first phrase found in a statement wins (so "incomplete right bundle"
#: comes before "right bundle branch block"). An empty tuple: a known statement with no finding.
STATEMENT_PHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("normal ecg", ("normal ecg",)),
    ("sinus bradycardia", ("sinus bradycardia",)), ("sinus tachycardia", ("sinus tachycardia",)),
    ("sinus arrhythmia", ("sinus arrhythmia",)),
    ("atrial fibrillation", ("atrial fibrillation",)), ("atrial flutter", ("atrial flutter",)),
    ("sinus rhythm", ("sinus rhythm",)),
    ("first degree av block", ("first-degree av block",)),
    ("1st degree av block", ("first-degree av block",)),
    ("prolonged pr", ("first-degree av block",)),
    ("incomplete right bundle", ()), ("incomplete left bundle", ()),
    ("right bundle branch block", ("right bundle branch block",)),
    ("left bundle branch block", ("left bundle branch block",)),
    ("left axis deviation", ("left axis deviation",)),
    ("right axis deviation", ("right axis deviation",)),
    ("left ventricular hypertrophy", ("left ventricular hypertrophy",)),
    ("low qrs voltage", ("low qrs voltage",)),
    ("prolonged qt", ("long qt",)), ("long qt", ("long qt",)),
    ("premature ventricular", ("premature ventricular contractions",)),
    ("ventricular premature", ("premature ventricular contractions",)),
    ("premature atrial", ("premature atrial contractions",)),
    ("atrial premature", ("premature atrial contractions",)),
    ("t wave inversion", ("t-wave inversion",)),
    ("paced rhythm", ("paced rhythm",)), ("pacemaker", ("paced rhythm",)),
)
#: Words that make a machine statement tentative: its findings become possible only.
TENTATIVE_WORDS = ("possible", "probable", "consider", "cannot rule out", "borderline",
                   "suggests", "may be", "?")
#: Words that negate a machine statement ("no longer present", "... has replaced ...").
NEGATING_WORDS = ("no longer", "replaced", "no significant", "absent", "not present")


def statement_findings(text: str) -> tuple[tuple[str, ...], bool]:
    """Findings of one machine statement, and whether it is tentative.

    >>> statement_findings("Sinus rhythm with 1st degree A-V block")
    (('sinus rhythm',), False)
    >>> statement_findings("Possible left ventricular hypertrophy")
    (('left ventricular hypertrophy',), True)
    """
    low = " ".join((text or "").lower().replace("-", " ").replace("a v block", "av block")
                   .split())
    if any(word in low for word in NEGATING_WORDS):
        return (), False
    for phrase, findings in STATEMENT_PHRASES:
        if re.search(rf"\b{re.escape(phrase)}\b", low):      # "abnormal ecg" is not normal
            return findings, any(word in low for word in TENTATIVE_WORDS)
    return (), False


# -- what each source labels exhaustively -----------------------------------------------------

#: Per source (``Record.source``): the findings it labels exhaustively, so that a missing label
#: is a negative. "simulator": all of them (ground truth by construction). "cpsc2018": the eight
#: abnormal classes every CPSC 2018 record was labelled over. "code15": the six exam columns
#: (explicit True/False). "mimic-iv-ecg": the machine's complete reading of rhythm, ectopy,
#: conduction, axis, voltage and QT (not of ischaemia, which it hedges). "ptbxl": the
#: cardiologist's diagnostic statements for conduction and hypertrophy, and AF/flutter among
#: the rhythm statements. "cinc" (Georgia, Ningbo, PTB-XL and others recoded to SNOMED), "dicom",
#: "wfdb": nothing - only what is labelled is known.
EXHAUSTIVE: dict[str, tuple[str, ...]] = {
    "cpsc2018": ("atrial fibrillation", "first-degree av block", "left bundle branch block",
                 "right bundle branch block", "premature atrial contractions",
                 "premature ventricular contractions", "st depression", "st elevation"),
    "code15": tuple(c.findings[0] for c in CODE15_COLUMNS.values()),
    "mimic-iv-ecg": ("atrial fibrillation", "atrial flutter", "premature ventricular contractions",
                     "premature atrial contractions", "first-degree av block",
                     "right bundle branch block", "left bundle branch block",
                     "left axis deviation", "right axis deviation", "low qrs voltage",
                     "left ventricular hypertrophy", "long qt"),
    "ptbxl": ("first-degree av block", "right bundle branch block", "left bundle branch block",
              "left ventricular hypertrophy", "atrial fibrillation", "atrial flutter"),
}


def exhaustive_findings(source: str) -> tuple[str, ...]:
    """The findings ``source`` labels exhaustively (see :data:`EXHAUSTIVE`)."""
    if source == "simulator":
        from pulse_app.ecg.simulate import FINDINGS

        return FINDINGS + tuple(CHILDREN)
    return EXHAUSTIVE.get(source, ())


def known_absent(source: str, present, possible=()) -> set[str]:
    """Findings a record of ``source`` with ``present`` labels is known NOT to have.

    Exhaustively labelled findings that are missing, findings that a present one excludes
    (:data:`EXCLUDES`, :data:`NORMAL_EXCLUDES`), and the children of an absent general finding
    (:data:`CHILDREN`); never a finding that is present, possible, or implied by a present child.

    >>> sorted(known_absent("cinc", ["sinus bradycardia"]))
    ['atrial fibrillation', 'atrial flutter', 'sinus rhythm', 'sinus tachycardia']
    """
    present = set(present)
    for parent, children in CHILDREN.items():
        if present & set(children):
            present.add(parent)
    absent = set(exhaustive_findings(source))
    for label in present:
        absent.update(EXCLUDES.get(label, ()))
    if "normal ecg" in present:
        absent.update(NORMAL_EXCLUDES)
    absent -= present
    for parent, children in CHILDREN.items():
        if parent in absent:
            absent.update(children)
    keep = present | set(possible)
    for parent, children in CHILDREN.items():
        if set(children) & keep:
            keep.add(parent)
        if parent in set(possible):
            keep.update(children)
    return absent - keep


def canonical_finding(text: str) -> str | None:
    """The canonical finding a name, abbreviation or code of any table stands for, if one.

    >>> canonical_finding("CRBBB"), canonical_finding("First degree AV block"), canonical_finding("x")
    ('right bundle branch block', 'first-degree av block', None)
    """
    names = _by_name()
    return names.get(text.strip()) or names.get(text.strip().lower())


@lru_cache(maxsize=1)
def _by_name() -> dict[str, str]:
    table: dict[str, str] = {}
    for codes in (SNOMED, SCP, CPSC_TEXT, CODE15_COLUMNS):
        for key, code in codes.items():
            if len(code.findings) == 1:
                for name in (key, code.name, code.abbreviation):
                    table.setdefault(name, code.findings[0])
                    table.setdefault(name.lower(), code.findings[0])
    for finding in all_findings():
        table[finding] = finding
    return table


def all_findings() -> tuple[str, ...]:
    """Every canonical finding: the simulator's, then :data:`OTHER_FINDINGS`."""
    from pulse_app.ecg.simulate import FINDINGS

    return FINDINGS + OTHER_FINDINGS
