"""The batch rendering CLI, run as users run it: real records, a broken one, two workers, a rerun."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from tests.conftest import REPO
from training.render import output_name, variant_seed


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.render", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def records(shared_data, tmp_path_factory) -> Path:
    """Two real CinC records and one file that only looks like a record."""
    folder = tmp_path_factory.mktemp("records")
    for name in ("E07509", "JS20008"):
        for ext in (".hea", ".mat"):
            shutil.copy(shared_data / "ecg-records" / f"{name}{ext}", folder)
    (folder / "BROKEN.hea").write_text("this is not a WFDB header\n")
    return folder


@pytest.fixture(scope="module")
def first_run(records, tmp_path_factory):
    out = tmp_path_factory.mktemp("out1")
    proc = run_cli(records, "--out", out, "--variants", 2, "--distort", "all", "--dpi", 100,
                   "--workers", 1, "--seed", 7)
    return out, proc


def test_renders_every_readable_record_and_reports_the_broken_one(first_run):
    out, proc = first_run
    assert proc.returncode == 1
    assert "BROKEN.hea" in proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{r}_{k}.{ext}" for r in ("E07509", "JS20008") for k in (0, 1)
                           for ext in ("png", "json"))
    for sidecar_path in out.glob("*.json"):
        side = json.loads(sidecar_path.read_text())
        img = cv2.imread(str(out / side["image"]))
        assert img.shape[:2] == (side["height"], side["width"]) == (850, 1100)
        assert len(side["leads"]) == 13 and side["distortions"]
        assert side["record_id"] == sidecar_path.stem.split("_")[0]
    # Variants differ from each other.
    a, b = (json.loads((out / f"E07509_{k}.json").read_text()) for k in (0, 1))
    assert a["distortions"] != b["distortions"]


def test_rerun_skips_finished_outputs_and_fills_in_missing_ones(records, first_run):
    out, _ = first_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    proc = run_cli(records, "--out", out, "--variants", 2, "--distort", "all", "--dpi", 100,
                   "--workers", 1, "--seed", 7)
    assert "0 images written" in proc.stderr and "2 records already done" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # A crashed run leaves a PNG without its sidecar: that variant is rendered again, alone.
    png = (out / "JS20008_1.png").read_bytes()
    (out / "JS20008_1.json").unlink()
    proc = run_cli(records, "--out", out, "--variants", 2, "--distort", "all", "--dpi", 100,
                   "--workers", 1, "--seed", 7)
    assert "1 images written" in proc.stderr
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert sorted(n for n in after if after[n] != before.get(n)) == ["JS20008_1.json", "JS20008_1.png"]
    assert (out / "JS20008_1.png").read_bytes() == png        # deterministic


def test_two_workers_write_the_same_files_as_one(records, first_run, tmp_path):
    out1, _ = first_run
    proc = run_cli(records, "--out", tmp_path, "--variants", 2, "--distort", "all", "--dpi", 100,
                   "--workers", 2, "--seed", 7)
    assert proc.returncode == 1 and "BROKEN.hea" in proc.stderr
    files = sorted(p.name for p in out1.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    for name in files:
        assert (tmp_path / name).read_bytes() == (out1 / name).read_bytes(), name


def test_another_seed_gives_other_images(records, first_run, tmp_path):
    out1, _ = first_run
    proc = run_cli(records / "E07509.hea", "--out", tmp_path, "--variants", 1, "--distort", "all",
                   "--dpi", 100, "--seed", 8, "--format", "jpg")
    assert proc.returncode == 0, proc.stderr
    side = json.loads((tmp_path / "E07509_0.json").read_text())
    assert side["image"] == "E07509_0.jpg" and (tmp_path / "E07509_0.jpg").exists()
    assert side["distortions"] != json.loads((out1 / "E07509_0.json").read_text())["distortions"]


def test_bad_options_are_refused_before_any_work(records, tmp_path):
    proc = run_cli(records, "--out", tmp_path, "--layout", "5x5")
    assert proc.returncode == 2 and "layout" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_names_and_seeds():
    assert output_name("/data/E07509.hea") == "E07509"
    assert output_name("exams_part0.hdf5#1234") == "exams_part0-1234"
    seeds = {variant_seed(s, k) for s in range(20) for k in range(20)}
    assert len(seeds) == 400


def test_repeated_layouts_and_grids_are_mixed_across_variants(records, tmp_path):
    proc = run_cli(records / "E07509.hea", "--out", tmp_path, "--variants", 6, "--distort", "none",
                   "--dpi", 50, "--layout", "6x2", "--layout", "3x4+II,V1", "--grid", "grey",
                   "--grid", "none")
    assert proc.returncode == 0, proc.stderr
    sides = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert len(sides) == 6
    assert {s["layout"] for s in sides} == {"6x2", "3x4+II,V1"}
    assert {s["grid"] for s in sides} == {"grey", "none"}
    assert all(len(s["leads"]) == (12 if s["layout"] == "6x2" else 14) for s in sides)
