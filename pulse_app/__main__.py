"""Command line: ``python -m pulse_app ask | convert | ...``.

    python -m pulse_app ask ecg.png "What is the rhythm?"            # offline default model
    python -m pulse_app ask scan.pdf "Any ST elevation?" --model PULSE-ECG/PULSE-7B --page 2
    python -m pulse_app ask E07509.hea "Rate?"                       # a WFDB record, drawn first
    python -m pulse_app ask photo.jpg "Rhythm?" --straighten         # a tilted phone photo
    python -m pulse_app ask ecg.png "Rate?" --grounded               # + digitiser's measurements
    python -m pulse_app convert PULSE-7B-download/ PULSE-7B-hf/      # original -> transformers
    python -m pulse_app digitize scan.pdf --out reading/              # signals + measurements

The answer goes to stdout as it is generated; which model answers, progress and errors go to
stderr. An error is one line (what happened, what to do) and a non-zero exit code (see
``pulse_app.errors``; 2 = a bad flag or request value); set ``PULSE_DEBUG=1`` to see tracebacks
of unexpected errors.

Each command is an ``add_<name>_command(commands)`` function registered in :data:`COMMANDS`;
it adds its sub-parser and sets ``run``, a function of the parsed arguments returning the exit
code. Heavy modules (torch, transformers, gradio) are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pulse_app import settings as settings_module
from pulse_app.errors import ModelUnavailable, PulseError

ASK_SETTINGS = ["model", "revision", "backend", "url", "api_key", "device", "precision",
                "timeout_s", "cache_dir", "temperature", "top_p", "max_new_tokens", "max_pixels",
                "image_pixels", "max_upload_mb", "grounded"]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_settings(args) -> settings_module.Settings:
    """Settings from flags and PULSE_* variables; an invalid value is a user error."""
    try:
        return settings_module.from_arguments(args)
    except PulseError:
        raise
    except ValueError as error:
        raise PulseError(str(error), hint="fix the flag or the PULSE_* variable") from error


# -- ask ----------------------------------------------------------------------------------------

def add_ask_command(commands) -> None:
    parser = commands.add_parser(
        "ask", help="ask one question about an ECG image or PDF; the answer streams to stdout",
        description="Ask a PULSE-style model one question about an ECG image (PNG, JPEG, ..., "
                    "a PDF page, or a WFDB/DICOM record drawn as a printed ECG). Without "
                    "--model the offline default model answers.")
    parser.add_argument("image", help="ECG image, PDF, WFDB .hea (its .dat/.mat beside it) "
                                      "or DICOM .dcm file")
    parser.add_argument("question", help="the question, e.g. \"What is the heart rhythm?\"")
    parser.add_argument("--page", type=int, default=1, help="PDF page to read (1 = first)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    parser.add_argument("--straighten", action="store_true",
                        help="straighten a photographed page first (rotation and perspective, "
                             "from its grid, edges or traces), as the web app proposes")
    settings_module.add_arguments(parser, ASK_SETTINGS)
    parser.set_defaults(run=run_ask)


def run_ask(args) -> int:
    from pulse_app.answer import prepare, stream_request
    from pulse_app.consistency import flag_text
    from pulse_app.engine import make_backend

    settings = load_settings(args)
    request = prepare(settings, [args.image], args.question, page=args.page, seed=args.seed,
                      straighten=args.straighten)
    if request.straightening is not None:
        done = "straightened" if request.straightening.changes else "not straightened"
        say(f"[{done}: {request.straightening.message}]")
    backend = make_backend(settings, progress=say)
    info = backend.info()
    label = request.label(info.label)
    say(f"[{label}]" + (f" note: {info.note}" if info.note else ""))
    if request.grounded:
        say(request.context)
    parts = []
    for chunk in stream_request(backend, request):
        parts.append(chunk)
        sys.stdout.write(chunk)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if request.grounded:
        flag = flag_text(request.contradictions("".join(parts)))
        if flag:
            say(f"warning: {flag}")
    return 0


# -- convert ------------------------------------------------------------------------------------

def add_convert_command(commands) -> None:
    parser = commands.add_parser(
        "convert", help="convert a checkpoint in the original LLaVA layout (PULSE-7B as "
                        "published) to a transformers LLaVA-NeXT folder",
        description="Write a transformers LLaVA-NeXT folder (weights renamed, dtype kept, "
                    "processor, tokenizer with the llava_v1 chat template, merge type kept) "
                    "from SRC, a folder or hub id in the original LLaVA layout.")
    parser.add_argument("src", help="folder or hub id, e.g. PULSE-ECG/PULSE-7B")
    parser.add_argument("dst", help="new folder to write")
    parser.add_argument("--revision", default=None, help="hub revision of SRC")
    parser.add_argument("--vision-heads", type=int, default=None,
                        help="attention heads of the vision tower, when its name is not a known "
                             "CLIP (default: width / 64)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty DST")
    parser.set_defaults(run=run_convert)


def run_convert(args) -> int:
    from pulse_app.engine.local import HUB_ID, download
    from pulse_app.engine.convert import convert_checkpoint

    src, dst = Path(args.src).expanduser(), Path(args.dst).expanduser()
    if dst.exists() and any(dst.iterdir()) and not args.force:
        raise PulseError(f"{dst} exists and is not empty", hint="choose a new folder or --force")
    if not src.exists():
        if not HUB_ID.match(args.src):
            raise ModelUnavailable(f"no folder {args.src!r} and not a hub id (owner/name)")
        src = download(args.src, args.revision, say)
    convert_checkpoint(src, dst, vision_heads=args.vision_heads, progress=say)
    say(f"converted {args.src} -> {dst}")
    return 0


# -- digitize -------------------------------------------------------------------------------------

DIGITIZE_SETTINGS = ["max_pixels", "image_pixels", "image_memory_mb", "max_upload_mb"]


def add_digitize_command(commands) -> None:
    parser = commands.add_parser(
        "digitize", help="read an ECG image or PDF page into signals and measurements "
                         "(WFDB + CSV + JSON + overlay PNG)",
        description="Digitise an upright ECG page (scan, PDF page, straightened photo) into 12 "
                    "leads at 500 Hz and measure them: writes DIR/NAME.hea+.dat (WFDB), "
                    "NAME.csv, NAME.json (calibration, per-lead status, measurements) and "
                    "NAME_overlay.png (what was read, drawn over the page). Leads that are not "
                    "on the page or not readable are NaN, with the reason in the JSON.")
    parser.add_argument("image", help="ECG image or PDF file")
    parser.add_argument("--out", required=True, help="folder to write into (created if needed)")
    parser.add_argument("--name", default=None, help="file name stem (default: the image's)")
    parser.add_argument("--page", type=int, default=1, help="PDF page to read (1 = first)")
    parser.add_argument("--speed", type=float, default=None, metavar="MM_S",
                        help="paper speed in mm/s when not 25 (a page does not show it except "
                             "in its printed text)")
    parser.add_argument("--gain", type=float, default=None, metavar="MM_MV",
                        help="gain in mm/mV, to override the calibration pulse (or to give it "
                             "when the page has none)")
    settings_module.add_arguments(parser, DIGITIZE_SETTINGS)
    parser.set_defaults(run=run_digitize)


def run_digitize(args) -> int:
    from pulse_app.ecg.reading import read_ecg_image, write_reading
    from pulse_app.intake import Limits, load_upload

    settings = load_settings(args)
    if args.speed is not None and args.speed <= 0 or args.gain is not None and args.gain <= 0:
        raise PulseError("--speed and --gain must be positive", hint="e.g. --speed 50 --gain 10")
    image = load_upload([args.image], Limits.from_settings(settings), page=args.page).image
    reading = read_ecg_image(image, speed_mm_s=args.speed, gain_mm_mV=args.gain)
    name = args.name or Path(args.image).stem
    paths = write_reading(reading, args.out, name)
    for line in reading.summary_lines():
        print(line)
    say("wrote " + ", ".join(str(paths[k]) for k in ("hea", "dat", "csv", "json", "png")))
    return 0 if reading.found_ecg else 10


# -- serve-openai -------------------------------------------------------------------------------

SERVE_OPENAI_SETTINGS = ["model", "revision", "backend", "url", "api_key", "device", "precision",
                         "timeout_s", "cache_dir", "host", "server_api_key", "temperature",
                         "top_p", "max_new_tokens", "max_pixels", "image_pixels",
                         "image_memory_mb", "max_upload_mb", "grounded"]


def add_serve_openai_command(commands) -> None:
    parser = commands.add_parser(
        "serve-openai", help="serve the model as an OpenAI-compatible API (/v1/chat/completions)",
        description="Serve the model (any backend) at http://HOST:PORT/v1 for OpenAI clients: "
                    "chat completions with a base64 image, streaming, /v1/models.")
    add_api_arguments(parser, SERVE_OPENAI_SETTINGS)
    parser.set_defaults(run=run_serve_openai)


def add_api_arguments(parser, settings: list[str]) -> None:
    """The flags of an OpenAI-compatible API command (serve-openai, serve-ray)."""
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--served-model-name", default=None,
                        help="the model's name for clients (default: --model)")
    settings_module.add_arguments(parser, settings)


def run_serve_openai(args) -> int:
    from pulse_app.engine import make_backend
    from pulse_app.engine.openai_server import make_server

    settings = load_settings(args)
    backend = make_backend(settings, progress=say)
    if hasattr(backend, "load"):
        backend.load()                      # fail now, not on the first request
    server = make_server(backend, settings, args.port, model_name=args.served_model_name)
    host, port = server.server_address[:2]
    say(f"[{backend.info().label}] serving {server.model_name!r} at http://{host}:{port}/v1")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


# -- serve-ray ------------------------------------------------------------------------------------

SERVE_RAY_SETTINGS = [*SERVE_OPENAI_SETTINGS, "ray_replicas", "ray_max_replicas", "ray_gpus",
                      "ray_address", "ray_ingress"]


def add_serve_ray_command(commands) -> None:
    parser = commands.add_parser(
        "serve-ray", help="serve the model on Ray Serve replicas (OpenAI-compatible API)",
        description="Run --ray-replicas replicas of the local backend on Ray Serve (a local "
                    "Ray cluster, or --ray-address), behind the API of serve-openai at "
                    "http://HOST:PORT/v1; Ray spreads requests, checks health and (with "
                    "--ray-max-replicas) autoscales. Needs requirements-ray.txt.")
    add_api_arguments(parser, SERVE_RAY_SETTINGS)
    parser.set_defaults(run=run_serve_ray)


def run_serve_ray(args) -> int:
    import signal
    import threading

    try:
        from pulse_app.engine import ray_serve
    except ImportError:                                  # pragma: no cover - the extra
        raise PulseError("serve-ray needs Ray Serve, which is not installed",
                         hint="pip install -r requirements-ray.txt") from None
    settings = load_settings(args)
    if settings.backend != "local":
        raise PulseError("serve-ray runs the local backend on each replica",
                         hint="drop --backend (or point the clients at the other server)")
    stop = threading.Event()

    def stop_on_signals():
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: stop.set())

    stop_on_signals()
    try:
        url = ray_serve.deploy(settings, args.port, model_name=args.served_model_name)
        stop_on_signals()       # ray.init put its own SIGTERM handler in place (an abort)
        say(f"serving {settings.model!r} on {settings.ray_replicas} Ray Serve replica(s) at "
            f"{url} (clients: --backend openai --url {url})")
        stop.wait()
    finally:
        ray_serve.shutdown()
    return 0


# -- serve ----------------------------------------------------------------------------------------

SERVE_SETTINGS = ["host", "port", "model", "revision", "backend", "url", "api_key", "device",
                  "precision", "cache_dir", "data_dir", "db_url", "db_pool_size",
                  "db_pool_overflow", "auth", "share", "concurrency", "queue_size", "temperature",
                  "top_p", "max_new_tokens", "max_upload_mb",
                  "max_pixels", "image_pixels", "image_memory_mb", "max_note_chars",
                  "export_ttl_s", "retention_days", "examples_dir", "grounded"]


def add_serve_command(commands) -> None:
    parser = commands.add_parser(
        "serve", help="start the web app (default http://127.0.0.1:7860, offline default model)",
        description="Start the PULSE web app: upload an ECG, crop/rotate it, chat with the "
                    "model, keep sessions, export PDF reports.")
    settings_module.add_arguments(parser, SERVE_SETTINGS)
    parser.set_defaults(run=run_serve)


def run_serve(args) -> int:
    from pulse_app.ui.app import launch

    settings = load_settings(args)
    say(f"starting the web app on http://{settings.host}:{settings.port} "
        f"(model {settings.model}, data in {settings.data_dir})")
    launch(settings)
    return 0


# -- purge ----------------------------------------------------------------------------------------

def add_purge_command(commands) -> None:
    parser = commands.add_parser(
        "purge", help="delete sessions older than --retention-days, and stray temporary folders",
        description="Delete every owner's sessions unchanged for --retention-days days (their "
                    "images and turns with them) and this app's temporary folders left by a "
                    "killed process. The web app does the same every hour.")
    settings_module.add_arguments(parser, ["data_dir", "db_url", "retention_days",
                                           "export_ttl_s"])
    parser.set_defaults(run=run_purge)


def run_purge(args) -> int:
    from pulse_app.retention import purge

    settings = load_settings(args)
    if settings.retention_days <= 0:
        say("retention_days is 0 (keep sessions): only temporary folders are cleaned")
    purged = purge(settings)
    print(f"deleted {purged.sessions} sessions and {purged.temp_folders} temporary folders")
    return 0


# -- migrate -------------------------------------------------------------------------------------

def add_migrate_command(commands) -> None:
    parser = commands.add_parser(
        "migrate", help="make or upgrade the sessions database's tables, then exit",
        description="Upgrade the sessions database (--db-url, or the SQLite file in --data-dir) "
                    "to this version's schema. The web app does the same when it starts; run "
                    "this first to upgrade once before starting several replicas.")
    settings_module.add_arguments(parser, ["data_dir", "db_url"])
    parser.set_defaults(run=run_migrate)


def run_migrate(args) -> int:
    from pulse_app.migrations import current_revision
    from pulse_app.store import Store, make_engine

    settings = load_settings(args)
    engine = make_engine(settings.database_url)
    before = current_revision(engine)
    engine.dispose()
    store = Store(settings.database_url)
    try:
        after = current_revision(store.engine)
        print(f"sessions database at revision {after} (schema {store.schema_version()}); it "
              f"was at {before or 'nothing (new database)'}")
    finally:
        store.close()
    return 0


# -- hash-password --------------------------------------------------------------------------------

def add_hash_password_command(commands) -> None:
    parser = commands.add_parser(
        "hash-password", help="print a scrypt hash of a password, for PULSE_AUTH",
        description="Read a password (typed twice, hidden; or one line from stdin when piped) "
                    "and print its hash. Put 'name:HASH' in PULSE_AUTH or in the users file.")
    parser.set_defaults(run=run_hash_password)


def run_hash_password(args) -> int:
    import getpass

    from pulse_app.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise PulseError("the two passwords differ", hint="run the command again")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    print(hash_password(password))
    return 0


# -- the program ----------------------------------------------------------------------------------

#: Every sub-command's ``add_*_command``. ``serve`` (the web app) registers itself here too.
COMMANDS = [add_ask_command, add_convert_command, add_serve_openai_command, add_serve_ray_command,
            add_serve_command, add_hash_password_command, add_purge_command, add_migrate_command,
            add_digitize_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pulse_app", description="Read ECG images with PULSE-style models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def _debug() -> bool:
    """PULSE_DEBUG, read through the settings (False when the settings themselves are broken)."""
    try:
        return settings_module.Settings.load().debug
    except Exception:  # noqa: BLE001
        return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")     # library chatter off stderr
    try:
        return args.run(args)
    except PulseError as error:
        say(f"error: {error}")
        return error.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except BrokenPipeError:                     # e.g. piped into `head`
        return 0
    except Exception as error:  # noqa: BLE001 - last resort: one line, not a traceback
        if _debug():
            raise
        first_line = (str(error).splitlines() or [""])[0][:200]
        say(f"internal error: {type(error).__name__}: {first_line}")
        say("this is a bug; run again with PULSE_DEBUG=1 and report the traceback")
        return 1


if __name__ == "__main__":
    sys.exit(main())
