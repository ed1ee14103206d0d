"""`liquid --help` starts fast because the CLI imports its heavy layers only inside commands.

The time itself is measured in ``benchmarks/cli_startup.py`` (a ratio to ``import typer, rich``);
this test keeps the property that makes it fast from eroding: none of these are imported by
``import liquid.cli``, and ``--help`` works.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("sqlalchemy", "alembic", "psycopg", "redis", "fastapi", "starlette", "uvicorn", "pydantic", "boto3")


def test_importing_the_cli_loads_no_database_web_or_model_library() -> None:
    code = "import sys, liquid.cli; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(done.stdout.split())
    assert not loaded & set(HEAVY), f"liquid.cli imports {sorted(loaded & set(HEAVY))} at start-up"


def test_help_lists_the_commands() -> None:
    liquid = Path(sys.executable).with_name("liquid")
    done = subprocess.run([str(liquid), "--help"], capture_output=True, text=True, timeout=60, check=True)
    for command in ("put", "get", "ls", "explain", "policy", "up", "api"):
        assert command in done.stdout
