"""FID speed: gpm vs pytorch-fid on the same images with the same weights, and the Fréchet step vs scipy's sqrtm.

    python benchmarks/fid.py [--n 10000] [--rounds 2] [--weights pt_inception-2015-12-05-6726825d.pth] [--threads T]
                             [--stages] [--json OUT.json]

Images: N 32x32 RGB PNGs (MNIST test digits padded to 32x32, tinted and laid on a noisy background, seeded), written
once to a temporary folder that both tools read; both resize them to 299x299, so the network cost is that of any
small image. Each round runs the whole ``gpm stats FOLDER --resize torch-bilinear`` command, then pytorch-fid's
``calculate_activation_statistics`` (reference venv, scripts/make_ref_venv.sh; $GPM_REF_PYTHON), each as its own
process timed from outside (interpreter start-up, model build, feature pass and statistics on both sides); the rounds
alternate the two tools (ABAB), so both see the same machine load, and the speed-up is total pytorch-fid time over
total gpm time (per-round ratios are printed too). gpm uses pytorch-fid's resize convention, so the statistics must
agree: the script prints max |d mu|, max |d sigma| and the FD between them. Without --weights both tools load the same
random weights in the FID layout (timing does not depend on the weight values).

``--stages`` times gpm's stages in one process on the first min(N, 200) images: PNG decoding, preprocessing (RGB
tiling, bilinear resize to 299, scaling), the Inception network, the streaming moments, and the Fréchet step.
``--json`` writes every figure of the run.
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


def _images(n: int, mnist: str) -> np.ndarray:
    """N uint8 (N, 3, 32, 32) RGB images: MNIST test digits padded to 32x32, tinted, on a seeded noisy background."""
    from gpmcli.metrics.sources import read_idx_images

    digits = read_idx_images(mnist)
    rng = np.random.default_rng(0)
    idx = np.arange(n) % len(digits)
    d = np.pad(digits[idx, 0].astype(np.float32) / 255.0, ((0, 0), (2, 2), (2, 2)))[:, None]
    fg = rng.uniform(0.3, 1.0, (n, 3, 1, 1))
    bg = rng.uniform(0.0, 0.4, (n, 3, 1, 1)) + rng.normal(0.0, 0.05, (n, 3, 32, 32))
    return np.clip(np.rint(255 * (d * fg + (1 - d) * bg)), 0, 255).astype(np.uint8)


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _stages(folder: Path, weights: str, n: int, batch: int) -> dict:
    """Seconds per 1,000 images of each stage of gpm's feature pass (one process, sequential, no overlap)."""
    import torch

    from gpmcli.metrics.api import _Moments
    from gpmcli.metrics.features import InceptionPipeline
    from gpmcli.metrics.frechet import frechet_distance
    from gpmcli.metrics.sources import _decode

    files = sorted(folder.glob("*.png"))[:n]
    pipe = InceptionPipeline(weights, resize_mode="torch-bilinear", device="cpu")
    t = {"decode": 0.0, "preprocess": 0.0, "network": 0.0, "moments": 0.0}
    mom = _Moments()
    with torch.inference_mode():
        pipe(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))  # warm-up (oneDNN primitive creation)
        for i in range(0, len(files), batch):
            t0 = time.perf_counter()
            imgs = torch.from_numpy(np.stack([_decode(str(f)) for f in files[i:i + batch]]))
            t1 = time.perf_counter()
            x = pipe.preprocess(imgs).contiguous(memory_format=torch.channels_last)
            t2 = time.perf_counter()
            f = pipe.net(x).float()
            t3 = time.perf_counter()
            mom.add(f)
            t4 = time.perf_counter()
            for k, a, b in (("decode", t0, t1), ("preprocess", t1, t2), ("network", t2, t3), ("moments", t3, t4)):
                t[k] += b - a
    mu, sigma = mom.result()
    t0 = time.perf_counter()
    frechet_distance(mu, sigma, mu + 0.01, sigma * 1.1 + np.eye(len(mu)) * 1e-3, warn=False)
    t_fd = time.perf_counter() - t0
    per_k = {k: v / len(files) * 1000 for k, v in t.items()}
    total = sum(per_k.values())
    return {"images": len(files), "batch": batch, "seconds_per_1000_images": per_k,
            "share": {k: v / total for k, v in per_k.items()}, "frechet_seconds_once": t_fd, "load": _load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=2, help="alternations gpm, pytorch-fid (ABAB)")
    ap.add_argument("--batch-size", type=int, default=50, help="images per network call, both tools")
    ap.add_argument("--workers", type=int, default=1, help="decoding processes, both tools")
    ap.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--weights", default=None, help="FID Inception weights file (default: random, same layout)")
    ap.add_argument("--ref-python", default=os.environ.get("GPM_REF_PYTHON"))
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared" / "assets" / "mnist" / "t10k-images-idx3-ubyte.gz"))
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of the Fréchet timing (best is kept)")
    ap.add_argument("--frechet-dim", type=int, default=2048, help="feature dimension of the Fréchet timing")
    ap.add_argument("--skip-network", action="store_true", help="only the Fréchet step")
    ap.add_argument("--stages", action="store_true", help="time gpm's stages (decode, resize, network, moments)")
    ap.add_argument("--json", default=None, help="write the figures of this run to this file")
    args = ap.parse_args()

    import scipy.linalg
    import torch

    from gpmcli.metrics.frechet import frechet_distance

    torch.set_num_threads(args.threads)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "threads": args.threads, "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "load_start": _load()}
    print(f"# threads {args.threads}, torch {torch.__version__}, cpu count {os.cpu_count()}, load average "
          f"{report['load_start']}", flush=True)

    def done() -> None:
        report["load_end"] = _load()
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))

    # ---- Fréchet step at d = 2048 ----
    rng = np.random.default_rng(0)
    d = args.frechet_dim
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
    report["frechet"] = {"d": d, "gpm_s": tg, "scipy_sqrtm_s": ts, "speedup": ts / tg,
                         "relative_difference": abs(fd - fd_ref) / fd_ref}
    print(f"frechet d={d} (best of {args.repeat}): gpm eigh {tg:.2f} s, scipy sqrtm {ts:.2f} s, "
          f"speed-up x{ts / tg:.2f}, relative difference {abs(fd - fd_ref) / fd_ref:.2e}", flush=True)
    if args.skip_network:
        return done()

    # ---- images and weights ----
    from PIL import Image

    imgs = _images(args.n, args.mnist)
    tmp = Path(tempfile.mkdtemp(prefix="gpm-fid-bench-"))
    folder = tmp / "images"
    folder.mkdir()
    for i, im in enumerate(imgs):
        Image.fromarray(im.transpose(1, 2, 0)).save(folder / f"{i:06d}.png")
    weights = args.weights
    if weights is None:
        from tests.test_inception import _random_fid_state_dict

        weights = str(tmp / "random-fid-inception.pth")
        torch.save(_random_fid_state_dict(0), weights)
    report["images"] = {"n": len(imgs), "size": "32x32 RGB PNG", "batch": args.batch_size, "workers": args.workers,
                        "weights": "random FID layout" if args.weights is None else Path(args.weights).name}
    print(f"# {len(imgs)} 32x32 RGB PNGs (-> 299), batch {args.batch_size}, decode workers {args.workers}", flush=True)

    if args.stages:
        st = _stages(folder, weights, min(args.n, 200), args.batch_size)
        report["stages"] = st
        print(f"gpm stages over {st['images']} images (s per 1,000 images; share): " + ", ".join(
            f"{k} {v:.1f} s ({st['share'][k]:.1%})" for k, v in st["seconds_per_1000_images"].items())
            + f"; Fréchet step once {st['frechet_seconds_once']:.2f} s; load {st['load']}", flush=True)

    # ---- feature pass: whole commands, alternating ----
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(args.threads))
    gpm_cmd = [sys.executable, "-m", "gpmcli", "-q", "stats", str(folder), "--inception-weights", weights,
               "--resize", "torch-bilinear", "-b", str(args.batch_size), "--workers", str(args.workers),
               "--device", "cpu", "-o"]
    rounds = []
    for r in range(args.rounds):
        row = {"load_before": _load()}
        t = time.perf_counter()
        p = subprocess.run(gpm_cmd + [str(tmp / "gpm.npz")], env=env, capture_output=True, text=True)
        row["gpm_s"] = time.perf_counter() - t
        if p.returncode != 0:
            print("gpm stats failed:\n" + p.stderr[-3000:])
            return done()
        if not args.ref_python:
            rounds.append(row)
            print(f"round {r + 1}: gpm stats {row['gpm_s']:.1f} s ({len(imgs) / row['gpm_s']:.2f} img/s); pytorch-fid "
                  "skipped (no reference venv: scripts/make_ref_venv.sh, then export GPM_REF_PYTHON)", flush=True)
            continue
        t = time.perf_counter()
        p = subprocess.run([args.ref_python, "-c", REF_CODE, weights, str(folder), str(tmp / "ref.npz"),
                            str(args.batch_size), str(args.workers), str(args.threads)],
                           env=env, capture_output=True, text=True)
        row["pytorch_fid_s"] = time.perf_counter() - t
        if p.returncode != 0:
            print("pytorch-fid failed:\n" + p.stderr[-3000:])
            return done()
        row["load_after"] = _load()
        row["ratio"] = row["pytorch_fid_s"] / row["gpm_s"]
        rounds.append(row)
        print(f"round {r + 1}: gpm stats {row['gpm_s']:.1f} s ({len(imgs) / row['gpm_s']:.2f} img/s), pytorch-fid "
              f"{row['pytorch_fid_s']:.1f} s ({len(imgs) / row['pytorch_fid_s']:.2f} img/s): x{row['ratio']:.2f}; "
              f"load {row['load_before']} -> {row['load_after']}", flush=True)
    report["rounds"] = rounds
    if args.ref_python:
        tg = sum(r["gpm_s"] for r in rounds)
        tr = sum(r["pytorch_fid_s"] for r in rounds)
        from gpmcli.metrics.sources import load_stats

        st = load_stats(tmp / "gpm.npz")
        ref = np.load(tmp / "ref.npz")
        agree = {"fd": frechet_distance(st.mu, st.sigma, ref["mu"], ref["sigma"], warn=False),
                 "max_abs_mu": float(np.abs(st.mu - ref["mu"]).max()),
                 "max_abs_sigma": float(np.abs(st.sigma - ref["sigma"]).max())}
        report.update(speedup=tr / tg, gpm_img_per_s=len(imgs) * len(rounds) / tg,
                      pytorch_fid_img_per_s=len(imgs) * len(rounds) / tr, agreement=agree)
        print(f"speed-up gpm stats vs pytorch-fid over {len(rounds)} rounds: x{tr / tg:.2f} "
              f"({report['gpm_img_per_s']:.2f} vs {report['pytorch_fid_img_per_s']:.2f} img/s)")
        print(f"statistics: max |mu diff| {agree['max_abs_mu']:.2e}, max |sigma diff| {agree['max_abs_sigma']:.2e}, "
              f"FD(gpm, pytorch-fid) {agree['fd']:.3e}")
    done()


if __name__ == "__main__":
    main()
