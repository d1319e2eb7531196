"""Supervised warm-up of a from-scratch vision tower, before LLaVA's stages (the mini model).

PULSE-7B starts from a pretrained CLIP tower; the mini model cannot download one, and a ViT
trained from random weights by the language-model loss alone never learns to see an ECG page
(its image features stay uninformative and the answers follow the class frequencies). This stage
gives the tower direct targets from the simulator's ground truth, at the geometry the language
model will see (the same anyres tiles, the same feature layer):

- per patch token: how much of an R peak lies in that patch (a disc at each QRS complex of each
  panel, placed through the renderer's sidecar, cut into tiles exactly like the image), and the
  heart rate of the beat intervals drawn in it (:func:`local_rate_targets`: the rate is then
  there to read in every token, not only in the spacing of peaks that fall in other patches);
- per image: the heart rate (log scale) and the rhythm label, read by attention pooling.

The dense target is what makes a small ViT learn on a few thousand images: the global targets
alone stay at the majority class for thousands of steps (measured: 12 epochs, flat), while the
per-patch beats are learned within a few hundred steps, after which the global heads follow.

A ViT trained from scratch on a few thousand pages still reads rhythm poorly, where a small
convolutional network on the same tensors reads it well (measured on 300 held-out pages:
rhythm 79 % for the CNN after 8 epochs, 65 % for the ViT after 15; majority 56 %). So, as in
DeiT, a :class:`TeacherCNN` is trained first on the same tiles and targets, and the ViT also
learns from it: per image token, the teacher's features at that patch (regression), per image,
its softened rhythm probabilities (measured in that probe: 68 % instead of 65 % after 15
epochs; in the mini model's build, 30 epochs after a 6-epoch teacher at 82 %: 69 % held-out,
72.5 % once each token also learns its local rate, whose rate MAE fell from 11.0 to 9.3 bpm).

The heads and the teacher are thrown away; only the tower's weights go back into the model
folder.

    python -m training.vision_warmup MODEL_DIR TARGETS_JSON IMAGE_ROOT [--heldout FILE] [--epochs 30]
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
from PIL import Image, ImageDraw
from torch import nn
from tqdm import tqdm

from pulse_app.engine.anyres import AnyresGeometry, anyres_crops, anyres_pixel_values

log = logging.getLogger("training.vision_warmup")
R_PEAK_AFTER_ONSET_S = 0.04          # the R peak sits about 40 ms into the QRS complex
BEAT_SCALE = 50.0                    # per-patch target: mask mean x 50 (about 1 per beat)


# -- targets --------------------------------------------------------------------------------------

def _baseline_point(sidecar: dict, scale: float):
    """``point(panel, t)``: where time ``t`` (s) falls on a panel's baseline in the image, after
    the page's distortions (the sidecar's homography), times ``scale``."""
    homography = np.asarray(sidecar["page_to_image"], dtype=float)
    px_per_s = sidecar["speed_mm_s"] * sidecar["px_per_mm"]

    def point(panel: dict, t: float) -> list[float]:
        x, y, w = homography @ (panel["x0_px"] + (t - panel["t0_s"]) * px_per_s,
                                panel["baseline_px"], 1.0)
        return [round(x / w * scale, 1), round(y / w * scale, 1)]
    return point


def r_peak_positions(sidecar: dict, qrs_onsets_s, scale: float = 1.0) -> list[list[float]]:
    """Pixel positions (x, y) of every drawn R peak on a rendered page, after its distortions.

    ``sidecar`` is :func:`pulse_app.ecg.render.render_ecg`'s; ``qrs_onsets_s`` the record's beat
    times (the simulator keeps them in ``record.meta["qrs_onsets_s"]``); ``scale`` maps the
    rendered image to the stored one (stored width / rendered width).
    """
    point = _baseline_point(sidecar, scale)
    peaks = [t + R_PEAK_AFTER_ONSET_S for t in qrs_onsets_s]
    return [point(panel, t) for panel in sidecar["panels"] for t in peaks
            if panel["t0_s"] <= t <= panel["t1_s"]]


def rr_segments(sidecar: dict, qrs_onsets_s, scale: float = 1.0) -> list[list[float]]:
    """Per lead panel, each stretch between two consecutive R peaks as drawn on the page, with
    the heart rate of that interval: ``[x0, y0, x1, y1, bpm]`` along the panel's baseline (image
    pixels after the distortions, times ``scale``). Stretches cut by a panel's edge are kept,
    with the rate of the whole interval."""
    point = _baseline_point(sidecar, scale)
    peaks = [t + R_PEAK_AFTER_ONSET_S for t in qrs_onsets_s]
    segments = []
    for panel in sidecar["panels"]:
        for a, b in zip(peaks, peaks[1:]):
            start, end = max(a, panel["t0_s"]), min(b, panel["t1_s"])
            if end > start:
                segments.append(point(panel, start) + point(panel, end)
                                + [round(60.0 / (b - a), 1)])
    return segments


#: local-rate targets are drawn as 8-bit values: log(bpm) between these bounds
_LOCAL_BPM_RANGE = (25.0, 320.0)


def local_rate_targets(size_wh: tuple[int, int], segments,
                       geometry: AnyresGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image token: the heart rate (bpm) of the beat intervals drawn in it, and how much of
    its patch they cover (the loss weight; 0 where no trace runs).

    Each stretch of :func:`rr_segments` is drawn as a band along its panel's baseline (red: 255,
    green: its rate on a log scale) and cut into tiles like the image, so a token's rate is the
    coverage-weighted mean of the stretches it holds. The sinus node's rate where the beats are
    regular, the beat-to-beat changes where they are not (sinus arrhythmia, atrial fibrillation).
    """
    lo, hi = (math.log(v) for v in _LOCAL_BPM_RANGE)
    mask = Image.new("RGB", size_wh, (0, 0, 0))
    draw = ImageDraw.Draw(mask)
    width = max(2, round(3 * size_wh[0] / 224))
    for x0, y0, x1, y1, bpm in segments:
        green = round(1 + 254 * min(1.0, max(0.0, (math.log(bpm) - lo) / (hi - lo))))
        draw.line((x0, y0, x1, y1), fill=(255, green, 0), width=width)
    n, p = geometry.tile_px // geometry.patch_px, geometry.patch_px
    coverage, level = [], []
    for crop in anyres_crops(mask, geometry):
        pixels = np.asarray(crop).astype(np.float32)
        red, green = (pixels[..., c].reshape(n, p, n, p).mean(axis=(1, 3)).reshape(-1)
                      for c in (0, 1))
        coverage.append(red / 255)
        level.append(np.where(red > 1, green / np.maximum(red, 1e-6), 0.0))
    coverage, level = np.stack(coverage), np.clip(np.stack(level), 0, 1)
    bpm = np.exp(lo + (level * 255 - 1) / 254 * (hi - lo))
    return torch.from_numpy(bpm.astype(np.float32)), torch.from_numpy(coverage.astype(np.float32))


