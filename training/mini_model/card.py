"""The mini model's card (``README.md`` of the model folder): what it is, how it was built and
its held-out scores against the majority baseline, in sentences that follow the numbers."""

from __future__ import annotations

from pathlib import Path

NOTE = ("trained demonstration model (a few million parameters, synthetic ECGs): not PULSE-7B, "
        "not for clinical use")


def score_table(result: dict, model: str) -> str:
    """The evaluation rows as a markdown table: this model, the untrained tiny one, majority."""
    columns = [(model, "pulse-mini"), (result.get("compare"), "untrained tiny"),
               ("majority", "majority baseline")]
    columns = [(key, name) for key, name in columns if key in result.get("predictors", [])]
    lines = ["| task / question type | metric | n | " + " | ".join(n for _, n in columns) + " |",
             "|---|---|---:|" + "---:|" * len(columns)]
    for row in result.get("rows", []):
        def cell(key):
            value = row.get(key)
            if value is None:
                return "-"
            return f"{value:.1f}" if row["metric"] == "MAE bpm" else f"{100 * value:.1f} %"
        lines.append(f"| {row['group']} | {row['metric']} | {row['n']} | "
                     + " | ".join(cell(k) for k, _ in columns) + " |")
    return "\n".join(lines)


HEADLINE = (("Rate: bucket, all question types", "heart-rate questions"),
            ("Rhythm: rhythm label, all question types", "rhythm questions"),
            ("All questions", "all questions"))


#: points above the majority baseline for "clearly beats", and at most for "does NOT beat"
CLEAR_MARGIN, NO_WIN_MARGIN = 10, 2


def verdict(result: dict, model: str, groups=HEADLINE) -> str:
    """One honest sentence per headline score: rate and rhythm vs the majority baseline."""
    rows = {row["group"]: row for row in result.get("rows", [])}
    out = []
    for group, what in groups:
        row = rows.get(group)
        if not row or row.get(model) is None or row.get("majority") is None:
            continue
        ours, base = 100 * row[model], 100 * row["majority"]
        if ours >= base + CLEAR_MARGIN:
            how = "clearly beats"
        elif ours > base + NO_WIN_MARGIN:
            how = "beats, but only slightly,"
        else:
            how = "does NOT beat"
        out.append(f"- On {what} it {how} the majority baseline: {ours:.1f} % vs {base:.1f} % "
                   f"(n = {row['n']}).")
    return "\n".join(out)


def weak_spots(result: dict, model: str) -> str:
    """The rows of a score table where the model does not beat the majority baseline (by more
    than ``NO_WIN_MARGIN`` points, as in :func:`verdict`), a line each; empty when none."""
    lines = []
    for row in result.get("rows", []):
        ours, base = row.get(model), row.get("majority")
        if row["metric"] == "accuracy" and ours is not None and base is not None \
                and 100 * ours <= 100 * base + NO_WIN_MARGIN:
            lines.append(f"- {row['group']}: {100 * ours:.1f} % vs majority {100 * base:.1f} % "
                         f"(n = {row['n']}).")
    return ("Where it does not beat the majority baseline:\n" + "\n".join(lines)) if lines else ""


def _pct(value) -> str:
    """A fraction as a percentage with one decimal, ``?`` when missing."""
    return "?" if value is None else f"{100 * value:.1f} %"


def _num(value) -> str:
    """A number with one decimal, ``?`` when missing."""
    return "?" if value is None else f"{value:.1f}"


