"""Why FD-LeNet crops gpm's 32x32 MNIST samples to 28x28: the same digits in two frames, and one model both ways.

    python scripts/lenet_frame_check.py [-n 1000] [--threads 1]

gpm's MNIST data is the 28x28 digits zero-padded by 2 (``gpmcli.data.mnist_to_gpm``); the reference test digits and
the csinva LeNet's training images are 28x28 resized to 32x32. Prints FD-LeNet to the 10,000 MNIST test digits of
(a) the first 10,000 *training* digits in gpm's 32x32 format, fed whole and cropped back to 28x28 (a perfect model's
figure under each protocol), and (b) ``-n`` samples of ``mnist-edm`` (``edm`` defaults, seed 0), both ways, from the
same samples. 2026-12-04 (N = 1,000, one thread): training digits 11.469 whole / 1.208 cropped; ``mnist-edm`` 18.869
whole / 7.006 cropped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import eval_mnist_lenet as E  # noqa: E402
from gpmcli.api import resolve_bundle, with_bundle_defaults  # noqa: E402
from gpmcli.data import load_mnist_images  # noqa: E402
from gpmcli.noise import BatchNoise  # noqa: E402
from gpmcli.samplers import get_kind  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "assets" / "mnist"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    ref = Path(a.data_dir) / "t10k-images-idx3-ubyte.gz"
    out = {}
    train = load_mnist_images(a.data_dir, "train")[:10000]
    b = resolve_bundle("edm", "mnist-edm", None, device="cpu")
    sampler = get_kind("edm").build(b, with_bundle_defaults(b, "edm", {}))
    x = torch.cat([sampler(BatchNoise(0, range(i, min(a.n, i + 250)))).x for i in range(0, a.n, 250)]).clamp(-1, 1)
    for crop in (False, True):
        key = "cropped" if crop else "whole"
        out[f"train_10000_{key}"] = E.fd_lenet_of(train, (-1, 1), ref, crop)["fd_lenet"]
        out[f"mnist_edm_{a.n}_{key}"] = E.fd_lenet_of(x, (-1, 1), ref, crop)["fd_lenet"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
