"""Sampling speed on full-size architectures: gpm vs the reference loops on the same network, equal NFE.

    python benchmarks/realsize.py [--repos cifar10,church] [--batch 64] [--steps 2] [--edm-steps 2] [--rounds 2]
                                  [--threads T] [--device cpu|cuda] [--json OUT.json]

For each replica (random weights, the published UNet2DModel config of ``google/ddpm-cifar10-32``, 35.7 M parameters,
and of ``google/ddpm-ema-church-256``, 113.7 M; see ``tests/replicas.py``):

1. the replica's Hub folder is written to a temporary directory and converted with the user's command,
   ``gpm convert FOLDER --from diffusers -o CKPT``; gpm loads that checkpoint as ``gpm sample -c CKPT`` does
   (including the fixed-row network chunks it uses for batch-size determinism);
2. ``ancestral``: gpm's ``ancestral`` sampler with ``--steps S`` vs diffusers' ``DDPMPipeline`` (the same UNet module,
   the published ``DDPMScheduler``) with ``num_inference_steps=S``: S network evaluations each;
3. ``edm``: gpm's ``edm`` sampler with ``--steps N`` vs a plain Heun loop written here (k-diffusion's ``sample_heun``
   shape, no churn) on the same network through a minimal epsilon-to-denoiser wrapper and the same rho-ladder:
   2N - 1 evaluations each.

The two sides of each pair alternate round by round (so both see the same machine load) and the best round of each
is kept; ``speed = reference time / gpm time`` (>= 1: gpm at least as fast). Peak memory of each side: the resident
set high-water mark, reset before the side's first round (``/proc/self/clear_refs``) on CPU;
``torch.cuda.max_memory_allocated`` on CUDA. Each replica runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

REPOS = {"cifar10": "google/ddpm-cifar10-32", "church": "google/ddpm-ema-church-256"}


# ---------------------------------------------------------------------------------------------------------------------
# memory

def _reset_peak(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass


def _peak_mb(dev) -> float | None:
    import torch

    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ---------------------------------------------------------------------------------------------------------------------
# the reference Heun loop (independent of gpm's code)

def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float):
    import torch

    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)])


class EpsToDenoiser:
    """``D(x, s) = x - s * eps(x / sqrt(1 + s^2), t(s))``, t by interpolating the training steps in log sigma."""

    def __init__(self, unet, alphas_cumprod):
        import numpy as np

        self.unet = unet
        ac = np.asarray(alphas_cumprod, dtype=np.float64)
        self.log_sigmas = 0.5 * (np.log1p(-ac) - np.log(ac))

    def __call__(self, x, sigma: float):
        import numpy as np
        import torch

        t = float(np.interp(np.log(sigma), self.log_sigmas, np.arange(len(self.log_sigmas))))
        eps = self.unet(x / (1.0 + sigma**2) ** 0.5, torch.full((x.shape[0],), t, device=x.device)).sample
        return x - sigma * eps


def plain_heun(denoiser, x, sigmas):
    """Karras et al. (2022) Algorithm 1 with Heun's correction; 2 N - 1 evaluations for N noise levels."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = (x - denoiser(x, s)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d_next = (x_next - denoiser(x_next, s_next)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d_next)
        x = x_next
    return x


# ---------------------------------------------------------------------------------------------------------------------
# one replica, in its own process

