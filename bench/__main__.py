"""Run every benchmark in bench/ in turn: ``python -m bench`` (or ``make bench``).

Each ``bench/<name>.py`` with a ``main()`` runs with its default arguments; a failing one is
reported and the others still run. ``python -m bench local_speed render_speed`` runs a few.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def bench_modules() -> list[str]:
    """Names of the modules in bench/ that define ``main`` (sorted; without importing them)."""
    names = []
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        if "\ndef main(" in path.read_text(encoding="utf-8"):
            names.append(path.stem)
    return names


def run(name: str) -> bool:
    """Import ``bench.<name>`` and call its ``main`` with no arguments; True if it succeeded."""
    saved_argv = sys.argv
    sys.argv = [f"bench.{name}"]                 # modules that parse sys.argv see no flags
    try:
        module = importlib.import_module(f"bench.{name}")
        main = module.main
        main([]) if inspect.signature(main).parameters else main()
        return True
    except SystemExit as exit_:
        return exit_.code in (0, None)
    except Exception:  # noqa: BLE001 - report it, run the next bench
        traceback.print_exc()
        return False
    finally:
        sys.argv = saved_argv


def main(argv: list[str] | None = None) -> int:
    wanted = list(sys.argv[1:] if argv is None else argv)
    names = bench_modules()
    unknown = [n for n in wanted if n not in names]
    if unknown:
        print(f"unknown bench(es): {', '.join(unknown)}; available: {', '.join(names)}")
        return 2
    failed = []
    for name in wanted or names:
        print(f"== bench.{name} ==", flush=True)
        start = time.perf_counter()
        ok = run(name)
        print(f"== bench.{name}: {'ok' if ok else 'FAILED'} in {time.perf_counter() - start:.1f} s"
              " ==\n", flush=True)
        if not ok:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
