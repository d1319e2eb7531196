"""Supervised warm-up of a from-scratch vision tower, before LLaVA's stages (the mini model).

PULSE-7B starts from a pretrained CLIP tower; the mini model cannot download one, and a ViT
trained from random weights by the language-model loss alone never learns to see an ECG page
(its image features stay uninformative and the answers follow the class frequencies). This stage
gives the tower direct targets from the simulator's ground truth (:mod:`.targets`), at the
geometry the language model will see (the same anyres tiles, the same feature layer): per image
token the R peaks in its patch and the rate of the beats drawn in it, per image the heart rate
(log scale) and the rhythm label, read by attention pooling.

The dense targets are what make a small ViT learn on a few thousand images: the global targets
alone stay at the majority class for many epochs, while the per-patch beats are learned within a
few hundred steps, after which the global heads follow.

A ViT trained from scratch on a few thousand pages still reads rhythm poorly, where a small
convolutional network on the same tensors reads it well. So, as in DeiT, a :class:`TeacherCNN`
is trained first on the same tiles and targets, and the ViT also learns from it: per image
token, the teacher's features at that patch (regression), per image, its softened rhythm
probabilities. The model card reports the held-out scores of both.

The heads and the teacher are thrown away; only the tower's weights go back into the model
folder.

    python -m training.mini_model.warmup MODEL_DIR TARGETS_JSON IMAGE_ROOT [--heldout FILE] [key=value ...]

(settings: ``training/configs/mini/warmup.yaml``, overridden by ``key=value``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pulse_app.engine.anyres import AnyresGeometry
from training.mini_model.config import WarmupConfig
from training.mini_model.targets import from_log_rate, load_split, log_rate

log = logging.getLogger("training.mini_model.warmup")


def cosine_schedule(optimizer, steps: int, warm: int = 1):
    """Linear warm-up over ``warm`` steps (1: none) times a cosine decay to 0 at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warm)
        * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))


# -- the teacher ------------------------------------------------------------------------------------

class TeacherCNN(nn.Module):
    """A small convolutional network over the same anyres tiles as the tower: its feature map is
    max-pooled onto the tower's patch grid (one feature vector per image token) and over the
    whole image for rate and rhythm. Training-only: nothing of it goes into the model."""

    def __init__(self, geometry: AnyresGeometry, rhythms: int, width: int = 32):
        super().__init__()
        self.side = geometry.tile_px // geometry.patch_px
        layers, channels = [], 3
        for out, pool in ((width, True), (2 * width, True), (2 * width, True), (4 * width, False)):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
            layers += [nn.MaxPool2d(2)] if pool else []
            channels = out
        self.body, self.width = nn.Sequential(*layers), channels
        self.head = nn.Linear(channels, 1 + rhythms)

    def forward(self, pixels: torch.Tensor):
        batch, tiles = pixels.shape[:2]
        maps = self.body(pixels.flatten(0, 1))
        tokens = F.adaptive_max_pool2d(maps, self.side).flatten(2).transpose(1, 2)
        tokens = tokens.reshape(batch, tiles * self.side ** 2, self.width)
        out = self.head(tokens.amax(1))
        return out[:, 0], out[:, 1:], tokens