def model_card(info: dict) -> str:
    """The card's markdown, from what the build recorded (``mini_model_info.json`` of its work
    folder: sizes, settings, timings, the warm-up's and the evaluation's scores)."""
    table = info.get("score_table") if info.get("verdict") else "(evaluation did not run)"
    warmup = info.get("vision_warmup") or {}
    warmup_scores = warmup.get("heldout") or {}
    teacher = warmup.get("teacher") or {}
    teacher_text = ""
    if teacher:
        scores = teacher.get("heldout") or {}
        teacher_text = (
            f"It also learns from a small convolutional teacher trained first on the same "
            f"tiles for {teacher['epochs']:g} epochs: per image token the teacher's features, "
            f"per image its softened rhythm probabilities (held-out, the teacher itself reads "
            f"{_pct(scores.get('rate_bucket_accuracy'))} of rate buckets and "
            f"{_pct(scores.get('rhythm_accuracy'))} of rhythms right; it is thrown away). ")
    return f"""# pulse-mini — a trained demonstration model (not PULSE-7B, not for clinical use)

A tiny model of **PULSE-7B's exact classes** (LLaVA-NeXT: a CLIP-style ViT vision tower, an
`mlp2x_gelu` projector, a Llama decoder; anyres tiling with PULSE's grid pinpoints, `flat`
image-token merge, the `llava_v1` conversation template), trained from scratch on a CPU by
`python -m training.mini_model` in {info['minutes_total']:.0f} minutes. It is the app's offline
default so that a fresh machine without a GPU or network shows the whole workflow with a model
that went through the project's whole training path; the scores below say what it did and did
not learn.

**It is not PULSE-7B** and knows nothing PULSE-7B knows: it saw only synthetic, simulated ECGs
drawn by this project's renderer. Its answers about real ECGs are unreliable. **Not for clinical
use.**

## Model
| part | size |
|---|---|
| vision tower | CLIP ViT, {info['spec']['vision_layers']} layers, width {info['spec']['vision_hidden']}, {info['spec']['tile_px']} px tiles, {info['spec']['patch_px']} px patches |
| projector | mlp2x_gelu |
| language model | Llama, {info['spec']['text_layers']} layers, width {info['spec']['text_hidden']}, {info['spec']['text_heads']} heads, context {info['spec']['max_positions']} |
| tokenizer | sentencepiece BPE ({info['vocab']} pieces) trained on the instruction text |
| parameters | {info['parameters_m']:.1f} M, stored in float16 |

## Training data
{info['train_records']} simulated 12-lead records (`pulse_app.ecg.simulate.random_findings`:
~35 % normal sinus rhythm, the rest rhythm, conduction, axis, ST/T, QT and voltage findings),
rendered as 3x4+II paper ECGs (`pulse_app.ecg.render`, the training mix: about half clean, half
with photo/scan distortions), {info['train_samples']} question/answer pairs from
`training.instruct` (basic features, rhythm, morphology, report; close-ended, open-ended,
fill-in-the-blank, multiple choice). Every answer states the reading before the verdict
("The rate is about 86 bpm and the rhythm is atrial fibrillation. Answer: C. Atrial
fibrillation."; close-ended answers end "Answer: yes." or "Answer: no."): a model this small
that has to write the letter or "Yes" first picks it before it has read the tracing (measured:
with verdict-first answers, rhythm multiple choice scored 26 % against a majority baseline of 59 %).
Each training record also gets {info.get('extra_mcq', 0)} extra round(s) of multiple-choice questions on
basic features and rhythm (other phrasings, other option orders): naming the right letter for
the option that says what it read is the skill it learns last. {info.get('grounded_text', '')}Its stages:

0. **Vision warm-up** (`training.mini_model.warmup`), standing in for PULSE's pretrained CLIP tower
   (none can be downloaded here): the tower alone, {warmup.get('epochs', '?')} epochs over the training pages,
   trained on the simulator's ground truth at the tiles and feature layer the language model
   reads: per image token, the R peaks drawn in its patch and the heart rate of the beat
   intervals drawn in it; per image, rate and rhythm (throw-away heads). {teacher_text}Held-out, its heads read {_pct(warmup_scores.get('rate_bucket_accuracy'))} of rate buckets and
   {_pct(warmup_scores.get('rhythm_accuracy'))} of rhythms right (rate MAE {_num(warmup_scores.get('rate_mae_bpm'))} bpm).
   Without this stage, a tower trained from random weights never learned to see the page.
1. **Alignment** like LLaVA's, the tower frozen from here on: {info['align_epochs']} epoch(s) over
   {info.get('align_samples', '?')} single heart-rate and rhythm questions (answers that depend on the image alone),
   AdamW lr {info['align_learning_rate']}.
2. **Instruction tuning** of projector and language model, {info['epochs']} epoch(s) over all questions, packed into {info['train_conversations']}
   multi-turn conversations (one per image), lr {info['learning_rate']}.
{grounding_stage_text(info)}
Cosine schedules, batch {info['batch']}. Final loss of instruction tuning: {info.get('train_loss', 'n/a')}.

## Scores on held-out records
{info['heldout_records']} held-out simulated records (different seeds), scored by
`python -m training.evaluate` (accuracy for close-ended and multiple-choice answers, macro F1
for findings), against the majority-class baseline (from the training answers) and the
untrained tiny model:

{table}

On this balanced sample (few questions per row):
{info.get('verdict', '')}

### All {info.get('rate_rhythm_questions', '?')} held-out heart-rate and rhythm questions (the headline numbers)

{info.get('rate_rhythm_table', '(not evaluated)')}

{info.get('rate_rhythm_verdict', '')}

Does it look at the image? On {info.get('image_dependence', {}).get('n', '?')} held-out heart-rate and rhythm questions, the answer loss
with each ECG's own image is {info.get('image_dependence', {}).get('own_image', '?')} and with another record's image
{info.get('image_dependence', {}).get('other_image', '?')} (equal values mean the answers ignore the image).
{info.get('finding', '')}

{info.get('real_pages', '')}Percentages are accuracies except "macro F1" rows; "MAE bpm" is the mean absolute error of the
heart rate stated in open answers. Full answers: `scores.json` of the run.

## Regenerate
`make mini-model` (= `python -m training.mini_model`) rebuilds data, tokenizer, weights,
evaluation and this card from scratch, deterministically up to floating-point order.
"""



