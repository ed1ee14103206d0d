"""The README's snippets run as written, in order, against a running instance.

For the sections a new user pastes from — "Using the API", "Using the CLI" and "Using the
library" — each fenced block is taken from README.md itself (so an edit that breaks a
snippet breaks this test), run in a fresh project directory whose ``.venv`` is this one,
against embedded servers this test holds open (as ``make run`` would). The only
substitutions are the two placeholders the README says ``make run`` prints: the API's base
URL and the demo key.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from liquid.api.server import ApiServer
from liquid.bootstrap import Runtime, open_runtime
from liquid.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"
VENV = Path(sys.executable).parent.parent


def blocks(section: str, lang: str) -> list[str]:
    """The ``lang`` code blocks under the ``## section`` heading of README.md."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else None]
    found = re.findall(rf"```{lang}\n(.*?)```", body, flags=re.S)
    assert found, f"README section {section!r} has no {lang} block"
    return found


@pytest.fixture(scope="module")
def project() -> Iterator[tuple[Path, Runtime, str, dict[str, str]]]:
    """A fresh project directory (``.venv`` → this venv), its embedded servers and API up."""
    # Outside pytest's basetemp: see EmbeddedPostgres' docstring.
    root = Path(tempfile.mkdtemp(prefix="liquid-readme-"))
    (root / ".venv").symlink_to(VENV)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIQUID_")}
    rt = open_runtime(Settings(home=root / ".liquid"))
    server = ApiServer(rt.service, port=0)
    base = server.start()
    try:
        yield root, rt, base, env
    finally:
        server.stop()
        rt.close(stop_embedded=True)
        shutil.rmtree(root, ignore_errors=True)


def _run(cmd: list[str], root: Path, env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(cmd, cwd=root, env=env, input=stdin, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_using_the_cli(project: tuple[Path, Runtime, str, dict[str, str]]) -> None:
    root, _, _, env = project
    (script,) = blocks("Using the CLI", "sh")[:1]
    out = _run(["bash", "-euo", "pipefail", "-c", script], root, env)
    assert "liquid://acme/results/run-7/out.json@1" in out
    assert '{"ok": true}' in out  # `liquid get` printed the bytes put a line earlier


def test_using_the_library(project: tuple[Path, Runtime, str, dict[str, str]]) -> None:
    root, _, _, env = project
    (snippet,) = blocks("Using the library", "python")
    out = _run([str(VENV / "bin" / "python"), "-c", snippet], root, env)
    # After the CLI section wrote version 1 of the same key, as a reader pasting in order would.
    assert "'uri': 'liquid://acme/results/run-7/out.json@2'" in out


def test_using_the_api(project: tuple[Path, Runtime, str, dict[str, str]]) -> None:
    root, rt, base, env = project
    (snippet,) = blocks("Using the API", "python")
    assert '"http://127.0.0.1:8780"' in snippet and '"lq_..."' in snippet
    rt.service.tenancy.create_tenant("apidemo")
    key = rt.service.tenancy.create_api_key("apidemo", name="readme", actor="test")
    code = snippet.replace('"http://127.0.0.1:8780"', repr(base)).replace('"lq_..."', repr(key))
    out = _run([str(VENV / "bin" / "python"), "-c", code], root, env)
    assert "run-7/out.json" in out  # explain printed the object it explains
