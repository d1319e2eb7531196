"""Fine-tune a PULSE-style model (LLaVA-NeXT) on ECGInstruct-format data: the one recipe.

Reads top to bottom: config -> model -> data -> Trainer -> save. The defaults are the paper's
(App. H): lr 2e-5, global batch 128, cosine schedule, warm-up 0.03, 3 epochs, max length 4096,
bf16, gradient checkpointing, loss on the answers only, vision tower frozen
(``train_vision_tower=true`` for the ablation that trains it too).

Start from any folder the app loads (transformers layout, or the original LLaVA layout such as
PULSE-ECG/PULSE-7B or llava-v1.6-vicuna-7b, converted once by ``pulse_app.engine``), a hub id, or
``tiny``. The output folder is what the app's ``local`` backend loads directly
(``python -m pulse_app ask IMG "question" --model OUT``).

Commands (configs in ``training/configs/``; any key can be overridden with ``key=value``)::

    # one GPU, LoRA (PULSE-7B fits a 24 GB card with qlora)
    python -m training.train training/configs/pulse-7b-lora.yaml data=ecginstruct.json
    # 8 GPUs on one machine, full fine-tuning under DeepSpeed ZeRO-2 (the paper's set-up)
    deepspeed --num_gpus 8 -m training.train training/configs/pulse-7b-full.yaml data=train.json
    accelerate launch --num_processes 8 -m training.train training/configs/pulse-7b-full.yaml
    # 2 machines x 8 GPUs (run on each, with its own --node_rank); ZeRO-3 when memory is short
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank 0 --master_addr HOST --master_port 29500 \\
        -m training.train training/configs/pulse-7b-full.yaml deepspeed=training/configs/deepspeed/zero3.json
    # resume the last checkpoint in output_dir
    python -m training.train training/configs/pulse-7b-full.yaml data=train.json --resume

The global batch stays ``global_batch_size`` whatever the number of GPUs: gradient accumulation
is ``global_batch_size / (per_device_batch_size x GPUs)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulse_app.errors import HardwareError, PulseError

log = logging.getLogger("training.train")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: Everything of a source folder that is not weights: copied next to the trained weights.
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                   "chat_template.json", "processor_config.json", "preprocessor_config.json",
                   "generation_config.json")
#: The language model's linear layers (LoRA targets); the vision tower is left alone.
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


class TrainingError(PulseError):
    """A training run that cannot start as configured."""


# -- 1. config ------------------------------------------------------------------------------------

@dataclass
class LoraConfig:
    """peft LoRA settings (LLaVA's LoRA recipe: r 128, alpha 256, projector trained fully)."""

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: str = LORA_TARGETS


@dataclass
class TrainConfig:
    """One training set-up. Defaults = PULSE-7B's fine-tuning (paper App. H)."""

    model: str = "PULSE-ECG/PULSE-7B"    # folder, hub id, or "tiny"
    data: str = ""                       # ECGInstruct JSON / JSON lines
    image_root: str | None = None        # default: the data file's folder
    eval_data: str | None = None
    output_dir: str = "runs/pulse-7b-full"
    name: str = "pulse-7b-finetuned"     # provenance name shown by the app
    method: str = "full"                 # full | lora | qlora
    lora: LoraConfig = field(default_factory=LoraConfig)
    train_vision_tower: bool = False     # paper: frozen (the ablation trains it)
    train_projector: bool = True
    train_language_model: bool = True
    epochs: float = 3.0
    max_steps: int = -1                  # > 0 overrides epochs
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    global_batch_size: int = 128
    per_device_batch_size: int = 16
    max_length: int = 4096
    precision: str = "bf16"              # bf16 | fp16 | fp32
    gradient_checkpointing: bool = True
    deepspeed: str | None = None         # path to a DeepSpeed JSON (configs/deepspeed/zero2.json)
    dataloader_workers: int = 4
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 2
    save_dtype: str | None = None        # dtype of the final weights (default: training dtype)
    seed: int = 42
    limit: int | None = None             # first N samples only (smoke runs)

    def world_size(self) -> int:
        return int(os.environ.get("WORLD_SIZE", "1"))

    def grad_accumulation(self, world_size: int | None = None) -> int:
        """Steps accumulated so that one optimizer step sees ``global_batch_size`` samples."""
        world = world_size or self.world_size()
        per_step = self.per_device_batch_size * world
        if self.global_batch_size % per_step:
            raise TrainingError(f"global_batch_size {self.global_batch_size} is not a multiple of "
                                f"per_device_batch_size {self.per_device_batch_size} x {world} "
                                "GPU(s)", hint="change per_device_batch_size or global_batch_size")
        return self.global_batch_size // per_step


def _typed(value: str) -> Any:
    import yaml

    return yaml.safe_load(value)


def read_config(path: str | Path | None = None, overrides: list[str] = ()) -> dict:
    """A YAML file as a dict, then ``key=value`` overrides (``lora.r=16`` for nested keys; values
    parsed as YAML: ``epochs=1``, ``deepspeed=null``)."""
    import yaml

    raw: dict = {}
    if path:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    for item in overrides:
        if "=" not in item:
            raise TrainingError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        target = raw
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = _typed(value)
    return raw


def config_from_dict(cls, raw: dict, where: str = ""):
    """The dataclass ``cls`` from a dict of its fields (nested dataclasses from nested dicts);
    unknown keys are refused by name."""
    import typing

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TrainingError(f"unknown config keys{where}: {', '.join(unknown)}",
                            hint=f"known keys: {', '.join(sorted(known))}")
    types = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        if dataclasses.is_dataclass(types[key]):
            value = config_from_dict(types[key], value or {}, where)
        elif types[key] is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)                          # "epochs: 3" is 3.0 epochs
        values[key] = value
    try:
        return cls(**values)
    except TypeError as error:              # a field without a default that nothing set
        raise TrainingError(f"incomplete config{where}: {error}") from error


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A YAML file (its keys = :class:`TrainConfig` fields), then ``key=value`` overrides
    (:func:`read_config`)."""
    config = config_from_dict(TrainConfig, read_config(path, overrides))
    if config.method not in ("full", "lora", "qlora"):
        raise TrainingError(f"method must be full, lora or qlora (got {config.method!r})")
    if config.precision not in ("bf16", "fp16", "fp32"):
        raise TrainingError(f"precision must be bf16, fp16 or fp32 (got {config.precision!r})")
    return config


# -- 2. model -------------------------------------------------------------------------------------

def resolve_start(model: str, cache_dir: str | Path | None = None) -> Path:
    """The transformers-layout folder to start from (``tiny``, a folder in either layout, or a
    hub id), found and converted exactly as the app does."""
    from pulse_app.engine.local import resolve_model
    from pulse_app.engine.tiny import ensure_tiny
    from pulse_app.settings import Settings

    cache = Path(cache_dir or Settings.load().cache_dir)
    if model == "tiny":
        return ensure_tiny(cache)
    folder, _ = resolve_model(model, None, cache, progress=log.info)
    return folder


def check_hardware(config: TrainConfig) -> None:
    """Clear messages for set-ups this machine cannot run (before anything heavy loads)."""
    import torch

    if config.deepspeed:
        try:
            import deepspeed  # noqa: F401
        except ImportError as e:
            raise HardwareError("this config uses DeepSpeed, which is not installed",
                                hint="pip install -r requirements-gpu.txt (Linux + CUDA), or "
                                     "set deepspeed=null for one device") from e
    if config.method == "qlora":
        if not torch.cuda.is_available():
            raise HardwareError("QLoRA loads the model in 4 bits, which needs an NVIDIA GPU (CUDA)",
                                hint="use method=lora, or run on a CUDA machine")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise HardwareError("QLoRA needs the bitsandbytes package",
                                hint="pip install -r requirements-gpu.txt") from e
    if config.precision in ("bf16", "fp16") and not torch.cuda.is_available():
        raise HardwareError(f"precision {config.precision} is meant for GPUs; this machine has no "
                            "CUDA GPU", hint="set precision=fp32 to train on the CPU")
    if config.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise HardwareError("this GPU does not support bf16", hint="set precision=fp16")


def load_for_training(folder: Path, config: TrainConfig):
    """The model in the training dtype, with the parts to train unfrozen (and LoRA applied)."""
    import torch

    from pulse_app.engine.local import check_loading_info
    from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[config.precision]
    kwargs: dict[str, Any] = {"dtype": dtype}
    if config.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
            llm_int8_skip_modules=["vision_tower", "multi_modal_projector", "lm_head"])
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    # LLaVA trains in the checkpoint's dtype (bf16) and lets DeepSpeed keep fp32 master weights
    model, info = PulseLlavaNextForConditionalGeneration.from_pretrained(
        folder, output_loading_info=True, **kwargs)
    check_loading_info(info, folder)               # never train from silently random weights
    model.config.use_cache = False

    parts = {"vision_tower": config.train_vision_tower,
             "multi_modal_projector": config.train_projector,
             "language_model": config.train_language_model, "lm_head": config.train_language_model}
    for name, param in model.named_parameters():
        param.requires_grad = any(f".{part}." in f".{name}" and on for part, on in parts.items())
    if config.method in ("lora", "qlora"):
        from peft import LoraConfig as PeftLora
        from peft import get_peft_model, prepare_model_for_kbit_training

        if config.method == "qlora":
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=config.gradient_checkpointing)
        saved = [m for m, on in (("multi_modal_projector", config.train_projector),
                                 ("vision_tower", config.train_vision_tower)) if on]
        model = get_peft_model(model, PeftLora(
            r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules, modules_to_save=saved or None,
            task_type="CAUSAL_LM"))
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


# -- 3. + 4. data and the Trainer -----------------------------------------------------------------

def training_arguments(config: TrainConfig):
    """transformers ``TrainingArguments`` for the config (batch arithmetic included)."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=config.output_dir, num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.grad_accumulation(),
        learning_rate=config.learning_rate, weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio,  # < 1: a ratio
        bf16=config.precision == "bf16", fp16=config.precision == "fp16",
        deepspeed=config.deepspeed, logging_steps=config.logging_steps,
        save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="epoch" if config.eval_data else "no",
        dataloader_num_workers=config.dataloader_workers, remove_unused_columns=False,
        report_to="none", seed=config.seed, use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not sys.stderr.isatty(), logging_first_step=True)


