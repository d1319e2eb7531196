"""The ECGInstruct / LLaVA instruction format, and the one reader and writer for it.

A sample is what LLaVA's ``train.py`` and PULSE's released ECGInstruct data use::

    {"id": "sim-000001-rate-open", "image": "images/sim-000001.png",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is the heart rate?"},
                       {"from": "gpt", "value": "The heart rate is about 72 bpm (normal)."}],
     "meta": {"task": "basic", "qtype": "open", "kind": "rate", "answer": "normal", ...}}

Files are either one JSON list (LLaVA, ECGInstruct) or JSON lines (one sample per line); the
reader tells them apart by the first character. It also accepts the ECGBench test files, which
spell the key ``conversation`` with roles ``user``/``assistant`` and leave ``<image>`` out of the
question (LLaVA's evaluation prepends it), and normalises both to the training layout.

>>> s = Sample("x", "a.png", [{"from": "human", "value": "<image>\\nRate?"},
...                           {"from": "gpt", "value": "72 bpm."}])
>>> s.turns
[Turn(question='Rate?', answer='72 bpm.')]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from pulse_app.conversation import IMAGE_PLACEHOLDER, Turn
from pulse_app.errors import PulseError

IMAGE_PREFIX = IMAGE_PLACEHOLDER + "\n"
#: The paper's four task categories and four question types (ECGInstruct, Table A1).
TASKS = ("basic", "rhythm", "morphology", "report")
QTYPES = ("close", "open", "fill", "mcq")
TASK_NAMES = {"basic": "Basic Feature Recognition", "rhythm": "Heart Rhythm Analysis",
              "morphology": "Morphology and Pathology Identification",
              "report": "Clinical Report"}
QTYPE_NAMES = {"close": "Close-ended QA", "open": "Open-ended QA", "fill": "Fill-in-blank",
               "mcq": "Multi-choice QA"}
_ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


class InstructFormatError(PulseError):
    """An instruction-data file or sample does not follow the ECGInstruct/LLaVA format."""

    exit_code = 10


@dataclass
class Sample:
    """One instruction sample: an image and a dialogue about it (human asks, gpt answers)."""

    id: str
    image: str | None
    conversations: list[dict]
    meta: dict = field(default_factory=dict)

    @property
    def turns(self) -> list[Turn]:
        """The dialogue as (question, answer) pairs, ``<image>\\n`` removed."""
        values = [c["value"] for c in self.conversations]
        if values and values[0].startswith(IMAGE_PREFIX):
            values[0] = values[0][len(IMAGE_PREFIX):]
        return [Turn(q, a) for q, a in zip(values[0::2], values[1::2])]

    @property
    def question(self) -> str:
        """The last human question (what an evaluation asks)."""
        return self.turns[-1].question

    @property
    def reference(self) -> str:
        """The last gpt answer (what an evaluation scores against)."""
        return self.turns[-1].answer

    def to_dict(self) -> dict:
        out = {"id": self.id}
        if self.image is not None:
            out["image"] = self.image
        out["conversations"] = [{"from": c["from"], "value": c["value"]}
                                for c in self.conversations]
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> "Sample":
        """Build (and normalise) a sample from a decoded JSON object; see :func:`normalise`."""
        return normalise(raw)


def _fail(where: str, message: str) -> InstructFormatError:
    return InstructFormatError(f"{where}: {message}",
                               hint="each sample needs an id, an image path and a conversation "
                                    "that alternates human/gpt, starting with '<image>\\n'")


def normalise(raw: dict, where: str = "sample") -> Sample:
    """A :class:`Sample` from one decoded object, in the training layout.

    Accepts ``conversation`` for ``conversations``, ``user``/``assistant`` for ``human``/``gpt``,
    and a first question without ``<image>`` (prepended) or with it elsewhere in the first turn
    (moved to the front, as LLaVA's training code does).
    """
    if not isinstance(raw, dict):
        raise _fail(where, f"expected a JSON object, got {type(raw).__name__}")
    turns = raw.get("conversations", raw.get("conversation"))
    if not isinstance(turns, list) or not turns:
        raise _fail(where, "no 'conversations' list")
    conversations = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise _fail(where, f"turn {i} needs 'from' and a text 'value'")
        role = _ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise _fail(where, f"turn {i} has unknown role {turn.get('from')!r}")
        conversations.append({"from": role, "value": turn["value"]})
    image = raw.get("image")
    if image is not None and not isinstance(image, str):
        raise _fail(where, "'image' must be a relative path string")
    first = conversations[0]["value"]
    if image is not None and first.count(IMAGE_PLACEHOLDER) == 1 and \
            not first.startswith(IMAGE_PREFIX):
        conversations[0]["value"] = IMAGE_PREFIX + first.replace(IMAGE_PLACEHOLDER, "").strip()
    elif image is not None and not any(IMAGE_PLACEHOLDER in c["value"] for c in conversations):
        conversations[0]["value"] = IMAGE_PREFIX + first.strip()
    sample = Sample(id=str(raw.get("id", "")), image=image, conversations=conversations,
                    meta=dict(raw.get("meta") or {}))
    validate_sample(sample, where=where)
    return sample


def validate_sample(sample: Sample, *, image_root: str | Path | None = None,
                    where: str | None = None) -> None:
    """Raise :class:`InstructFormatError` unless ``sample`` is well-formed training data.

    Rules: a non-empty id; roles alternate human, gpt, human, gpt... and end with gpt;
    ``<image>\\n`` appears exactly once, at the start of the first human turn (none if there is
    no image); with ``image_root``, the image file exists under it.
    """
    where = where or f"sample {sample.id!r}"
    if not sample.id:
        raise _fail(where, "empty id")
    roles = [c["from"] for c in sample.conversations]
    expected = ["human", "gpt"] * (len(roles) // 2 + 1)
    if len(roles) < 2 or len(roles) % 2 or roles != expected[:len(roles)]:
        raise _fail(where, f"roles must alternate human/gpt and end with gpt, got {roles}")
    count = sum(c["value"].count(IMAGE_PLACEHOLDER) for c in sample.conversations)
    if sample.image is None:
        if count:
            raise _fail(where, "'<image>' in the text but no 'image' path")
        return
    if count != 1 or not sample.conversations[0]["value"].startswith(IMAGE_PREFIX):
        raise _fail(where, f"'<image>\\n' must open the first question exactly once "
                           f"(found {count} times)")
    if image_root is not None and not (Path(image_root) / sample.image).is_file():
        raise _fail(where, f"image {sample.image!r} not found under {image_root}")
    for c in sample.conversations:
        if not c["value"].strip():
            raise _fail(where, "an empty turn")


def iter_items(path: str | Path) -> Iterator[tuple[str, dict]]:
    """(where, decoded object) for each sample of a JSON-list or JSON-lines file, streamed.

    A JSON list (ECGInstruct.json, 1.3 GB) is parsed incrementally with ijson's C backend, so
    memory stays flat whatever the file size; JSON lines are read line by line.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InstructFormatError(f"cannot read {path} ({e.strerror or e})",
                                  hint="check the --data path") from e
    with f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if head.startswith(b"["):
            import ijson

            n = -1
            try:
                for n, raw in enumerate(ijson.items(f, "item", use_float=True)):
                    yield f"{path.name} item {n}", raw
            except ijson.JSONError as e:
                raise InstructFormatError(f"{path.name} is not valid JSON (after item {n}: {e})",
                                          hint="fix the file or write one sample per line") from e
            return
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield f"{path.name} line {n}", json.loads(line)
                except json.JSONDecodeError as e:
                    raise InstructFormatError(f"{path.name} line {n} is not valid JSON ({e.msg})",
                                              hint="one JSON object per line") from e


def iter_samples(path: str | Path, *, image_root: str | Path | None = None,
                 check_images: bool = True) -> Iterator[Sample]:
    """Every sample of a JSON-list or JSON-lines file, normalised and validated, streamed
    (see :func:`iter_items`); the one reader, which :func:`read_samples` lists."""
    root = Path(image_root) if image_root is not None else Path(path).parent
    for where, raw in iter_items(path):
        sample = normalise(raw, where)
        if check_images:
            validate_sample(sample, image_root=root, where=where)
        yield sample


def read_samples(path: str | Path, *, image_root: str | Path | None = None,
                 check_images: bool = True) -> list[Sample]:
    """Every sample of a JSON-list or JSON-lines file, normalised and validated.

    ``image_root`` is the folder image paths are relative to (default: the file's folder);
    ``check_images=False`` skips the existence check (e.g. text-only inspection).

    >>> read_samples("data/train.json")             # doctest: +SKIP
    """
    return list(iter_samples(path, image_root=image_root, check_images=check_images))


def write_samples(samples: Iterable[Sample], path: str | Path) -> Path:
    """Write ``samples`` to ``path``: JSON lines for ``.jsonl``, else one indented JSON list."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = list(samples)
    for s in samples:
        validate_sample(s)
    rows = [s.to_dict() for s in samples]
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    path.write_text(text, encoding="utf-8")
    return path