def finding(dependence: dict) -> str:
    """One sentence on whether the answers depend on the image (:func:`image_dependence`)."""
    if dependence["other_image"] - dependence["own_image"] < 0.01:
        return ("**Honest result: this model has not learned to read ECG images.** Its answers "
                "have the right form and follow the class frequencies of the training data, but "
                "do not depend on the image. The pipeline (data, template, masks, anyres, "
                "training, evaluation, loading in the app) is what this model demonstrates, not "
                "ECG reading.")
    return "The answers depend on the image: the loss is lower with the right image."


def grounded_text(fraction: float, grounded: int, total: int) -> str:
    """The card's sentence on the questions asked with the measurement context."""
    if not grounded:
        return ""
    return (f"About {100 * fraction:.0f} % of the questions ({grounded} of {total}) are asked "
            "as the app asks a grounded one: the measurement context in the app's own words "
            "(`pulse_app.grounding.measurement_context`, \"Measured from the image by the "
            "digitiser (not by the model): heart rate 72 bpm (lead II, high confidence); ...\") "
            "before the question, measured on the record's signal (`ecg_measure`), so the "
            "model learns to use what the digitiser measured when it is given. ")


def grounding_stage_text(info: dict) -> str:
    """The card's item on the grounding stage, when it ran."""
    if not info.get("ground_samples"):
        return ""
    return (f"3. **Grounding** (`ground.yaml`), {info['ground_epochs']} epoch(s) over "
            f"{info['ground_samples']} single questions, lr {info['ground_learning_rate']}: "
            "every heart-rate question asked with its record's measurement context, "
            f"{100 * info['ground_swap_fraction']:.0f} % of them shown another record's page "
            "(so only the context leads to the answer), grounded rhythm questions, and plain "
            "questions of every kind. After instruction tuning alone the model mostly read the "
            "rate off the page, whatever the context said (on simulated pages the two agree, so "
            "nothing rewarded reading the context). Final loss "
            f"{info.get('ground_loss', 'n/a')}.\n")


