"""``gpm fid`` and ``gpm stats``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gpmcli.cli import app
from gpmcli.errors import NotAvailableError


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def fid(gen: str = typer.Argument(..., help="Generated samples: folder, samples.npz or stats .npz."),
        ref: str = typer.Argument(..., help="Reference: folder, samples.npz or stats .npz.")):
    """Frechet distance (Inception or LeNet features), optionally KID and precision/recall/density/coverage."""
    raise NotAvailableError("gpm fid is not available yet")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def stats(src: str = typer.Argument(..., help="Image folder or samples.npz."),
          out: Path = typer.Option(..., "-o", "--out", help="Statistics file to write (.npz).")):
    """Reference statistics (mu, sigma and the pipeline tag) for gpm fid."""
    raise NotAvailableError("gpm stats is not available yet")
