"""The LLM judge of PTB-XL Report and ECG Arena: the paper's prompts, any OpenAI-compatible
server, a cache that makes a re-run free, and agreement between two judges.

The prompts are the paper's Figs. A9 (report) and A10 (arena), written once in
``training/ecgbench/prompts/{report,arena}.txt`` with the ground truth and the answer placed as
the published ``eval_report.py``/``eval_arena.py`` place them. The judge is asked through the
engine's ``openai`` backend (:class:`pulse_app.engine.openai_compat.OpenAIBackend`: GPT-4o, a
local vLLM/SGLang, or this app's ``serve-openai``) at temperature 0 in JSON mode. A reply that
is not a JSON object is asked again (``retries`` times, with a reminder to answer with the JSON
only); an unreachable server is retried with a back-off, then ends the run (the answers stay
saved). Every reply, parsed or not, is cached in
SQLite under (judge model, SHA-256 of the prompt): the same prompt to the same judge is never
sent twice.

>>> judge = Judge(OpenAIBackend("http://127.0.0.1:8000/v1", "gpt-4o"), JudgeCache("cache.sqlite"))  # doctest: +SKIP
>>> judge(report_prompt("Sinus rhythm. Normal ECG.", "Sinus rhythm.")).parsed                     # doctest: +SKIP
{'Diagnosis': {'Score': 9, 'Explanation': '...'}, ...}
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pulse_app.engine.backend import GenerationParams
from pulse_app.errors import BackendUnreachable, PulseError

PROMPTS_DIR = Path(__file__).with_name("prompts")
REMINDER = "\n\nReply with the JSON object only, nothing else."


def prompt_template(name: str) -> str:
    """``prompts/<name>.txt`` (report or arena), without the file's final newline."""
    return (PROMPTS_DIR / f"{name}.txt").read_text(encoding="utf-8").removesuffix("\n")


def report_prompt(ground_truth: str, generated: str) -> str:
    """The Fig. A9 prompt for one generated report."""
    return (prompt_template("report").replace("{ground_truth_report}", ground_truth)
            .replace("{generated_report}", generated))


def arena_prompt(questions: list[str], truths: list[str], answers: list[str]) -> str:
    """The Fig. A10 prompt for one arena conversation (the published script passes two turns)."""
    def block(label, replies):
        return "\n\n".join(f"**Question:**\n{q}\n\n**{label}:** {a}"
                           for q, a in zip(questions, replies))

    return (prompt_template("arena").replace("{ground_truth_answer}",
                                             block("Ground Truth Answer", truths))
            .replace("{model_response}", block("Model's Response", answers)))


def parse_reply(text: str | None) -> dict | None:
    """The JSON object in a judge's reply (code fences and text around it ignored), or None."""
    if not text:
        return None
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Judgement:
    """A judge's reply to one prompt: raw text, the parsed JSON (None if it never parsed),
    how many requests it took, whether it came from the cache, and a transport error if any."""

    raw: str | None
    parsed: dict | None
    attempts: int = 1
    cached: bool = False
    error: str | None = None


