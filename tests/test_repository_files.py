"""Every file in the repository is the project's own: each committed data file (image, record,
table, weights, any binary) is made by a documented project command listed in assets/generated.toml."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Suffixes of files that are data, whatever their bytes.
DATA_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif", ".svg",
    ".pdf", ".hea", ".dat", ".mat", ".dcm", ".edf", ".xml", ".h5", ".hdf5", ".npy", ".npz", ".csv",
    ".tsv", ".parquet", ".arrow", ".jsonl", ".pkl", ".pickle", ".pt", ".pth", ".bin",
    ".safetensors", ".onnx", ".model", ".zip", ".gz", ".tar", ".xz", ".bz2", ".7z", ".enc",
}


def committed_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [name for name in out.stdout.decode().split("\0") if name]


def is_data(path: Path) -> bool:
    """A data file: a data suffix, or bytes that are not UTF-8 text."""
    if path.suffix.lower() in DATA_SUFFIXES:
        return True
    head = path.read_bytes()[:65536]
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start < len(head) - 4          # a character cut at the 64 KB boundary is text
    return False


def manifest() -> dict:
    return tomllib.loads((REPO / "assets" / "generated.toml").read_text(encoding="utf-8"))


def test_every_committed_data_file_is_made_by_a_documented_command():
    entries = manifest()
    allowed = [(pattern, entry) for entry in entries["generated"]
               for pattern in entry["paths"]]
    files = committed_files()
    data = [name for name in files if (REPO / name).is_file() and is_data(REPO / name)]
    assert data, "the walk found no data file at all"
    unlisted = [name for name in data
                if not any(fnmatch.fnmatch(name, pattern) for pattern, _ in allowed)]
    assert not unlisted, ("data files that no project command makes (generated.toml): "
                          + ", ".join(unlisted))
    for entry in entries["generated"]:       # each pattern still names files, made by its command
        for pattern in entry["paths"]:
            assert any(fnmatch.fnmatch(name, pattern) for name in files), pattern


def test_the_commands_are_make_targets():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, flags=re.M))
    for entry in manifest()["generated"]:
        command = entry["command"]
        assert command.startswith("make "), command
        assert command.split()[1] in targets, command


@pytest.mark.parametrize("name, expected", [
    ("assets/examples/01-sinus-rhythm.png", True),
    ("training/configs/deepspeed/zero2.json", False),
    ("README.md", False),
])
def test_the_walk_tells_data_from_source(name, expected):
    assert is_data(REPO / name) is expected


def test_a_third_party_picture_would_be_caught(tmp_path):
    """What the walk would say of a real ECG photo copied into assets/examples/'s neighbour."""
    stray = "assets/ecg00030.jpg"
    entries = manifest()
    patterns = [p for e in entries["generated"] for p in e["paths"]]
    assert not any(fnmatch.fnmatch(stray, pattern) for pattern in patterns)
    (tmp_path / "table.dat").write_bytes(b"\x00\x01binary")
    (tmp_path / "notes.txt").write_text("plain text, é")
    assert is_data(tmp_path / "table.dat") and not is_data(tmp_path / "notes.txt")