def worker(args) -> dict:
    import diffusers
    import torch

    import replicas
    from gpmcli.noise import BatchNoise
    from gpmcli.precision import apply_to_bundle, net_chunk
    from gpmcli.registry import load_bundle
    from gpmcli.samplers import get_kind

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    repo = REPOS[args.worker]
    files, unet = replicas.replica_files(repo)
    n_params = sum(p.numel() for p in unet.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        src, ck = Path(tmp) / "repo", Path(tmp) / "ck"
        src.mkdir()
        for name, data in files.items():
            (src / name).write_bytes(data)
        del files
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "gpmcli", "-q", "convert", str(src), "--from", "diffusers",
                            "-o", str(ck)], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"gpm convert failed: {r.stderr.strip()}")
        convert_s = time.perf_counter() - t0
        bundle = load_bundle(str(ck), device=dev)
    chunk = net_chunk(dev)
    apply_to_bundle(bundle, batch=args.batch, device=dev, chunk=chunk)
    unet = unet.to(dev).eval()
    sched_cfg = {k: v for k, v in replicas.REPOS[repo][1].items() if not k.startswith("_")}
    b = args.batch
    out = {"repo": repo, "parameters": n_params, "batch": b, "gpm_chunk": chunk, "convert_s": convert_s}

    def pair(run_gpm, run_ref) -> dict:
        times = {"gpm": [], "ref": []}
        peaks = {}
        for r in range(args.rounds):
            for side, fn in (("gpm", run_gpm), ("ref", run_ref)):
                if r == 0:
                    _reset_peak(dev)
                _sync(dev)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    nfe = fn(r)
                _sync(dev)
                times[side].append(time.perf_counter() - t0)
                if r == 0:
                    peaks[side] = _peak_mb(dev)
                peak = f", peak {peaks[side]:.0f} MiB" if r == 0 and peaks.get(side) is not None else ""
                print(f"  {side} round {r}: {times[side][-1]:.1f} s (NFE {nfe}){peak}", file=sys.stderr, flush=True)
        return {"gpm_s": min(times["gpm"]), "ref_s": min(times["ref"]), "speed": min(times["ref"]) / min(times["gpm"]),
                "gpm_rounds_s": times["gpm"], "ref_rounds_s": times["ref"], "nfe": nfe,
                "gpm_peak_mb": peaks.get("gpm"), "ref_peak_mb": peaks.get("ref")}

    if "ancestral" in args.cases:  # ancestral vs DDPMPipeline
        anc = get_kind("ancestral").build(bundle, {"steps": args.steps})
        pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler.from_config(sched_cfg)).to(dev)
        pipe.set_progress_bar_config(disable=True)

        def gpm_anc(r):
            return anc(BatchNoise(r, range(b), dev)).nfe

        def ref_anc(r):
            pipe(batch_size=b, num_inference_steps=args.steps, generator=torch.Generator(dev).manual_seed(r),
                 output_type="np")
            return args.steps

        print(f"{repo}: ancestral vs DDPMPipeline, {args.steps} steps, batch {b}", file=sys.stderr, flush=True)
        out["ancestral"] = pair(gpm_anc, ref_anc)

    if "edm" in args.cases:  # edm vs a plain Heun loop
        edm = get_kind("edm").build(bundle, {"steps": args.edm_steps})
        res = edm.resolved
        sigmas = karras_sigmas(args.edm_steps, res["sigma_min"], res["sigma_max"], res["rho"])
        den = EpsToDenoiser(unet, diffusers.DDPMScheduler.from_config(sched_cfg).alphas_cumprod.numpy())
        shape = (b, *bundle["score"].config["data"]["shape"])

        def gpm_edm(r):
            return edm(BatchNoise(r, range(b), dev)).nfe

        def ref_edm(r):
            g = torch.Generator(dev).manual_seed(r)
            x = torch.randn(shape, generator=g, device=dev) * float(sigmas[0])
            plain_heun(den, x, sigmas)
            return 2 * args.edm_steps - 1

        print(f"{repo}: edm vs plain Heun, {args.edm_steps} noise levels, batch {b}", file=sys.stderr, flush=True)
        out["edm"] = pair(gpm_edm, ref_edm)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# driver

def run(args) -> dict:
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": args.device,
               "threads": args.threads, "machine": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "replicas": {}}
    for name in args.repos.split(","):
        cmd = [sys.executable, __file__, "--worker", name, "--device", args.device, "--threads", str(args.threads),
               "--batch", str(args.batch), "--steps", str(args.steps), "--edm-steps", str(args.edm_steps),
               "--rounds", str(args.rounds), "--cases", args.cases]
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(args.threads))
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        if r.returncode != 0:
            results["replicas"][name] = {"error": f"worker exited {r.returncode}"}
            continue
        results["replicas"][name] = json.loads(r.stdout.strip().splitlines()[-1])
    results["load_after"] = os.getloadavg()[0]
    return results


def report(results: dict) -> None:
    print(f"\n{results['date']}  device {results['device']}  threads {results['threads']}  "
          f"load {results['load_before']:.1f} -> {results['load_after']:.1f}")
    for name, res in results["replicas"].items():
        if "error" in res:
            print(f"{name}: {res['error']}")
            continue
        print(f"{res['repo']} ({res['parameters']:,} parameters), batch {res['batch']}, gpm network chunk "
              f"{res['gpm_chunk']}")
        for case, ref in (("ancestral", "diffusers DDPMPipeline"), ("edm", "plain Heun loop")):
            if case not in res:
                continue
            c = res[case]
            mem = (f"; peak memory gpm {c['gpm_peak_mb']:.0f} MiB, reference {c['ref_peak_mb']:.0f} MiB"
                   if c["gpm_peak_mb"] is not None else "")
            print(f"  gpm {case} {c['gpm_s']:.1f} s vs {ref} {c['ref_s']:.1f} s at NFE {c['nfe']}: "
                  f"speed x{c['speed']:.2f}{mem}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repos", default="cifar10,church", help="comma-separated: cifar10, church")
    ap.add_argument("--cases", default="ancestral,edm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=21, help="ancestral steps (= NFE; gpm's VP ladder needs > 20)")
    ap.add_argument("--edm-steps", type=int, default=2, help="EDM noise levels (NFE 2N - 1)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = run(args)
    report(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
