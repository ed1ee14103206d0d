"""The image: multi-stage, non-root, the CLI as entry point and a real default command."""

from __future__ import annotations

import json
import re

from tests.deploy.conftest import DEPLOY, check_cli_args

DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_multi_stage_build() -> None:
    froms = [rest for word, rest in _instructions() if word == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    copies = [rest for word, rest in _instructions() if word == "COPY" and "--from=" in rest]
    assert copies, "the runtime stage copies the build stage's output"


def test_runs_as_non_root() -> None:
    users = [rest for word, rest in _instructions() if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_entrypoint_is_the_cli_and_default_command_is_real() -> None:
    instr = dict(_instructions())
    assert json.loads(instr["ENTRYPOINT"]) == ["liquid"]
    cmd = json.loads(instr["CMD"])
    assert cmd[0] == "api"
    check_cli_args(cmd)


def test_healthcheck_probes_healthz() -> None:
    assert "/healthz" in dict(_instructions())["HEALTHCHECK"]


def test_image_env_names_are_settings(env_names: object) -> None:
    from tests.deploy.conftest import unknown_liquid_vars

    names = re.findall(r"\b(LIQUID_[A-Z0-9_]+)=", DOCKERFILE)
    assert names
    assert not unknown_liquid_vars(names, env_names)  # type: ignore[arg-type]
