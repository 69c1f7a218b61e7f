"""``gpm convert``."""

from __future__ import annotations

from pathlib import Path

import typer

from gpmcli.cli import app
from gpmcli.errors import NotAvailableError


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def convert(src: str = typer.Argument(..., help="Source weights (file, folder or hf: reference)."),
            out: Path = typer.Option(..., "-o", "--out", help="Output checkpoint directory.")):
    """Convert weights from another project into a gpm checkpoint directory."""
    raise NotAvailableError("gpm convert is not available yet")
