"""Every setting of the app, once: name, environment variable, CLI flag, default, one line of doc.

Precedence: CLI flag > environment variable > default. ``python -m pulse_app serve --help`` prints
the same table, and the README's settings table is generated from :data:`FIELDS`
(``python -m pulse_app.settings --write-readme``; a test checks that they match). This is the only
module that reads the environment.

>>> s = Settings.load(temperature=0.0)
>>> s.temperature, s.max_new_tokens
(0.0, 512)
>>> s.generation_params(top_p=0.9).top_p
0.9
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pulse_app.engine.backend import GenerationParams

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"

#: The name that selects the app's offline default model: the shipped mini model when it is
#: present in ``assets/``, otherwise the untrained tiny model built locally (see engine/tiny.py).
OFFLINE_DEFAULT_MODEL = "offline-default"


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "pulse")


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "pulse")


def _opt(env: str, help: str, default=None, *, factory=None, choices=None):
    meta = {"env": env, "help": help, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :meth:`Settings.load`, never by hand in app code."""

    # -- model and backend --------------------------------------------------------------------
    model: str = _opt("PULSE_MODEL", "model: hub id, folder (transformers or original LLaVA "
                      f"layout), '{OFFLINE_DEFAULT_MODEL}' (assets/pulse-mini, else the untrained "
                      "tiny model) or 'tiny-untrained'", OFFLINE_DEFAULT_MODEL)
    revision: str | None = _opt("PULSE_REVISION", "hub revision (branch, tag or commit) of --model")
    backend: str = _opt("PULSE_BACKEND", "where the model runs", "local",
                        choices=("local", "space", "openai"))
    url: str | None = _opt("PULSE_URL", "space: Space id or URL of a running app; "
                           "openai: base URL of the server (e.g. http://host:8000/v1)")
    api_key: str | None = _opt("PULSE_API_KEY", "token for the space/openai backend (HF token "
                               "or API key)")
    device: str = _opt("PULSE_DEVICE", "local: auto, cpu, cuda, cuda:N, mps", "auto")
    precision: str = _opt("PULSE_PRECISION", "local: auto (bf16 on Ampere+, fp16 on older CUDA, "
                          "fp32 on CPU), bf16, fp16, fp32, 8bit, 4bit", "auto",
                          choices=("auto", "bf16", "fp16", "fp32", "8bit", "4bit"))
    judge_api_key: str | None = _opt("PULSE_JUDGE_API_KEY", "evaluation: API key of the LLM "
                                     "judge's OpenAI-compatible server (training.evaluate "
                                     "--judge-url)")
    timeout_s: float = _opt("PULSE_TIMEOUT", "remote backends: seconds to wait for the first "
                            "token / between tokens", 120.0)
    cache_dir: str = _opt("PULSE_CACHE_DIR", "converted checkpoints and the tiny model are cached "
                          "here", factory=_default_cache_dir)

    # -- generation (PULSE demo defaults; its evaluation used temperature 0, 1024 tokens) -------
    temperature: float = _opt("PULSE_TEMPERATURE", "sampling temperature; 0 = greedy", 0.2)
    top_p: float = _opt("PULSE_TOP_P", "nucleus sampling threshold", 0.7)
    max_new_tokens: int = _opt("PULSE_MAX_NEW_TOKENS", "longest answer, in tokens", 512)
    grounded: bool = _opt("PULSE_GROUNDED", "grounded answers: give the model the digitiser's "
                          "measurements of the ECG (rate, rhythm regularity, intervals, axis) "
                          "as context marked as such, and label the answer 'grounded' (the "
                          "web app's default; every answer is checked against them either way)",
                          False)

    # -- app ------------------------------------------------------------------------------------
    host: str = _opt("PULSE_HOST", "address the web app listens on", "127.0.0.1")
    port: int = _opt("PULSE_PORT", "port the web app listens on", 7860)
    data_dir: str = _opt("PULSE_DATA_DIR", "sessions database and stored images live here",
                         factory=_default_data_dir)
    db_url: str | None = _opt("PULSE_DB_URL", "SQLAlchemy URL (postgresql://user:password@host/db "
                              "for several app replicas on one database; driver psycopg 3); "
                              "default: SQLite file <data_dir>/pulse.db (one app process)")
    db_pool_size: int = _opt("PULSE_DB_POOL_SIZE", "PostgreSQL: connections each app process "
                             "keeps open (replicas x (size + overflow) must stay below the "
                             "server's max_connections)", 5)
    db_pool_overflow: int = _opt("PULSE_DB_POOL_OVERFLOW", "PostgreSQL: extra connections an app "
                                 "process may open at busy moments", 5)
    auth: str | None = _opt("PULSE_AUTH", "accounts: 'user:HASH,...' or a users file (one user:HASH "
                            "per line; HASH from `python -m pulse_app hash-password`); unset = one "
                            "private space per browser")
    share: bool = _opt("PULSE_SHARE", "create a public gradio.live link", False)
    concurrency: int = _opt("PULSE_CONCURRENCY", "answers generated at the same time (per GPU)", 1)
    queue_size: int = _opt("PULSE_QUEUE_SIZE", "visitors waiting in the queue before new ones "
                           "are turned away", 64)
    max_upload_mb: float = _opt("PULSE_MAX_UPLOAD_MB", "largest accepted upload, in MB", 50.0)
    max_pixels: int = _opt("PULSE_MAX_PIXELS", "largest accepted image, in pixels as its file "
                           "declares them (checked before decoding)", 60_000_000)
    image_pixels: int = _opt("PULSE_IMAGE_PIXELS", "larger images are scaled down to this many "
                             "pixels as they are decoded (JPEG and PDF inside the decoder); "
                             "what is kept, stored and shown (the model reads ~1 MP)", 16_000_000)
    image_memory_mb: int = _opt("PULSE_IMAGE_MEMORY_MB", "memory for decoded images, in MB: "
                                "uploads being decoded wait for their share (turned away after a "
                                "minute); open drafts keep at most half of it, the answer cache "
                                "an eighth", 1024)
    max_note_chars: int = _opt("PULSE_MAX_NOTE_CHARS", "longest clinician note in a PDF report, "
                               "in characters", 20_000)
    export_ttl_s: float = _opt("PULSE_EXPORT_TTL", "seconds an exported PDF waits for its owner "
                               "to download it (it is deleted at the first download)", 600.0)
    retention_days: float = _opt("PULSE_RETENTION_DAYS", "sessions unchanged for this many days "
                                 "are deleted (hourly by the web app, or `python -m pulse_app "
                                 "purge`); 0 = keep until their owner deletes them", 0.0)
    examples_dir: str | None = _opt("PULSE_EXAMPLES_DIR", "folder of pictures for the Examples "
                                    "tab (e.g. your own licensed ECG images); default: the "
                                    "project's simulated pages in assets/examples")

    # -- serve-openai, diagnostics, hosting -------------------------------------------------------
    server_api_key: str | None = _opt("PULSE_SERVER_API_KEY", "serve-openai: require this key as "
                                      "'Authorization: Bearer KEY' (unset = no key)")
    ray_replicas: int = _opt("PULSE_RAY_REPLICAS", "serve-ray: replicas of the model (each its "
                             "own process with the local backend)", 2)
    ray_max_replicas: int = _opt("PULSE_RAY_MAX_REPLICAS", "serve-ray: above --ray-replicas, Ray "
                                 "adds replicas up to this many while requests wait (autoscaling); "
                                 "0 = a fixed number", 0)
    ray_gpus: float = _opt("PULSE_RAY_GPUS", "serve-ray: GPUs per replica (1 on a GPU cluster; 0 = "
                           "CPU, one core and one torch thread each)", 0.0)
    ray_address: str | None = _opt("PULSE_RAY_ADDRESS", "serve-ray: address of a running Ray "
                                   "cluster (unset = start a local one)")
    ray_ingress: str = _opt("PULSE_RAY_INGRESS", "serve-ray: what spreads HTTP requests over "
                            "the replicas: Ray's Python HTTP 'proxy', or Ray's 'haproxy' "
                            "ingress (Debian package haproxy; far less CPU per request)",
                            "proxy", choices=("proxy", "haproxy"))
    debug: bool = _opt("PULSE_DEBUG", "CLI: show the traceback of unexpected errors", False)
    zero_gpu: bool = _opt("SPACES_ZERO_GPU", "set by Hugging Face on ZeroGPU hardware: generation "
                          "runs in a GPU worker process", False)
    space_id: str | None = _opt("SPACE_ID", "set by Hugging Face on a Space: app.py then listens "
                                "on 0.0.0.0")

    @classmethod
    def load(cls, **overrides) -> "Settings":
        """Defaults, then environment variables, then ``overrides`` that are not None."""
        values = {}
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(choices)} "
                                 f"(got {getattr(self, f.name)!r}; env {f.metadata['env']})")
        for name in POSITIVE:
            value = getattr(self, name)
            if not value > 0 or value != value or value == float("inf"):
                raise ValueError(f"{name} must be a positive number (got {value!r}; env "
                                 f"{FIELDS[name].metadata['env']})")
        if not 0 <= self.ray_gpus < float("inf"):
            raise ValueError(f"ray_gpus must be 0 or more (got {self.ray_gpus!r})")
        if self.db_pool_overflow < 0:
            raise ValueError(f"db_pool_overflow must be 0 or more (got {self.db_pool_overflow})")
        if not 0 <= self.retention_days < float("inf"):
            raise ValueError(f"retention_days must be 0 or more (got {self.retention_days!r})")
        self.generation_params()            # the same range checks as every request
        if self.examples_dir and not Path(self.examples_dir).is_dir():
            raise ValueError(f"examples_dir {self.examples_dir!r} is not a folder (env "
                             "PULSE_EXAMPLES_DIR): point it at a folder of pictures, or unset it")

    def generation_params(self, **request) -> "GenerationParams":
        """The checked generation settings of one request: these settings' defaults, overridden
        by the ``request`` values that are not None (temperature, top_p, max_new_tokens, seed).

        Every entry point builds its parameters here, so an out-of-range value gets the same
        :class:`~pulse_app.errors.InvalidParameter` everywhere (never a silent clamp).
        """
        from pulse_app.engine.backend import GenerationParams

        values = {"temperature": self.temperature, "top_p": self.top_p,
                  "max_new_tokens": self.max_new_tokens, "seed": None}
        unknown = set(request) - set(values)
        if unknown:
            raise TypeError(f"unknown generation settings: {sorted(unknown)}")
        values.update({k: v for k, v in request.items() if v is not None})
        return GenerationParams(**values)

    @property
    def examples_path(self) -> Path:
        """The Examples tab's folder: ``examples_dir``, else ``assets/examples``."""
        return Path(self.examples_dir) if self.examples_dir else ASSETS_DIR / "examples"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{Path(self.data_dir) / 'pulse.db'}"


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
#: Limits that must be above zero (a zero or negative budget would refuse everything).
POSITIVE = ("db_pool_size", "ray_replicas", "max_upload_mb", "max_pixels", "image_pixels",
            "image_memory_mb", "max_note_chars", "export_ttl_s", "concurrency", "queue_size", "timeout_s")


