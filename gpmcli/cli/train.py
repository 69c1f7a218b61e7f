"""``gpm train``."""

from __future__ import annotations

import typer

from gpmcli.cli import app
from gpmcli.errors import NotAvailableError


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(role: str = typer.Argument(..., help="score | gan | discriminator | score-gan.")):
    """Train a network for one of the samplers and write a gpm checkpoint."""
    raise NotAvailableError("gpm train is not available yet")
