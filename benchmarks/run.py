"""The benchmark suite: one command, every ratio measured in the same run.

    python benchmarks/run.py [--quick] [--device cpu|cuda] [--threads T] [--only SECTION,...] [--json OUT.json]

Sections (each case runs in a fresh worker process, so peak memory and compile caches are its own):

- ``overhead``   every sampler's wall time over the time of its own network evaluations (benchmarks/samplers.py)
- ``fid``        gpm's Fréchet step vs scipy sqrtm, and gpm's feature pass (benchmarks/fid.py)
- ``diffusers``  gpm ``ancestral`` vs diffusers' DDPMPipeline on the same UNet and scheduler at equal NFE
- ``realsize``   the same on full-size replicas (``google/ddpm-cifar10-32``, ``google/ddpm-ema-church-256``): gpm
                 ``ancestral`` vs DDPMPipeline and gpm ``edm`` vs a plain Heun loop, batch 64, peak memory of each
                 (benchmarks/realsize.py; ``--quick``: the CIFAR-10 replica, EDM only, batch 16)
- ``precision``  fp32 vs bf16 autocast of the network (steady-state batch time)
- ``compile``    eager vs torch.compile: the first batch (pays compilation) and the steady state
- ``processes``  ``gpm sample`` in 1 process (T threads) vs ``accelerate launch`` 2 processes (T/2 threads each):
                 whole command and sampling phase (from run.json)
- peak memory of every worker: ru_maxrss on CPU, torch.cuda.max_memory_allocated on CUDA

Every ratio is printed again at the end and written, with the raw times, the machine and the load average, as JSON
(``--json``, default runs/benchmarks.json). ``--quick``: small UNet, 50 images and one ABAB round for the FID pass, a
d = 512 Fréchet step.

The network is a random-init diffusers UNet2DModel (3x32x32, channels 32/64; ``--quick``: 1x16x16, 16/32) read as an
eps field on the DDPM linear schedule. Timings on a shared machine drift; the script prints the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------------------------------
# worker side (one case per process)

def _unet(quick: bool, device):
    import diffusers
    import torch

    torch.manual_seed(0)
    if quick:
        kw = dict(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(16, 32), norm_num_groups=8)
    else:
        kw = dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64), norm_num_groups=8)
    unet = diffusers.UNet2DModel(layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), **kw).to(device).eval()
    shape = (kw["in_channels"], kw["sample_size"], kw["sample_size"])
    return unet, shape


def _sched(steps: int) -> dict:
    """DDPM's linear schedule stretched to ``steps`` training steps (betas capped so that every one is < 1)."""
    return {"num_train_timesteps": steps, "beta_start": min(2e-3, 0.1 / steps), "beta_end": min(0.2, 20.0 / steps),
            "beta_schedule": "linear"}


def _peak(device) -> dict:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(case: str, args) -> dict:
    import torch

    from gpmcli.fields.base import Bundle
    from gpmcli.fields.score import eps_component
    from gpmcli.noise import BatchNoise
    from gpmcli.precision import apply_to_bundle
    from gpmcli.samplers import get_kind

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    unet, shape = _unet(args.quick, dev)
    b = args.batch
    if case == "diffusers":
        import diffusers

        steps = args.ddpm_steps
        sched_cfg = _sched(steps)
        comp = eps_component(unet, sched_cfg, data_shape=shape, ref="bench-unet")
        sampler = get_kind("ancestral").build(Bundle("bench", {"score": comp}), {"steps": steps})
        sched = diffusers.DDPMScheduler(**sched_cfg, clip_sample=False)
        pipe = diffusers.DDPMPipeline(unet=unet, scheduler=sched).to(dev)
        pipe.set_progress_bar_config(disable=True)
        t_g, t_d = [], []
        for r in range(args.repeats):  # alternate, keep the best of each (drift on shared machines)
            _sync(dev)
            t0 = time.perf_counter()
            res = sampler(BatchNoise(r, range(b), dev))
            _sync(dev)
            t_g.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pipe(batch_size=b, num_inference_steps=steps, generator=torch.Generator(dev).manual_seed(r),
                 output_type="np")
            _sync(dev)
            t_d.append(time.perf_counter() - t0)
        return {"gpm_s": min(t_g), "diffusers_s": min(t_d), "nfe": res.nfe, "diffusers_nfe": steps, **_peak(dev)}
    if case.startswith("numerics:"):
        # the variant runs first (its first batch pays compilation; the peak memory read then is its own), then
        # fp32-eager and the variant alternate batch by batch, so their ratio is measured in one time window
        _, precision, comp_flag = case.split(":")

        def build(prec, comp):
            bundle = Bundle("bench", {"score": eps_component(unet, _sched(1000), data_shape=shape, ref="bench-unet")})
            info = apply_to_bundle(bundle, precision=prec, compile=comp, batch=b, device=dev)
            return get_kind("edm").build(bundle, {"steps": args.edm_steps}), info

        def timed(sampler, r):
            _sync(dev)
            t0 = time.perf_counter()
            res = sampler(BatchNoise(r, range(r * b, (r + 1) * b), dev))
            _sync(dev)
            return time.perf_counter() - t0, res.nfe

        variant, info = build(precision, comp_flag == "compile")
        first, nfe = timed(variant, 0)
        t_var = [timed(variant, 1)[0]]
        mem = _peak(dev)
        base, _ = build("fp32", False)
        base_first = timed(base, 0)[0]
        t_base = []
        for r in range(args.repeats):
            t_base.append(timed(base, 2 + r)[0])
            t_var.append(timed(variant, 2 + r)[0])
        return {"first_s": first, "steady_s": min(t_var), "base_first_s": base_first, "base_steady_s": min(t_base),
                "nfe": nfe, "networks": info["networks"], **mem}
    raise SystemExit(f"unknown case {case}")