def _field_type(f: dataclasses.Field) -> type:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return type(default) if default is not None else str


def _parse(f: dataclasses.Field, raw: str):
    kind = _field_type(f)
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}") from None


def add_arguments(parser: argparse.ArgumentParser, names: list[str]) -> None:
    """Add ``--flag`` options for the named settings; each defaults to None (= env or default)."""
    for name in names:
        f = FIELDS[name]
        flag = "--" + name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        doc = f"{f.metadata['help']} [env {f.metadata['env']}; default {default!r}]"
        kind = _field_type(f)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=doc)
        else:
            parser.add_argument(flag, type=kind, default=None, help=doc,
                                choices=f.metadata.get("choices"))


def from_arguments(args: argparse.Namespace, **extra) -> Settings:
    """Settings from parsed CLI flags (only those that were added and given)."""
    given = {name: getattr(args, name) for name in FIELDS if hasattr(args, name)}
    given.update(extra)
    return Settings.load(**given)


def _shown_default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{f.default!r}`"
    return {"data_dir": "`~/.local/share/pulse`", "cache_dir": "`~/.cache/pulse`"}.get(
        f.name, "(computed)")


def markdown_table() -> str:
    """The settings as the README's Markdown table.

    >>> markdown_table().splitlines()[0]
    '| flag | env | default | meaning |'
    """
    rows = ["| flag | env | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        meaning = f.metadata["help"].replace("|", "\\|")
        rows.append(f"| `--{f.name.replace('_', '-')}` | `{f.metadata['env']}` | "
                    f"{_shown_default(f)} | {meaning} |")
    return "\n".join(rows)


README = REPO_ROOT / "README.md"
TABLE_START, TABLE_END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def readme_with_table(text: str) -> str:
    """``text`` (the README) with the part between the table markers replaced by the table."""
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    return f"{head}{TABLE_START}\n{markdown_table()}\n{TABLE_END}{tail}"


if __name__ == "__main__":          # python -m pulse_app.settings [--write-readme]
    import sys

    if "--write-readme" in sys.argv[1:]:
        README.write_text(readme_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(markdown_table())
