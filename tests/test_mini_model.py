"""The mini model's build settings (one YAML per stage, stage.key=value overrides, nothing changed
in code) and its record -> page path through training.render. The build itself:
tests/test_train.py (the warm-up, the card's sentences, the whole command at toy scale)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from training.mini_model.config import MINI_CONFIG_DIR, PATH_FIELDS, load_stages
from training.train import TrainingError

STAGES = ("data", "model", "warmup", "align", "instruct", "ground_data", "ground", "evaluate")


def test_every_stage_runs_what_its_yaml_says(tmp_path):
    """Each stage's settings are its YAML file's values, key for key; the training stages'
    paths are the YAML's, inside the work folder."""
    assert sorted(p.stem for p in MINI_CONFIG_DIR.glob("*.yaml")) == sorted(STAGES)
    stages = load_stages(work=tmp_path)
    for name in STAGES:
        written = yaml.safe_load((MINI_CONFIG_DIR / f"{name}.yaml").read_text())
        loaded = dataclasses.asdict(getattr(stages, name))
        for key, value in written.items():
            expected = str(tmp_path / value) if key in PATH_FIELDS and value else value
            assert loaded[key] == expected, f"{name}.yaml: {key}"
    # the stages the issue named: the tower is frozen after the warm-up, in the files themselves
    assert stages.align.train_vision_tower is False and stages.instruct.train_vision_tower is False
    assert stages.ground.train_vision_tower is False
    assert stages.instruct.model == str(tmp_path / "align" / "final")
    assert stages.ground.model == str(tmp_path / "instruct" / "final")
    assert stages.align.model == str(tmp_path / "warm")


def test_overrides_name_a_stage_and_one_of_its_keys(tmp_path):
    stages = load_stages(overrides=["warmup.epochs=2", "instruct.lora.r=8", "data.records=6",
                                    "align.train_vision_tower=true"], work=tmp_path)
    assert stages.warmup.epochs == 2.0 and isinstance(stages.warmup.epochs, float)
    assert stages.instruct.lora.r == 8 and stages.data.records == 6
    assert stages.align.train_vision_tower is True and stages.instruct.train_vision_tower is False
    with pytest.raises(TrainingError, match="does not name a stage"):
        load_stages(overrides=["epochs=2"])
    with pytest.raises(TrainingError, match="unknown config keys in warmup.yaml: epoch"):
        load_stages(overrides=["warmup.epoch=2"])
    with pytest.raises(TrainingError, match="unknown config keys: learning_rat"):
        load_stages(overrides=["align.learning_rat=1"])


def test_a_setting_missing_from_a_yaml_is_an_error_not_a_default(tmp_path):
    folder = tmp_path / "mini"
    shutil.copytree(MINI_CONFIG_DIR, folder)
    lines = (folder / "warmup.yaml").read_text().splitlines()
    (folder / "warmup.yaml").write_text("\n".join(l for l in lines if not l.startswith("epochs:")))
    with pytest.raises(TrainingError, match="incomplete config in warmup.yaml.*epochs"):
        load_stages(folder)
    assert load_stages(folder, ["warmup.epochs=3"]).warmup.epochs == 3.0


def test_the_command_refuses_a_bad_override_before_any_work(tmp_path, capsys):
    from training.mini_model.__main__ import main

    assert main(["--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
                 "records=6"]) == 2
    assert "does not name a stage" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_mini_pages_come_from_the_batch_renderer_resumably(tmp_path):
    """make_split renders through training.render (sidecar beside each page, stored 448 px
    wide), the same page the renderer draws for that record and seed; a second run renders
    nothing again and gives the same samples and targets, with one process or two."""
    from pulse_app.ecg.render import render_ecg
    from training.mini_model.data import image_seed, make_split, simulated_id, simulated_record

    config = load_stages().data
    samples, targets = make_split(tmp_path, 2, 5, config, start=3)
    assert [t["image"] for t in targets] == ["images/sim-5-000003_0.png",
                                             "images/sim-5-000004_0.png"]
    assert {s.image for s in samples} == {t["image"] for t in targets}
    record = simulated_record(simulated_id(5, 3))
    assert record.record_id == simulated_id(5, 3) == "sim-5-000003"    # training.instruct's name
    page = render_ecg(record, dpi=config.dpi, distort=config.distort, seed=image_seed(5, 3)).image
    expected = page.resize((config.width_px, round(page.height * config.width_px / page.width)),
                           Image.BICUBIC)
    stored = Image.open(tmp_path / targets[0]["image"]).convert("RGB")
    assert stored.width == config.width_px
    assert np.array_equal(np.asarray(stored), np.asarray(expected))
    sidecar = json.loads((tmp_path / "images" / "sim-5-000003_0.json").read_text())
    assert sidecar["image_scale"] == config.width_px / sidecar["width"]
    assert sidecar["record_id"] == "sim-5-000003" and sidecar["source"] == "sim-5-000003"

    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "images").iterdir()}
    again = make_split(tmp_path, 2, 5, config, start=3, workers=2)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "images").iterdir()} == written
    assert again == (samples, targets)
    other = tmp_path / "two-workers"
    assert make_split(other, 2, 5, config, start=3, workers=2) == (samples, targets)
    for name in written:
        if name.endswith(".png"):
            assert (other / "images" / name).read_bytes() == (tmp_path / "images" / name).read_bytes()
