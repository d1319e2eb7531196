"""Regenerate the app's offline default, ``assets/pulse-mini``, from scratch on a CPU.

    make mini-model                                      # = python -m training.mini_model
    python -m training.mini_model data.records=400 --out /tmp/pulse-mini    # a quick try
    python -m training.mini_model --from-step align      # again from a stage, reusing --work

Every setting is in ``training/configs/mini/<stage>.yaml``; ``stage.key=value`` overrides one
(:mod:`training.mini_model.config`). The stages, in the order they run:

1. **data**: simulated 12-lead records, rendered as paper ECGs by ``training.render`` (the
   training mix: about half clean, half photo/scan distortions), questions and answers for the
   paper's four tasks x four question types (``training.instruct``), and for each page the
   vision warm-up's targets (``data.yaml``, :mod:`.data`).
2. **model**: PULSE-7B's classes at toy size, a tokenizer trained on the instruction text,
   random weights (``model.yaml``, :mod:`.model`).
3. **warmup**: the vision tower, standing in for PULSE's pretrained CLIP (none can be
   downloaded here), learns to see beats, rate and rhythm from the simulator's ground truth and
   from a small CNN teacher; the language model is not touched (``warmup.yaml``, :mod:`.warmup`).
4. **align**: ``training.train`` like LLaVA's alignment stage, the warmed-up tower frozen:
   single heart-rate and rhythm questions, whose answers depend on the image alone
   (``align.yaml``).
5. **instruct**: ``training.train`` on the full question mix, packed into conversations
   (``instruct.yaml``).
6. **ground**: ``training.train`` on single questions that teach it to use the digitiser's
   measurement context: every heart-rate question with the context, half of them shown another
   record's page, plus grounded rhythm and plain questions (``ground_data.yaml``,
   ``ground.yaml``; :func:`.data.grounding_samples`). Skipped (the instruct model is the result)
   when ``data.grounded_fraction`` is 0.
7. **evaluate**: ``python -m training.evaluate`` on the held-out records, against the majority
   baseline and the untrained tiny model; does the answer depend on the image
   (``evaluate.yaml``, :mod:`.evaluation`); where ``../shared/data`` holds real records,
   ``training.grounded_eval`` on pages drawn from them, rate and rhythm, grounded or not.
8. **card**: the model card with the scores (:mod:`.card`), and the folder the app loads.

The result is a transformers folder (``config.json`` says ``"trained": true`` and
``"demonstration": true``). It is a demonstration of the pipeline: not PULSE-7B, not for clinical
use. The build's time and scores are in its model card, ``assets/pulse-mini/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from pulse_app.settings import ASSETS_DIR, REPO_ROOT
from training.mini_model.config import MINI_CONFIG_DIR, Stages, load_stages

log = logging.getLogger("training.mini_model")
STEPS = ("data", "model", "warmup", "align", "instruct", "ground", "evaluate", "card")


def build(stages: Stages, work: Path, out: Path, *, from_step: str = "data",
          workers: int = 1) -> Path:
    """Run the stages from ``from_step`` on (earlier stages' files are reused from ``work``),
    then write the model card and copy the model to ``out``."""
    from training.instruct import read_samples, write_samples
    from training.mini_model.card import NOTE, card_facts, finding, model_card
    from training.mini_model.data import (ALIGN_KINDS, alignment_samples, grounding_samples,
                                          make_split, pack_conversations, tokenizer_corpus)
    from training.mini_model.evaluation import evaluate, image_dependence
    from training.mini_model.model import build_initial
    from training.mini_model.warmup import warm_up
    from training.grounded_eval import real_record_paths
    from training.grounded_eval import run as grounded_eval
    from training.train import train

    def runs(step: str) -> bool:
        return STEPS.index(from_step) <= STEPS.index(step)

    started, data, init, warm = time.time(), work / "data", work / "init", work / "warm"
    info_file = work / "mini_model_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    info.setdefault("timings_s", {})
    instructed = Path(stages.instruct.output_dir) / "final"
    final = Path(stages.ground.output_dir) / "final"

    # 1. data: training and held-out records from different seeds; pages already rendered with
    #    the same data settings are kept (training.render resumes)
    if runs("data"):
        used, used_file = dataclasses.asdict(stages.data), data / "data-config.json"
        if not used_file.is_file() or json.loads(used_file.read_text()) != used:
            shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True, exist_ok=True)
        used_file.write_text(json.dumps(used, indent=2))
        train_samples, train_targets = make_split(
            data, stages.data.records, stages.data.train_seed, stages.data,
            extra_mcq=stages.data.extra_mcq, workers=workers)
        heldout, heldout_targets = make_split(data, stages.data.heldout,
                                              stages.data.heldout_seed, stages.data,
                                              workers=workers)
        (data / "vision-train.json").write_text(json.dumps(train_targets))
        (data / "vision-heldout.json").write_text(json.dumps(heldout_targets))
        write_samples(train_samples, data / "train-single.json")
        write_samples(heldout, data / "heldout.json")
        (data / "train.json").write_text(json.dumps(
            pack_conversations(train_samples, stages.data.turns, seed=0), indent=0))
        (data / "align.json").write_text(json.dumps(alignment_samples(train_samples), indent=0))
        info["timings_s"]["data"] = round(time.time() - started)
        info.update(train_records=stages.data.records, heldout_records=stages.data.heldout,
                    extra_mcq=stages.data.extra_mcq)

    # 2. model: a tokenizer trained on the instruction text, random weights
    if runs("model"):
        shutil.rmtree(init, ignore_errors=True)
        build_initial(init, stages.model,
                      tokenizer_corpus(read_samples(data / "train-single.json")))

    # 3. vision warm-up of a copy of the initial model
    if runs("warmup"):
        t0 = time.time()
        shutil.rmtree(warm, ignore_errors=True)
        shutil.copytree(init, warm)
        info["vision_warmup"] = warm_up(warm, data / "vision-train.json", data, stages.warmup,
                                        heldout=data / "vision-heldout.json")
        info["timings_s"]["warmup"] = round(time.time() - t0)

    # 4. alignment, 5. instruction tuning; then mark the result as a demonstration model
    for step, config in (("align", stages.align), ("instruct", stages.instruct)):
        if runs(step):
            t0 = time.time()
            shutil.rmtree(config.output_dir, ignore_errors=True)
            train(config)
            info["timings_s"][step] = round(time.time() - t0)
    if runs("instruct"):
        mark_demonstration(instructed, NOTE)

    # 6. grounding: the instruct model reads the rate off the page; teach it the context
    if runs("ground"):
        t0 = time.time()
        shutil.rmtree(stages.ground.output_dir, ignore_errors=True)
        questions = grounding_samples(read_samples(data / "train-single.json"),
                                      **dataclasses.asdict(stages.ground_data))
        if questions:
            Path(stages.ground.data).write_text(json.dumps(questions, indent=0))
            train(stages.ground)
            mark_demonstration(final, NOTE)
        else:
            log.info("no grounded questions (data.grounded_fraction is 0): grounding skipped")
            shutil.copytree(instructed, final)
        info["ground_samples"] = len(questions)
        info["timings_s"]["ground"] = round(time.time() - t0)

    # 7. evaluate on the held-out records: a balanced sample of every question type, then every
    #    rate and rhythm question (the sample has few of them per row)
    if runs("evaluate"):
        t0 = time.time()
        rate_rhythm = [s for s in read_samples(data / "heldout.json")
                       if s.meta.get("kind") in ALIGN_KINDS]
        write_samples(rate_rhythm, data / "heldout-rate-rhythm.json")
        for questions, scores, limit, tokens in (
                ("heldout", "scores", stages.evaluate.limit, stages.evaluate.max_new_tokens),
                ("heldout-rate-rhythm", "scores-rate-rhythm", None,
                 stages.evaluate.rate_rhythm_max_new_tokens)):
            (work / f"{scores}.json").unlink(missing_ok=True)
            evaluate(final, data / f"{questions}.json", data / "train-single.json",
                     work / f"{scores}.json", limit=limit, max_new_tokens=tokens,
                     compare=stages.evaluate.compare)
        # and on pages of real records, grounded or not, where ../shared/data has them
        (work / "grounded-eval.json").unlink(missing_ok=True)
        if real_record_paths():
            grounded_eval(str(final), train=data / "train-single.json",
                          limit_pages=stages.evaluate.real_pages,
                          out=work / "grounded-eval.json")
        info["timings_s"]["evaluate"] = round(time.time() - t0)

    # 8. the model card, and the folder the app loads
    info["image_dependence"] = image_dependence(
        final, data, stages.evaluate.image_dependence_samples, stages.instruct.max_length)
    info["finding"] = finding(info["image_dependence"])
    info.update(card_facts(final, stages, work))
    info.setdefault("train_records", stages.data.records)
    info.setdefault("heldout_records", stages.data.heldout)
    info["minutes_total"] = sum(info["timings_s"].values()) / 60
    (final / "README.md").write_text(model_card(info))
    info_file.write_text(json.dumps(info, indent=2, default=str))
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(final, out, ignore=shutil.ignore_patterns("training_config.json"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    log.info("wrote %s (%.1f MB) in %.1f min", out, size, (time.time() - started) / 60)
    return out


def mark_demonstration(folder: Path, note: str) -> None:
    """Mark a trained model folder as the demonstration model it is (its ``config.json``)."""
    saved = json.loads((folder / "config.json").read_text())
    saved["pulse_app"].update({"demonstration": True, "note": note})
    (folder / "config.json").write_text(json.dumps(saved, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.mini_model",
                                     description="Regenerate assets/pulse-mini from scratch.")
    parser.add_argument("overrides", nargs="*",
                        help="stage.key=value overrides of training/configs/mini/<stage>.yaml, "
                             "e.g. data.records=400 warmup.epochs=10 instruct.max_steps=20")
    parser.add_argument("--configs", type=Path, default=MINI_CONFIG_DIR,
                        help="folder of the stage YAML files")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "runs" / "mini",
                        help="work folder (data, checkpoints; the YAMLs' paths are relative to it)")
    parser.add_argument("--out", type=Path, default=ASSETS_DIR / "pulse-mini")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads for training, and rendering processes")
    parser.add_argument("--from-step", choices=STEPS, default="data",
                        help="start at this step, reusing the earlier steps' files in --work")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from pulse_app.errors import PulseError

    try:
        stages = load_stages(args.configs, args.overrides, work=args.work)
    except PulseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    build(stages, args.work, args.out, from_step=args.from_step, workers=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
