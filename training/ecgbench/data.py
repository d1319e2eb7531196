"""Reading the released ECGBench files: ``<root>/<subset>.json`` and the image folders.

The PULSE repository's README lays the HuggingFace dataset ``PULSE-ECG/ECGBench`` out as::

    ECGBench/
      images/ptb-xl/..., images/cpsc/..., images/csn/..., images/g12/..., images/code15/...,
      images/mmmu-ecg/..., images/ecg-arena/...
      arena.json, code15-test.json, cpsc-test.json, csn-test-no-cot.json, ecgqa-test.json,
      g12-test-no-cot.json, mmmu-ecg.json, ptb-test.json, ptb-test-report.json

Each file is one JSON list; an item is ``{"id", "image", "conversations"}`` (the dataset's
``image_path`` column is saved as ``image``). Conversations are ``[{"from": "human", "value":
question}, {"from": "gpt", "value": answer}]``, with three variations this reader accepts:
ECG-QA's values are *lists* of strings (the answer a list of option words), the report file of
the PULSE repository spells the key ``conversation``, and ECG Arena's turns are ``{"question",
"answer"}`` pairs. Images resolve from ``images=`` (default ``<root>/images`` when it exists, else
``<root>``); a missing folder, file or image is one clear line naming it.

>>> items = read_subset("data/ECGBench", "mmmu-ecg")            # doctest: +SKIP
>>> items[0].questions, items[0].reference                      # doctest: +SKIP
(['Which rhythm ... A. ... D. ...'], 'B')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pulse_app.conversation import IMAGE_PLACEHOLDER
from pulse_app.errors import PulseError
from training.ecgbench.subsets import ARENA, SUBSETS


class BenchDataError(PulseError):
    """The ECGBench folder, a subset file or an image is missing or malformed."""

    exit_code = 10


@dataclass
class BenchItem:
    """One ECGBench item. ``questions``/``references`` hold one entry per turn (several only in
    ECG Arena); a reference is a string, or a list of strings (ECG-QA). ``raw`` is the item as
    read (the paper's scorer reads a few keys directly)."""

    id: str
    subset: str
    image: str | None
    questions: list[str]
    references: list
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def question(self) -> str:
        return self.questions[0]

    @property
    def reference(self):
        return self.references[-1]


def _text(value) -> str:
    """A turn's text: lists (ECG-QA's layout) joined."""
    return "".join(value) if isinstance(value, list) else str(value)


def _question(value) -> str:
    """The question as the published runner sends it: every ``<image>\\n`` removed (LLaVA puts
    the image in front again)."""
    return _text(value).replace(IMAGE_PLACEHOLDER + "\n", "").replace(IMAGE_PLACEHOLDER, "").strip()


def parse_item(raw: dict, subset: str, where: str) -> BenchItem:
    """One :class:`BenchItem` from a decoded JSON object (see the module docstring)."""
    if not isinstance(raw, dict):
        raise BenchDataError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    turns = raw.get("conversations", raw.get("conversation"))
    if not isinstance(turns, list) or not turns:
        raise BenchDataError(f"{where}: no 'conversations' list",
                             hint="is this an ECGBench subset file?")
    image = raw.get("image", raw.get("image_path"))
    item_id = str(raw.get("id", raw.get("No", "")))
    if not item_id:
        raise BenchDataError(f"{where}: the item has no 'id'")
    if SUBSETS[subset].kind == ARENA or "question" in turns[0]:
        try:
            questions = [_question(t["question"]) for t in turns]
            references = [_text(t["answer"]) for t in turns]
        except (KeyError, TypeError) as e:
            raise BenchDataError(f"{where}: arena turns need 'question' and 'answer'") from e
    else:
        values = [t.get("value") if isinstance(t, dict) else None for t in turns]
        if len(values) < 2 or any(v is None for v in values):
            raise BenchDataError(f"{where}: expected a question and an answer with 'value'")
        questions = [_question(v) for v in values[0:-1:2]]
        references = [v if isinstance(v, list) else str(v) for v in values[1::2]]
    return BenchItem(item_id, subset, image, questions, references, raw)


def subset_file(root: str | Path, subset: str) -> Path:
    """``<root>/<subset>.json`` (or ``.jsonl``); a one-line error when the folder or file is
    missing."""
    root = Path(root)
    if not root.is_dir():
        raise BenchDataError(f"ECGBench folder {root} not found",
                             hint="download PULSE-ECG/ECGBench and pass its folder with --data")
    for suffix in (".json", ".jsonl"):
        if (root / f"{subset}{suffix}").is_file():
            return root / f"{subset}{suffix}"
    raise BenchDataError(f"no {subset}.json in {root}",
                         hint="pass the folder holding the ECGBench subset files with --data")


def image_folder(root: str | Path, images: str | Path | None = None) -> Path:
    """The folder image paths are relative to: ``images``, else ``<root>/images`` if present,
    else ``<root>``."""
    if images is not None:
        folder = Path(images)
        if not folder.is_dir():
            raise BenchDataError(f"image folder {folder} not found",
                                 hint="pass the folder the ECGBench images were unpacked to")
        return folder
    root = Path(root)
    return root / "images" if (root / "images").is_dir() else root


def read_subset(root: str | Path, subset: str, *, images: str | Path | None = None,
                check_images: bool = True) -> list[BenchItem]:
    """Every item of one subset; with ``check_images`` every image must exist."""
    if subset not in SUBSETS:
        raise BenchDataError(f"no ECGBench subset {subset!r}")
    path = subset_file(root, subset)
    try:
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            raws = json.loads(text)
        else:
            raws = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as e:
        raise BenchDataError(f"{path} is not a readable JSON file ({e})",
                             hint="download it again") from e
    items = [parse_item(raw, subset, f"{path.name} item {i}") for i, raw in enumerate(raws)]
    if check_images:
        folder = image_folder(root, images)
        for item in items:
            if item.image is not None and not (folder / item.image).is_file():
                raise BenchDataError(f"image {item.image} of {subset} item {item.id} not found "
                                     f"under {folder}",
                                     hint="unpack the subset's image archive there, or pass "
                                          "--images")
    return items
