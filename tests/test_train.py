"""The fine-tuning recipe on the tiny model, on CPU: masks, loss, save/reload, LoRA, resume, configs.

Real things throughout: a real ECG printout (downscaled), an ECGInstruct JSON file read by the
one reader, transformers' Trainer, peft, and the app's LocalBackend loading what training wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.train import CONFIG_DIR, TrainConfig, TrainingError, load_config

QA = [("What is the heart rate?", "The heart rate is about 72 beats per minute."),
      ("What is the rhythm?", "Sinus rhythm."),
      ("Is there ST elevation?", "Yes, ST elevation in leads V1 to V4."),
      ("Which of the following best describes this ECG? A) normal B) abnormal", "B")]


@pytest.fixture(scope="module")
def instruct_file(tmp_path_factory, ecg_image) -> Path:
    """Four hand-made samples in the ECGInstruct format, images beside the JSON file."""
    folder = tmp_path_factory.mktemp("instruct")
    (folder / "images").mkdir()
    rows = []
    for i, (question, answer) in enumerate(QA):
        image = ecg_image.resize((220 + 20 * i, 170))        # small: the tiny model's tiles are 56 px
        image.save(folder / "images" / f"ecg{i}.png")
        conversations = [{"from": "human", "value": f"<image>\n{question}"},
                         {"from": "gpt", "value": answer}]
        if i == 0:                                        # one two-turn conversation
            conversations += [{"from": "human", "value": QA[1][0]},
                              {"from": "gpt", "value": QA[1][1]}]
        rows.append({"id": f"s{i}", "image": f"images/ecg{i}.png", "conversations": conversations})
    path = folder / "train.json"
    path.write_text(json.dumps(rows))
    return path


def tiny_config(instruct_file: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(model="tiny", data=str(instruct_file), output_dir=str(out), name="tiny-trained",
                  precision="fp32", gradient_checkpointing=False, global_batch_size=4,
                  per_device_batch_size=2, learning_rate=3e-3, warmup_ratio=0.0,
                  lr_scheduler="constant", max_steps=6, dataloader_workers=0, logging_steps=1,
                  save_steps=1000, max_length=512, seed=0)
    values.update(overrides)
    return load_config(None, [f"{k}={json.dumps(v)}" for k, v in values.items()])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from training.train import resolve_start

    return resolve_start("tiny")


def batch_loss(model_dir: Path, instruct_file: Path) -> float:
    """Mean answer-token loss of the four samples, as one batch (the fixed batch)."""
    import torch

    from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration
    from training.data import Collator, InstructDataset

    model = PulseLlavaNextForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    data = InstructDataset.from_file(instruct_file, model_dir, max_length=512)
    batch = Collator()([data[i] for i in range(len(data))])
    with torch.no_grad():
        return model.eval()(**batch).loss.item()


# -- labels ---------------------------------------------------------------------------------------

def test_labels_train_on_answers_only(tiny_dir, instruct_file):
    from pulse_app.engine.llama_tokenizer import LlamaChunkEncoder
    from training.data import IGNORE_INDEX, InstructDataset

    data = InstructDataset.from_file(instruct_file, tiny_dir, max_length=512)
    item = data[0]                                         # the two-turn conversation
    ids, labels = item.input_ids.tolist(), item.labels.tolist()
    image_id = data.encoder.image_token_id
    image_positions = [i for i, t in enumerate(ids) if t == image_id]
    assert len(image_positions) == data.encoder.geometry.image_token_count((240 - 20, 170))
    assert all(labels[i] == IGNORE_INDEX for i in image_positions)
    assert labels[0] == IGNORE_INDEX                       # BOS
    first_answer = next(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX)
    assert first_answer > image_positions[-1]              # system + question masked
    trained = [t for t, lab in zip(ids, labels) if lab != IGNORE_INDEX]
    assert trained == [lab for lab in labels if lab != IGNORE_INDEX]
    decoder = LlamaChunkEncoder.from_folder(tiny_dir)
    eos = decoder.eos_id
    assert trained.count(eos) == 2 and trained[-1] == eos  # each answer ends with </s>
    answers = decoder.decode(trained)
    assert "72 beats per minute." in answers and "Sinus rhythm." in answers
    prompt_part = decoder.decode([t for t, lab in zip(ids, labels)
                                  if lab == IGNORE_INDEX and t != image_id])
    assert "What is the heart rate?" in prompt_part and "ASSISTANT:" in prompt_part
    assert "72 beats" not in prompt_part


def test_collator_pads_text_and_tiles(tiny_dir, instruct_file):
    from training.data import IGNORE_INDEX, Collator, InstructDataset

    data = InstructDataset.from_file(instruct_file, tiny_dir, max_length=512)
    items = [data[0], data[3]]
    batch = Collator(pad_id=0)(items)
    lengths = [len(i.input_ids) for i in items]
    assert batch["input_ids"].shape == (2, max(lengths))
    short = lengths.index(min(lengths))
    assert batch["attention_mask"][short].sum() == min(lengths)
    assert (batch["labels"][short, min(lengths):] == IGNORE_INDEX).all()
    assert batch["pixel_values"].shape[1] == max(i.pixel_values.shape[0] for i in items)
    assert batch["image_sizes"].tolist() == [list(i.image_size) for i in items]


def test_max_length_never_cuts_the_image(tiny_dir, instruct_file):
    from training.data import DataError, InstructDataset

    data = InstructDataset.from_file(instruct_file, tiny_dir, max_length=60)
    with pytest.raises(DataError, match="image alone"):
        data[0]


# -- training -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_dir, instruct_file, tmp_path_factory):
    from training.train import train

    out = tmp_path_factory.mktemp("run")
    return train(tiny_config(instruct_file, out, max_steps=8))


def test_training_lowers_the_loss_on_a_fixed_batch(tiny_dir, instruct_file, trained):
    before, after = batch_loss(tiny_dir, instruct_file), batch_loss(trained, instruct_file)
    assert after < 0.8 * before, (before, after)


def test_trained_folder_loads_in_the_app_and_answers(trained, ecg_image, tmp_path):
    from pulse_app.engine.backend import GenerationParams
    from pulse_app.engine.local import LocalBackend

    config = json.loads((trained / "config.json").read_text())
    assert config["pulse_app"]["trained"] is True and config["pulse_app"]["name"] == "tiny-trained"
    assert config["mm_patch_merge_type"] == "flat"
    backend = LocalBackend(str(trained), device="cpu", cache_dir=tmp_path, progress=lambda m: None)
    assert backend.info().trained and "UNTRAINED" not in backend.info().label
    answer = "".join(backend.stream(ecg_image.resize((240, 170)), [], "What is the rhythm?",
                                    GenerationParams(temperature=0.0, max_new_tokens=12)))
    assert answer.strip()


def test_lora_trains_and_merges_on_cpu(tiny_dir, instruct_file, tmp_path):
    from safetensors.torch import load_file

    from training.train import train

    final = train(tiny_config(instruct_file, tmp_path, method="lora", max_steps=3,
                              gradient_checkpointing=True,
                              **{"lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.0}))
    merged, base = load_file(final / "model.safetensors"), load_file(tiny_dir / "model.safetensors")
    assert not any("lora" in k for k in merged) and set(merged) == set(base)
    changed = [k for k in base if not (merged[k] == base[k]).all()]
    assert any("language_model.layers.0.self_attn.q_proj" in k for k in changed)
    assert not any("vision_tower" in k for k in changed)     # frozen, like the paper
    assert batch_loss(final, instruct_file) < batch_loss(tiny_dir, instruct_file)


def test_resume_continues_from_the_checkpoint(instruct_file, tmp_path):
    from training.train import train

    train(tiny_config(instruct_file, tmp_path, max_steps=2, save_steps=2))
    assert (tmp_path / "checkpoint-2").is_dir()
    train(tiny_config(instruct_file, tmp_path, max_steps=4, save_steps=2), resume=True)
    state = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps == [1, 2, 3, 4]                # steps 1-2 from the first run, 3-4 resumed


# -- configs --------------------------------------------------------------------------------------

def test_full_config_has_the_papers_hyper_parameters():
    config = load_config(CONFIG_DIR / "pulse-7b-full.yaml")
    assert (config.learning_rate, config.global_batch_size, config.lr_scheduler,
            config.warmup_ratio, config.epochs, config.max_length) == (2e-5, 128, "cosine", 0.03,
                                                                        3, 4096)
    assert config.precision == "bf16" and config.gradient_checkpointing
    assert config.train_vision_tower is False and config.method == "full"
    assert config.deepspeed.endswith("zero2.json")
    assert load_config(CONFIG_DIR / "pulse-7b-full.yaml",
                       ["train_vision_tower=true"]).train_vision_tower is True


@pytest.mark.parametrize("name", ["pulse-7b-full", "pulse-7b-lora", "pulse-7b-qlora", "mini/align",
                                  "mini/instruct"])
def test_every_config_loads_and_its_batch_arithmetic_holds(name):
    config = load_config(CONFIG_DIR / f"{name}.yaml")
    for gpus in (1, 2, 4, 8):
        if config.global_batch_size % (config.per_device_batch_size * gpus) == 0:
            assert (config.grad_accumulation(gpus) * config.per_device_batch_size * gpus
                    == config.global_batch_size)
    if config.deepspeed:
        assert (Path(CONFIG_DIR.parent.parent) / config.deepspeed).is_file()


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_parse_and_leave_batches_to_the_yaml(stage):
    ds = json.loads((CONFIG_DIR / "deepspeed" / f"zero{stage}.json").read_text())
    assert ds["zero_optimization"]["stage"] == stage
    config = load_config(CONFIG_DIR / "pulse-7b-full.yaml")
    # "auto" = filled from TrainingArguments, i.e. from the yaml; a number must agree with it
    expected = {"train_batch_size": config.global_batch_size,
                "train_micro_batch_size_per_gpu": config.per_device_batch_size,
                "gradient_accumulation_steps": config.grad_accumulation(8)}
    for key, value in expected.items():
        assert ds[key] in ("auto", value), key
    assert ds["bf16"]["enabled"] in ("auto", True)


def test_overrides_and_bad_configs():
    config = load_config(CONFIG_DIR / "pulse-7b-lora.yaml", ["lora.r=8", "epochs=1",
                                                              "deepspeed=null"])
    assert (config.lora.r, config.lora.alpha, config.epochs, config.deepspeed) == (8, 256, 1, None)
    with pytest.raises(TrainingError, match="unknown config keys: learning_rat"):
        load_config(None, ["learning_rat=1e-4"])
    with pytest.raises(TrainingError, match="not a multiple"):
        load_config(None, ["global_batch_size=100", "per_device_batch_size=16"]).grad_accumulation(1)


def test_gpu_only_set_ups_fail_clearly_on_cpu(instruct_file, tmp_path):
    import torch

    from pulse_app.errors import HardwareError
    from training.train import main, train

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(HardwareError, match="NVIDIA GPU"):
        train(tiny_config(instruct_file, tmp_path, method="qlora"))
    with pytest.raises(HardwareError, match="bf16"):
        train(tiny_config(instruct_file, tmp_path, precision="bf16"))
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        assert main([str(CONFIG_DIR / "pulse-7b-full.yaml"), f"data={instruct_file}",
                     f"output_dir={tmp_path}"]) == 2


# -- the mini model -------------------------------------------------------------------------------

def mini_stages(overrides=()):
    from training.mini_model.config import load_stages

    return load_stages(overrides=list(overrides))


def test_mini_data_packs_each_records_questions_into_one_conversation(tmp_path):
    from training.instruct import read_samples
    from training.mini_model.data import make_split, pack_conversations

    data = mini_stages(["data.grounded_fraction=0"]).data     # (grounded ids end "-g")
    samples, _ = make_split(tmp_path, 2, 5, data, extra_mcq=1)
    extra = [s for s in samples if s.id.endswith("-x1")]
    assert len(extra) == 4 and {s.meta["qtype"] for s in extra} == {"mcq"}   # basic + rhythm
    assert len({s.id for s in samples}) == len(samples)
    for s in extra:                           # another option order than the round-0 question
        first = next(f for f in samples if f.id == s.id.removesuffix("-x1"))
        assert s.image == first.image and s.question != first.question
    packed = pack_conversations(samples, turns=5, seed=0)
    (tmp_path / "train.json").write_text(json.dumps(packed))
    read_back = read_samples(tmp_path / "train.json")            # valid ECGInstruct data
    assert {s.image for s in read_back} == {s.image for s in samples}
    assert all(len(s.turns) <= 5 for s in read_back)
    asked = sorted((s.image, t.question, t.answer) for s in read_back for t in s.turns)
    assert asked == sorted((s.image, s.turns[0].question, s.turns[0].answer) for s in samples)
    assert len(read_back) == sum(-(-sum(s.image == i for s in samples) // 5)
                                 for i in {s.image for s in samples})


def test_vision_targets_mark_the_drawn_r_peaks_and_the_tokens_that_show_them(tmp_path):
    """R-peak positions land on drawn ink (on distorted pages too), one per beat per panel, and
    a peak's target goes to the image token whose patch holds that point."""
    import numpy as np
    from PIL import Image

    from pulse_app.engine.anyres import AnyresGeometry
    from training.mini_model.data import make_split
    from training.mini_model.targets import beat_targets

    _, targets = make_split(tmp_path, 4, 5, mini_stages().data)
    for target in targets:
        assert target["rhythm"] and 25 < target["heart_rate_bpm"] < 250
        page = np.asarray(Image.open(tmp_path / target["image"]).convert("L"), dtype=float)
        paper = np.median(page)
        on_ink = [page[max(0, round(y) - 3):round(y) + 4, max(0, round(x) - 3):round(x) + 4].min()
                  < paper - 60 for x, y in target["r_peaks_xy"]]
        assert np.mean(on_ink) > 0.9
        # 3 rows of four 2.5 s panels and a 10 s strip: 40 s of beats in all
        expected = target["heart_rate_bpm"] * 40 / 60
        assert 0.6 * expected < len(target["r_peaks_xy"]) < 1.5 * expected

    # a 448 x 346 page goes into a 2x2 grid of 112 px tiles at half size, centred (43 px pad)
    geometry = AnyresGeometry(tile_px=112, patch_px=14,
                              pinpoints_wh=((224, 112), (112, 224), (224, 224)))
    beats = beat_targets((448, 346), [[300.0, 100.0]], geometry).numpy()
    assert beats.shape == (5, 64) and 0.5 < beats[1:].sum() < 3
    tile, token = divmod(int(beats[1:].reshape(-1).argmax()), 64)
    x, y = 300 / 2, 100 / 2 + (224 - 173) // 2             # in the 224 x 224 grid
    assert tile == (y // 112) * 2 + x // 112                 # row-major tiles
    assert token == ((y % 112) // 14) * 8 + (x % 112) // 14

    # per token, the rate of the beat intervals drawn in it: the record's rate where the rhythm
    # is regular, nothing where no trace runs
    from training.mini_model.targets import local_rate_targets

    for target in targets:
        segments = target["rr_segments"]
        assert all(x1 > x0 and 20 < bpm < 300 for x0, _, x1, _, bpm in segments)
        with Image.open(tmp_path / target["image"]) as image:
            bpm, weight = local_rate_targets(image.size, segments, geometry)
        assert bpm.shape == weight.shape == (5, 64) and (weight == 0).any()
        mean = float((bpm * weight).sum() / weight.sum())
        assert abs(mean - target["heart_rate_bpm"]) < 0.15 * target["heart_rate_bpm"]
    # 50 bpm drawn left of x = 200, 150 bpm right of it, on the row at y = 100: at half size
    # and under the 25 px pad, row 5 of the top-left tile and of the top-right tile
    bpm, weight = local_rate_targets((448, 346), [[20.0, 100.0, 200.0, 100.0, 50.0],
                                                  [200.0, 100.0, 420.0, 100.0, 150.0]], geometry)
    rows = weight[1:].reshape(4, 8, 8).sum(-1) > 0
    assert rows[:2, 5].all() and rows.sum() == 2                # only row 5 of the top tiles
    top_left, top_right = bpm[1, 41:47], bpm[2, 40:47]     # away from the page edge and the join
    assert (weight[1, 41:47] > 0.1).all() and (weight[2, 40:47] > 0.1).all()
    assert (abs(top_left - 50) < 2).all() and (abs(top_right - 150) < 5).all()


def test_vision_warmup_trains_the_tower_only(tmp_path):
    """A few warm-up steps change the vision tower's weights and nothing else in the folder."""
    import json as _json
    import shutil

    from safetensors.torch import load_file

    from training.mini_model.data import make_split
    from training.mini_model.warmup import warm_up
    from training.train import resolve_start

    _, targets = make_split(tmp_path, 4, 6, mini_stages().data)
    (tmp_path / "targets.json").write_text(_json.dumps(targets))
    model = tmp_path / "model"
    shutil.copytree(resolve_start("tiny"), model)
    before = load_file(model / "model.safetensors")
    result = warm_up(model, tmp_path / "targets.json", tmp_path,
                     mini_stages(["warmup.epochs=4", "warmup.batch_size=2"]).warmup,
                     heldout=tmp_path / "targets.json")
    after = load_file(model / "model.safetensors")
    assert result["steps"] == 8 and set(result["heldout"]) >= {
        "rate_bucket_accuracy", "rhythm_accuracy", "local_rate_mae_bpm"}     # per-token rates too
    # the CNN teacher was trained and scored first; it is not part of the model
    assert 0 <= result["teacher"]["heldout"]["rhythm_accuracy"] <= 1 and result["teacher"]["epochs"] == 6
    changed = {k for k in before if not (before[k] == after[k]).all()}
    assert changed and all(".vision_tower." in k for k in changed)
    assert any("patch_embedding" in k for k in changed)
    # fewer images than the default batch of 32: one batch of all of them, and it ends
    alone = warm_up(model, tmp_path / "targets.json", tmp_path,
                    mini_stages(["warmup.epochs=1", "warmup.teacher_epochs=0"]).warmup)
    assert alone["steps"] == 1 and "teacher" not in alone


def test_a_demonstration_model_is_labelled_as_such(trained, tmp_path):
    from pulse_app.engine.local import LocalBackend

    folder = tmp_path / "demo"
    folder.mkdir()
    for path in trained.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["pulse_app"].update(demonstration=True, note="not for clinical use")
    (folder / "config.json").write_text(json.dumps(config))
    info = LocalBackend(str(folder), device="cpu", cache_dir=tmp_path).info()
    assert info.trained and "trained demonstration model" in info.label
    assert info.note == "not for clinical use"


@pytest.mark.slow
def test_mini_model_command_runs_end_to_end(tmp_path):
    """The whole `python -m training.mini_model` at toy scale: data, train, evaluate, card."""
    import dataclasses
    import subprocess
    import sys

    from training.mini_model.config import load_stages

    out, work = tmp_path / "pulse-mini", tmp_path / "work"
    overrides = ["data.records=6", "data.heldout=2", "warmup.epochs=2", "instruct.epochs=1",
                 "evaluate.limit=2", "evaluate.real_pages=1", "align.max_steps=2",
                 "instruct.max_steps=2", "ground.max_steps=2",
                 "align.dataloader_workers=0", "instruct.dataloader_workers=0",
                 "ground.dataloader_workers=0"]
    subprocess.run([sys.executable, "-m", "training.mini_model", "--work", str(work),
                    "--out", str(out), *overrides],
                   check=True, cwd=Path(__file__).resolve().parent.parent, timeout=900)
    # the training stages ran with what their YAML files (and the overrides) say, nothing else
    stages = load_stages(overrides=overrides, work=work)
    for name in ("align", "instruct", "ground"):
        ran = json.loads((work / name / "final" / "training_config.json").read_text())
        assert ran == json.loads(json.dumps(dataclasses.asdict(getattr(stages, name))))
    warmup = json.loads((work / "mini_model_info.json").read_text())["vision_warmup"]
    assert (warmup["epochs"], warmup["teacher"]["epochs"]) == (2.0, stages.warmup.teacher_epochs)
    config = json.loads((out / "config.json").read_text())
    assert config["pulse_app"]["trained"] and config["pulse_app"]["demonstration"]
    card = (out / "README.md").read_text()
    assert "not PULSE-7B" in card and "| majority baseline |" in card
    assert "not for clinical use" in card.lower()
    if (work / "grounded-eval.json").is_file():                   # ../shared/data is there
        real = json.loads((work / "grounded-eval.json").read_text())
        assert real["pages"] == 1 and set(real["table"]) == {"rate", "rhythm"}
        assert "On pages of real records, grounded or not" in card


def test_offline_default_is_the_shipped_mini_model(tmp_path):
    """`offline-default` resolves to assets/pulse-mini, a trained demonstration model, small."""
    from pulse_app.engine.local import MINI_MODEL_DIR, LocalBackend

    assert (MINI_MODEL_DIR / "config.json").is_file(), "assets/pulse-mini is missing"
    size_mb = sum(p.stat().st_size for p in MINI_MODEL_DIR.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 30
    info = LocalBackend(device="cpu", cache_dir=tmp_path).info()
    assert info.trained and "pulse-mini, trained demonstration model" in info.label
    assert "not for clinical use" in info.note
    card = (MINI_MODEL_DIR / "README.md").read_text()
    assert "not PULSE-7B" in card and "majority baseline" in card


def test_model_card_verdicts_name_clear_wins_and_weak_spots():
    """The card's sentences follow the numbers: +10 points is a clear win, rows at or below the
    majority baseline are listed as weak spots, rows above it are not."""
    from training.mini_model.card import verdict, weak_spots

    rows = [{"group": "Rate: bucket, all question types", "metric": "accuracy", "n": 10,
             "m": 0.80, "majority": 0.69},
            {"group": "Rhythm: rhythm label, all question types", "metric": "accuracy", "n": 10,
             "m": 0.58, "majority": 0.54},
            {"group": "Heart Rhythm Analysis / Multi-choice QA", "metric": "accuracy", "n": 10,
             "m": 0.49, "majority": 0.59},
            {"group": "Rate: bpm error of open answers", "metric": "MAE bpm", "n": 10,
             "m": 8.0, "majority": 15.0}]
    text = verdict({"rows": rows}, "m")
    assert "heart-rate questions it clearly beats" in text
    assert "rhythm questions it beats, but only slightly," in text
    weak = weak_spots({"rows": rows}, "m")
    assert "Multi-choice QA: 49.0 % vs majority 59.0 %" in weak
    assert "Rate: bucket" not in weak and "MAE" not in weak
    assert weak_spots({"rows": rows[:1]}, "m") == ""
