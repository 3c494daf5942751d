#!/usr/bin/env python3
"""Bootstrap and run hashmatch from a checkout with nothing but Python 3.11+.

    python3 dev.py serve        # the service on its embedded defaults (SQLite, ./index)
    python3 dev.py test         # lint, type-check and the whole test suite
    python3 dev.py robustness   # the robustness benchmark on real photos (--quick: CI's)

Creates ``.venv`` beside this file on first use and reinstalls the project (with its
development extras) whenever ``pyproject.toml`` changes. Extra arguments go to the command:
``python3 dev.py test -k media``, ``python3 dev.py serve --port 9000``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".hashmatch-install"


def _run(*command: str | Path) -> None:
    result = subprocess.run([str(c) for c in command], cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by an older python3
        sys.exit(f"hashmatch needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"dev.py: creating {VENV.name}/", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print("dev.py: installing hashmatch and its dependencies", file=sys.stderr)
    _run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _run(BIN / "python", "-m", "pip", "install", "--quiet", "--editable", ".[dev]")
    STAMP.write_text(wanted)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"serve", "test", "robustness"}:
        sys.exit(__doc__)
    command, rest = argv[0], argv[1:]
    ensure_environment()
    if command == "serve":
        os.execv(BIN / "hashmatch", [str(BIN / "hashmatch"), "serve", *rest])  # noqa: S606
    if command == "robustness":
        _run(BIN / "python", ROOT / "benchmarks" / "bench_robustness.py", *rest)
        return
    _run(BIN / "ruff", "check", ".")
    _run(BIN / "ruff", "format", "--check", ".")
    _run(BIN / "mypy")
    # pytest exits 5 when it collected no test: that is a failure here, never a pass.
    _run(BIN / "python", "-m", "pytest", *rest)


if __name__ == "__main__":
    main(sys.argv[1:])
