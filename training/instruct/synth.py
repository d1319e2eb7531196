"""Teacher-LLM synthesis with an LLM judge (the paper's Figs. A5-A8), over any OpenAI server.

For each record, a report is the seed: the source's own (PTB-XL's cardiologist report, MIMIC-IV-
ECG's machine statements) or the template report of its labels. A teacher model writes tasks of
the paper's four question types from it (``prompts/task_v1.txt``, after Fig. A5; multi-turn
``dialogue_v1.txt`` after Fig. A6), a judge model scores each pair 0-5 against the report
(``judge_v1.txt``, after Fig. A8) and pairs below ``--min-score`` are rejected. Teacher and
judge are any OpenAI-compatible servers (vLLM, SGLang, TGI, a hosted API, ``python -m
pulse_app serve-openai``), reached through the engine's openai backend.

    python -m training.instruct.synth --from-records data/ptb-xl --out data/llm \\
        --teacher-url http://gpu:8000/v1 --judge-url http://gpu2:8000/v1 --min-score 4 \\
        --concurrency 16 --rpm 600 --price-in 0.6 --price-out 0.8 [--dry-run] [--shard 3/16]

- **Cache**: every reply is stored under ``--cache`` by the SHA-256 of what was sent (model,
  messages, generation parameters): a re-run, or a run resumed after a crash, re-sends nothing.
- **Concurrency, rate limit, retries**: ``--concurrency`` requests in flight, at most ``--rpm``
  per minute, ``--retries`` with exponential back-off on timeouts, 429 and 5xx (not on 4xx).
- **Accounting**: tokens in/out per model (the server's ``usage``, else estimated at 4
  characters per token and marked so) and cost at ``--price-in``/``--price-out`` USD per
  million tokens.
- **Dry run**: prints every request it would send, sends nothing.
- **Output**: ``accepted.jsonl`` (ECGInstruct samples, validated by the one reader) and
  ``judged.jsonl`` (every candidate with its score or rejection reason; what
  ``python -m training.instruct.quality`` reports on). With ``--shard i/N`` the files are
  ``accepted-0000i-of-0000N.jsonl``...; shards concatenate to the one-machine files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from training.instruct.format import IMAGE_PREFIX, QTYPES, InstructFormatError, Sample, \
    validate_sample
from training.instruct.shard import add_shard_argument

PROMPT_DIR = Path(__file__).with_name("prompts")
#: The question type the teacher is asked for, in turn per record (Table A1's four).
TARGETS = QTYPES
#: Words that give away that the text came from a report (Fig. A5's rule 4).
REPORT_WORDS = re.compile(r"\bthe report\b|as described|\breport (?:states|says|mentions)\b|"
                          r"\[insert image", re.I)


# -- prompts --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prompt:
    """A versioned prompt file: ``task_v1.txt`` -> name ``task``, version ``v1``."""

    name: str
    version: str
    text: str

    def fill(self, **values: str) -> str:
        """The prompt with ``{report}``, ``{target}``, ... replaced (other braces kept)."""
        text = self.text
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text

    @property
    def id(self) -> str:
        return f"{self.name}_{self.version}"


def load_prompt(name: str) -> Prompt:
    """``load_prompt("task_v1")`` or ``load_prompt("task")`` (the highest version)."""
    if re.search(r"_v\d+$", name):
        path = PROMPT_DIR / f"{name}.txt"
    else:
        versions = sorted(PROMPT_DIR.glob(f"{name}_v*.txt"),
                          key=lambda p: int(p.stem.rsplit("_v", 1)[1]))
        if not versions:
            raise FileNotFoundError(f"no prompt {name!r} in {PROMPT_DIR}")
        path = versions[-1]
    base, version = path.stem.rsplit("_", 1)
    return Prompt(base, version, path.read_text(encoding="utf-8"))


# -- seeds ----------------------------------------------------------------------------------------

@dataclass
class Seed:
    """What the teacher writes from: one record's report (never shown to the student)."""

    record_id: str
    image: str
    source: str
    report: str
    report_kind: str           # "source" (the dataset's own report) or "template"
    labels: list[str] = field(default_factory=list)