def real_pages_section(result: dict) -> str:
    """The card's section on pages of real records (``python -m training.grounded_eval``'s
    JSON, when the build's work folder holds one): rate and rhythm, as asked and grounded."""
    rows = (result or {}).get("table") or {}
    if not rows:
        return ""
    lines = ["| questions | n | majority baseline | as asked | grounded | digitiser alone |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind, row in rows.items():
        cells = [f"{100 * row[m]:.1f} %" if row.get(m) is not None else "-"
                 for m in ("majority", "plain", "grounded", "digitiser")]
        lines.append(f"| {kind} | {row['n']} | " + " | ".join(cells) + " |")
    source = {"train file": "the model's training questions"}.get(
        result.get("majority_from"), result.get("majority_from", "?"))
    said = []
    for kind, row in rows.items():
        if row.get("grounded") is not None and row.get("majority") is not None:
            diff = 100 * (row["grounded"] - row["majority"])
            said.append(f"{kind} {diff:+.1f} points grounded, "
                        f"{100 * (row.get('plain', 0) - row['majority']):+.1f} as asked")
    verdicts = ("Against the majority baseline: " + "; ".join(said) + ".\n\n") if said else ""
    return f"""## On pages of real records, grounded or not
{result.get('pages', '?')} clean pages drawn by the project's renderer from real 12-lead records (`../shared/data`:
ptbxl, cpsc2018, cinc-rare-rhythms, ecg-records; never seen in training), their rate and rhythm
questions answered as asked and grounded (with the context the app builds from the digitiser's
reading of the same page), by `python -m training.grounded_eval` (majority baseline from
{source}; "digitiser alone": its measured rate written as the answer):

{chr(10).join(lines)}

{verdicts}"""


def last_loss(output_dir: str | Path) -> str:
    """The last logged training loss of a ``training.train`` run (its latest checkpoint's
    trainer state), or "n/a"."""
    import json

    states = sorted(Path(output_dir).glob("checkpoint-*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.rsplit("-", 1)[1]))
    history = json.loads(states[-1].read_text())["log_history"] if states else []
    losses = [e["loss"] for e in history if "loss" in e]
    return f"{losses[-1]:.3f}" if losses else "n/a"


def card_facts(final: Path, stages, work: Path) -> dict:
    """What the card states besides the recorded scores: sizes, data counts, the training
    stages' settings and last loss (from ``final`` and the build's files in ``work``), and the
    score tables of the evaluation files."""
    import dataclasses
    import json

    from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration
    from training.train import count_parameters

    data, instruct, align = work / "data", stages.instruct, stages.align
    model = PulseLlavaNextForConditionalGeneration.from_pretrained(final)
    facts = {
        "spec": {k: v for k, v in dataclasses.asdict(stages.model).items() if k != "corpus"},
        "vocab": model.config.image_token_index, "parameters_m": count_parameters(model)[1] / 1e6,
        "train_samples": len(json.loads((data / "train-single.json").read_text())),
        "train_conversations": len(json.loads((data / "train.json").read_text())),
        "epochs": instruct.epochs, "learning_rate": instruct.learning_rate,
        "align_epochs": align.epochs, "align_learning_rate": align.learning_rate,
        "align_samples": len(json.loads((data / "align.json").read_text())),
        "batch": instruct.global_batch_size,
        "train_loss": last_loss(instruct.output_dir),
    }
    singles = json.loads((data / "train-single.json").read_text())
    if any(Path(stages.ground.output_dir).glob("checkpoint-*")):
        facts.update(ground_epochs=stages.ground.epochs,
                     ground_learning_rate=stages.ground.learning_rate,
                     ground_swap_fraction=stages.ground_data.swap_fraction,
                     ground_loss=last_loss(stages.ground.output_dir))
    facts["grounded_text"] = grounded_text(stages.data.grounded_fraction,
                                           sum(s["id"].endswith("-g") for s in singles),
                                           len(singles))
    real = work / "grounded-eval.json"
    if real.is_file():
        facts["real_pages"] = real_pages_section(json.loads(real.read_text()))
    scores, rr_file = work / "scores.json", work / "scores-rate-rhythm.json"
    evaluation = json.loads(scores.read_text()) if scores.is_file() else {}
    facts.update(score_table=score_table(evaluation, evaluation.get("model", str(final))),
                 verdict=verdict(evaluation, evaluation.get("model", str(final))))
    rr = json.loads(rr_file.read_text()) if rr_file.is_file() else {}
    if rr:
        rr_model = rr.get("model", str(final))
        facts.update(rate_rhythm_table=score_table(rr, rr_model),
                     rate_rhythm_verdict="\n\n".join(filter(None, [
                         verdict(rr, rr_model, HEADLINE[:2]), weak_spots(rr, rr_model)])),
                     rate_rhythm_questions=next((r["n"] for r in rr.get("rows", [])
                                                 if r["group"] == "All questions"), "?"))
    return facts
