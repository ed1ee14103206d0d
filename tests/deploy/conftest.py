"""Structural checks of deploy/: the files are parsed, never run (no container engine here).

What the deploy files may say is derived from the code they start, so neither can drift:
the ``LIQUID_*`` names from :class:`liquid.config.Settings`, the commands from the Typer app.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel

import liquid.config as config_module
from liquid.cli import app
from liquid.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _is_mapping(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict


def settings_env_names(
    model: type[BaseModel] = Settings, prefix: str = "LIQUID_"
) -> tuple[set[str], set[str]]:
    """Exact ``LIQUID_*`` names the settings class reads, and prefixes of its free-form maps."""
    exact: set[str] = set()
    open_prefixes: set[str] = set()
    for name, field in model.model_fields.items():
        env = prefix + name.upper()
        exact.add(env)
        sub = _model_of(field.annotation)
        if sub is not None:
            e, p = settings_env_names(sub, env + "__")
            exact |= e
            open_prefixes |= p
        elif _is_mapping(field.annotation):
            open_prefixes.add(env + "__")
    # The settings class also reads these itself (e.g. LIQUID_CONFIG, the YAML file's path).
    exact |= set(re.findall(r'"(LIQUID_[A-Z_]+)"', Path(config_module.__file__).read_text()))
    return exact, open_prefixes


def cli_env_names() -> set[str]:
    """``LIQUID_*`` names the CLI's own options read (``envvar=``), e.g. the dashboard's API key."""
    names: set[str] = set()
    stack: list[Any] = [typer.main.get_command(app)]
    while stack:
        cmd = stack.pop()
        for param in getattr(cmd, "params", []):
            env = param.envvar
            names |= {env} if isinstance(env, str) else set(env or ())
        stack.extend(getattr(cmd, "commands", {}).values())
    return {n for n in names if n.startswith("LIQUID_")}


@pytest.fixture(scope="session")
def env_names() -> tuple[set[str], set[str]]:
    exact, prefixes = settings_env_names()
    return exact | cli_env_names(), prefixes


def unknown_liquid_vars(names: Sequence[str], env: tuple[set[str], set[str]]) -> list[str]:
    exact, prefixes = env
    return [
        n
        for n in names
        if n.startswith("LIQUID_") and n not in exact and not any(n.startswith(p) for p in prefixes)
    ]


def check_cli_args(args: Sequence[str]) -> None:
    """Parse ``liquid <args>`` with the real Typer/click app without running it; fail on anything unknown."""
    assert args, "an empty command"
    # Typer ships its own copy of click (typer._click), so groups are told apart by what they do.
    cmd: Any = typer.main.get_command(app)
    rest = list(args)
    path = ["liquid"]
    while hasattr(cmd, "list_commands"):
        assert rest, f"{' '.join(path)} needs a subcommand"
        name = rest.pop(0)
        with cmd.context_class(cmd) as ctx:
            sub = cmd.get_command(ctx, name)
        assert sub is not None, f"`{' '.join([*path, name])}` is not a liquid command"
        path.append(name)
        cmd = sub
    # Parses options and arguments exactly as a real run would, then stops before invoking.
    cmd.make_context(" ".join(path), rest)


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
