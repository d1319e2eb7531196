"""Regenerate the app's offline default, ``assets/pulse-mini``, from scratch on a CPU.

    make mini-model                    # = python -m training.mini_model (about 83 min on 2 cores)
    python -m training.mini_model --records 400 --out /tmp/pulse-mini     # a quick try

Five steps, each one command of the project:

1. **data**: simulated 12-lead records (``pulse_app.ecg.simulate``), rendered as paper ECGs
   (``pulse_app.ecg.render``, the training mix: about half clean, half photo/scan distortions),
   questions and answers for the paper's four tasks x four question types
   (``training.instruct.generate_samples``). Training records and held-out records come from
   different seeds; for each page, the vision warm-up's targets (rate, rhythm, where each R
   peak was drawn, from the renderer's sidecar). Pages are rendered at 100 dpi and stored 448 px wide: the model looks at them
   through 112 px tiles (a 2x2 grid: 224 x 173 px), so more pixels would only cost disk.
   Each record's questions are packed into multi-turn conversations about its image (LLaVA's
   format allows it), so one pass of the vision tower teaches several answers.
2. **model**: PULSE-7B's classes at toy size (:func:`mini_spec`: CLIP-style ViT 112 px tiles,
   ``mlp2x_gelu`` projector, 4-layer Llama, anyres, ``flat`` merge), a sentencepiece tokenizer
   trained on the instruction text, random initial weights (``pulse_app.engine.tiny``) with
   zero-mean patch filters (:func:`zero_mean_patch_filters`).
3. **vision warm-up** (``training.vision_warmup``): the tower stands in for PULSE's pretrained
   CLIP, which cannot be downloaded here. It is trained on the simulator's ground truth: per
   image token, the R peaks in its patch and the rate of the beat intervals drawn in it; per
   image, rate and rhythm; and from a small CNN
   teacher trained first on the same tiles (per token its features, per image its rhythm
   probabilities). Without this stage the tower never learned to see the page (the answers
   ignored the image).
4. **train**: ``training.train`` with ``training/configs/mini.yaml`` in two stages like
   LLaVA's, the warmed-up tower frozen: alignment on single heart-rate and rhythm questions
   (answers that depend on the image alone), then the full question mix at half the learning
   rate.
5. **evaluate**: ``python -m training.evaluate`` on the held-out split, against the majority
   baseline and the untrained tiny model; the scores go into the model card.

The result is a transformers folder the app loads (``config.json`` says ``"trained": true`` and
``"demonstration": true``). It is a demonstration of the pipeline: not PULSE-7B, not for clinical
use.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pulse_app.settings import ASSETS_DIR, REPO_ROOT

log = logging.getLogger("training.mini_model")
MINI_DIR = ASSETS_DIR / "pulse-mini"
STORED_WIDTH_PX = 448
TRAIN_SEED, HELDOUT_SEED = 1, 2          # simulated_records seeds: disjoint records
STEPS = ("data", "model", "warmup", "align", "train", "evaluate", "card")
NOTE = ("trained demonstration model (a few million parameters, synthetic ECGs): not PULSE-7B, "
        "not for clinical use")


def mini_spec(corpus: str):
    """The mini model's sizes (~6M parameters). 112 px tiles of 28 px patches: 16 tokens per
    tile, 80 per ECG page (base image + 2x2 tiles), so a CPU step is cheap."""
    from pulse_app.engine.tiny import TinySpec

    return TinySpec(name="pulse-mini", tile_px=112, patch_px=28, vision_hidden=192,
                    vision_layers=4, vision_mlp=768, text_hidden=256, text_layers=4, text_heads=4,
                    text_mlp=704, vocab_size=2000, max_positions=1280, seed=0, trained=False,
                    corpus=corpus)


# -- 1. data --------------------------------------------------------------------------------------

def make_split(out: Path, count: int, seed: int, *, start: int = 0, extra_mcq: int = 0,
               progress=log.info) -> tuple[list, list[dict]]:
    """Render simulated records ``start`` .. ``start + count - 1`` of ``seed`` into
    ``out/images``; return their samples and their vision warm-up targets (rate, rhythm label,
    R-peak positions and the beat intervals' rates in the stored image,
    :mod:`training.vision_warmup`).

    ``extra_mcq``: rounds of additional multiple-choice questions per record on basic features
    and rhythm (other phrasings, other option orders; ids end ``-x1``, ``-x2`` ...). Picking the
    letter of the option that says what the model read is the skill a model this small learns
    last (measured without it: 30 of the 57 multiple-choice rhythm answers whose reading was
    right named the wrong letter)."""
    from PIL import Image

    from pulse_app.ecg.render import render_ecg
    from training.instruct import generate_samples
    from training.instruct.__main__ import simulated_records
    from training.instruct.generate import Facts
    from training.vision_warmup import r_peak_positions, rr_segments

    (out / "images").mkdir(parents=True, exist_ok=True)
    samples, targets, started = [], [], time.time()
    for i, record in enumerate(simulated_records(count, seed, start), start=start):
        image = f"images/{record.record_id}.png"
        rendered = render_ecg(record, dpi=100, distort="mix", seed=seed * 7919 + i)
        page = rendered.image
        height = round(page.height * STORED_WIDTH_PX / page.width)
        page.resize((STORED_WIDTH_PX, height), Image.BICUBIC).save(out / image)
        samples += generate_samples(record, image, seed=0)
        for k in range(1, extra_mcq + 1):
            samples += [dataclasses.replace(s, id=f"{s.id}-x{k}") for s in generate_samples(
                record, image, seed=k, tasks=("basic", "rhythm"), qtypes=("mcq",))]
        facts = Facts(record)                 # rate and rhythm as the questions state them
        onsets, scale = record.meta["qrs_onsets_s"], STORED_WIDTH_PX / page.width
        targets.append({
            "image": image, "heart_rate_bpm": facts.rate, "rhythm": facts.rhythm,
            "r_peaks_xy": r_peak_positions(rendered.sidecar, onsets, scale),
            "rr_segments": rr_segments(rendered.sidecar, onsets, scale)})
        if (i + 1 - start) % 100 == 0:
            progress(f"{out.name}: {i + 1 - start}/{count} records ({time.time() - started:.0f} s)")
    return samples, targets


def pack_conversations(samples: list, turns: int, seed: int) -> list[dict]:
    """Group samples of the same image into conversations of up to ``turns`` exchanges
    (shuffled; the first question keeps ``<image>``), as ECGInstruct dicts."""
    rng = random.Random(seed)
    by_image: dict[str, list] = {}
    for sample in samples:
        by_image.setdefault(sample.image, []).append(sample)
    packed = []
    for image, group in by_image.items():
        group = group[:]
        rng.shuffle(group)
        for start in range(0, len(group), turns):
            chunk = group[start:start + turns]
            conversations = []
            for n, sample in enumerate(chunk):
                question, answer = sample.turns[0].question, sample.turns[0].answer
                conversations += [{"from": "human",
                                   "value": ("<image>\n" if n == 0 else "") + question},
                                  {"from": "gpt", "value": answer}]
            packed.append({"id": f"{chunk[0].id}+{len(chunk)}", "image": image,
                           "conversations": conversations})
    rng.shuffle(packed)
    return packed


#: Question kinds of the alignment stage: what the image shows most plainly (beats per strip,
#: their regularity), asked in all four question types.
ALIGN_KINDS = ("rate", "rhythm")


def alignment_samples(samples: list) -> list[dict]:
    """Stage 1 data: each image with its heart-rate and rhythm questions, one per sample (a
    short LLaVA alignment stage). These answers depend on the image alone, so the vision tower,
    which starts from random weights, gets far more signal per step than from the full mix,
    where most answer tokens are template or can be copied from earlier answers."""
    return [dict(s.to_dict(), id=s.id + "-align") for s in samples
            if s.meta.get("kind") in ALIGN_KINDS]


def zero_mean_patch_filters(folder: Path) -> None:
    """Make each random patch filter of the vision tower sum to zero (keeping its scale).

    An ECG page is mostly plain paper: with random filters, the patch embeddings are dominated
    by the page's uniform colour, so the image features hardly differ between ECGs (relative
    variation ~0.15 at initialisation), and training drove them to a constant (~0.001): the
    model learned to ignore the image. Zero-mean filters respond to the drawn lines instead
    (variation ~0.85 at initialisation).
    """
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(path)
    name = next(k for k in tensors if k.endswith("patch_embedding.weight"))
    weight = tensors[name].float()
    centred = weight - weight.mean(dim=(1, 2, 3), keepdim=True)
    tensors[name] = (centred * (weight.std() / centred.std())).to(tensors[name].dtype)
    save_file(tensors, path, metadata={"format": "pt"})


def tokenizer_corpus(samples: list) -> str:
    """Every question and answer, plus the template's words (system sentence, roles)."""
    from pulse_app.engine.tiny import CORPUS

    lines = dict.fromkeys(CORPUS.splitlines())          # unique lines, in order
    for sample in samples:
        lines.update(dict.fromkeys(line for c in sample.conversations
                                   for line in c["value"].splitlines()))
    return "\n".join(lines)


