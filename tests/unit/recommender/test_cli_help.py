"""Every `hotfeed` command explains itself: a description, and a default shown for each flag.

Pure: parsers are built and help is rendered, nothing is run against a service.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from recommender.cli import build_parser, env_default, main

REPO_ROOT = Path(__file__).resolve().parents[3]

# Nested commands the walk must reach; if one is missing, discovery is broken, not the help.
EXPECTED = {
    "hotfeed", "hotfeed services up", "hotfeed train", "hotfeed eval", "hotfeed serve", "hotfeed gateway",
    "hotfeed data synth", "hotfeed data import nginx", "hotfeed data validate", "hotfeed index full",
    "hotfeed index schedule", "hotfeed cluster run", "hotfeed cluster schedule", "hotfeed events push",
    "hotfeed events dead", "hotfeed model publish", "hotfeed model current", "hotfeed model rollback",
}

# Actions that need no "default" in their help: help/version, and on/off switches.
_NO_DEFAULT = (argparse._HelpAction, argparse._VersionAction, argparse._StoreTrueAction,
               argparse._StoreFalseAction)


def _walk(parser: argparse.ArgumentParser, path: str):
    """Yield (command path, parser) for the parser and every subcommand under it, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{path} {name}")


COMMANDS = dict(_walk(build_parser(), "hotfeed"))


def test_the_walk_finds_every_command_group():
    assert EXPECTED <= set(COMMANDS), sorted(EXPECTED - set(COMMANDS))


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_has_a_description(path):
    description = (COMMANDS[path].description or "").strip()
    assert description, f"`{path} --help` shows no description"
    assert "%%" not in COMMANDS[path].format_help(), f"`{path} --help` shows a literal %%"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_flag_shows_its_default(path):
    parser = COMMANDS[path]
    missing = []
    for action in parser._actions:
        if isinstance(action, (*_NO_DEFAULT, argparse._SubParsersAction)):
            continue
        if not action.option_strings:  # a positional: it needs help, it has no default
            if not (action.help or "").strip():
                missing.append(f"{action.dest} (no help)")
            continue
        if action.required:  # a required flag has no default; usage shows it as required
            continue
        if "default" not in (action.help or ""):
            missing.append("/".join(action.option_strings))
    assert not missing, f"`{path} --help`: flags without a default in their help: {missing}"
    parser.format_help()  # renders: no stray % in a help text


def test_setting_defaults_name_the_variable_and_its_current_value(monkeypatch):
    monkeypatch.delenv("HOTFEED_GATEWAY_HOST", raising=False)
    assert env_default("gateway", "host") == "(default: $HOTFEED_GATEWAY_HOST = 127.0.0.1)"
    monkeypatch.setenv("HOTFEED_GATEWAY_HOST", "0.0.0.0")
    assert env_default("gateway", "host") == "(default: $HOTFEED_GATEWAY_HOST = 0.0.0.0)"
    monkeypatch.setenv("HOTFEED_GATEWAY_PORT", "not-a-port")  # help must not fail on a bad setting
    assert env_default("gateway", "port") == "(default: $HOTFEED_GATEWAY_PORT = not-a-port)"


def test_help_texts_show_variables_not_code_paths():
    for path, parser in COMMANDS.items():
        text = parser.format_help()
        # e.g. settings.gateway.host or <paths.data_dir>: a newcomer cannot set those
        assert not re.search(r"settings\.\w+\.\w+|<paths\.", text), f"`{path} --help` shows a code path"
    host = next(a for a in COMMANDS["hotfeed gateway"]._actions if "--host" in a.option_strings)
    assert "(default: $HOTFEED_GATEWAY_HOST = " in host.help


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"hotfeed {version('hotfeed')}"


def test_demo_help_shows_every_default():
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "demo.py"), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    for flag, default in (("--items", "20000"), ("--users", "8000"), ("--days", "7"), ("--epochs", "2"),
                          ("--requests", "200"), ("--clients", "8")):
        assert flag in proc.stdout
        assert f"(default: {default})" in proc.stdout, f"scripts/demo.py --help: {flag} shows no default"