def seed_of(record) -> Seed:
    """The record's own report where it has one, else the template report of its labels."""
    from training.instruct.generate import Facts
    from training.instruct.report import build_report

    image = f"images/{record.record_id}.png"
    if record.report:
        text, kind = " ".join(record.report.split()), "source"
    else:
        facts = Facts(record)
        text, kind = build_report(facts.labels + facts.extra, facts.m, facts=facts), "template"
    return Seed(record.record_id, image, record.source, text, kind, list(record.labels))


# -- talking to a model ---------------------------------------------------------------------------

@dataclass
class Reply:
    text: str
    tokens_in: int
    tokens_out: int
    estimated: bool            # tokens counted at 4 characters each (the server sent no usage)
    cached: bool


class RateLimiter:
    """At most ``per_minute`` starts per minute, spaced evenly (0: unlimited)."""

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        time.sleep(max(0.0, start - now))


class LLM:
    """One model behind an OpenAI-compatible URL (the engine's ``OpenAIBackend``), with the
    content-addressed cache, retries, rate limit and token accounting of this module."""

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None, *,
                 cache_dir: str | Path, max_tokens: int = 768, temperature: float = 0.7,
                 retries: int = 4, rpm: float = 0.0, timeout_s: float = 300.0,
                 dry_run: bool = False, image=None):
        """``image``: an ECG picture (PIL) sent with every request, for servers that answer
        only about an ECG (``serve-openai`` refuses a request without one)."""
        from pulse_app.engine.openai_compat import OpenAIBackend

        self.backend = OpenAIBackend(url, model, api_key, timeout_s)
        self.cache = Path(cache_dir)
        self.max_tokens, self.temperature, self.retries = max_tokens, temperature, retries
        self.limiter, self.dry_run = RateLimiter(rpm), dry_run
        self.counts: Counter = Counter()
        self.lock = threading.Lock()
        self._model = model
        self.image = image
        self._image_url = self._image_sha = None
        if image is not None:
            from pulse_app.engine.openai_compat import image_data_url

            self._image_url = image_data_url(image)
            self._image_sha = hashlib.sha256(self._image_url.encode()).hexdigest()

    def model_id(self) -> str:
        if self._model is None:
            self._model = self.backend.info().model_id     # the server's first model
        return self._model

    def request(self, prompt: str) -> dict:
        """The request as cached and printed: an attached image stands as its SHA-256."""
        content = [{"type": "text", "text": prompt}]
        if self._image_sha:
            content.insert(0, {"type": "image_url",
                               "image_url": {"url": f"sha256:{self._image_sha}"}})
        return {"model": self.model_id(), "messages": [{"role": "user", "content": content}],
                "max_tokens": self.max_tokens, "temperature": self.temperature}

    def _wire(self, request: dict) -> dict:
        """The request as sent: the attached image's data URL in place of its hash."""
        if not self._image_url:
            return request
        content = [dict(part) for part in request["messages"][0]["content"]]
        content[0] = {"type": "image_url", "image_url": {"url": self._image_url}}
        return {**request, "messages": [{"role": "user", "content": content}]}

    @staticmethod
    def key(request: dict) -> str:
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.cache / key[:2] / f"{key}.json"

    def complete(self, prompt: str) -> Reply | None:
        """The model's reply to ``prompt`` (from the cache when it was sent before); None in a
        dry run (the request is printed instead)."""
        request = self.request(prompt)
        key = self.key(request)
        path = self._path(key)
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            self._count(cache_hits=1)
            return Reply(stored["text"], stored["tokens_in"], stored["tokens_out"],
                         stored["estimated"], True)
        if self.dry_run:
            self._count(would_send=1, tokens_in=_estimate(prompt))
            print(json.dumps({"url": self.backend.base_url, "cache_key": key, **request}))
            return None
        text, usage = self._send(request)
        estimated = usage is None
        tokens_in = usage.prompt_tokens if usage else _estimate(prompt)
        tokens_out = usage.completion_tokens if usage else _estimate(text)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"request": request, "text": text, "tokens_in": tokens_in,
                                   "tokens_out": tokens_out, "estimated": estimated}),
                       encoding="utf-8")
        os.replace(tmp, path)                   # a crash leaves no half-written entry
        self._count(sent=1, tokens_in=tokens_in, tokens_out=tokens_out,
                    estimated=int(estimated))
        return Reply(text, tokens_in, tokens_out, estimated, False)

    def _send(self, request: dict):
        import openai

        for attempt in range(self.retries + 1):
            self.limiter.wait()
            try:
                response = self.backend.client().chat.completions.create(
                    **self._wire(request))
                return (response.choices[0].message.content or ""), response.usage
            except (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
                    openai.InternalServerError) as error:
                self._count(retries=1)
                if attempt == self.retries:
                    raise self.backend._error(error) from error
                time.sleep(min(30.0, 0.5 * 2 ** attempt))
            except openai.OpenAIError as error:
                raise self.backend._error(error) from error

    def _count(self, **values: int) -> None:
        with self.lock:
            self.counts.update(values)


