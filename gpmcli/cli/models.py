"""``gpm models list|pull|info|verify``."""

from __future__ import annotations

from typing import Optional

import typer

from gpmcli.cli import app
from gpmcli.errors import NotAvailableError

models_app = typer.Typer(help="List, download, inspect and verify checkpoints.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Bundles in checkpoints/registry.toml and what is in the local cache."""
    raise NotAvailableError("gpm models list is not available yet")


@models_app.command()
def pull(ref: str = typer.Argument(..., help="Bundle name or hf:ORG/NAME[@REV]."),
         force: bool = typer.Option(False, "--force", help="Download again even if cached.")):
    """Download a bundle or repository (pinned revision, sha256 verified)."""
    raise NotAvailableError("gpm models pull is not available yet")


@models_app.command()
def info(ref: str = typer.Argument(..., help="Bundle name, checkpoint dir, weight file or hf:REPO[@REV]."),
         as_json: bool = typer.Option(False, "--json"),
         trust_pickle: bool = typer.Option(False, "--trust-pickle")):
    """Describe a checkpoint, bundle or foreign weight file."""
    raise NotAvailableError("gpm models info is not available yet")


@models_app.command()
def verify(ref: str = typer.Argument(..., help="Bundle name.")):
    """Offline integrity check of cached files against their pinned sha256."""
    raise NotAvailableError("gpm models verify is not available yet")
