"""Check the shipped converted MNIST checkpoints against what their SOURCE.txt files report.

    PYTHONPATH=. python scripts/check_converted_assets.py [--assets ../shared/assets] [-n 2000]

Prints LeNet test accuracy (SOURCE: 99.08%), mean discriminator outputs on real test digits and on generator
samples, and the class histogram of generator samples as LeNet sees it (SOURCE: WGAN-GP has all 10 classes, the MLP
GAN is about 36% ones).
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gpmcli.registry import load_bundle


def idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", default="../shared/assets")
    ap.add_argument("-n", type=int, default=2000, help="generator samples per GAN")
    a = ap.parse_args()
    mn = Path(a.assets) / "mnist"
    x01 = torch.from_numpy(idx(mn / "t10k-images-idx3-ubyte.gz").copy()).float().div(255).unsqueeze(1)
    y = torch.from_numpy(idx(mn / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    lenet = load_bundle("mnist-lenet")["classifier"].module

    def classify(img01):
        return lenet(F.interpolate(img01, size=32, mode="bilinear", align_corners=False)).argmax(1)

    with torch.no_grad():
        acc = (classify(x01) == y).float().mean().item()
        print(f"mnist-lenet: test accuracy {acc:.2%} (10,000 digits)")
        d = load_bundle("mnist-dcgan-netd")["discriminator"].module
        print(f"mnist-dcgan-netd: mean sigmoid(D) on real digits in [0,1] {torch.sigmoid(d(x01)).mean():.3f}, "
              f"in [-1,1] {torch.sigmoid(d(2 * x01 - 1)).mean():.3f}")
        for name in ("mnist-mlp-gan", "mnist-wgangp"):
            b = load_bundle(name)
            G, D = b["generator"].module, b["discriminator"].module
            out = b["discriminator"].config["output"]
            f = (lambda v: torch.sigmoid(v)) if out == "logit" else (lambda v: v)
            z = torch.randn(a.n, *b["generator"].config["latent"]["shape"], generator=torch.Generator().manual_seed(0))
            g = G(z)
            hist = torch.bincount(classify((g + 1) / 2), minlength=10).tolist()
            what = "sigmoid(D)" if out == "logit" else "critic"
            print(f"{name}: mean {what} on real {f(D(2 * x01 - 1)).mean():.3f}, on samples {f(D(g)).mean():.3f}; "
                  f"LeNet classes of {a.n} samples {hist}")


if __name__ == "__main__":
    main()
