"""Time the shipped MNIST defaults the way a user runs them: 64 samples from a fresh `gpm sample` process.

    python benchmarks/mnist_default.py [--threads 2] [--kinds diffflow,edm,gan]

For each kind it runs `gpm sample --model KIND -n 64 [--lambda 0.5 for diffflow]` in a new process (interpreter
start-up, checkpoint loading and writing included) and prints the whole command's wall time and the sampling phase
from run.json. The acceptance bar for the default bundles is under a minute for 64 samples on 2 CPU cores.
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
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), PYTHONPATH=str(ROOT))
    print(f"{'command':<48} {'wall s':>8} {'sampling s':>11} {'NFE':>5}  bar 60 s")
    for kind in a.kinds.split(","):
        extra = ["--lambda", "0.5"] if kind == "diffflow" else []
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "gpmcli", "-q", "sample", "--model", kind, "-n", str(a.n), *extra,
                   "-o", tmp]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, cwd=tmp)
            wall = time.perf_counter() - t0
            run = json.loads((Path(tmp) / "run.json").read_text())
        phases = run.get("wall_seconds") or run.get("phases") or {}
        sampling = phases.get("sample", float("nan")) if isinstance(phases, dict) else float("nan")
        label = f"gpm sample --model {kind} -n {a.n} {' '.join(extra)}".strip()
        print(f"{label:<48} {wall:>8.1f} {sampling:>11.1f} {run.get('nfe_per_sample', '?'):>5}  "
              f"{'ok' if wall < 60 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