def beat_targets(size_wh: tuple[int, int], points, geometry: AnyresGeometry) -> torch.Tensor:
    """Per image token (tiles, patches per tile): how much R peak it holds, about 1 per beat.

    A small disc is drawn at each peak on a mask the size of the image, and the mask goes through
    the model's own tiling (:func:`anyres_crops`), so targets and image tokens line up exactly.
    """
    mask = Image.new("L", size_wh, 0)
    draw = ImageDraw.Draw(mask)
    r = max(1.0, size_wh[0] / 224)
    for x, y in points:
        draw.ellipse((x - r, y - 1.5 * r, x + r, y + 1.5 * r), fill=255)
    n, p = geometry.tile_px // geometry.patch_px, geometry.patch_px
    crops = [np.asarray(c)[..., 0].astype(np.float32)
             for c in anyres_crops(mask.convert("RGB"), geometry)]
    tiles = [c.reshape(n, p, n, p).mean(axis=(1, 3)).reshape(-1) for c in crops]
    return torch.from_numpy(np.stack(tiles)) / 255 * BEAT_SCALE


def load_split(targets_file: Path, image_root: Path, geometry: AnyresGeometry,
               rhythms: list[str]) -> dict[str, torch.Tensor]:
    """Every image of a targets file as tensors: pixels (fp16), beats, rate, rhythm index, and
    where the entries give ``rr_segments``, each token's local rate and its weight."""
    entries = json.loads(Path(targets_file).read_text())
    pixels, beats, rate, rhythm, local = [], [], [], [], []
    for entry in entries:
        with Image.open(image_root / entry["image"]) as image:
            image = image.convert("RGB")
            pixels.append(anyres_pixel_values(image, geometry).half())
            beats.append(beat_targets(image.size, entry["r_peaks_xy"], geometry))
            if "rr_segments" in entry:
                local.append(local_rate_targets(image.size, entry["rr_segments"], geometry))
        rate.append(float(entry["heart_rate_bpm"]))
        rhythm.append(rhythms.index(entry["rhythm"]))
    split = {"pixels": torch.stack(pixels), "beats": torch.stack(beats),
             "rate": torch.tensor(rate), "rhythm": torch.tensor(rhythm)}
    if local and len(local) == len(entries):
        split["local_rate"] = log_rate(torch.stack([bpm for bpm, _ in local]))
        split["local_weight"] = torch.stack([weight for _, weight in local])
    return split


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
                  batch_size: int, seed: int, learning_rate: float = 1e-3) -> TeacherCNN:
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


