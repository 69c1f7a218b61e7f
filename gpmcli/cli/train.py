"""``gpm train``: a thin layer over :func:`gpmcli.train.train`.

Common options are Typer options; each role's own options (``gpmcli.train.RoleSpec.options``) are parsed from the
remaining arguments, so a role module adds options without touching this file. ``gpm train ROLE --help-role`` lists
them.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from gpmcli.cli.base import app, info, out_console, progress_bar
from gpmcli.errors import UsageError


_FLAGS = {"target": "--for"}


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    role: str = typer.Argument(..., help="score | gan | discriminator | score-gan."),
    data: Optional[str] = typer.Option(None, "--data", help="Toy name (pentagon, 8gaussians, ... or toy:FILE.json), "
                                       "mnist, hf:ORG/NAME or an image folder."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output checkpoint directory."),
    target: Optional[str] = typer.Option(None, "--for", help="discriminator: diffflow | discr-flow | ddls."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the MNIST idx files "
                                            "(default: $GPM_DATA)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Resize folder images to this size."),
    steps: int = typer.Option(1000, "--steps", help="Optimiser steps."),
    batch_size: int = typer.Option(128, "-b", "--batch-size", help="Data batch size."),
    lr: float = typer.Option(2e-4, "--lr", help="Adam learning rate."),
    warmup: int = typer.Option(0, "--warmup", help="Linear learning-rate warm-up steps."),
    ema: Optional[float] = typer.Option(None, "--ema", help="EMA decay of the saved weights, e.g. 0.999."),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Clip the gradient norm."),
    seed: int = typer.Option(0, "--seed", help="Seed (initialisation, data order, every random draw)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu|cuda|cuda:N|mps (default: best available)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 (autocast on the networks)."),
    save_every: int = typer.Option(0, "--save-every", help="Write the checkpoint and train_state.pt every N steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --out/train_state.pt up to --steps."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop after this much wall time, "
                                                "writing the checkpoint and train_state.pt at the step reached "
                                                "(continue with --resume; --steps stays the target)."),
    help_role: bool = typer.Option(False, "--help-role", help="List the options of ROLE and exit."),
):
    """Train a network for one of the samplers and write a gpm checkpoint (role options: see --help-role)."""
    from gpmcli.train import get_role, role_key, train as train_api

    key = role_key(role, target)
    spec = get_role(key)
    if help_role:
        for o in spec.options:
            choices = f" [{'|'.join(o.choices)}]" if o.choices else ""
            out_console.print(f"{o.flag}{choices}  {o.help} (default: {o.default})", markup=False)
        return
    args = spec.parse_args(list(ctx.args))
    from gpmcli.api import check_finite, check_seed

    check_finite({"lr": lr, "ema": ema, "grad_clip": grad_clip, "max_minutes": max_minutes})
    check_seed(seed)
    if data is None:
        raise UsageError("gpm train needs --data NAME|PATH (a toy name, mnist, hf:ORG/NAME or an image folder)")
    if out is None:
        raise UsageError("gpm train needs -o OUT (the checkpoint directory to write)")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from gpmcli.data import load_dataset

    dataset = load_dataset(data, data_dir=data_dir, image_size=image_size)
    argv = sys.argv[1:]
    if "train" not in argv:  # called in-process (tests, a Python caller): rebuild the command from the parsed options
        argv = ["train", role] + [tok for k, v in ctx.params.items() if v not in (None, False) and k != "role"
                                  for tok in ([_FLAGS.get(k, f"--{k.replace('_', '-')}")] + ([] if v is True else [str(v)]))]
        argv += list(ctx.args)
    command = "gpm " + " ".join(shlex.quote(str(a)) for a in argv)
    with progress_bar(steps, f"train {key.replace(':', ' ')}") as bar:
        task = bar.add_task("train", total=steps)

        def progress(done: int, total: int, losses: dict) -> None:
            text = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
            bar.update(task, completed=done, total=total, description=f"train {key.replace(':', ' ')} {text}")

        summary = train_api(role, dataset, out, target=target, args=args, data_dir=data_dir, image_size=image_size,
                            progress=progress, steps=steps, batch_size=batch_size, lr=lr, ema=ema, warmup=warmup,
                            seed=seed, device=device, precision=precision, save_every=save_every, resume=resume,
                            command=command, grad_clip=grad_clip, max_minutes=max_minutes)
    losses = " ".join(f"{k} {v:.4g}" for k, v in summary["losses"].items())
    of = "" if summary.get("complete", True) else f" of {summary['target_steps']}; --max-minutes reached, continue with --resume"
    info(f"wrote {out}/ ({summary['steps']} steps{of}, {summary['wall_seconds']:.1f}s on {summary['device']}; {losses})")

