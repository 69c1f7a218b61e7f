import os
import sys
from pathlib import Path

import pytest
import torch

# Tiny networks: one intra-op thread is fastest, and pytest-xdist already runs one worker per core.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT.parent / "shared" / "assets"

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/hubserver.py, tests/hub_fixtures.py
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from hub_fixtures import hub_server  # noqa: E402,F401


@pytest.fixture
def one_thread():
    """Tiny networks: one intra-op thread is faster, and much faster on a loaded machine (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def assets() -> Path:
    if not ASSETS.is_dir():
        pytest.skip(f"shared assets not found at {ASSETS}")
    return ASSETS


@pytest.fixture
def cli():
    """Run the gpm CLI in-process; returns (exit_code, stdout, stderr).

    A gpm error becomes its documented exit code and its one-line message on stderr, as with the real ``gpm``."""
    from typer.testing import CliRunner

    from gpmcli.cli import app
    from gpmcli.errors import GpmError

    def run(*args: str):
        runner = CliRunner()
        res = runner.invoke(app, [str(a) for a in args], catch_exceptions=True)
        exc = res.exception
        if exc is not None and not isinstance(exc, SystemExit):
            if isinstance(exc, GpmError):
                return exc.exit_code, res.stdout, res.stderr + f"error: {exc}\n"
            raise exc
        return res.exit_code, res.stdout, res.stderr

    return run