# ---------------------------------------------------------------------------------------------------------------------
# driver side

def _run_worker(case: str, args, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, "--device", args.device, "--threads", str(threads),
           "--batch", str(args.batch), "--repeats", str(args.repeats), "--edm-steps", str(args.edm_steps),
           "--ddpm-steps", str(args.ddpm_steps)] + (["--quick"] if args.quick else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _mem(res: dict) -> str:
    if "cuda_peak_mb" in res:
        return f"cuda peak {res['cuda_peak_mb']:.0f} MiB"
    return f"peak RSS {res.get('peak_rss_mb', float('nan')):.0f} MiB"


def _section(title: str) -> None:
    print(f"\n## {title}", flush=True)


def _passthrough(cmd: list[str], threads: int) -> dict:
    """Run a benchmark script with ``--json``; print its output indented and return its JSON figures."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="gpm-bench-") as tmp:
        out_json = Path(tmp) / "out.json"
        r = subprocess.run(cmd + ["--json", str(out_json)], env=env, capture_output=True, text=True)
        out = r.stdout.strip() or r.stderr.strip()[-2000:]
        print("\n".join("    " + ln for ln in out.splitlines()), flush=True)
        if r.returncode != 0 or not out_json.is_file():
            return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
        return json.loads(out_json.read_text())


def _processes(args, tmp: Path) -> dict:
    """gpm sample in 1 process vs accelerate launch with 2 (same files; sampling phase from run.json)."""
    import shutil

    import diffusers
    import torch

    unet, shape = _unet(args.quick, torch.device("cpu"))
    repo = tmp / "repo"
    unet.save_pretrained(repo / "unet")
    diffusers.DDPMScheduler(**_sched(1000)).save_pretrained(repo / "scheduler")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "gpmcli", "-q", "convert", str(repo), "--from", "diffusers", "-o",
                    str(tmp / "ck")], env=env, check=True)
    n = args.batch * 4
    common = ["-q", "sample", "--model", "edm", "-c", str(tmp / "ck"), "--steps", str(args.edm_steps), "-n", str(n),
              "-b", str(args.batch), "--format", "npz"]
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    procs = max(2, 1)
    results = {}
    per = max(1, args.threads // procs)
    for label, cmd, threads in (
        ("1 process", [sys.executable, "-m", "gpmcli", *common, "-o", str(tmp / "p1")], args.threads),
        ("1 process ", [sys.executable, "-m", "gpmcli", *common, "-o", str(tmp / "p1b")], per),
        (f"{procs} processes", [launcher, "launch", "--multi_gpu", "--num_processes", str(procs), "--num_machines",
                                "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "gpmcli", *common,
                                "-o", str(tmp / "p2")], per),
    ):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=dict(env, OMP_NUM_THREADS=str(threads)), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            print(f"  {label}: failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
            return {"error": f"{label} failed"}
        out = tmp / {"1 process": "p1", "1 process ": "p1b"}.get(label, "p2")
        run = json.loads((out / "run.json").read_text())
        results[label] = (wall, run["wall_seconds"]["sample"], threads)
        print(f"  {label:<12} ({threads} thread(s) each): whole command {wall:6.2f} s, sampling phase "
              f"{run['wall_seconds']['sample']:6.2f} s  ({n} samples, batch {args.batch}, EDM {args.edm_steps} steps)")
    import numpy as np

    a = np.load(tmp / "p1" / "samples.npz")["samples"]
    b = np.load(tmp / "p2" / "samples.npz")["samples"]
    (w1, s1, _), (w1b, s1b, _), (w2, s2, _) = (results["1 process"], results["1 process "],
                                               results[f"{procs} processes"])
    print(f"  speed-up of {procs} processes x {per} thread(s) over 1 process x {args.threads} threads: sampling phase "
          f"x{s1 / s2:.2f}, whole command x{w1 / w2:.2f}; over 1 process x {per} thread(s): sampling phase "
          f"x{s1b / s2:.2f}, whole command x{w1b / w2:.2f}; max |difference| of the samples {np.abs(a - b).max():.1e}")
    return {"processes": procs, "threads_1p": args.threads, "threads_each": per, "n": n,
            "one_process": {"whole_s": w1, "sample_s": s1}, "one_process_same_threads": {"whole_s": w1b, "sample_s": s1b},
            "n_processes": {"whole_s": w2, "sample_s": s2}, "speedup_sample": s1 / s2, "speedup_sample_same_threads":
            s1b / s2, "max_abs_difference": float(np.abs(a - b).max())}


def _ratios(sec: dict) -> dict:
    """The headline ratios of the sections that ran (all 'higher is better' except the overheads and gpm/diffusers)."""
    out = {}
    for row in sec.get("overhead", {}).get("kinds", []):
        out[f"sampler overhead in-run: {row['kind']} {row['setting']}"] = row["overhead_in_run"]
    fid = sec.get("fid", {})
    if "speedup" in fid:
        out["FID stats speed-up gpm vs pytorch-fid (images/s)"] = fid["speedup"]
        out["FID stats max |mu diff| gpm vs pytorch-fid"] = fid["agreement"]["max_abs_mu"]
        out["FID stats max |sigma diff| gpm vs pytorch-fid"] = fid["agreement"]["max_abs_sigma"]
    if "frechet" in fid:
        out[f"Frechet step speed-up gpm vs scipy sqrtm (d={fid['frechet']['d']})"] = fid["frechet"]["speedup"]
    d = sec.get("diffusers", {})
    if "gpm_s" in d:
        out["gpm ancestral time / diffusers DDPMPipeline time"] = d["gpm_s"] / d["diffusers_s"]
    for name, res in sec.get("realsize", {}).get("replicas", {}).items():
        for case, ref in (("ancestral", "DDPMPipeline"), ("edm", "plain Heun loop")):
            if case in res:
                out[f"{res['repo']} gpm {case} speed vs {ref} (batch {res['batch']})"] = res[case]["speed"]
    for name in ("bf16", "fp16"):
        r = sec.get(f"precision_{name}", {})
        if "steady_s" in r:
            out[f"{name} speed-up over fp32 (steady batch)"] = r["base_steady_s"] / r["steady_s"]
    c = sec.get("compile", {})
    if "steady_s" in c:
        out["torch.compile speed-up over eager (steady batch)"] = c["base_steady_s"] / c["steady_s"]
    p = sec.get("processes", {})
    if "speedup_sample" in p:
        out["N processes vs 1 process, sampling phase (same total threads)"] = p["speedup_sample"]
        out["N processes vs 1 process, sampling phase (same threads each)"] = p["speedup_sample_same_threads"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small UNet, few repeats")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--edm-steps", type=int, default=None)
    ap.add_argument("--ddpm-steps", type=int, default=None)
    ap.add_argument("--only", default=None, help="comma-separated sections")
    ap.add_argument("--json", default=str(ROOT / "runs" / "benchmarks.json"), help="where to write the figures")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.batch = args.batch or (16 if args.quick else 64)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.edm_steps = args.edm_steps or (6 if args.quick else 18)
    args.ddpm_steps = args.ddpm_steps or (20 if args.quick else 100)
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return

    import torch

    sections = set((args.only or "overhead,fid,diffusers,realsize,precision,compile,processes").split(","))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    dev_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else (platform.processor()
                                                                                   or platform.machine())
    print(f"# gpm benchmark suite{' (--quick)' if args.quick else ''}: {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"{args.device} ({dev_name}), {os.cpu_count()} CPUs, {args.threads} threads, torch {torch.__version__}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"# UNet {'1x16x16 (16/32)' if args.quick else '3x32x32 (32/64)'}, batch {args.batch}, best of "
          f"{args.repeats}", flush=True)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "device": args.device, "device_name": dev_name,
                    "cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                    "quick": args.quick, "load_start": [round(v, 2) for v in load], "sections": {}}
    sec = report["sections"]

    if "overhead" in sections:
        _section("sampler overhead over bare network evaluations (benchmarks/samplers.py)")
        sec["overhead"] = _passthrough([sys.executable, str(ROOT / "benchmarks" / "samplers.py"), "--batch",
                                        str(args.batch), "--device", args.device, "--threads", str(args.threads),
                                        "--repeats", str(args.repeats + 1)], args.threads)
    if "fid" in sections:
        _section("FID (benchmarks/fid.py)")
        quick = ["--n", "50", "--rounds", "1", "--repeat", "1", "--frechet-dim", "512"]
        sec["fid"] = _passthrough([sys.executable, str(ROOT / "benchmarks" / "fid.py"), "--threads", str(args.threads),
                                   *(quick if args.quick else ["--n", "10000", "--rounds", "1", "--stages"])],
                                  args.threads)
    if "diffusers" in sections:
        _section(f"gpm ancestral vs diffusers DDPMPipeline, same UNet, {args.ddpm_steps} steps (equal NFE)")
        r = sec["diffusers"] = _run_worker("diffusers", args, args.threads)
        if "error" in r:
            print(f"  failed: {r['error']}")
        else:
            print(f"  gpm {r['gpm_s']:.2f} s (NFE {r['nfe']}), diffusers {r['diffusers_s']:.2f} s "
                  f"(NFE {r['diffusers_nfe']}): gpm / diffusers time = {r['gpm_s'] / r['diffusers_s']:.2f}; "
                  f"{_mem(r)}")
    if "realsize" in sections:
        _section("full-size replicas: gpm vs DDPMPipeline / a plain Heun loop, equal NFE (benchmarks/realsize.py)")
        if args.quick:
            runs = [["--repos", "cifar10", "--cases", "edm", "--batch", "16", "--rounds", "1"]]
        elif args.device.startswith("cuda"):
            runs = [["--batch", "64", "--rounds", "3", "--steps", "50", "--edm-steps", "18"]]
        else:  # CPU: one 256-px evaluation of 64 images takes half an hour and the unchunked reference needs more than
            # 22 GB there (killed on a 24 GB machine), so the 256-px replica runs EDM at batch 16 and one noise level
            runs = [["--repos", "cifar10", "--batch", "64", "--rounds", "2"],
                    ["--repos", "church", "--cases", "edm", "--edm-steps", "1", "--batch", "16", "--rounds", "1"]]
        sec["realsize"] = {"replicas": {}}
        for extra in runs:
            r = _passthrough([sys.executable, str(ROOT / "benchmarks" / "realsize.py"), "--device", args.device,
                              "--threads", str(args.threads), *extra], args.threads)
            sec["realsize"]["replicas"].update(r.get("replicas", {}))
    if sections & {"precision", "compile"}:
        base = sec["fp32_eager"] = _run_worker("numerics:fp32:eager", args, args.threads)
    if "precision" in sections:
        _section(f"network precision vs fp32 (EDM {args.edm_steps} steps, steady-state batch; fp32 batches "
                 "alternate with the variant's in the same worker)")
        print(f"  fp32 alone: {_mem(base)}")
        for name in ["bf16"] + (["fp16"] if args.device.startswith("cuda") else []):
            r = sec[f"precision_{name}"] = _run_worker(f"numerics:{name}:eager", args, args.threads)
            if "error" in r:
                print(f"  {name}: failed: {r['error']}")
                continue
            print(f"  {name}: {r['steady_s']:.3f} s per batch vs fp32 {r['base_steady_s']:.3f} s: speed-up "
                  f"x{r['base_steady_s'] / r['steady_s']:.2f}; {_mem(r)}")
    if "compile" in sections:
        _section(f"torch.compile (inductor, fixed batch {args.batch}) vs eager, fp32")
        r = sec["compile"] = _run_worker("numerics:fp32:compile", args, args.threads)
        if "error" in r:
            print(f"  compile: failed: {r['error']}")
        else:
            print(f"  eager:    first batch {r['base_first_s']:.2f} s, steady {r['base_steady_s']:.3f} s; eager alone: "
                  f"{_mem(base)}")
            print(f"  compiled: first batch {r['first_s']:.2f} s (includes compilation), steady {r['steady_s']:.3f} s; "
                  f"{_mem(r)}")
            print(f"  steady-state speed-up x{r['base_steady_s'] / r['steady_s']:.2f}; compilation costs about "
                  f"{r['first_s'] - r['steady_s']:.1f} s once per run")
    if "processes" in sections:
        _section("processes: gpm sample, 1 process vs accelerate launch --num_processes 2 (CPU: gloo)")
        with tempfile.TemporaryDirectory(prefix="gpm-bench-") as tmp:
            sec["processes"] = _processes(args, Path(tmp))
    report["ratios"] = ratios = _ratios(sec)
    _section("every ratio of this run")
    for k, v in ratios.items():
        print(f"  {k:<62} {v:10.4g}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    report["load_end"] = [round(v, 2) for v in load]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"# figures written to {args.json}")
    print(f"\n# done {time.strftime('%H:%M')}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
