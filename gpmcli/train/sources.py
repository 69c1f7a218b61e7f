"""Training data for the GAN-family trainers: ``batch(n, rng)`` draws ``n`` examples with the trainer's generator."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from gpmcli.errors import UsageError


class ToySource:
    """Exact samples of an analytic target (``toy:NAME``): a fresh draw every batch."""

    def __init__(self, name: str):
        from gpmcli.fields.toy import load_toy

        self.name = name
        self.gm = load_toy(name)
        self.shape = (self.gm.dim,)
        self.range = None
        self.dataset = f"toy:{name}"

    def batch(self, n: int, rng: torch.Generator) -> torch.Tensor:
        return self.gm.sample(n, generator=rng).float()


class TensorSource:
    """Uniform random minibatches (with replacement) of a tensor of examples."""

    def __init__(self, x: torch.Tensor, *, dataset: str, range_=(-1.0, 1.0)):
        self.x, self.dataset, self.range = x, dataset, list(range_) if range_ else None
        self.shape = tuple(x.shape[1:])

    def batch(self, n: int, rng: torch.Generator) -> torch.Tensor:
        return self.x[torch.randint(len(self.x), (n,), generator=rng)]


def _read_idx_images(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if int.from_bytes(data[:4], "big") != 2051:
        raise UsageError(f"{path}: not an idx3 image file")
    n, h, w = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, h, w)


def mnist32(data_dir: str | Path) -> TensorSource:
    """MNIST training images padded to 32x32 and scaled to [-1, 1] (GPM's convention)."""
    d = Path(data_dir)
    for name in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"):
        if (d / name).is_file():
            img = _read_idx_images(d / name)
            break
    else:
        raise UsageError(f"no MNIST train-images-idx3-ubyte[.gz] in {d}; pass --data-dir or set $GPM_DATA")
    x = torch.from_numpy(img.copy()).float().div(255.0).mul(2).sub(1)
    x = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)[:, None]
    return TensorSource(x, dataset="mnist")