def _estimate(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


# -- parsing the replies --------------------------------------------------------------------------

def parse_task(text: str) -> tuple[str, str] | None:
    """(task, response) from the teacher's reply: the JSON object the prompt asks for, or the
    paper's ``Task: ... Response: ...`` layout; None when it is neither (malformed)."""
    obj = _first_json_object(text)
    if isinstance(obj, dict) and isinstance(obj.get("task"), str) \
            and isinstance(obj.get("response"), str):
        task, response = obj["task"].strip(), obj["response"].strip()
    else:
        match = re.search(r"task\s*:\s*(.+?)\s*response\s*:\s*(.+)", text, re.I | re.S)
        if not match:
            return None
        task, response = match.group(1).strip(), match.group(2).strip()
    return (task, response) if task and response else None


def parse_dialogue(text: str) -> list[tuple[str, str]] | None:
    """(question, answer) turns of the teacher's dialogue reply (``{"turns": [{"human": ...,
    "assistant": ...}]}``, or ``Human: ... Assistant: ...`` lines as in Fig. A6); None when
    malformed or outside 2-4 turns."""
    obj = _first_json_object(text)
    turns = []
    if isinstance(obj, dict) and isinstance(obj.get("turns"), list):
        for turn in obj["turns"]:
            if not (isinstance(turn, dict) and isinstance(turn.get("human"), str)
                    and isinstance(turn.get("assistant"), str)):
                return None
            turns.append((turn["human"].strip(), turn["assistant"].strip()))
    else:
        parts = re.split(r"(?im)^\s*(human|assistant)\s*:\s*", text)
        pairs = [(parts[i].lower(), parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]
        while len(pairs) >= 2 and pairs[0][0] == "human" and pairs[1][0] == "assistant":
            turns.append((pairs[0][1], pairs[1][1]))
            pairs = pairs[2:]
    if not 2 <= len(turns) <= 4 or not all(q and a for q, a in turns):
        return None
    return turns


def parse_score(text: str) -> float | None:
    """The judge's score: the last ``Score: N`` (0-5), or ``{"score": N}``; None if neither.

    >>> parse_score("Accurate and useful.\\nScore: 4"), parse_score("Score: 9"), parse_score("ok")
    (4.0, None, None)
    """
    found = re.findall(r"score\W{0,3}\s*([0-5](?:\.\d+)?)\b(?!\s*/\s*10)", text, re.I)
    if found:
        return float(found[-1])
    obj = _first_json_object(text)
    if isinstance(obj, dict) and isinstance(obj.get("score"), (int, float)) \
            and 0 <= obj["score"] <= 5:
        return float(obj["score"])
    return None


def _first_json_object(text: str):
    """The first JSON object in ``text`` (models wrap it in prose or code fences), or None."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text[match.start():])
            return obj
        except ValueError:
            continue
    return None


def verdict(score: float | None, min_score: float) -> str:
    """"accepted", or why not: "judge_unparseable", "low_score".

    >>> verdict(4.0, 4), verdict(2.0, 4), verdict(None, 4)
    ('accepted', 'low_score', 'judge_unparseable')
    """
    if score is None:
        return "judge_unparseable"
    return "accepted" if score >= min_score else "low_score"


# -- the pipeline ---------------------------------------------------------------------------------

@dataclass
class Candidate:
    """One teacher job and what became of it."""

    seed: Seed
    index: int                 # the job's number for its record
    target: str
    task: str | None = None
    response: str | None = None
    score: float | None = None
    reason: str = ""           # accepted | teacher_unparseable | mentions_report |
                               # judge_unparseable | low_score | not_sent (dry run) | invalid
    origin: str = "llm"        # "llm": written by the teacher; "given": a pair to judge
    turns: list[tuple[str, str]] | None = None     # a multi-turn dialogue (target "dialogue")

    @property
    def id(self) -> str:
        return f"{self.seed.record_id}-{self.origin}-{self.index}"

    def row(self, teacher: str, judge: str, prompts: list[str]) -> dict:
        return {"id": self.id, "record": self.seed.record_id, "origin": self.origin,
                "source": self.seed.source, "report_kind": self.seed.report_kind,
                "target": self.target, "question": self.task, "answer": self.response,
                "turns": self.turns,
                "score": self.score, "reason": self.reason, "teacher": teacher,
                "judge": judge, "prompts": prompts, "labels": self.seed.labels}

    def sample(self, teacher: str, judge: str, prompts: list[str]) -> Sample:
        from training.instruct.released import infer_task

        conversations = []
        for n, (question, answer) in enumerate(self.turns or [(self.task, self.response)]):
            conversations += [{"from": "human", "value": (IMAGE_PREFIX if n == 0 else "")
                               + question}, {"from": "gpt", "value": answer}]
        return Sample(id=self.id, image=self.seed.image, conversations=conversations,
                      meta={"task": infer_task(self.task), "qtype": self.target, "kind": "llm",
                            "score": "judge", "judge_score": self.score,
                            "source": self.seed.source, "report_kind": self.seed.report_kind,
                            "teacher": teacher, "judge": judge, "prompts": prompts,
                            "record_labels": self.seed.labels})


def synthesize(seeds: list[Seed], teacher: LLM, judge: LLM, *, per_record: int = 2,
               min_score: float = 4.0, concurrency: int = 8,
               task_prompt: Prompt | None = None, judge_prompt: Prompt | None = None,
               pairs: list[Candidate] | None = None, first_index: int = 0,
               dialogues: int = 0, revise: bool = False) -> tuple[list[Candidate], dict]:
    """Teacher tasks for every seed, judged; returns (candidates in job order, stats).
    ``pairs``: judge these (question and answer already set, e.g. template samples) instead.
    ``first_index``: the first seed's place among all records (a shard's), which picks the
    question types asked, so that shards ask what one machine would. ``dialogues``: multi-turn
    dialogues per record (``dialogue`` prompt, Fig. A6) besides the tasks. ``revise``: first
    have the teacher rewrite each source report in full English (``revise`` prompt, Fig. A7;
    PTB-XL's reports are mostly German) and write from that."""
    task_prompt = task_prompt or load_prompt("task")
    judge_prompt = judge_prompt or load_prompt("judge")
    dialogue_prompt = load_prompt("dialogue")
    if revise:
        revise_prompt = load_prompt("revise")

        def rewrite(seed: Seed) -> None:
            if seed.report_kind == "source":
                reply = teacher.complete(revise_prompt.fill(report=seed.report))
                if reply is not None and len(reply.text.split()) >= 8:
                    seed.report, seed.report_kind = reply.text.strip(), "source-revised"

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            list(pool.map(rewrite, seeds))
    if pairs is not None:
        jobs = list(pairs)
    else:                                       # per record: its tasks, then its dialogues
        jobs = [Candidate(seed, k, TARGETS[(k + n) % len(TARGETS)] if k < per_record
                          else "dialogue")
                for n, seed in enumerate(seeds, start=first_index)
                for k in range(per_record + dialogues)]
    started = time.monotonic()

    def teach(c: Candidate) -> Candidate:
        if c.task is None:                              # a pair given to judge skips this
            dialogue = c.target == "dialogue"
            prompt = (dialogue_prompt.fill(report=c.seed.report) if dialogue
                      else task_prompt.fill(report=c.seed.report, target=c.target))
            reply = teacher.complete(prompt)
            if reply is None:
                c.reason = "not_sent"
                return c
            if dialogue:
                c.turns = parse_dialogue(reply.text)
                parsed = c.turns and ("\n".join(q for q, _ in c.turns),
                                      "\n\n".join(a for _, a in c.turns))
            else:
                parsed = parse_task(reply.text)
            if not parsed:
                c.reason = "teacher_unparseable"
                return c
            c.task, c.response = parsed
        if REPORT_WORDS.search(c.task) or REPORT_WORDS.search(c.response):
            c.reason = "mentions_report"
            return c
        reply = judge.complete(judge_prompt.fill(report=c.seed.report, question=c.task,
                                                 answer=c.response))
        if reply is None:
            c.reason = "not_sent"
            return c
        c.score = parse_score(reply.text)
        c.reason = verdict(c.score, min_score)
        if c.reason == "accepted":
            try:
                validate_sample(c.sample("", "", []))            # the one reader's rules
            except InstructFormatError:
                c.reason = "invalid"
        return c

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        done = list(pool.map(teach, jobs))                      # map keeps the job order
    stats = {"seconds": round(time.monotonic() - started, 2), "jobs": len(done),
             "reasons": Counter(c.reason for c in done),
             "scores": Counter(c.score for c in done if c.score is not None),
             "teacher": dict(teacher.counts), "judge": dict(judge.counts)}
    return done, stats


def pairs_from_samples(samples, seeds: dict[str, Seed]) -> list[Candidate]:
    """Candidates for judging existing samples (template or earlier teacher output): each
    sample's first turn, against its record's seed report (``seeds`` by record id)."""
    pairs = []
    for n, sample in enumerate(samples):
        record = sample.id.rsplit("-", 2)[0]             # <record>-<task>-<qtype>
        if record in seeds:
            turn = sample.turns[0]
            pairs.append(Candidate(seeds[record], n, sample.meta.get("qtype") or "open",
                                   task=turn.question, response=turn.answer, origin="given"))
    return pairs


def cost_usd(counts: dict, price_in: float, price_out: float) -> float:
    """USD for the tokens actually sent (cache hits cost nothing), prices per 1M tokens."""
    return (counts.get("tokens_in", 0) * price_in + counts.get("tokens_out", 0) * price_out) / 1e6


def stats_rows(stats: dict, price_in: float = 0.0, price_out: float = 0.0) -> list[tuple]:
    """(model role, what, value) rows of the run's statistics table."""
    rows = []
    for role in ("teacher", "judge"):
        c = stats[role]
        calls = c.get("sent", 0) + c.get("cache_hits", 0)
        rate = c.get("cache_hits", 0) / calls if calls else 0.0
        rows += [(role, "requests sent", c.get("sent", 0)),
                 (role, "cache hits", c.get("cache_hits", 0)),
                 (role, "cache hit rate", f"{100 * rate:.0f} %"),
                 (role, "would send (dry run)", c.get("would_send", 0)),
                 (role, "retries", c.get("retries", 0)),
                 (role, "tokens in / out" + (" (estimated)" if c.get("estimated") else ""),
                  f"{c.get('tokens_in', 0):,} / {c.get('tokens_out', 0):,}"),
                 (role, "cost", f"${cost_usd(c, price_in, price_out):.4f}")]
    for reason, n in sorted(stats["reasons"].items()):
        rows.append(("result", reason, n))
    for score, n in sorted(stats["scores"].items()):
        rows.append(("judge score", f"{score:g}", n))
    rows.append(("run", "seconds", stats["seconds"]))
    return rows


def write_outputs(candidates: list[Candidate], out: Path, *, teacher: str, judge: str,
                  prompts: list[str], shard: tuple[int, int] = (0, 1)) -> tuple[Path, Path]:
    """``accepted.jsonl`` (samples) and ``judged.jsonl`` (every candidate), in job order."""
    from training.instruct.dataset import shard_file_name

    out.mkdir(parents=True, exist_ok=True)
    accepted = out / shard_file_name("accepted.jsonl", shard)
    judged = out / shard_file_name("judged.jsonl", shard)
    with open(accepted, "w", encoding="utf-8") as a, open(judged, "w", encoding="utf-8") as j:
        for c in candidates:
            j.write(json.dumps(c.row(teacher, judge, prompts), ensure_ascii=False) + "\n")
            if c.reason == "accepted":
                a.write(json.dumps(c.sample(teacher, judge, prompts).to_dict(),
                                   ensure_ascii=False) + "\n")
    return accepted, judged


def main(argv=None) -> int:
    from training.instruct.dataset import print_table, record_source

    parser = argparse.ArgumentParser(prog="python -m training.instruct.synth",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-records", nargs="+", metavar="PATH",
                        help="real records (files or folders); default: simulated records")
    parser.add_argument("--records", type=int, default=20, help="simulated records")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--teacher-url", required=True, help="OpenAI-compatible /v1 URL")
    parser.add_argument("--teacher-model", default=None, help="default: the server's first")
    parser.add_argument("--judge-url", default=None, help="default: the teacher's")
    parser.add_argument("--judge-model", default=None)
    parser.add_argument("--api-key", default=None, help="key for both servers, if they need one")
    parser.add_argument("--per-record", type=int, default=2, help="teacher tasks per record")
    parser.add_argument("--dialogues", type=int, default=0,
                        help="multi-turn dialogues per record (Fig. A6), besides the tasks")
    parser.add_argument("--revise", action="store_true",
                        help="rewrite each source report in full English first (Fig. A7)")
    parser.add_argument("--min-score", type=float, default=4.0, help="judge threshold (0-5)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--rpm", type=float, default=0.0, help="requests per minute (0: no cap)")
    parser.add_argument("--retries", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=768)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--cache", default=None, help="reply cache (default: OUT/cache)")
    parser.add_argument("--price-in", type=float, default=0.0, help="USD per 1M input tokens")
    parser.add_argument("--price-out", type=float, default=0.0, help="USD per 1M output tokens")
    parser.add_argument("--dry-run", action="store_true", help="print requests, send nothing")
    parser.add_argument("--attach-image", metavar="FILE", default=None,
                        help="send this ECG picture with every request (for servers that "
                             "answer only about an ECG, such as serve-openai)")
    parser.add_argument("--task-prompt", default="task", help="prompt file name (task_v1)")
    parser.add_argument("--judge-prompt", default="judge", help="prompt file name (judge_v1)")
    parser.add_argument("--judge-only", metavar="FILE",
                        help="judge the samples of an ECGInstruct file (e.g. template data of "
                             "the same records) instead of asking the teacher")
    add_shard_argument(parser)
    args = parser.parse_args(argv)
    from pulse_app.errors import PulseError

    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out / "cache"
    image = None
    if args.attach_image:
        from pulse_app.intake import load_upload

        image = load_upload([args.attach_image]).image
    options = dict(cache_dir=cache, max_tokens=args.max_tokens, temperature=args.temperature,
                   retries=args.retries, rpm=args.rpm, timeout_s=args.timeout_s,
                   dry_run=args.dry_run, image=image)
    teacher = LLM(args.teacher_url, args.teacher_model, args.api_key, **options)
    judge = LLM(args.judge_url or args.teacher_url, args.judge_model, args.api_key,
                **{**options, "temperature": 0.0})
    task_prompt, judge_prompt = load_prompt(args.task_prompt), load_prompt(args.judge_prompt)
    try:
        records, first = record_source(count=args.records, seed=args.seed,
                                       paths=args.from_records, shard=args.shard)
        seeds = [seed_of(r) for r in records]
        pairs = None
        if args.judge_only:
            from training.instruct.format import read_samples

            pairs = pairs_from_samples(read_samples(args.judge_only, check_images=False),
                                       {s.record_id: s for s in seeds})
        candidates, stats = synthesize(seeds, teacher, judge, per_record=args.per_record,
                                       min_score=args.min_score, concurrency=args.concurrency,
                                       task_prompt=task_prompt, judge_prompt=judge_prompt,
                                       pairs=pairs, first_index=first,
                                       dialogues=args.dialogues, revise=args.revise)
        prompts = [task_prompt.id, judge_prompt.id]
        prompts += [load_prompt(name).id for name, used in (("dialogue", args.dialogues),
                                                            ("revise", args.revise)) if used]
        if not args.dry_run:
            paths = write_outputs(candidates, out, teacher=teacher.model_id(),
                                  judge=judge.model_id(), prompts=prompts, shard=args.shard)
            print(f"wrote {paths[0]} and {paths[1]}", file=sys.stderr)
    except PulseError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print_table(stats_rows(stats, args.price_in, args.price_out),
                f"teacher {teacher.model_id()} / judge {judge.model_id()}",
                ("", "What", "Value"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
