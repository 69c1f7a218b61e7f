"""Small helpers the CLI tests share (imported as ``from clitools import ...``; conftest puts tests/ on sys.path)."""

from __future__ import annotations


def gpm(*args) -> int:
    """Run the gpm CLI in-process, as the console script does (GpmTyper maps errors to exit codes); the exit code."""
    from gpmcli.cli import app

    try:
        app([str(a) for a in args], prog_name="gpm")
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def kind_available(name: str) -> bool:
    """Whether ``gpm sample --model NAME`` exists on this build."""
    from gpmcli.errors import UsageError
    from gpmcli.samplers import get_kind

    try:
        get_kind(name)
        return True
    except UsageError:
        return False
