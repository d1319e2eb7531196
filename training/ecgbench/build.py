"""A miniature ECGBench in the released layout, from simulated and real records.

    python -m training.ecgbench.build --out /tmp/mini-ecgbench [--real ../shared/data] [--per-subset 4]

Writes ``<out>/<subset>.json`` for all nine subsets and ``<out>/images/<folder>/<record>.png``
(folders as the released archives: ptb-xl, code15, cpsc, csn, g12, mmmu-ecg, ecg-arena), drawn
with the project's renderer (:func:`pulse_app.ecg.render.render_ecg`). Questions and answers
follow each subset's published shape (label lists, "NORM"/"ABNORMAL", option letters, ECG-QA's
``Options:`` line and list answers, reports, two-turn arena dialogues) with their gold answers
taken from each record's labels. It exercises the readers, the runner and both scorings end to
end; its numbers say nothing about PULSE-7B.

Simulated records use seed 424242, far from the seeds the mini model was trained on (small
ones). With ``--real``, records of ``../shared/data`` join in (PTB-XL with its SCP superclasses,
CPSC 2018, Georgia/G12EC, Ningbo/CSN); those are third-party data: a folder built from them is
never committed.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from training.ecgbench.paper import ECGQA_INSTRUCTION
from training.ecgbench.subsets import SUBSETS

SIM_SEED = 424242
#: Image folders of the released archives, per subset.
FOLDERS = {"ptb-test": "ptb-xl", "ptb-test-report": "ptb-xl", "ecgqa-test": "ptb-xl",
           "code15-test": "code15", "cpsc-test": "cpsc", "csn-test-no-cot": "csn",
           "g12-test-no-cot": "g12", "mmmu-ecg": "mmmu-ecg", "arena": "ecg-arena"}
#: canonical finding -> label, per label space (PTB-XL superclass, CODE-15%, CPSC 2018).
PTB_SUPER = {"inferior st elevation": "MI", "anterior st elevation": "MI",
             "lateral st elevation": "MI", "inferior st depression": "STTC",
             "anterior st depression": "STTC", "lateral st depression": "STTC",
             "t-wave inversion": "STTC", "long qt": "STTC", "first-degree av block": "CD",
             "right bundle branch block": "CD", "left bundle branch block": "CD",
             "left ventricular hypertrophy": "HYP"}
CODE15 = {"first-degree av block": "1dAVb", "right bundle branch block": "RBBB",
          "left bundle branch block": "LBBB", "sinus bradycardia": "SB",
          "sinus tachycardia": "ST", "atrial fibrillation": "AF"}
CODE15_NAMES = {"1dAVb": "1st degree av block", "RBBB": "right bundle branch block",
                "LBBB": "left bundle branch block", "SB": "sinus bradycardia",
                "ST": "sinus tachycardia", "AF": "atrial fibrillation"}
CPSC = {"atrial fibrillation": "AF", "first-degree av block": "I-AVB",
        "left bundle branch block": "LBBB", "right bundle branch block": "RBBB",
        "premature atrial contractions": "PAC", "premature ventricular contractions": "PVC",
        "inferior st depression": "STD", "anterior st depression": "STD",
        "lateral st depression": "STD", "inferior st elevation": "STE",
        "anterior st elevation": "STE", "lateral st elevation": "STE"}
NORMAL_ONLY = {"sinus rhythm", "sinus bradycardia", "sinus tachycardia", "sinus arrhythmia"}


@dataclass
class Source:
    """A record with its labels in every label space the builder needs."""

    record: object
    origin: str                  # "sim", "ptbxl", "cpsc", "g12", "csn"
    findings: list[str]          # canonical findings (pulse_app.ecg.simulate.FINDINGS)
    ptb: list[str] | None = None     # PTB-XL superclasses, when known
    cpsc: list[str] | None = None    # CPSC labels, when known


def _mapped(findings, table) -> list[str]:
    out = []
    for finding in findings:
        label = table.get(finding)
        if label and label not in out:
            out.append(label)
    return out


def ptb_superclasses(source: Source) -> list[str]:
    if source.ptb is not None:
        return source.ptb
    labels = _mapped(source.findings, PTB_SUPER)
    return labels or (["NORM"] if set(source.findings) <= NORMAL_ONLY else [])


def cpsc_labels(source: Source) -> list[str]:
    if source.cpsc is not None:
        return source.cpsc
    labels = _mapped(source.findings, CPSC)
    return labels or (["NORM"] if set(source.findings) <= {"sinus rhythm"} else [])


def code15_answer(source: Source) -> str:
    labels = _mapped(source.findings, CODE15)
    if labels:
        return "; ".join(f"{label}({CODE15_NAMES[label]})" for label in labels)
    return "NORM" if set(source.findings) <= NORMAL_ONLY - {"sinus arrhythmia"} else "ABNORMAL"


# -- records ---------------------------------------------------------------------------------------

def simulated_sources(count: int) -> list[Source]:
    from training.instruct.dataset import simulated_records
    from training.instruct.vocab import canonical_labels

    return [Source(r, "sim", canonical_labels(r.labels)) for r in simulated_records(count, SIM_SEED)]


def real_sources(shared: Path) -> list[Source]:
    """Records of ``../shared/data`` (see its README) with the labels their sources give."""
    from pulse_app.ecg.records import find_records, read_record, scp_table
    from training.instruct.vocab import canonical_labels

    out = []
    ptb_codes = {}
    excerpt = shared / "ptbxl" / "ptbxl_database.excerpt.csv"
    if excerpt.is_file():
        table = scp_table()
        with excerpt.open(newline="") as f:
            for row in csv.DictReader(f):
                codes = ast.literal_eval(row["scp_codes"])
                ptb_codes[int(float(row["ecg_id"]))] = sorted(
                    {table[c]["diagnostic_class"] for c in codes
                     if str(table.get(c, {}).get("diagnostic", "")).startswith("1")
                     and table[c].get("diagnostic_class")})
    cpsc_names = {label.lower(): label for label in SUBSETS["cpsc-test"].labels}
    cpsc_names["normal"] = "NORM"
    for folder, origin in (("ptbxl", "ptbxl"), ("cpsc2018", "cpsc"), ("ecg-records", None)):
        if not (shared / folder).is_dir():
            continue
        for path in find_records(shared / folder):
            record = read_record(path)
            findings = canonical_labels(record.labels)
            if origin == "ptbxl":
                ecg_id = int(record.record_id.lstrip("HR"))
                if ecg_id not in ptb_codes:
                    continue
                out.append(Source(record, "ptbxl", findings, ptb=ptb_codes[ecg_id]))
            elif origin == "cpsc":
                names = [l.lower().removeprefix("snomed ") for l in record.labels]
                cpsc = [cpsc_names[n] for n in names if n in cpsc_names]
                out.append(Source(record, "cpsc", findings, cpsc=cpsc or None))
            else:
                kind = "g12" if record.record_id.startswith("E") else "csn"
                if findings:
                    out.append(Source(record, kind, findings))
    return out


# -- questions -------------------------------------------------------------------------------------

def _pretty(finding: str) -> str:
    return finding[0].upper() + finding[1:].replace(" av ", " AV ").replace(" st ", " ST ") \
        .replace("qt", "QT").replace("qrs", "QRS")


def multiple_choice(source: Source, letters: str, rng: random.Random) -> tuple[str, str]:
    """A "which diagnosis" question with ``len(letters)`` options and its gold letter."""
    from pulse_app.ecg.simulate import FINDINGS

    truth = rng.choice(source.findings)
    others = [f for f in FINDINGS if f not in source.findings]
    options = rng.sample(others, len(letters) - 1)
    at = rng.randrange(len(letters))
    options.insert(at, truth)
    lines = "\n".join(f"{letter}. {_pretty(o)}" for letter, o in zip(letters, options))
    question = (f"Which of the following statements best describes this ECG?\n{lines}\n"
                "Answer with the option's letter from the given choices directly.")
    return question, letters[at]


def ecgqa_question(source: Source, rng: random.Random) -> tuple[str, list[str]]:
    """An ECG-QA verify or choose question (its Options line, list answer)."""
    from training.instruct.vocab import RHYTHMS

    if rng.random() < 0.5:
        finding = rng.choice(source.findings + ["atrial fibrillation", "left bundle branch block"])
        question = (f"Question: Does this ECG show symptoms of {finding}?\n"
                    "Options: yes, no, not sure")
        answer = ["yes" if finding in source.findings else "no"]
    else:
        rhythm = next((f for f in source.findings if f in RHYTHMS), None)
        options = rng.sample([r for r in RHYTHMS if r != rhythm], 2) + ([rhythm] if rhythm else [])
        rng.shuffle(options)
        question = (f"Question: Which rhythm does this ECG show?\n"
                    f"Options: {', '.join(options)}, None")
        answer = [rhythm or "none"]
    return f"{question}\n\n{ECGQA_INSTRUCTION}", answer


def _sample(item_id: str, image: str, question: str, answer) -> dict:
    return {"id": item_id, "image": image,
            "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                              {"from": "gpt", "value": answer}]}


def build(out: str | Path, *, simulated: int = 8, shared: str | Path | None = None,
          per_subset: int = 4, dpi: int = 100, seed: int = 0) -> dict[str, int]:
    """Write the miniature into ``out``; returns the number of items per subset."""
    from pulse_app.ecg.render import render_ecg
    from training.instruct.report import build_report

    out = Path(out)
    rng = random.Random(seed)
    sources = simulated_sources(simulated)
    if shared is not None:
        sources = real_sources(Path(shared)) + sources        # real records first
    pages = {}

    def image(subset: str, source: Source) -> str:
        key = source.record.record_id
        if key not in pages:
            pages[key] = render_ecg(source.record, dpi=dpi, seed=seed,
                                    distort="none" if len(pages) % 2 else "photo").image
        relative = f"{FOLDERS[subset]}/{key}.png"
        path = out / "images" / relative
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            pages[key].save(path)
        return relative

    def pick(origins, accept=lambda s: True):
        preferred = [s for s in sources if s.origin in origins and accept(s)]
        rest = [s for s in sources if s.origin == "sim" and accept(s) and s not in preferred]
        return (preferred + rest)[:per_subset]

    subsets: dict[str, list] = {}
    subsets["ptb-test"] = [
        _sample(f"ptb-{s.record.record_id}", image("ptb-test", s),
                "Which diagnostic superclasses does this ECG show? Choose every fitting option "
                "from: NORM (normal ECG), MI (myocardial infarction), STTC (ST/T change), CD "
                "(conduction disturbance), HYP (hypertrophy). Only answer based on the given "
                "options without any explanation.", ", ".join(ptb_superclasses(s)))
        for s in pick({"ptbxl"}, lambda s: bool(ptb_superclasses(s)))]
    subsets["ptb-test-report"] = [
        _sample(f"ptb-report-{s.record.record_id}", image("ptb-test-report", s),
                "Please write a clinical report based on this ECG image.",
                build_report(s.record.labels, s.record.measurements))
        for s in pick({"ptbxl"}, lambda s: bool(s.findings))]
    subsets["code15-test"] = [
        _sample(f"code15-{s.record.record_id}", image("code15-test", s),
                "Identify all fitting options from the list and enumerate them using semicolon: "
                + ", ".join(f"{k}({v})" for k, v in CODE15_NAMES.items())
                + ". If none fits, answer NORM for a normal ECG or ABNORMAL otherwise. Only "
                  "answer based on the given options without any explanation.", code15_answer(s))
        for s in pick(set())]
    subsets["ecgqa-test"] = []
    for s in pick({"ptbxl"}, lambda s: bool(s.findings)):
        question, answer = ecgqa_question(s, rng)
        sample = _sample(f"ecgqa-{s.record.record_id}", image("ecgqa-test", s), question, answer)
        sample["conversations"][0]["value"] = [sample["conversations"][0]["value"]]   # lists
        subsets["ecgqa-test"].append(sample)
    subsets["cpsc-test"] = [
        _sample(f"cpsc-{s.record.record_id}", image("cpsc-test", s),
                "Which of these diagnoses does this ECG show? Options: NORM, AF, I-AVB, LBBB, "
                "RBBB, PAC, PVC, STD, STE. Only answer based on the given options without any "
                "explanation.", ", ".join(cpsc_labels(s)))
        for s in pick({"cpsc"}, lambda s: bool(cpsc_labels(s)))]
    for subset, origin in (("csn-test-no-cot", "csn"), ("g12-test-no-cot", "g12"),
                           ("mmmu-ecg", None)):
        letters = SUBSETS[subset].letters
        subsets[subset] = []
        for n, s in enumerate(pick({origin}, lambda s: bool(s.findings))):
            question, letter = multiple_choice(s, letters, rng)
            item_id = n if subset == "mmmu-ecg" else f"{subset.split('-')[0]}-{s.record.record_id}"
            sample = _sample(str(item_id), image(subset, s), question, letter)
            if subset == "mmmu-ecg":
                sample["No"] = n
            subsets[subset].append(sample)
    subsets["arena"] = [
        {"id": f"arena-{n}", "image": image("arena", s),
         "conversations": [
             {"question": "What are the main findings on this ECG?",
              "answer": build_report(s.record.labels, s.record.measurements)},
             {"question": "Which finding matters most clinically, and what would you do next?",
              "answer": f"The key finding is {s.findings[0]}; correlate with symptoms and "
                        "compare with a previous ECG."}]}
        for n, s in enumerate(pick(set(), lambda s: bool(s.findings)))]
    for subset in SUBSETS:
        (out / f"{subset}.json").write_text(json.dumps(subsets[subset], indent=1,
                                                       ensure_ascii=False) + "\n")
    return {subset: len(items) for subset, items in subsets.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ecgbench.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the miniature into")
    parser.add_argument("--simulated", type=int, default=8, help="simulated records")
    parser.add_argument("--real", metavar="DIR", help="also use the real records of DIR "
                        "(../shared/data): never commit the result")
    parser.add_argument("--per-subset", type=int, default=4, help="items per subset")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from pulse_app.errors import PulseError

    try:
        counts = build(args.out, simulated=args.simulated, shared=args.real,
                       per_subset=args.per_subset, dpi=args.dpi, seed=args.seed)
    except PulseError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"wrote a miniature ECGBench to {args.out}: "
          + ", ".join(f"{name} {n}" for name, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