# -- 4. evaluation and the model card -------------------------------------------------------------

def evaluate(model: Path, data: Path, train_data: Path, out: Path, limit: int | None,
             max_new_tokens: int = 192) -> dict:
    """``python -m training.evaluate`` on the held-out file; its JSON report."""
    command = [sys.executable, "-m", "training.evaluate", "--model", str(model), "--data",
               str(data), "--train", str(train_data), "--compare", "tiny-untrained",
               "--out", str(out)]
    command += ["--max-new-tokens", str(max_new_tokens)]    # reports run to ~150 tokens
    if limit:
        command += ["--limit", str(limit)]
    log.info("evaluating: %s", " ".join(command))
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    (out.with_suffix(".txt")).write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        log.error("evaluation failed:\n%s", result.stderr[-3000:])
        return {}
    print(result.stdout)
    return json.loads(out.read_text()) if out.is_file() else {}


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


def image_dependence(model_dir: Path, data: Path, count: int = 32) -> dict:
    """Answer loss on held-out heart-rate and rhythm questions with each sample's own image vs.
    another record's image: equal losses mean the answers do not depend on the image."""
    import torch

    from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration
    from training.data import Collator, InstructDataset, SampleEncoder
    from training.instruct import read_samples

    samples = [s for s in read_samples(data / "heldout.json") if s.meta.get("kind") in ALIGN_KINDS]
    by_image = {s.image: s for s in samples}                  # one question per image
    samples = list(by_image.values())[:count]
    model = PulseLlavaNextForConditionalGeneration.from_pretrained(model_dir).float().eval()
    items = InstructDataset(samples, data, SampleEncoder(model_dir, 1280))
    batch = Collator()([items[i] for i in range(len(items))])
    with torch.no_grad():
        own = model(**batch).loss.item()
        batch["pixel_values"] = batch["pixel_values"].roll(1, 0)
        batch["image_sizes"] = batch["image_sizes"].roll(1, 0)
        other = model(**batch).loss.item()
    return {"own_image": round(own, 4), "other_image": round(other, 4), "n": len(samples)}


