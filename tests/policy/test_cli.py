"""`liquid policy validate | schema | import-s3`, through typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from liquid.policy.schema import schema_text
from liquid.policy_cli import policy_app

ROOT = Path(__file__).resolve().parents[2]
BROKEN = Path(__file__).parent / "broken"
runner = CliRunner()


def test_validate_examples_exits_0_with_notes() -> None:
    result = runner.invoke(policy_app, ["validate", str(ROOT / "policies")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1] == "valid: 8 tiering policies, 2 budgets, 1 cost model; 0 warnings"
    assert any(": note: spec.selector: selector may overlap" in line for line in lines)


def test_validate_prints_every_located_error_and_exits_1() -> None:
    path = BROKEN / "unknown-keys.yaml"
    result = runner.invoke(policy_app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"{path}:6:3: metadata.owner: unknown field 'owner'; allowed: one of name, labels, annotations"
    )
    assert len(lines) == 5 and lines[-1] == "4 errors in 1 file"
    assert "Traceback" not in result.output


def test_validate_several_files_reports_all(tmp_path: Path) -> None:
    result = runner.invoke(
        policy_app, ["validate", str(BROKEN / "wrong-types.yaml"), str(tmp_path / "nope.yaml")]
    )
    assert result.exit_code == 1
    assert (
        result.stdout.splitlines()[-2]
        == f"{tmp_path / 'nope.yaml'}: cannot read the file: No such file or directory; "
        "allowed: a readable UTF-8 YAML file"
    )
    assert result.stdout.splitlines()[-1] == "8 errors in 2 files"


def test_validate_warnings_exit_0() -> None:
    result = runner.invoke(policy_app, ["validate", str(BROKEN / "unsatisfiable-budget.yaml")])
    assert result.exit_code == 0
    assert "warning: spec.tiers.hot.maxBytes: hot is capped at 1GiB" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("1 warning")


def test_validate_with_catalog_facts(tmp_path: Path) -> None:
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"tenants": {"acme": {"archive": {"heldBytes": "3TiB"}}}}))
    result = runner.invoke(policy_app, ["validate", str(ROOT / "policies"), "--facts", str(facts)])
    assert result.exit_code == 0, result.output
    assert "maxBytes 2TiB is below the 3TiB of tenant 'acme' under legal hold" in result.stdout
    # $150 a month cannot pay for 3 TiB even at $0.004/GB-month? It can: 3072 * 0.004 = $12.29.
    assert "maxMonthlyCost" not in result.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    result = runner.invoke(policy_app, ["validate", str(ROOT / "policies"), "--facts", str(bad)])
    assert result.exit_code == 1 and "cannot read catalog facts" in result.stdout


def test_schema_prints_the_checked_in_schema() -> None:
    result = runner.invoke(policy_app, ["schema"])
    assert result.exit_code == 0
    assert result.stdout == schema_text() == (ROOT / "policies" / "schema.json").read_text()


def test_import_s3_prints_yaml_and_notes(tmp_path: Path) -> None:
    config = tmp_path / "lifecycle.json"
    config.write_text(
        json.dumps(
            {
                "Rules": [
                    {
                        "ID": "logs",
                        "Status": "Enabled",
                        "Filter": {"Prefix": "logs/"},
                        "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}],
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                    }
                ]
            }
        )
    )
    result = runner.invoke(policy_app, ["import-s3", str(config), "--tenant", "acme"])
    assert result.exit_code == 0
    assert result.stdout.startswith(
        "# Imported from an S3 Lifecycle configuration (lifecycle.json).\n# scope: tenants=acme\n# note:"
    )
    assert "tenants:\n    - acme" in result.stdout or "tenants:\n  - acme" in result.stdout
    assert "scope: tenants=acme" in result.stderr
    assert (
        "note: rule 'logs': AbortIncompleteMultipartUpload (7 days): Liquid does this itself" in result.stderr
    )
    out = tmp_path / "imported.yaml"
    out.write_text(result.stdout)
    assert runner.invoke(policy_app, ["validate", str(out)]).exit_code == 0


def test_import_s3_needs_a_scope_and_reports_paths_and_losses(tmp_path: Path) -> None:
    config = tmp_path / "lifecycle.json"
    config.write_text(json.dumps({"Rules": [{"Filter": {"Prefx": "a/"}, "Expiration": {"Days": 3}}]}))
    result = runner.invoke(policy_app, ["import-s3", str(config)])
    assert result.exit_code == 1 and result.stdout == ""
    assert "a scope is required: --tenant and/or --namespace (the bucket), or --all-tenants" in result.stderr
    result = runner.invoke(policy_app, ["import-s3", str(config), "--namespace", "b"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "Rules[0].Status: missing" in result.stderr
    assert "Rules[0].Filter.Prefx: unknown key; allowed:" in result.stderr
    lossy = {
        "Rules": [
            {"ID": "it", "Status": "Enabled", "Filter": {},
             "Transitions": [{"Days": 0, "StorageClass": "INTELLIGENT_TIERING"}]}
        ]
    }  # fmt: skip
    config.write_text(json.dumps(lossy))
    result = runner.invoke(policy_app, ["import-s3", str(config), "--all-tenants"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "INTELLIGENT_TIERING moves objects by their access pattern" in result.stderr
    result = runner.invoke(policy_app, ["import-s3", str(config), "--all-tenants", "--lossy"])
    assert result.exit_code == 0
    assert "# LOSS (imported with --lossy): rule 'it'" in result.stdout
    assert "scope: every tenant and namespace" in result.stderr


def test_import_s3_bad_input_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "lifecycle.json"
    config.write_text("[1, 2]")
    result = runner.invoke(policy_app, ["import-s3", str(config), "--namespace", "b"])
    assert result.exit_code == 1
    assert "(top level): expected a JSON object, got an array" in result.stderr
    result = runner.invoke(policy_app, ["import-s3", str(tmp_path / "missing.json"), "--all-tenants"])
    assert result.exit_code == 1 and "No such file" in result.stderr
