"""Does bf16 autocast of the networks change the samples more than a change of seed does?

    python scripts/precision_check.py [--n-toy 5000] [--n-mnist 2000] [--threads 2]

1. Toy: EDM (18 Heun steps) on GPM's pentagon written as a network (gpmcli.nets.mixture: the exact mixture denoiser
   as linear layers, so autocast acts on it). Sliced Wasserstein (512 projections) between the bf16 and fp32 samples of
   the same seed, next to SW between two fp32 runs with different seeds.
2. MNIST: the shipped ``mnist-wgangp`` generator (``--model gan``), FD-LeNet against the MNIST test set (10,000 digits)
   for fp32 seed 0, bf16 seed 0 and fp32 seed 1; also FD-LeNet between the sample sets directly.

The precision effect is acceptable when it is smaller than the seed-to-seed difference. Prints both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-toy", type=int, default=5000)
    ap.add_argument("--n-mnist", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mnist-test", default=str(ROOT.parent / "shared" / "assets" / "mnist" /
                                                "t10k-images-idx3-ubyte.gz"))
    args = ap.parse_args()

    import numpy as np
    import torch

    from gpmcli import api
    from gpmcli.checkpoint import save_checkpoint
    from gpmcli.metrics.api import fid
    from gpmcli.metrics.sliced import sliced_wasserstein
    from gpmcli.nets.mixture import pentagon_net

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="gpm-precision-"))
    print(f"# {time.strftime('%Y-%m-%d %H:%M %Z')}, torch {torch.__version__}, {args.threads} threads, CPU")

    # ---- toy ----
    net, config = pentagon_net()
    ck = save_checkpoint(tmp / "pentagon-net", net, config)
    runs = {}
    for name, seed, prec in (("fp32", 0, "fp32"), ("bf16", 0, "bf16"), ("fp32-seed1", 1, "fp32")):
        t0 = time.perf_counter()
        api.sample("edm", checkpoint=str(ck), n=args.n_toy, batch_size=args.n_toy, seed=seed, precision=prec,
                   out_dir=tmp / f"toy-{name}", formats=("npz",))
        runs[name] = np.load(tmp / f"toy-{name}" / "samples.npz")["samples"]
        print(f"toy {name:<10} {time.perf_counter() - t0:6.1f} s")

    def sw(a, b):
        return sliced_wasserstein(a, b, 512, generator=torch.Generator().manual_seed(0))

    sw_prec, sw_seed = sw(runs["bf16"], runs["fp32"]), sw(runs["fp32-seed1"], runs["fp32"])
    print(f"toy pentagon, EDM 18 steps, {args.n_toy} samples: SW(bf16, fp32; same seed) = {sw_prec:.4f}, "
          f"SW(fp32 seed 1, fp32 seed 0) = {sw_seed:.4f}; max |bf16 - fp32| per coordinate "
          f"{np.abs(runs['bf16'] - runs['fp32']).max():.3f}")

    # ---- MNIST GAN, FD-LeNet ----
    dirs = {}
    for name, seed, prec in (("fp32", 0, "fp32"), ("bf16", 0, "bf16"), ("fp32-seed1", 1, "fp32")):
        t0 = time.perf_counter()
        d = tmp / f"mnist-{name}"
        api.sample("gan", n=args.n_mnist, batch_size=500, seed=seed, precision=prec, out_dir=d, formats=("npz",))
        dirs[name] = d
        print(f"mnist-wgangp {name:<10} {time.perf_counter() - t0:6.1f} s")
    fd = {k: fid(str(d), args.mnist_test, features="lenet", workers=0)["fd_lenet"] for k, d in dirs.items()}
    direct_prec = fid(str(dirs["bf16"]), str(dirs["fp32"]), features="lenet", workers=0)["fd_lenet"]
    direct_seed = fid(str(dirs["fp32-seed1"]), str(dirs["fp32"]), features="lenet", workers=0)["fd_lenet"]
    print(f"mnist-wgangp (gan), {args.n_mnist} samples, FD-LeNet vs MNIST test: fp32 {fd['fp32']:.2f}, "
          f"bf16 {fd['bf16']:.2f}, fp32 seed 1 {fd['fp32-seed1']:.2f}; |bf16 - fp32| = {abs(fd['bf16'] - fd['fp32']):.2f}"
          f" vs |seed 1 - seed 0| = {abs(fd['fp32-seed1'] - fd['fp32']):.2f}")
    print(f"mnist-wgangp FD-LeNet between sample sets: FD(bf16, fp32; same seed) = {direct_prec:.3f}, "
          f"FD(fp32 seed 1, fp32 seed 0) = {direct_seed:.3f}")


if __name__ == "__main__":
    main()