def _pct(value) -> str:
    return "?" if value is None else f"{100 * value:.1f} %"


def _num(value) -> str:
    return "?" if value is None else f"{value:.1f}"


def model_card(info: dict) -> str:
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
the option that says what it read is the skill it learns last. Three stages:

0. **Vision warm-up** (`training.vision_warmup`), standing in for PULSE's pretrained CLIP tower
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

Cosine schedules, batch {info['batch']}. Final training loss: {info.get('train_loss', 'n/a')}.

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

Percentages are accuracies except "macro F1" rows; "MAE bpm" is the mean absolute error of the
heart rate stated in open answers. Full answers: `scores.json` of the run.

## Regenerate
`make mini-model` (= `python -m training.mini_model`) rebuilds data, tokenizer, weights,
evaluation and this card from scratch, deterministically up to floating-point order.
"""


# -- the run --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.mini_model",
                                     description="Regenerate assets/pulse-mini from scratch.")
    parser.add_argument("--records", type=int, default=3200, help="training records")
    parser.add_argument("--heldout", type=int, default=200, help="held-out records")
    parser.add_argument("--turns", type=int, default=15, help="questions per packed conversation")
    parser.add_argument("--extra-mcq", type=int, default=1,
                        help="extra rounds of basic and rhythm multiple-choice questions per "
                             "training record")
    parser.add_argument("--warmup-epochs", type=float, default=30.0,
                        help="stage 0: epochs of supervised vision-tower warm-up")
    parser.add_argument("--teacher-epochs", type=float, default=6.0,
                        help="stage 0: epochs of the CNN teacher the tower also learns from "
                             "(0: none)")
    parser.add_argument("--align-epochs", type=float, default=2.0,
                        help="stage 1: epochs over the single heart-rate and rhythm questions")
    parser.add_argument("--epochs", type=float, default=3.0,
                        help="stage 2: epochs over the full instruction mix")
    parser.add_argument("--eval-limit", type=int, default=260,
                        help="score N held-out samples (balanced over task and question type)")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "runs" / "mini")
    parser.add_argument("--out", type=Path, default=MINI_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--from-step", choices=STEPS, default="data",
                        help="start at this step, reusing the earlier steps' files in --work")
    parser.add_argument("overrides", nargs="*", help="training key=value overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from pulse_app.engine.tiny import build_tiny
    from training.instruct import read_samples, write_samples
    from training.train import count_parameters, load_config, train
    from training.vision_warmup import warm_up

    torch.set_num_threads(args.threads)
    started, work = time.time(), args.work
    info_file = work / "mini_model_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    info.setdefault("timings_s", {})
    first = STEPS.index(args.from_step)
    data, init, warm = work / "data", work / "init", work / "warm"
    mini_yaml = REPO_ROOT / "training" / "configs" / "mini.yaml"
    align = load_config(mini_yaml, [
        f"model={warm}", f"data={data / 'align.json'}", f"output_dir={work / 'align'}",
        f"epochs={args.align_epochs}", "name=pulse-mini-align",
        # the warmed-up tower stays frozen from here on (trained by the language-model loss,
        # a from-scratch tower collapsed to constant image features within a few hundred steps)
        "train_vision_tower=false", *args.overrides])
    config = load_config(mini_yaml, [
        f"model={work / 'align' / 'final'}", f"data={data / 'train.json'}",
        f"output_dir={work / 'train'}", f"epochs={args.epochs}",
        f"learning_rate={align.learning_rate / 2}", "train_vision_tower=false", *args.overrides])
    final = Path(config.output_dir) / "final"

    # 1. data: training and held-out records from different seeds
    if first <= STEPS.index("data"):
        shutil.rmtree(data, ignore_errors=True)
        train_samples, train_targets = make_split(data, args.records, TRAIN_SEED,
                                                  extra_mcq=args.extra_mcq)
        heldout, heldout_targets = make_split(data, args.heldout, HELDOUT_SEED)
        (data / "vision-train.json").write_text(json.dumps(train_targets))
        (data / "vision-heldout.json").write_text(json.dumps(heldout_targets))
        write_samples(train_samples, data / "train-single.json")
        write_samples(heldout, data / "heldout.json")
        (data / "train.json").write_text(json.dumps(
            pack_conversations(train_samples, args.turns, seed=0), indent=0))
        (data / "align.json").write_text(json.dumps(alignment_samples(train_samples), indent=0))
        info["timings_s"]["data"] = round(time.time() - started)
        info.update(train_records=args.records, heldout_records=args.heldout,
                    extra_mcq=args.extra_mcq)
    train_samples = read_samples(data / "train-single.json")
    packed = json.loads((data / "train.json").read_text())

    # 2. model: a tokenizer trained on the instruction text, random weights
    spec = mini_spec(tokenizer_corpus(train_samples))
    if first <= STEPS.index("model"):
        shutil.rmtree(init, ignore_errors=True)
        build_tiny(init, spec)
        zero_mean_patch_filters(init)

    # 3. vision warm-up: the tower learns to see beats, rate and rhythm from the simulator's
    #    ground truth (training.vision_warmup); the language model is not touched
    if first <= STEPS.index("warmup"):
        t0 = time.time()
        shutil.rmtree(warm, ignore_errors=True)
        shutil.copytree(init, warm)
        info["vision_warmup"] = warm_up(warm, data / "vision-train.json", data,
                                        heldout=data / "vision-heldout.json",
                                        epochs=args.warmup_epochs,
                                        teacher_epochs=args.teacher_epochs)
        info["timings_s"]["warmup"] = round(time.time() - t0)

    # 4. train: stage 1 aligns image and text on reports, stage 2 the full mix (half the lr);
    #    then mark the result as a trained demonstration model
    if first <= STEPS.index("align"):
        t0 = time.time()
        shutil.rmtree(align.output_dir, ignore_errors=True)
        train(align)
        info["timings_s"]["align"] = round(time.time() - t0)
    if first <= STEPS.index("train"):
        t0 = time.time()
        shutil.rmtree(config.output_dir, ignore_errors=True)
        train(config)
        info["timings_s"]["train"] = round(time.time() - t0)
        config_file = final / "config.json"
        saved = json.loads(config_file.read_text())
        saved["pulse_app"].update({"demonstration": True, "note": NOTE})
        config_file.write_text(json.dumps(saved, indent=2))

    # 5. evaluate on the held-out split
    if first <= STEPS.index("evaluate"):
        t0 = time.time()
        info["evaluation"] = evaluate(final, data / "heldout.json", data / "train-single.json",
                                      work / "scores.json", args.eval_limit)
        # every held-out rate and rhythm question: the sample above has few per row
        rate_rhythm = [s for s in read_samples(data / "heldout.json")
                       if s.meta.get("kind") in ALIGN_KINDS]
        write_samples(rate_rhythm, data / "heldout-rate-rhythm.json")
        evaluate(final, data / "heldout-rate-rhythm.json", data / "train-single.json",
                 work / "scores-rate-rhythm.json", None, max_new_tokens=64)
        info["timings_s"]["evaluate"] = round(time.time() - t0)

    # 6. the model card, and the folder the app loads
    info["image_dependence"] = image_dependence(final, data)
    dep = info["image_dependence"]
    if dep["other_image"] - dep["own_image"] < 0.01:
        info["finding"] = (
            "**Honest result: this model has not learned to read ECG images.** Its answers have "
            "the right form and follow the class frequencies of the training data, but do not "
            "depend on the image. The pipeline (data, "
            "template, masks, anyres, training, evaluation, loading in the app) is what this "
            "model demonstrates, not ECG reading.")
    else:
        info["finding"] = ("The answers depend on the image: the loss is lower with the right "
                           "image.")
    from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration

    model = PulseLlavaNextForConditionalGeneration.from_pretrained(final)
    states = sorted(Path(config.output_dir).glob("checkpoint-*/trainer_state.json"))
    history = json.loads(states[-1].read_text())["log_history"] if states else []
    losses = [e["loss"] for e in history if "loss" in e]
    scores = work / "scores.json"
    evaluation = info.get("evaluation") or (json.loads(scores.read_text()) if scores.is_file()
                                            else {})
    rr_file = work / "scores-rate-rhythm.json"
    rr = json.loads(rr_file.read_text()) if rr_file.is_file() else {}
    if rr:
        rr_model = rr.get("model", str(final))
        info.update(rate_rhythm_table=score_table(rr, rr_model),
                    rate_rhythm_verdict="\n\n".join(filter(None, [
                        verdict(rr, rr_model, HEADLINE[:2]), weak_spots(rr, rr_model)])),
                    rate_rhythm_questions=next((r["n"] for r in rr.get("rows", [])
                                                if r["group"] == "All questions"), "?"))
    info.update({
        "spec": {k: v for k, v in dataclasses.asdict(spec).items() if k != "corpus"},
        "vocab": model.config.image_token_index, "parameters_m": count_parameters(model)[1] / 1e6,
        "train_samples": len(train_samples), "train_conversations": len(packed),
        "epochs": config.epochs, "learning_rate": config.learning_rate,
        "align_epochs": align.epochs, "align_learning_rate": align.learning_rate,
        "align_samples": len(json.loads((data / "align.json").read_text())),
        "batch": config.global_batch_size,
        "train_loss": f"{losses[-1]:.3f}" if losses else "n/a",
        "score_table": score_table(evaluation, evaluation.get("model", str(final))),
        "verdict": verdict(evaluation, evaluation.get("model", str(final))),
    })
    info.setdefault("train_records", args.records)
    info.setdefault("heldout_records", args.heldout)
    info["minutes_total"] = sum(info["timings_s"].values()) / 60
    (final / "README.md").write_text(model_card(info))
    info_file.write_text(json.dumps({k: v for k, v in info.items() if k != "evaluation"},
                                    indent=2, default=str))
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(final, out, ignore=shutil.ignore_patterns("training_config.json"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    log.info("wrote %s (%.1f MB) in %.1f min", out, size, (time.time() - started) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
