"""Time the shipped MNIST defaults the way a user runs them: 64 samples from a fresh `gpm sample` process.

    python benchmarks/mnist_default.py [--threads 2] [--kinds diffflow,edm,gan] [--compare-layout | --compare-malloc]

For each kind it runs `gpm sample --model KIND -n 64 [--lambda 0.5 for diffflow]` in a new process (interpreter
start-up, checkpoint loading and writing included) and prints the whole command's wall time and the sampling phase
from run.json. The acceptance bar for the default bundles is under a minute for 64 samples on 2 CPU cores.
With --compare-layout each command also runs with GPM_CHANNELS_LAST=0 (conv networks in the contiguous NCHW layout
instead of channels_last), with --compare-malloc with GPM_MALLOC_TUNE=0 (glibc's malloc thresholds as they come, see
gpmcli/hostmem.py); the two settings alternate and the ratios are printed.
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

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kinds", default="diffflow,edm,gan")
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--compare-layout", action="store_true",
                    help="also run each command with GPM_CHANNELS_LAST=0 and print the sampling-time ratio")
    ap.add_argument("--compare-malloc", action="store_true",
                    help="also run each command with GPM_MALLOC_TUNE=0 (glibc malloc as it comes) and print the ratio")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), PYTHONPATH=str(ROOT))
    knob, names = ("GPM_MALLOC_TUNE", {"1": "malloc tuned", "0": "malloc as is"}) if a.compare_malloc else (
        "GPM_CHANNELS_LAST", {"1": "channels_last", "0": "NCHW"})
    both = a.compare_layout or a.compare_malloc
    print(f"{'command':<48} {'setting':<14} {'wall s':>8} {'sampling s':>11} {'NFE':>5}  bar 60 s")
    for kind in a.kinds.split(","):
        extra = ["--lambda", "0.5"] if kind == "diffflow" else []
        label = f"gpm sample --model {kind} -n {a.n} {' '.join(extra)}".strip()
        settings = ["1", "0", "1", "0"] if both else ["1"]  # alternated: drift hits both alike
        times: dict[str, list[float]] = {"0": [], "1": []}
        walls: dict[str, list[float]] = {"0": [], "1": []}
        for v in settings:
            wall, sampling, nfe = _run(kind, a.n, extra, dict(env, **{knob: v}))
            times[v].append(sampling)
            walls[v].append(wall)
            bar = "ok" if wall < 60 else "OVER"
            print(f"{label:<48} {names[v]:<14} {wall:>8.1f} {sampling:>11.1f} {nfe:>5}  {bar}")
        if both:
            print(f"{label:<48} {names['0']} / {names['1']}: sampling {min(times['0']) / min(times['1']):.2f}x, "
                  f"whole command {min(walls['0']) / min(walls['1']):.2f}x (best of 2 each)")
    return 0


def _run(kind: str, n: int, extra: list[str], env: dict[str, str]) -> tuple[float, float, object]:
    """One fresh `gpm sample` process: (whole wall time, sampling phase from run.json, NFE per sample)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "gpmcli", "-q", "sample", "--model", kind, "-n", str(n), *extra, "-o", tmp]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=tmp)
        wall = time.perf_counter() - t0
        run = json.loads((Path(tmp) / "run.json").read_text())
    phases = run.get("wall_seconds") or run.get("phases") or {}
    sampling = phases.get("sample", float("nan")) if isinstance(phases, dict) else float("nan")
    return wall, sampling, run.get("nfe_per_sample", "?")


if __name__ == "__main__":
    sys.exit(main())
