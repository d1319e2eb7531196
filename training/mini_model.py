"""Regenerate the app's offline default, ``assets/pulse-mini``, from scratch on a CPU.

    make mini-model                    # = python -m training.mini_model (about 40 min on 2 cores)
    python -m training.mini_model --records 400 --epochs 1 --out /tmp/pulse-mini   # a quick try

Four steps, each one command of the project:

1. **data**: simulated 12-lead records (``pulse_app.ecg.simulate``), rendered as paper ECGs
   (``pulse_app.ecg.render``, the training mix: about half clean, half photo/scan distortions),
   questions and answers for the paper's four tasks x four question types
   (``training.instruct.generate_samples``). Training records and held-out records come from
   different seeds. Pages are rendered at 100 dpi and stored 448 px wide: the model looks at them
   through 112 px tiles (a 2x2 grid: 224 x 173 px), so more pixels would only cost disk.
   Each record's questions are packed into multi-turn conversations about its image (LLaVA's
   format allows it), so one pass of the vision tower teaches several answers.
2. **model**: PULSE-7B's classes at toy size (:data:`MINI_SPEC`: CLIP-style ViT 112 px tiles,
   ``mlp2x_gelu`` projector, 4-layer Llama, anyres, ``flat`` merge), a sentencepiece tokenizer
   trained on the instruction text, random initial weights (``pulse_app.engine.tiny``).
3. **train**: ``training.train`` with ``training/configs/mini.yaml`` (everything trained, the
   vision tower included: it starts from random weights).
4. **evaluate**: ``python -m training.evaluate`` on the held-out split, against the majority
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
NOTE = ("trained demonstration model (a few million parameters, synthetic ECGs): not PULSE-7B, "
        "not for clinical use")


def mini_spec(corpus: str):
    """The mini model's sizes (~6M parameters; 112 px tiles -> 64 tokens per tile)."""
    from pulse_app.engine.tiny import TinySpec

    return TinySpec(name="pulse-mini", tile_px=112, patch_px=14, vision_hidden=192,
                    vision_layers=4, vision_mlp=768, text_hidden=256, text_layers=4, text_heads=4,
                    text_mlp=704, vocab_size=2000, max_positions=1280, seed=0, trained=False,
                    corpus=corpus)


# -- 1. data --------------------------------------------------------------------------------------

def make_split(out: Path, count: int, seed: int, *, qa_seeds=(0,), progress=log.info) -> list:
    """Render ``count`` simulated records into ``out/images`` and return their samples."""
    from PIL import Image

    from pulse_app.ecg.render import render_ecg
    from training.instruct import generate_samples
    from training.instruct.__main__ import simulated_records

    (out / "images").mkdir(parents=True, exist_ok=True)
    samples, started = [], time.time()
    for i, record in enumerate(simulated_records(count, seed)):
        image = f"images/{record.record_id}.png"
        page = render_ecg(record, dpi=100, distort="mix", seed=seed * 7919 + i).image
        height = round(page.height * STORED_WIDTH_PX / page.width)
        page.resize((STORED_WIDTH_PX, height), Image.BICUBIC).save(out / image)
        for qa_seed in qa_seeds:
            samples += generate_samples(record, image, seed=qa_seed)
        if (i + 1) % 100 == 0:
            progress(f"{out.name}: {i + 1}/{count} records ({time.time() - started:.0f} s)")
    return samples


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


def tokenizer_corpus(samples: list) -> str:
    """Every question and answer, plus the template's words (system sentence, roles)."""
    from pulse_app.engine.tiny import CORPUS

    lines = dict.fromkeys(CORPUS.splitlines())          # unique lines, in order
    for sample in samples:
        lines.update(dict.fromkeys(line for c in sample.conversations
                                   for line in c["value"].splitlines()))
    return "\n".join(lines)


# -- 4. evaluation and the model card -------------------------------------------------------------

def evaluate(model: Path, data: Path, train_data: Path, out: Path, limit: int | None) -> dict:
    """``python -m training.evaluate`` on the held-out file; its JSON report."""
    command = [sys.executable, "-m", "training.evaluate", "--model", str(model), "--data",
               str(data), "--train", str(train_data), "--compare", "tiny-untrained",
               "--out", str(out)]
    if limit:
        command += ["--limit", str(limit)]
    log.info("evaluating: %s", " ".join(command))
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    (out.with_suffix(".txt")).write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        log.error("evaluation failed:\n%s", result.stderr[-3000:])
        return {}
    print(result.stdout)
    return {"table": result.stdout, "json": json.loads(out.read_text()) if out.is_file() else {}}