class JudgeCache:
    """Judge replies in SQLite, keyed by (judge model, SHA-256 of the prompt). Thread-safe."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS judgements (model TEXT, prompt_sha256 TEXT, "
                         "raw TEXT, parsed TEXT, attempts INTEGER, created REAL, "
                         "PRIMARY KEY (model, prompt_sha256))")
        self._db.commit()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def digest(prompt: str) -> str:
        return hashlib.sha256(prompt.encode("utf-8")).hexdigest()

    def get(self, model: str, prompt: str) -> Judgement | None:
        with self._lock:
            row = self._db.execute("SELECT raw, parsed, attempts FROM judgements WHERE model = ? "
                                   "AND prompt_sha256 = ?", (model, self.digest(prompt))).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return Judgement(row[0], json.loads(row[1]) if row[1] else None, row[2], cached=True)

    def put(self, model: str, prompt: str, judgement: Judgement) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?, ?, ?)",
                             (model, self.digest(prompt), judgement.raw,
                              json.dumps(judgement.parsed) if judgement.parsed is not None
                              else None, judgement.attempts, time.time()))
            self._db.commit()

    def close(self) -> None:
        self._db.close()


class Judge:
    """One judge model behind an OpenAI-compatible server (through the ``openai`` backend)."""

    def __init__(self, backend, cache: JudgeCache, *, retries: int = 2,
                 max_tokens: int = 1024, json_mode: bool = True, transport_retries: int = 3,
                 image=None):
        """``image``: an ECG picture sent with every prompt, for a judge server that answers
        only about an ECG (``serve-openai``); the cache then keys on the picture too."""
        self.backend, self.cache, self.image = backend, cache, image
        self._image_tag = ""
        if image is not None:
            import hashlib

            self._image_tag = "+image:" + hashlib.sha256(image.tobytes()).hexdigest()[:16]
        self.retries, self.transport_retries = retries, transport_retries
        self.params = GenerationParams(temperature=0.0, top_p=1.0, max_new_tokens=max_tokens)
        self.json_mode = json_mode
        self.requests = 0
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        """The judge model's name (the cache key): as configured, else the server's first."""
        return getattr(self.backend, "model", None) or self.backend.info().model_id

    @property
    def cache_name(self) -> str:
        """The name replies are cached under: the model, and the attached picture if any."""
        return self.model + self._image_tag

    def _ask(self, prompt: str) -> str:
        """One request; an unreachable server is retried with a back-off, then ends the run."""
        for attempt in range(self.transport_retries + 1):
            try:
                with self._lock:
                    self.requests += 1
                return self.backend.complete(prompt, self.params, json_object=self.json_mode,
                                             image=self.image)
            except BackendUnreachable:
                if attempt == self.transport_retries:
                    raise
                time.sleep(min(8.0, 0.5 * 2 ** attempt))
        raise AssertionError("unreachable")

    def __call__(self, prompt: str) -> Judgement:
        """The judgement of ``prompt``: from the cache, or asked (and cached). A prompt the
        server refuses (e.g. too long for the judge) is a failed judgement, not cached."""
        cached = self.cache.get(self.cache_name, prompt)
        if cached is not None:
            return cached
        raw, parsed, attempts = None, None, 0
        try:
            for attempt in range(self.retries + 1):
                attempts += 1
                raw = self._ask(prompt if attempt == 0 else prompt + REMINDER)
                parsed = parse_reply(raw)
                if parsed is not None:
                    break
        except BackendUnreachable:
            raise
        except PulseError as error:            # not cached: a later run asks again
            return Judgement(raw, None, attempts, error=str(error))
        judgement = Judgement(raw, parsed, attempts)
        self.cache.put(self.cache_name, prompt, judgement)
        return judgement

    def many(self, prompts: list[str], concurrency: int = 8, progress: bool = True,
             label: str = "judging") -> list[Judgement]:
        """Judgements of ``prompts``, ``concurrency`` requests at a time, in order."""
        from tqdm import tqdm

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool, \
                tqdm(total=len(prompts), disable=None if progress else True, desc=label,
                     leave=False) as bar:
            def one(prompt):
                judgement = self(prompt)
                bar.update(1)
                return judgement
            return list(pool.map(one, prompts))


# -- two judges ------------------------------------------------------------------------------------

def agreement(first: dict[str, dict], second: dict[str, dict]) -> dict:
    """How far two judges agree on the items both scored.

    ``first``/``second``: item id -> ``{"score": 0-100, "aspects": {name: 0-10}}``. Returns the
    item count, both mean scores, the mean absolute difference, Pearson and Spearman
    correlations of the item scores, and per aspect the exact agreement and the quadratic
    weighted Cohen's kappa of the (rounded) 0-10 scores.
    """
    import numpy as np
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import cohen_kappa_score

    common = [k for k in first if k in second]
    out = {"n": len(common)}
    if not common:
        return out
    a = np.array([first[k]["score"] for k in common], dtype=float)
    b = np.array([second[k]["score"] for k in common], dtype=float)
    out.update(mean_first=float(a.mean()), mean_second=float(b.mean()),
               mean_abs_diff=float(np.abs(a - b).mean()))
    varied = len(common) > 2 and a.std() > 0 and b.std() > 0
    out["pearson"] = float(pearsonr(a, b)[0]) if varied else None
    out["spearman"] = float(spearmanr(a, b)[0]) if varied else None
    aspects = {}
    for name in first[common[0]]["aspects"]:
        x = [round(first[k]["aspects"].get(name, -1)) for k in common]
        y = [round(second[k]["aspects"].get(name, -1)) for k in common]
        both = len(set(x) | set(y)) > 1
        aspects[name] = {
            "exact": float(np.mean([p == q for p, q in zip(x, y)])),
            "kappa": float(cohen_kappa_score(x, y, weights="quadratic",
                                             labels=list(range(-1, 11)))) if both else None}
    out["aspects"] = aspects
    return out