def train_teacher(train: dict, geometry: AnyresGeometry, rhythms: int, *, epochs: float,
                  batch_size: int, seed: int, learning_rate: float) -> TeacherCNN:
    """Fit :class:`TeacherCNN` to the rate and rhythm targets (cosine schedule)."""
    torch.manual_seed(seed)
    teacher = TeacherCNN(geometry, rhythms)
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=learning_rate, weight_decay=0.01)
    steps = max(1, int(epochs * len(train["rate"]) / batch_size))
    schedule = cosine_schedule(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for step in tqdm(range(steps), desc="teacher CNN", mininterval=30):
        idx = torch.randint(len(train["rate"]), (batch_size,), generator=generator)
        rate, rhythm, _ = teacher(train["pixels"][idx].float())
        loss = (F.smooth_l1_loss(rate, log_rate(train["rate"][idx]))
                + F.cross_entropy(rhythm, train["rhythm"][idx]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return teacher.eval()


@torch.no_grad()
def teacher_targets(teacher: TeacherCNN, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's rhythm logits and standardised per-token features (fp16) for every image."""
    logits, tokens = [], []
    for i in range(0, len(pixels), 64):
        _, rhythm, features = teacher(pixels[i:i + 64].float())
        logits.append(rhythm)
        tokens.append(features)
    tokens = torch.cat(tokens)
    mean, std = tokens.mean((0, 1)), tokens.std((0, 1)) + 1e-3
    return torch.cat(logits), ((tokens - mean) / std).half()


# -- the heads --------------------------------------------------------------------------------------

class WarmupHeads(nn.Module):
    """The tower plus throw-away heads on the feature layer the projector reads."""

    def __init__(self, tower: nn.Module, feature_layer: int, rhythms: int, teacher_width: int = 0):
        super().__init__()
        self.tower, self.feature_layer = tower, feature_layer
        width = tower.config.hidden_size
        self.queries = nn.Parameter(torch.randn(2, width) * 0.02)
        self.pool = nn.MultiheadAttention(width, max(1, width // 48), batch_first=True)
        self.rate, self.rhythm, self.beats = (nn.Linear(width, 1), nn.Linear(width, rhythms),
                                              nn.Linear(width, 1))
        self.local_rate = nn.Linear(width, 1)         # per image token, the rate of its beats
        # per image token, the CNN teacher's features (only when there is a teacher)
        self.teacher_features = nn.Linear(width, teacher_width) if teacher_width else None

    def forward(self, pixels: torch.Tensor):
        batch = pixels.shape[0]
        hidden = self.tower(pixels.flatten(0, 1), output_hidden_states=True)
        tokens = hidden.hidden_states[self.feature_layer][:, 1:]          # drop CLS, as LLaVA
        tokens = tokens.reshape(batch, -1, tokens.shape[-1])
        pooled, _ = self.pool(self.queries.expand(batch, -1, -1), tokens, tokens)
        return (self.rate(pooled[:, 0]).squeeze(-1), self.rhythm(pooled[:, 1]),
                self.beats(tokens).squeeze(-1),
                self.teacher_features(tokens) if self.teacher_features else None,
                self.local_rate(tokens).squeeze(-1))


@torch.no_grad()
def score(net: nn.Module, split: dict, rate_bucket) -> dict:
    """Held-out accuracy of the heads (or the teacher): rate bucket, rhythm, rate MAE; for the
    heads also the beat map's R^2 and, where the split has them, the per-token rate MAE."""
    net.eval()
    rates, rhythms, beats, local = [], [], [], []
    for i in range(0, len(split["rate"]), 32):
        out = net(split["pixels"][i:i + 32].float())
        rate, rhythm, beat = out[:3]
        rates.append(from_log_rate(rate))
        rhythms.append(rhythm.argmax(-1))
        beats.append(beat)
        local += [out[4]] if isinstance(net, WarmupHeads) else []
    net.train()
    rates, rhythms, beats = torch.cat(rates), torch.cat(rhythms), torch.cat(beats)
    result = {"rate_bucket_accuracy": float(np.mean([rate_bucket(float(a)) == rate_bucket(float(b))
                                                     for a, b in zip(rates, split["rate"])])),
              "rhythm_accuracy": float((rhythms == split["rhythm"]).float().mean()),
              "rate_mae_bpm": float((rates - split["rate"]).abs().mean())}
    truth = split["beats"].flatten(1)
    if isinstance(net, WarmupHeads):                # the teacher has no beat map
        result["beat_map_r2"] = float(1 - F.mse_loss(beats, truth) / truth.var())
    if local and "local_rate" in split:             # per token, weighted by trace coverage
        weight = split["local_weight"].flatten(1)
        error = (from_log_rate(torch.cat(local)) - from_log_rate(split["local_rate"].flatten(1)))
        result["local_rate_mae_bpm"] = float((error.abs() * weight).sum() / weight.sum())
    return result


# -- the stage ------------------------------------------------------------------------------------

def warm_up(model_dir: Path, targets: Path, image_root: Path, config: WarmupConfig, *,
            heldout: Path | None = None) -> dict:
    """Train the vision tower of ``model_dir`` in place on the targets file (from
    :func:`training.mini_model.data.make_split`); returns held-out scores and timings."""
    from safetensors.torch import load_file, save_file

    from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration
    from training.instruct.vocab import RHYTHMS, rate_bucket

    seed = config.seed
    torch.manual_seed(seed)
    model = PulseLlavaNextForConditionalGeneration.from_pretrained(model_dir).float()
    geometry = AnyresGeometry.from_config(model.config)
    tower = model.model.vision_tower if hasattr(model, "model") else model.vision_tower
    rhythms = list(RHYTHMS)
    started = time.time()
    train = load_split(targets, image_root, geometry, rhythms)
    held = load_split(heldout, image_root, geometry, rhythms) if heldout else None
    log.info("warm-up data: %d images (%d held out) in %.0f s", len(train["rate"]),
             len(held["rate"]) if held else 0, time.time() - started)
    batch_size = min(config.batch_size, len(train["rate"]))   # a tiny data set: one batch of all
    result = {}
    if config.teacher_epochs > 0:
        t0 = time.time()
        teacher = train_teacher(train, geometry, len(rhythms), epochs=config.teacher_epochs,
                                batch_size=batch_size, seed=seed,
                                learning_rate=config.teacher_learning_rate)
        train["teacher_logits"], train["teacher_tokens"] = teacher_targets(teacher, train["pixels"])
        result["teacher"] = {"epochs": config.teacher_epochs, "seconds": round(time.time() - t0)}
        if held is not None:
            result["teacher"]["heldout"] = score(teacher, held, rate_bucket)
        log.info("teacher CNN: %s", result["teacher"])
    width = train["teacher_tokens"].shape[-1] if "teacher_tokens" in train else 0
    heads = WarmupHeads(tower, model.config.vision_feature_layer, len(rhythms), width)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=config.learning_rate, weight_decay=0.01)
    steps = max(1, int(config.epochs * len(train["rate"]) / batch_size))
    warm = max(1, steps // 30)
    schedule = cosine_schedule(optimizer, steps, warm)
    generator = torch.Generator().manual_seed(seed)
    history, step, t0 = [], 0, time.time()
    progress = tqdm(total=steps, desc="vision warm-up", mininterval=30)
    while step < steps:
        order = torch.randperm(len(train["rate"]), generator=generator)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[i:i + batch_size]
            rate, rhythm, beats, features, local = heads(train["pixels"][idx].float())
            global_loss = (F.smooth_l1_loss(rate, log_rate(train["rate"][idx]))
                           + F.cross_entropy(rhythm, train["rhythm"][idx]))
            beat_loss = F.mse_loss(beats, train["beats"][idx].flatten(1))
            loss = global_loss + config.beat_weight * beat_loss
            if "local_rate" in train:
                weight = train["local_weight"][idx].flatten(1)
                loss = loss + config.local_rate_weight * (
                    (local - train["local_rate"][idx].flatten(1)) ** 2 * weight).sum() / (
                    weight.sum() + 1e-6)
            if "teacher_tokens" in train:
                t = config.temperature
                soft = F.softmax(train["teacher_logits"][idx] / t, -1)
                distill = (F.mse_loss(features, train["teacher_tokens"][idx].float())
                           + F.kl_div(F.log_softmax(rhythm / t, -1), soft,
                                      reduction="batchmean") * t ** 2)
                loss = loss + config.teacher_weight * distill
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(heads.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            progress.update()
            if step % 100 == 0:
                history.append({"step": step, "global_loss": round(global_loss.item(), 4),
                                "beat_loss": round(beat_loss.item(), 4)})
            if held is not None and step % 500 == 0:
                log.info("step %d: held-out %s", step, score(heads, held, rate_bucket))
            if step >= steps:
                break
    progress.close()
    result.update({"steps": step, "epochs": config.epochs, "learning_rate": config.learning_rate,
                   "batch_size": batch_size, "train_images": len(train["rate"]),
                   "seconds": round(time.time() - t0), "history": history})
    if held is not None:
        result["heldout"] = score(heads, held, rate_bucket)
        result["heldout_images"] = len(held["rate"])
        log.info("vision warm-up, held-out: %s", result["heldout"])

    # only the tower's weights go back, under the names the folder already uses
    path = Path(model_dir) / "model.safetensors"
    tensors = load_file(path)
    prefix = next(k for k in tensors if k.endswith("embeddings.patch_embedding.weight"))
    prefix = prefix[:-len("embeddings.patch_embedding.weight")]
    for name, value in tower.state_dict().items():
        key = prefix + name.removeprefix("vision_model.")
        if key not in tensors:
            raise KeyError(f"vision tower weight {key} is not in {path}")
        tensors[key] = value.detach().to(tensors[key].dtype).contiguous()
    save_file(tensors, path, metadata={"format": "pt"})
    return result


def main(argv: list[str] | None = None) -> int:
    from training.mini_model.config import load_stages

    parser = argparse.ArgumentParser(prog="python -m training.mini_model.warmup",
                                     description="Supervised warm-up of a model's vision tower "
                                                 "(rewrites MODEL_DIR/model.safetensors).")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("targets", type=Path, help="JSON list: image, heart_rate_bpm, rhythm, "
                                                  "r_peaks_xy, rr_segments")
    parser.add_argument("image_root", type=Path)
    parser.add_argument("--heldout", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="warmup.yaml key=value overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    config = load_stages(overrides=[f"warmup.{item}" for item in args.overrides]).warmup
    result = warm_up(args.model_dir, args.targets, args.image_root, config, heldout=args.heldout)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
