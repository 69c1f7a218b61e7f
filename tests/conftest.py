import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT.parent / "shared" / "assets"


@pytest.fixture
def assets() -> Path:
    if not ASSETS.is_dir():
        pytest.skip(f"shared assets not found at {ASSETS}")
    return ASSETS


@pytest.fixture
def cli():
    """Run the gpm CLI in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from gpmcli.cli import app

    def run(*args: str):
        runner = CliRunner()
        try:
            res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        except SystemExit as e:  # GpmTyper exits with the documented code
            return int(e.code or 0), "", ""
        return res.exit_code, res.stdout, res.stderr

    return run
