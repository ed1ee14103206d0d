"""The ``liquid`` command against the session's real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from liquid.cli import app


@pytest.fixture
def cli_env(base_settings: dict[str, Any], runtime: object) -> dict[str, str]:
    return {
        "LIQUID_CATALOG_URL": base_settings["catalog_url"],
        "LIQUID_STORES": json.dumps(base_settings["stores"]),
        "LIQUID_TENANT": "",
    }


def run(env: dict[str, str], *args: str, input: bytes | None = None) -> Any:
    result = CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_tenant_key_put_get_head_ls_rm(cli_env: dict[str, str], tmp_path: Path) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    run(cli_env, "tenant", "create", tenant)
    key = run(cli_env, "key", "create", "--tenant", tenant).stdout.strip().splitlines()[0]
    assert key.startswith("lq_")

    src = tmp_path / "report.csv"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    out = run(
        cli_env,
        "put",
        "reports",
        "q3/report.csv",
        str(src),
        "--tenant",
        tenant,
        "--content-type",
        "text/csv",
        "--tag",
        "team=ml",
    )
    ref = json.loads(out.stdout)
    assert ref["uri"] == f"liquid://{tenant}/reports/q3/report.csv@1"
    assert ref["size"] == src.stat().st_size

    dst = tmp_path / "copy.csv"
    run(cli_env, "get", ref["uri"], "-o", str(dst))
    assert dst.read_bytes() == src.read_bytes()
    assert not (tmp_path / "copy.csv.part").exists()

    head = json.loads(run(cli_env, "head", ref["uri"]).stdout)
    assert (head["home_tier"], head["content_type"], head["tags"]) == ("cold", "text/csv", {"team": "ml"})

    run(cli_env, "put", "reports", "small.txt", "-", "--tenant", tenant, input=b"from stdin")
    listing = run(cli_env, "ls", "reports", "--tenant", tenant, "--json").stdout
    assert [json.loads(line)["key"] for line in listing.strip().splitlines()] == [
        "q3/report.csv",
        "small.txt",
    ]

    run(cli_env, "rm", ref["uri"])
    assert "q3/report.csv" not in run(cli_env, "ls", "reports", "--tenant", tenant).stdout


def test_errors_are_one_clear_line_and_exit_1(cli_env: dict[str, str]) -> None:
    env = {**os.environ, **cli_env}
    bad = subprocess.run(
        [sys.executable, "-m", "liquid.cli", "get", "liquid://acme/docs/no-version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "error [ref]: ref 'liquid://acme/docs/no-version' has no '@<version>' suffix" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "liquid.cli", "get", "liquid://acme/docs/nothing@1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "no object liquid://acme/docs/nothing@1" in missing.stderr


def test_attach_vectors_and_search(cli_env: dict[str, str], tmp_path: Path) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    run(cli_env, "tenant", "create", tenant)
    refs = []
    for name in ("a", "b"):
        src = tmp_path / name
        src.write_bytes(name.encode() * 10)
        refs.append(json.loads(run(cli_env, "put", "kb", name, str(src), "--tenant", tenant).stdout)["uri"])
    run(cli_env, "attach-vectors", refs[0], "[[1, 0, 0]]")
    emb = tmp_path / "emb.json"
    emb.write_text(json.dumps([{"vector": [0, 1, 0], "chunk_id": "c1", "span": [0, 5]}]))
    assert "attached 1" in run(cli_env, "attach-vectors", refs[1], f"@{emb}").stdout
    out = run(cli_env, "search", "[0, 0.9, 0.1]", "--tenant", tenant, "-k", "1", "--json").stdout
    (hit,) = [json.loads(line) for line in out.splitlines()]
    assert (hit["ref"]["uri"], hit["chunk_id"], hit["span"]) == (refs[1], "c1", [0, 5])
    table = run(cli_env, "search", "-", "--tenant", tenant, "--namespace", "kb", input=b"[1, 0, 0]").stdout
    assert "1.0000" in table and "10B" in table  # the exact match's score; rich may wrap the long ref
    bad = CliRunner().invoke(app, ["search", "[1, 0]", "--tenant", tenant], env=cli_env)
    assert bad.exit_code != 0 and "dimensions" in str(bad.exception or bad.output)
    for args, said in (
        (["search", "[1e39, 0, 0]", "--tenant", tenant], "float32"),  # a clear error, not a traceback
        (["search", "[1, 0, 0]", "--tenant", "no-such-tenant"], "does not exist"),  # not an empty table
        (["ls", "kb", "--tenant", "no-such-tenant"], "does not exist"),
        (["search", f"@{tmp_path / 'missing.json'}", "--tenant", tenant], "cannot read"),
        (["attach-vectors", refs[0], f"@{tmp_path / 'missing.json'}"], "cannot read"),
        (["put", "kb", "z", str(emb), "--tenant", tenant, "--ttl", "bogus"], "--ttl"),
        (["put", "kb", "z", str(emb), "--tenant", tenant, "--ttl", "-5"], "--ttl"),
        (["policy", "history", "--limit", "-1"], "--limit"),
    ):
        bad = CliRunner().invoke(app, args, env=cli_env)
        shown = bad.output + str(bad.exception)
        assert bad.exit_code != 0 and said in shown, (args, shown)
        assert "Traceback" not in bad.output, (args, bad.output)