def model_card(info: dict) -> str:
    table = info.get("evaluation", {}).get("table", "").strip() or "(evaluation did not run)"
    return f"""# pulse-mini — a trained demonstration model (not PULSE-7B, not for clinical use)

A tiny model of **PULSE-7B's exact classes** (LLaVA-NeXT: a CLIP-style ViT vision tower, an
`mlp2x_gelu` projector, a Llama decoder; anyres tiling with PULSE's grid pinpoints, `flat`
image-token merge, the `llava_v1` conversation template), trained from scratch on a CPU by
`python -m training.mini_model` in {info['minutes_total']:.0f} minutes. It is the app's offline
default so that a fresh machine without a GPU or network shows the whole workflow with a model
that has actually learned something from ECG images.

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
fill-in-the-blank, multiple choice), packed into {info['train_conversations']} multi-turn
conversations. {info['epochs']} epochs, AdamW lr {info['learning_rate']}, cosine schedule,
batch {info['batch']}, everything trained (the vision tower starts from random weights).
Final training loss: {info.get('train_loss', 'n/a')}.

## Scores on held-out records
{info['heldout_records']} held-out simulated records (different seeds), scored by
`python -m training.evaluate` (accuracy for close-ended and multiple-choice answers, macro F1
for findings), against the majority-class baseline (from the training answers) and the
untrained tiny model:

```
{table}
```

{info.get('verdict', '')}

## Regenerate
`make mini-model` (= `python -m training.mini_model`) rebuilds data, tokenizer, weights,
evaluation and this card from scratch, deterministically up to floating-point order.
"""


# -- the run --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.mini_model",
                                     description="Regenerate assets/pulse-mini from scratch.")
    parser.add_argument("--records", type=int, default=1600, help="training records")
    parser.add_argument("--heldout", type=int, default=200, help="held-out records")
    parser.add_argument("--turns", type=int, default=13, help="questions per packed conversation")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--eval-limit", type=int, default=260,
                        help="score only the first N held-out samples")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "runs" / "mini")
    parser.add_argument("--out", type=Path, default=MINI_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="training key=value overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from pulse_app.engine.tiny import build_tiny
    from training.instruct import write_samples
    from training.train import count_parameters, load_config, train

    torch.set_num_threads(args.threads)
    started, work = time.time(), args.work
    timings = {}

    # 1. data
    data = work / "data"
    if (data / "train.json").is_file() and (data / "heldout.json").is_file():
        log.info("reusing the data in %s", data)
        from training.instruct import read_samples
        train_samples = read_samples(data / "train-single.json")
    else:
        shutil.rmtree(data, ignore_errors=True)
        train_samples = make_split(data, args.records, TRAIN_SEED)
        heldout = make_split(data, args.heldout, HELDOUT_SEED)
        write_samples(train_samples, data / "train-single.json")
        write_samples(heldout, data / "heldout.json")
        (data / "train.json").write_text(json.dumps(
            pack_conversations(train_samples, args.turns, seed=0), indent=0))
    packed = json.loads((data / "train.json").read_text())
    timings["data_s"] = time.time() - started

    # 2. model: tokenizer on the instruction text, random weights
    init = work / "init"
    spec = mini_spec(tokenizer_corpus(train_samples))
    shutil.rmtree(init, ignore_errors=True)
    build_tiny(init, spec)

    # 3. train
    t0 = time.time()
    config = load_config(REPO_ROOT / "training" / "configs" / "mini.yaml", [
        f"model={init}", f"data={data / 'train.json'}", f"output_dir={work / 'train'}",
        f"epochs={args.epochs}", *args.overrides])
    shutil.rmtree(config.output_dir, ignore_errors=True)
    final = train(config)
    timings["train_s"] = time.time() - t0

    # provenance the app shows: trained, and a demonstration
    config_file = final / "config.json"
    saved = json.loads(config_file.read_text())
    saved["pulse_app"].update({"demonstration": True, "note": NOTE})
    config_file.write_text(json.dumps(saved, indent=2))

    # 4. evaluate, then the card
    t0 = time.time()
    evaluation = evaluate(final, data / "heldout.json", data / "train-single.json",
                          work / "scores.json", args.eval_limit)
    timings["evaluate_s"] = time.time() - t0
    from pulse_app.engine.pulse_format import PulseLlavaNextForConditionalGeneration

    model = PulseLlavaNextForConditionalGeneration.from_pretrained(final)
    state = json.loads(next((work / "train").glob("checkpoint-*/trainer_state.json")).read_text()) \
        if list((work / "train").glob("checkpoint-*")) else {}
    losses = [e["loss"] for e in state.get("log_history", []) if "loss" in e]
    info = {
        "spec": dataclasses.asdict(spec), "vocab": model.config.image_token_index,
        "parameters_m": count_parameters(model)[1] / 1e6, "train_records": args.records,
        "heldout_records": args.heldout, "train_samples": len(train_samples),
        "train_conversations": len(packed), "epochs": args.epochs,
        "learning_rate": config.learning_rate, "batch": config.global_batch_size,
        "train_loss": f"{losses[-1]:.3f}" if losses else "n/a", "evaluation": evaluation,
        "minutes_total": (time.time() - started) / 60, "timings_s": timings,
    }
    (final / "README.md").write_text(model_card(info))
    (work / "mini_model_info.json").write_text(json.dumps(
        {k: v for k, v in info.items() if k not in ("spec",)}, indent=2, default=str))

    # ship: the app-loadable folder, small
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(final, out, ignore=shutil.ignore_patterns("training_config.json"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    log.info("wrote %s (%.1f MB) in %.1f min", out, size, (time.time() - started) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
