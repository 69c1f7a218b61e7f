"""FID speed: gpm vs pytorch-fid on the same images with the same weights, and the Fréchet step vs scipy's sqrtm.

    python benchmarks/fid.py [--n 10000] [--weights pt_inception-2015-12-05-6726825d.pth] [--threads T]

Images: the first N MNIST test digits (28x28 grayscale; both tools tile them to RGB and resize to 299, so the network
cost is that of any image size) written once as PNGs to a temporary folder; both tools read that folder.
pytorch-fid runs in the reference venv (scripts/make_ref_venv.sh; $GPM_REF_PYTHON) as a subprocess; its wall time is
measured inside that process (model build + feature pass + statistics, no interpreter start-up). gpm uses
``--resize torch-bilinear`` (pytorch-fid's convention), so the two statistics must agree: the script prints the FD
between them (≈ 0). Without --weights both use the same random weights in the FID layout (timing does not depend on
the weight values). Prints ratios measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _early_threads() -> None:
    """Pin BLAS/OpenMP threads before numpy/torch load (oversubscribed BLAS threads make timings meaningless)."""
    n = None
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            n = sys.argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    n = n or str(max(1, min(4, os.cpu_count() or 1)))
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = n


_early_threads()
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REF_CODE = r"""
import sys, time, json
import numpy as np, torch
t0 = time.perf_counter()
import pytorch_fid.inception as inc
from pytorch_fid.fid_score import calculate_activation_statistics
weights, folder, out, bs, workers, threads = sys.argv[1:7]
torch.set_num_threads(int(threads))
inc.load_state_dict_from_url = lambda *a, **k: torch.load(weights, map_location="cpu", weights_only=True)
import pathlib
files = sorted(str(p) for p in pathlib.Path(folder).glob("*.png"))
model = inc.InceptionV3([inc.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
mu, sigma = calculate_activation_statistics(files, model, int(bs), 2048, "cpu", int(workers))
t1 = time.perf_counter()
np.savez(out, mu=mu, sigma=sigma)
print(json.dumps({"seconds": t1 - t0}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--weights", default=None, help="FID Inception weights file (default: random, same layout)")
    ap.add_argument("--ref-python", default=os.environ.get("GPM_REF_PYTHON"))
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared" / "assets" / "mnist" / "t10k-images-idx3-ubyte.gz"))
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of the Fréchet timing (best is kept)")
    ap.add_argument("--skip-network", action="store_true", help="only the Fréchet step")
    args = ap.parse_args()

    import scipy.linalg
    import torch

    from gpmcli.metrics.frechet import frechet_distance

    torch.set_num_threads(args.threads)
    print(f"# threads {args.threads}, torch {torch.__version__}, cpu count {os.cpu_count()}", flush=True)

    # ---- Fréchet step at d = 2048 ----
    rng = np.random.default_rng(0)
    d = 2048
    a, b = rng.standard_normal((d, 2 * d)), rng.standard_normal((d, 2 * d)) * 0.8 + 0.1
    s1, s2 = np.cov(a), np.cov(b)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    t_gpm, t_sqrtm = [], []
    for _ in range(args.repeat):  # alternate the two, keep the best of each (shared machines are noisy)
        t = time.perf_counter()
        fd = frechet_distance(mu1, s1, mu2, s2)
        t_gpm.append(time.perf_counter() - t)
        t = time.perf_counter()
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        fd_ref = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))
        t_sqrtm.append(time.perf_counter() - t)
    tg, ts = min(t_gpm), min(t_sqrtm)
    print(f"frechet d={d} (best of {args.repeat}): gpm eigh {tg:.2f} s, scipy sqrtm {ts:.2f} s, "
          f"speed-up x{ts / tg:.2f}, relative difference {abs(fd - fd_ref) / fd_ref:.2e}", flush=True)
    if args.skip_network:
        return

    # ---- feature pass on N images ----
    from PIL import Image

    from gpmcli.metrics.api import compute_stats
    from gpmcli.metrics.features import InceptionPipeline
    from gpmcli.metrics.sources import read_idx_images

    imgs = read_idx_images(args.mnist)[: args.n]
    tmp = Path(tempfile.mkdtemp(prefix="gpm-fid-bench-"))
    folder = tmp / "images"
    folder.mkdir()
    for i, im in enumerate(imgs):
        Image.fromarray(im[0]).save(folder / f"{i:06d}.png")
    weights = args.weights
    if weights is None:
        from tests.test_inception import _random_fid_state_dict

        weights = str(tmp / "random-fid-inception.pth")
        torch.save(_random_fid_state_dict(0), weights)
    print(f"# {len(imgs)} MNIST PNGs (28x28 gray -> 299 RGB), batch {args.batch_size}, decode workers {args.workers}",
          flush=True)

    t = time.perf_counter()
    pipe = InceptionPipeline(weights, resize_mode="torch-bilinear", device="cpu")
    st = compute_stats(str(folder), pipeline=pipe, batch_size=args.batch_size, workers=args.workers)
    t_g = time.perf_counter() - t
    print(f"gpm:         {t_g:8.1f} s  ({len(imgs) / t_g:.1f} img/s)", flush=True)

    if not args.ref_python:
        print("pytorch-fid: skipped (no reference venv: scripts/make_ref_venv.sh, then export GPM_REF_PYTHON)")
        return
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(args.threads))
    r = subprocess.run([args.ref_python, "-c", REF_CODE, weights, str(folder), str(tmp / "ref.npz"),
                        str(args.batch_size), str(args.workers), str(args.threads)],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print("pytorch-fid failed:\n" + r.stderr[-3000:])
        return
    t_r = json.loads(r.stdout.strip().splitlines()[-1])["seconds"]
    ref = np.load(tmp / "ref.npz")
    print(f"pytorch-fid: {t_r:8.1f} s  ({len(imgs) / t_r:.1f} img/s)")
    print(f"speed-up gpm vs pytorch-fid: x{t_r / t_g:.2f}")
    agree = frechet_distance(st.mu, st.sigma, ref["mu"], ref["sigma"], warn=False)
    print(f"FD(gpm stats, pytorch-fid stats) = {agree:.3e}; max |mu diff| = {np.abs(st.mu - ref['mu']).max():.2e}")


if __name__ == "__main__":
    main()
