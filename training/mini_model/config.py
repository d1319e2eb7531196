"""The mini model's build settings: one YAML file per stage in ``training/configs/mini/``.

Each file is read as it stands, then ``stage.key=value`` overrides from the command line
(``warmup.epochs=2``, ``align.max_steps=2``, ``instruct.lora.r=8``: values parsed as YAML, as in
``python -m training.train``). Nothing else changes a value: what the files say is what runs.
Paths in ``align.yaml``, ``instruct.yaml`` and ``ground.yaml`` are relative to the build's work folder
(``--work``, default ``runs/mini``).

>>> stages = load_stages(overrides=["warmup.epochs=2"])
>>> stages.warmup.epochs, stages.align.train_vision_tower, stages.model.tile_px
(2.0, False, 112)
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from pulse_app.engine.tiny import TinySpec
from training.train import (CONFIG_DIR, TrainConfig, TrainingError, config_from_dict, load_config,
                            read_config)

MINI_CONFIG_DIR = CONFIG_DIR / "mini"


@dataclass(frozen=True)
class DataConfig:
    """Simulated records, their pages and their questions (``data.yaml``)."""

    records: int              # training records
    heldout: int              # held-out records, from another seed
    train_seed: int
    heldout_seed: int
    extra_mcq: int            # extra rounds of rate and rhythm multiple choice per training record
    turns: int                # questions per packed conversation
    dpi: float                # rendering resolution
    distort: str              # render_ecg's distortion mix
    width_px: int             # pages are stored resized to this width
    grounded_fraction: float = 0.0    # share of training questions given the measurement context


@dataclass(frozen=True)
class WarmupConfig:
    """The vision tower's supervised warm-up and its CNN teacher (``warmup.yaml``)."""

    epochs: float
    learning_rate: float
    batch_size: int
    beat_weight: float          # the per-token R-peak target
    local_rate_weight: float    # the per-token rate of the beats drawn in it
    teacher_epochs: float       # 0: no teacher
    teacher_learning_rate: float
    teacher_weight: float       # both teacher targets: per-token features, softened rhythm
    temperature: float          # softens the teacher's rhythm logits
    seed: int


@dataclass(frozen=True)
class GroundDataConfig:
    """The grounding stage's questions (``ground_data.yaml``,
    :func:`training.mini_model.data.grounding_samples`)."""

    swap_fraction: float        # heart-rate questions shown another record's page
    plain_per_grounded: float   # questions without context, per grounded one
    seed: int


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation (``evaluate.yaml``)."""

    limit: int                        # balanced sample over task and question type
    max_new_tokens: int
    rate_rhythm_max_new_tokens: int   # every held-out rate and rhythm question
    compare: str                      # a second model scored on the same questions
    image_dependence_samples: int
    real_pages: int | None            # pages of real records, grounded or not (None: all)


@dataclass(frozen=True)
class Stages:
    """Every stage's settings, as loaded by :func:`load_stages`."""

    data: DataConfig
    model: TinySpec
    warmup: WarmupConfig
    align: TrainConfig
    instruct: TrainConfig
    ground_data: GroundDataConfig
    ground: TrainConfig
    evaluate: EvalConfig


#: The training stages' path fields, resolved against the work folder.
PATH_FIELDS = ("model", "data", "output_dir", "image_root", "eval_data")


def load_stages(folder: str | Path = MINI_CONFIG_DIR, overrides: list[str] = (),
                work: str | Path = ".") -> Stages:
    """Every ``<stage>.yaml`` of ``folder`` with the ``stage.key=value`` overrides applied;
    relative paths of the training stages resolved against ``work``."""
    folder, names = Path(folder), [f.name for f in fields(Stages)]
    per_stage: dict[str, list[str]] = {name: [] for name in names}
    for item in overrides:
        stage, dot, rest = item.partition(".")
        if stage not in per_stage or not dot:
            raise TrainingError(f"override {item!r} does not name a stage",
                                hint=f"write stage.key=value, stage one of {', '.join(names)}")
        per_stage[stage].append(rest)

    def settings(name: str, cls):
        path = folder / f"{name}.yaml"
        return config_from_dict(cls, read_config(path, per_stage[name]), f" in {path.name}")

    def training(name: str) -> TrainConfig:
        config = load_config(folder / f"{name}.yaml", per_stage[name])
        return replace(config, **{key: str(Path(work) / getattr(config, key))
                                  for key in PATH_FIELDS if getattr(config, key) is not None})

    return Stages(data=settings("data", DataConfig), model=settings("model", TinySpec),
                  warmup=settings("warmup", WarmupConfig), align=training("align"),
                  instruct=training("instruct"),
                  ground_data=settings("ground_data", GroundDataConfig), ground=training("ground"),
                  evaluate=settings("evaluate", EvalConfig))
