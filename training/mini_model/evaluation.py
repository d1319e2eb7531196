"""Held-out evaluation of the mini model: ``python -m training.evaluate`` on the held-out files,
and whether its answers depend on the image at all."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from pulse_app.settings import REPO_ROOT
from training.mini_model.data import ALIGN_KINDS

log = logging.getLogger("training.mini_model.evaluation")


def evaluate(model: Path, data: Path, train_data: Path, out: Path, *, limit: int | None,
             max_new_tokens: int, compare: str) -> dict:
    """``python -m training.evaluate`` on a held-out file against the majority baseline of
    ``train_data`` and the ``compare`` model; its JSON report (empty if it failed)."""
    command = [sys.executable, "-m", "training.evaluate", "--model", str(model), "--data",
               str(data), "--train", str(train_data), "--compare", compare, "--out", str(out),
               "--max-new-tokens", str(max_new_tokens)]
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


def image_dependence(model_dir: Path, data: Path, count: int, max_length: int) -> dict:
    """Answer loss on ``count`` held-out heart-rate and rhythm questions (one per image, from
    ``data/heldout.json``) with each sample's own image vs. another record's image: equal losses
    mean the answers do not depend on the image."""
    import torch

    from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration
    from training.data import Collator, InstructDataset, SampleEncoder
    from training.instruct import read_samples

    samples = [s for s in read_samples(data / "heldout.json") if s.meta.get("kind") in ALIGN_KINDS]
    by_image = {s.image: s for s in samples}                  # one question per image
    samples = list(by_image.values())[:count]
    model = PulseLlavaNextForConditionalGeneration.from_pretrained(model_dir).float().eval()
    items = InstructDataset(samples, data, SampleEncoder(model_dir, max_length))
    batch = Collator()([items[i] for i in range(len(items))])
    with torch.no_grad():
        own = model(**batch).loss.item()
        batch["pixel_values"] = batch["pixel_values"].roll(1, 0)
        batch["image_sizes"] = batch["image_sizes"].roll(1, 0)
        other = model(**batch).loss.item()
    return {"own_image": round(own, 4), "other_image": round(other, 4), "n": len(samples)}