def build_trainer(model, config: TrainConfig, folder: Path, args=None):
    from transformers import Trainer

    from training.data import Collator, InstructDataset

    def dataset(path):
        return InstructDataset.from_file(path, folder, max_length=config.max_length,
                                         image_root=config.image_root, limit=config.limit)

    if not config.data:
        raise TrainingError("no training data given", hint="add data=PATH/TO/train.json")
    return Trainer(model=model, args=args or training_arguments(config),
                   train_dataset=dataset(config.data),
                   eval_dataset=dataset(config.eval_data) if config.eval_data else None,
                   data_collator=Collator(pad_id=model.config.text_config.pad_token_id or 0))


# -- 5. save in the app's folder format -----------------------------------------------------------

def save_for_app(model, source: Path, config: TrainConfig, out: Path,
                 metrics: dict | None = None) -> Path:
    """Write ``out`` as a folder the app loads directly: merged weights, the source's tokenizer,
    processor, chat template and generation config, provenance ``{"trained": true, ...}``."""
    import torch

    from pulse_app.engine.checkpoint import PROVENANCE_KEY

    if hasattr(model, "merge_and_unload"):          # peft: fold the LoRA weights in
        model = model.merge_and_unload()
    if config.save_dtype:
        model = model.to({"bf16": torch.bfloat16, "fp16": torch.float16,
                          "fp32": torch.float32}[config.save_dtype])
    out.mkdir(parents=True, exist_ok=True)
    before = dict(getattr(model.config, PROVENANCE_KEY, None) or {})
    setattr(model.config, PROVENANCE_KEY, {
        **{k: v for k, v in before.items() if k in ("mm_patch_merge_type", "added_tokens")},
        "name": config.name, "trained": True, "base": before.get("name") or source.name,
        "recipe": "training.train", "method": config.method, "data": Path(config.data).name,
        "train_vision_tower": config.train_vision_tower, **({"metrics": metrics} if metrics else {}),
    })
    model.config.use_cache = True
    model.save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    (out / "training_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    return out


# -- 6. the run -----------------------------------------------------------------------------------

def train(config: TrainConfig, *, resume: bool | str = False) -> Path:
    """Train per ``config``; returns the app-loadable folder ``<output_dir>/final``."""
    import torch

    check_hardware(config)
    torch.manual_seed(config.seed)
    folder = resolve_start(config.model)
    args = training_arguments(config)    # before the model: ZeRO-3 then loads it partitioned
    model = load_for_training(folder, config)
    trainable, total = count_parameters(model)
    log.info("training %s from %s: %.2fM of %.2fM parameters", config.method, folder,
             trainable / 1e6, total / 1e6)
    trainer = build_trainer(model, config, folder, args)
    if resume is True and not any(Path(config.output_dir).glob("checkpoint-*")):
        log.warning("--resume: no checkpoint in %s yet, starting fresh", config.output_dir)
        resume = False
    result = trainer.train(resume_from_checkpoint=resume or None)
    final = Path(config.output_dir) / "final"
    if trainer.is_world_process_zero():
        metrics = {k: round(v, 4) if isinstance(v, float) else v
                   for k, v in result.metrics.items()}
        save_for_app(trainer.model, folder, config, final, metrics)
        log.info("saved %s (load it with: python -m pulse_app ask IMAGE Q --model %s)", final, final)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", help="YAML config (training/configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=1")
    parser.add_argument("--resume", nargs="?", const=True, default=False,
                        help="resume from the last checkpoint in output_dir (or from PATH)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.config and "=" in args.config:
        overrides.insert(0, args.config)
        args.config = None
    try:
        config = load_config(args.config, overrides)
        train(config, resume=args.resume)
    except PulseError as error:
        print(f"error: {error}", file=sys.stderr)
        if getattr(error, "hint", None):
            print(f"hint: {error.hint}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