def log_rate(bpm: torch.Tensor) -> torch.Tensor:
    return (torch.log(bpm) - math.log(75.0)) / 0.4


def from_log_rate(value: torch.Tensor) -> torch.Tensor:
    return torch.exp(value * 0.4 + math.log(75.0))


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

def warm_up(model_dir: Path, targets: Path, image_root: Path, *, heldout: Path | None = None,
            epochs: float = 30, learning_rate: float = 1e-3, batch_size: int = 32,
            beat_weight: float = 3.0, local_rate_weight: float = 1.0,
            teacher_epochs: float = 6, teacher_weight: float = 1.0, temperature: float = 2.0, seed: int = 0) -> dict:
    """Train the vision tower of ``model_dir`` in place; returns held-out scores and timings.

    ``local_rate_weight`` weighs the per-token rate target (where the targets give
    ``rr_segments``); ``teacher_epochs``: epochs of the :class:`TeacherCNN` the tower also
    learns from (0: none);
    ``teacher_weight`` weighs both of its targets, ``temperature`` softens its rhythm logits."""
    from safetensors.torch import load_file, save_file

    from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration
    from training.instruct.vocab import RHYTHMS, rate_bucket

    torch.manual_seed(seed)
    model = PulseLlavaNextForConditionalGeneration.from_pretrained(model_dir).float()
    config = model.config
    geometry = AnyresGeometry.from_config(config)
    tower = model.model.vision_tower if hasattr(model, "model") else model.vision_tower
    rhythms = list(RHYTHMS)
    started = time.time()
    train = load_split(targets, image_root, geometry, rhythms)
    held = load_split(heldout, image_root, geometry, rhythms) if heldout else None
    log.info("warm-up data: %d images (%d held out) in %.0f s", len(train["rate"]),
             len(held["rate"]) if held else 0, time.time() - started)
    batch_size = min(batch_size, len(train["rate"]))       # a tiny data set: one batch of all
    result = {}
    if teacher_epochs > 0:
        t0 = time.time()
        teacher = train_teacher(train, geometry, len(rhythms), epochs=teacher_epochs,
                                batch_size=batch_size, seed=seed)
        train["teacher_logits"], train["teacher_tokens"] = teacher_targets(teacher, train["pixels"])
        result["teacher"] = {"epochs": teacher_epochs, "seconds": round(time.time() - t0)}
        if held is not None:
            result["teacher"]["heldout"] = score(teacher, held, rate_bucket)
        log.info("teacher CNN: %s", result["teacher"])
    width = train["teacher_tokens"].shape[-1] if "teacher_tokens" in train else 0
    heads = WarmupHeads(tower, config.vision_feature_layer, len(rhythms), width)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=learning_rate, weight_decay=0.01)
    steps = max(1, int(epochs * len(train["rate"]) / batch_size))
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
            loss = global_loss + beat_weight * beat_loss
            if "local_rate" in train:
                weight = train["local_weight"][idx].flatten(1)
                loss = loss + local_rate_weight * (
                    (local - train["local_rate"][idx].flatten(1)) ** 2 * weight).sum() / (
                    weight.sum() + 1e-6)
            if "teacher_tokens" in train:
                soft = F.softmax(train["teacher_logits"][idx] / temperature, -1)
                distill = (F.mse_loss(features, train["teacher_tokens"][idx].float())
                           + F.kl_div(F.log_softmax(rhythm / temperature, -1), soft,
                                      reduction="batchmean") * temperature ** 2)
                loss = loss + teacher_weight * distill
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
    result.update({"steps": step, "epochs": epochs, "learning_rate": learning_rate,
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
    parser = argparse.ArgumentParser(prog="python -m training.vision_warmup",
                                     description="Supervised warm-up of a model's vision tower "
                                                 "(rewrites MODEL_DIR/model.safetensors).")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("targets", type=Path, help="JSON list: image, heart_rate_bpm, rhythm, "
                                                  "r_peaks_xy")
    parser.add_argument("image_root", type=Path)
    parser.add_argument("--heldout", type=Path)
    parser.add_argument("--epochs", type=float, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--teacher-epochs", type=float, default=6,
                        help="epochs of the CNN teacher the tower also learns from (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    result = warm_up(args.model_dir, args.targets, args.image_root, heldout=args.heldout,
                     epochs=args.epochs, learning_rate=args.lr,
                     teacher_epochs=args.teacher_epochs)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
