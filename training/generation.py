"""The one answering runner of every evaluation: questions in, answers out, fast and resumable.

A :class:`Request` is an image and one or more questions; the model answers them in order, its
own earlier answers as history (ECG Arena's multi-turn questions), after optional fixed turns
(an ECGInstruct sample's earlier reference turns). :func:`run_requests` answers them:

- on the local backend, in batches (``LocalBackend.generate_batch``: left-padded prompts, one
  ``generate`` call per batch, batch size chosen for the device); requests are sorted by group,
  image size and prompt length so that a batch holds questions of similar length, and each
  image is decoded and tiled once for all the questions about it (``prepare_image``), in a
  thread that prepares the next batch while the model answers this one;
- on remote backends (``openai``, ``space``), ``concurrency`` requests at a time in threads;
- with ``batch_size=1`` on the local backend, one streamed answer at a time (the per-item runner
  ``bench/eval_batched.py`` measures the batches against);
- resumably: each finished request is appended to a JSON-lines file at once, and a re-run with
  the same model and settings answers only the missing ones;
- with a tqdm progress bar on stderr (questions answered on a terminal);
- a question the model cannot take (e.g. a conversation longer than its context) gets an empty
  answer and its error in the answers file (``errors``), so one item never ends a long run;
  an unreachable server, a missing image or a full GPU still stop it.

>>> answers = run_requests(backend, [Request("q1", "img.png", ["Rate?"])], image_root=".")  # doctest: +SKIP
>>> answers["q1"]                                                                       # doctest: +SKIP
['The heart rate is about 72 bpm.']
"""

from __future__ import annotations

import json
import sys
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from pulse_app.conversation import Turn
from pulse_app.engine.backend import GenerationParams, answer
from pulse_app.errors import BackendUnreachable, HardwareError, ModelUnavailable, PulseError

#: Errors that end a run (everything else is one item's problem, recorded with its answer).
FATAL = (BackendUnreachable, HardwareError, ModelUnavailable)


class AnswersMismatch(PulseError):
    """An answers file holds answers of another model or other generation settings."""

    exit_code = 10


@dataclass
class Request:
    """An image (path relative to the image root, or None) and the questions asked about it."""

    id: str
    image: str | None
    questions: list[str]
    history: list[Turn] = field(default_factory=list)   # fixed turns before the first question
    group: str = ""                                     # similar answers batch together


def model_key(backend) -> dict:
    """What identifies the answering model in an answers file."""
    info = backend.info()
    return {"model": info.model_id, "revision": info.revision, "backend": info.backend,
            "label": info.label}


def read_answers(path: str | Path, key: dict, params: GenerationParams) -> dict[str, list[str]]:
    """Answers already in ``path`` (JSON lines written by :func:`run_requests`), by request id.

    Raises :class:`AnswersMismatch` when they came from another model or other settings.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    found = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:          # a line cut by a crash: answer that one again
            continue
        if row.get("model") != key["model"] or row.get("params") != params.as_dict():
            raise AnswersMismatch(
                f"{path} line {n} holds answers of {row.get('model')!r} with "
                f"{row.get('params')}, not {key['model']!r} with {params.as_dict()}",
                hint="use another --out folder, or delete the file to answer again")
        found[row["id"]] = row["answers"]
    return found


class _Writer:
    """Appends one JSON line per finished request (thread-safe, flushed at once)."""

    def __init__(self, path: str | Path | None, key: dict, params: GenerationParams):
        self.path, self.key, self.params = (Path(path) if path else None), key, params.as_dict()
        self.lock = threading.Lock()
        self.errors: list[str] = []
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, request: Request, answers: list[str], errors: list[str] = ()) -> None:
        self.errors += [f"{request.id} {e}" for e in errors]
        if not self.path:
            return
        row = {"id": request.id, **self.key, "params": self.params,
               "questions": request.questions, "answers": answers}
        if errors:
            row["errors"] = list(errors)
        with self.lock, self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _open_image(image_root: Path, request: Request):
    from PIL import Image

    if request.image is None:
        return None
    path = image_root / request.image
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError as e:
        raise PulseError(f"image {request.image} of {request.id} not found under {image_root}",
                         hint="pass the folder the image paths are relative to") from e


class _Images:
    """Images by path for the batched runner, decoded once and, on the local backend, turned
    into model inputs once (``prepare_image``): the questions about one ECG share them. Least
    recently used ones go past ``max_bytes``."""

    def __init__(self, backend, image_root: Path, max_bytes: int = 512 << 20):
        self.backend, self.image_root, self.max_bytes = backend, image_root, max_bytes
        self.items: OrderedDict = OrderedDict()
        self.bytes = 0

    def get(self, request: Request):
        if request.image is None:
            return None
        if request.image in self.items:
            self.items.move_to_end(request.image)
            return self.items[request.image][0]
        image = _open_image(self.image_root, request)
        size = image.width * image.height * 3
        if hasattr(self.backend, "prepare_image"):
            image = self.backend.prepare_image(image)
            size = image["pixel_values"].numel() * image["pixel_values"].element_size()
        self.items[request.image] = (image, size)
        self.bytes += size
        while self.bytes > self.max_bytes and len(self.items) > 1:
            _, (_, dropped) = self.items.popitem(last=False)
            self.bytes -= dropped
        return image


def _image_size(image_root: Path, request: Request) -> tuple[int, int]:
    from PIL import Image

    if request.image is None:
        return (0, 0)
    try:
        with Image.open(image_root / request.image) as img:      # header only
            return img.size
    except OSError:
        return (0, 0)


def _progress(total: int, enabled: bool, label: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=None if enabled else True, unit="q", desc=label,
                dynamic_ncols=True,
                leave=False)


def run_requests(backend, requests: Sequence[Request], *, image_root: str | Path,
                 params: GenerationParams = GenerationParams(temperature=0.0),
                 answers_path: str | Path | None = None, batch_size: int | str = "auto",
                 concurrency: int = 4, progress: bool = True, label: str = "answering"
                 ) -> dict[str, list[str]]:
    """Every request's answers (one per question), by request id; see the module docstring."""
    image_root = Path(image_root)
    key = model_key(backend)
    done = read_answers(answers_path, key, params) if answers_path else {}
    todo = [r for r in requests if r.id not in done]
    writer = _Writer(answers_path, key, params)
    bar = _progress(sum(len(r.questions) for r in todo), progress, label)
    try:
        if hasattr(backend, "generate_batch") and backend.batch_size(batch_size) > 1:
            done.update(_run_batched(backend, todo, image_root, params,
                                     backend.batch_size(batch_size), writer, bar))
        elif hasattr(backend, "generate_batch"):           # the per-item runner
            for request in todo:
                done[request.id], errors = _answer_one(backend, request, image_root, params, bar)
                writer.write(request, done[request.id], errors)
        else:
            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                def work(request):
                    answers, errors = _answer_one(backend, request, image_root, params, bar)
                    writer.write(request, answers, errors)
                    return request.id, answers
                done.update(pool.map(work, todo))
    finally:
        bar.close()
    if writer.errors:
        print(f"{label}: {len(writer.errors)} question(s) got no answer (empty, scored as "
              f"unparsed), e.g. {writer.errors[0]}", file=sys.stderr)
    return {r.id: done[r.id] for r in requests}


