"""``gpm fid`` and ``gpm stats``: thin wrappers over :mod:`gpmcli.metrics.api`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from gpmcli.cli.base import app, info, out_console

_FEATURES_HELP = "Feature network: inception (FID Inception-v3, 2048-d) or lenet (MNIST LeNet-5 f6, 84-d: FD-LeNet)."
_WEIGHTS_HELP = ("FID Inception-v3 weights: a local pt_inception-2015-12-05-6726825d.pth (pytorch-fid) or "
                 "weights-inception-2015-12-05-6726825d.pth (torch-fidelity), or hf:ORG/NAME\\[@REV]/FILE. "
                 "Default: $GPM_INCEPTION_WEIGHTS.")
_LENET_HELP = ("LeNet-5 weights for --features lenet: registry bundle, checkpoint folder or csinva .pth file "
               "(default: the mnist-lenet bundle).")
_RESIZE_HELP = "Resize to 299: tf1 (TTUR/torch-fidelity numbers) or torch-bilinear (pytorch-fid numbers)."


def _device(device: Optional[str]):
    from gpmcli.distributed import context

    dev = context().resolve_device(device)  # under accelerate launch: this rank's device
    if dev is not None:
        return dev
    if device in (None, "", "auto"):
        return None
    from gpmcli.device import resolve_device

    resolve_device(device)  # one line, exit 2, for a device that is not there (as `gpm sample` does)
    return device


@app.command()
def fid(
    gen: str = typer.Argument(..., help="Generated samples: image folder, samples.npz or statistics .npz."),
    ref: str = typer.Argument(..., help="Reference: image folder, samples.npz or statistics .npz (from gpm stats)."),
    features: str = typer.Option("inception", "--features", help=_FEATURES_HELP),
    inception_weights: Optional[str] = typer.Option(None, "--inception-weights", help=_WEIGHTS_HELP),
    lenet_weights: Optional[str] = typer.Option(None, "--lenet-weights", help=_LENET_HELP),
    resize: str = typer.Option("tf1", "--resize", help=_RESIZE_HELP),
    n: Optional[int] = typer.Option(None, "-n", "--n", min=2, help="Use at most N images from each side."),
    batch_size: int = typer.Option(100, "-b", "--batch-size", min=1, help="Images per network call."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: cuda if present)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Processes decoding image files."),
    kid: bool = typer.Option(False, "--kid", help="Also KID (100 subsets of 1000)."),
    prdc: bool = typer.Option(False, "--prdc", help="Also precision/recall (k=3) and density/coverage (k=5)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the KID subset draws."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (pipeline id, weights sha256, N, ...)."),
):
    """Frechet distance of GEN vs REF (Inception FID or FD-LeNet), optionally KID and precision/recall/density/coverage."""
    from gpmcli.metrics.api import fid as run_fid

    from gpmcli.distributed import context

    dist = context()  # under accelerate launch: feature batches shared out, every rank ends with the same statistics
    with dist.collective():
        res = run_fid(gen, ref, features=features, inception_weights=inception_weights, lenet_weights=lenet_weights,
                      resize=resize, n=n, batch_size=batch_size, device=_device(device), workers=workers, kid=kid,
                      prdc=prdc, seed=seed)
    if not dist.is_main:
        return
    res["processes"] = dist.world
    if as_json:
        print(json.dumps(res, sort_keys=True))
        return
    key = "fid" if "fid" in res else "fd_lenet"
    label = "FID" if key == "fid" else "FD-LeNet"
    out_console.print(f"{label}: {res[key]:.4f}")
    if kid:
        out_console.print(f"KID: {res['kid_mean']:.6f} ± {res['kid_std']:.6f}")
    if prdc:
        out_console.print(f"precision: {res['precision']:.4f}  recall: {res['recall']:.4f}  "
                          f"density: {res['density']:.4f}  coverage: {res['coverage']:.4f}")
    info(f"pipeline {res['pipeline']}, N = {res['n_gen']} / {res['n_ref']}, "
         f"weights sha256 {str(res['weights_sha256'])[:12]}")


@app.command()
def stats(
    src: str = typer.Argument(..., help="Image folder or samples.npz."),
    out: Path = typer.Option(..., "-o", "--out", help="Statistics file to write (.npz)."),
    features: str = typer.Option("inception", "--features", help=_FEATURES_HELP),
    inception_weights: Optional[str] = typer.Option(None, "--inception-weights", help=_WEIGHTS_HELP),
    lenet_weights: Optional[str] = typer.Option(None, "--lenet-weights", help=_LENET_HELP),
    resize: str = typer.Option("tf1", "--resize", help=_RESIZE_HELP),
    n: Optional[int] = typer.Option(None, "-n", "--n", min=2, help="Use at most N images."),
    batch_size: int = typer.Option(100, "-b", "--batch-size", min=1, help="Images per network call."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, ... (default: cuda if present)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Processes decoding image files."),
):
    """Reference statistics (mu, sigma, N and the pipeline tag) for gpm fid."""
    from gpmcli.errors import UsageError
    from gpmcli.metrics.api import compute_stats
    from gpmcli.metrics.sources import save_stats

    if out.suffix != ".npz":
        raise UsageError(f"-o must name a .npz file, not {out}")
    from gpmcli.distributed import context

    dist = context()
    with dist.collective():
        st = compute_stats(src, features=features, inception_weights=inception_weights, lenet_weights=lenet_weights,
                           resize=resize, n=n, batch_size=batch_size, device=_device(device), workers=workers)
        if dist.is_main:
            save_stats(out, st)
    if not dist.is_main:
        return
    info(f"wrote {out}: N = {st.n}, {st.dim}-d features, pipeline {st.pipeline}")