def _answer_one(backend, request: Request, image_root: Path, params: GenerationParams,
                bar) -> tuple[list[str], list[str]]:
    """A request's answers, one streamed answer at a time, and the errors of its questions."""
    image = _open_image(image_root, request)
    history, answers, errors = list(request.history), [], []
    for question in request.questions:
        try:
            answers.append(answer(backend, image, history, question, params))
        except FATAL:
            raise
        except PulseError as error:
            answers.append("")
            errors.append(f"question {len(answers)}: {error}")
        history.append(Turn(question, answers[-1]))
        bar.update(1)
    return answers, errors


def _run_batched(backend, requests: list[Request], image_root: Path, params: GenerationParams,
                 size: int, writer: _Writer, bar) -> dict[str, list[str]]:
    """Turn by turn (a later turn needs the earlier answers), batches of similar requests; the
    next batch's images are read and tiled in a thread while the model answers this one."""
    sizes = {r.id: _image_size(image_root, r) for r in requests}
    cache = _Images(backend, image_root)              # used by the prefetch thread only
    answers: dict[str, list[str]] = {r.id: [] for r in requests}
    errors: dict[str, list[str]] = {r.id: [] for r in requests}
    turns = max((len(r.questions) for r in requests), default=0)
    parts = []
    for turn in range(turns):
        pending = [r for r in requests if len(r.questions) > turn]
        pending.sort(key=lambda r: (r.group, r.image is None, sizes[r.id],
                                    len(r.questions[turn]) + sum(len(t.question) + len(t.answer)
                                                                 for t in r.history),
                                    r.image or ""))
        for start in range(0, len(pending), size):
            batch = pending[start:start + size]
            for with_image in (True, False):
                part = [r for r in batch if (r.image is not None) == with_image]
                if part:
                    parts.append((turn, part))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pulse-images") as pool:
        def prepare(index):
            return pool.submit(lambda: [cache.get(r) for r in parts[index][1]])

        upcoming = prepare(0) if parts else None
        for index, (turn, part) in enumerate(parts):
            images = upcoming.result()
            upcoming = prepare(index + 1) if index + 1 < len(parts) else None
            histories = [list(r.history) + [Turn(q, a) for q, a in
                                            zip(r.questions, answers[r.id])] for r in part]
            questions = [r.questions[turn] for r in part]
            try:
                texts = backend.generate_batch(images, histories, questions, params)
            except FATAL:
                raise
            except PulseError:                      # find the item(s) at fault, one by one
                texts = []
                for r, image, history, question in zip(part, images, histories, questions):
                    try:
                        texts += backend.generate_batch([image], [history], [question], params)
                    except FATAL:
                        raise
                    except PulseError as error:
                        texts.append("")
                        errors[r.id].append(f"question {turn + 1}: {error}")
            for r, text in zip(part, texts):
                answers[r.id].append(text)
                if len(answers[r.id]) == len(r.questions):
                    writer.write(r, answers[r.id], errors[r.id])
            bar.update(len(part))
    return answers
