"""One accelerator session for the MNIST defaults, end to end, inside a fixed wall-time budget.

    python scripts/gpu_mnist_session.py --out OUT --data-dir ../shared/assets/mnist --device cuda --budget 560

Stages (each bounded by the time left; every result lands in OUT as soon as it exists, so a session cut short
still returns what it finished):

1. score (skipped by default: ``mnist-edm`` meets its bar, FD-LeNet 3.9 at N = 10,000; ``--skip`` with no names runs
   it): continuations of ``checkpoints/mnist-edm-next/score`` (from its ``train_state.pt``) side by side
   (``--score-runs``, default one run at ``-b 1024 --lr 1e-3``), each for ``--score-minutes`` (``gpm train
   --max-minutes``); the one with the lower FD-LeNet (``edm`` defaults, ``--pick-n`` samples) wins and replaces the score of
   ``mnist-edm`` and ``mnist-diffflow`` in this working tree. Its folder (weights, card, resume state) is packed
   into ``OUT/score.tar`` (split in 15 MB parts).
2. discriminator: DiffFlow ``ve`` discriminators against the winning score, side by side for ``--disc-minutes``
   (``--disc-variants``; default: l = 1 trajectories at width 32, and the l = 0.5 sampler's own states with the
   discriminator in the loop (``--lam 0.5``) at widths 32 and 64).
   Each is scored by FD-LeNet of ``diffflow`` at lambda = 0.5 (``--pick-n`` samples; lambda = 1, which does not use
   the discriminator, once); the lowest wins and becomes ``mnist-diffflow/discriminator``, unless the shipped one,
   scored the same way, is lower still. ``OUT/disc.tar`` holds
   them all (without their training state).
3. table: ``scripts/mnist_table.py`` at ``--table-n`` on the rows that are cheap on an accelerator (see
   ``--table-rows``), then the per-sample noise cost against one network evaluation (``OUT/noise_cost.json``).

OUT holds at most six files: ``log.txt`` (written as it goes), ``table.json`` (row by row), ``score.tar.part*``,
``disc.tar`` and ``results.tar`` (every process's log, ``pick.json`` with the choices and their figures, the table's
markdown and PNG, ``noise_cost.json``; re-packed after every stage).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
T0 = time.monotonic()


def left(a) -> float:
    return a.budget - (time.monotonic() - T0)


def log(a, msg: str) -> None:
    line = f"[{time.monotonic() - T0:7.1f}s] {msg}"
    print(line, flush=True)
    with open(a.out / "log.txt", "a") as f:
        f.write(line + "\n")


def gpm(*args) -> list[str]:
    return [PY, "-m", "gpmcli", *map(str, args)]


def start(a, name: str, cmd: list[str]) -> subprocess.Popen:
    log(a, f"start {name}: {' '.join(cmd)}")
    f = open(a.work / f"{name}.log", "w")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "160"})


def wait(a, procs: dict[str, subprocess.Popen], reserve: float) -> dict[str, int | None]:
    """Wait for ``procs``; kill whatever still runs when only ``reserve`` seconds of the budget are left."""
    rcs = {}
    for name, p in procs.items():
        try:
            rcs[name] = p.wait(timeout=max(1.0, left(a) - reserve))
        except subprocess.TimeoutExpired:
            p.kill()
            rcs[name] = None
        log(a, f"{name} ended: rc {rcs[name]}")
    return rcs


def evaluate(a, jobs: list[dict], reserve: float) -> list[dict]:
    """FD-LeNet of each job (``model``, ``checkpoint``, ``params``, ``overrides``) in one process."""
    spec = a.work / "eval_jobs.json"
    code = ("import json,sys; sys.path.insert(0,'scripts'); from eval_mnist_lenet import evaluate; "
            f"jobs=json.load(open({str(spec)!r})); "
            "[print(json.dumps({**j,**evaluate(j['model'],j.get('checkpoint'),j['n'],j.get('params'),0,"
            "batch=j['batch'],fd_ref=j['fd_ref'],overrides=j.get('overrides'),device=j['device'])}),flush=True) "
            "for j in jobs]")
    for j in jobs:
        j.update(n=a.pick_n, batch=min(a.pick_n, 1000), fd_ref=str(a.fd_ref), device=a.device)
    spec.write_text(json.dumps(jobs))
    try:
        r = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True,
                           timeout=max(1.0, left(a) - reserve))
        out = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        if r.returncode:
            log(a, f"evaluation failed (rc {r.returncode}): {r.stderr[-2000:]}")
    except subprocess.TimeoutExpired as e:
        out = [json.loads(line) for line in (e.stdout or b"").decode().splitlines() if line.startswith("{")]
        log(a, "evaluation stopped at the budget")
    for o in out:
        log(a, f"eval {o.get('name')}: FD-LeNet {o.get('fd_lenet')}, conf {o.get('mean_max_prob')}, "
               f"classes {o.get('class_histogram')}")
    return out


def pack(a, name: str, folders: dict[str, Path], state: bool) -> None:
    path = a.out / f"{name}.tar"
    with tarfile.open(path, "w") as t:
        for arc, d in folders.items():
            for f in sorted(d.iterdir()):
                if f.is_file() and (state or f.name != "train_state.pt"):
                    t.add(f, arcname=f"{arc}/{f.name}")
    size = path.stat().st_size
    if size > 15_000_000:
        with open(path, "rb") as src:
            i = 0
            while chunk := src.read(15_000_000):
                (a.out / f"{name}.tar.part{i}").write_bytes(chunk)
                i += 1
        path.unlink()
    log(a, f"packed {name} ({size / 1e6:.1f} MB)")


def snapshot(a) -> None:
    """``OUT/results.tar``: every small file of the work folder (logs, picks, table, costs), replaced atomically."""
    tmp = a.work / "results.tar.tmp"
    with tarfile.open(tmp, "w") as t:
        for f in sorted(a.work.iterdir()):
            if f.is_file() and f.suffix in (".log", ".json", ".md", ".png"):
                t.add(f, arcname=f.name)
    shutil.move(str(tmp), a.out / "results.tar")


def install(src: Path, dest: Path) -> None:
    """Replace a shipped component's weights, config and card (not its training state) in the working tree."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "train_state.pt":
            shutil.copy2(f, dest / f.name)


def stage_score(a, pick: dict) -> Path | None:
    work = a.work
    runs = {f"score{chr(65 + i)}": tuple(r.split(":")) for i, r in enumerate(a.score_runs)}
    procs = {}
    for name, (b, lr) in runs.items():
        d = work / name
        shutil.copytree(ROOT / "checkpoints/mnist-edm-next/score", d, dirs_exist_ok=True)
        procs[name] = start(a, name, gpm(
            "train", "score", "--data", "mnist", "--data-dir", a.data_dir, "--steps", 60000, "-b", b, "--lr", lr,
            "--warmup", 500, "--ema", 0.9995, "--grad-clip", 1, "--save-every", 1000, "--precision", "bf16",
            "--ch", 32, "--mults", "1,2,2", "--blocks", 1, "-o", d, "--resume", "--device", a.device, "--threads", 4,
            "--max-minutes", a.score_minutes))
    wait(a, procs, reserve=a.reserve_after_score)
    jobs = [{"name": n, "model": "edm", "checkpoint": str(work / n)} for n in runs
            if (work / n / "model.safetensors").is_file()]
    for n in runs:
        cfg = json.loads((work / n / "config.json").read_text())
        pick[f"{n}_training"] = cfg.get("training")
    res = [r for r in evaluate(a, jobs, reserve=a.reserve_after_score - 30) if "fd_lenet" in r]
    pick["score_evals"] = res
    if not res:
        return None
    best = min(res, key=lambda r: r["fd_lenet"])
    pick["score_choice"] = best["name"]
    d = work / best["name"]
    install(d, ROOT / "checkpoints/mnist-edm/score")
    install(d, ROOT / "checkpoints/mnist-diffflow/score")
    pack(a, "score", {"score": d}, state=True)
    log(a, f"score: {best['name']} (FD-LeNet {best['fd_lenet']}) installed")
    return d


def stage_disc(a, pick: dict) -> None:
    work = a.work
    score = ROOT / "checkpoints/mnist-diffflow/score"
    variants = {}
    for v in a.disc_variants:  # NAME:FAKE:CH:LAM:REFRESH
        name, fake, ch, lam, refresh = v.split(":")
        variants[name] = (fake, ch, lam, refresh)
    procs = {}
    for name, (fake, ch, lam, refresh) in variants.items():
        procs[name] = start(a, name, gpm(
            "train", "discriminator", "--for", "diffflow", "--family", "ve", "--score", score, "--data", "mnist",
            "--data-dir", a.data_dir, "--steps", 100000, "-b", 256, "--lr", "5e-4", "--fake", fake, "--ch", ch,
            "--lam", lam, "--pool", a.pool, "--sim-batch", 1024, "--refresh-every", refresh, "--eval-pool",
            a.eval_pool, "--threads", 4, "--device", a.device, "--max-minutes", a.disc_minutes, "-o", work / name))
    wait(a, procs, reserve=a.reserve_after_disc)
    done = {n: work / n for n in variants if (work / n / "model.safetensors").is_file()}
    for n, d in done.items():
        pick[f"{n}_evaluation"] = json.loads((d / "config.json").read_text()).get("evaluation")
        pick[f"{n}_training"] = json.loads((d / "config.json").read_text()).get("training")
    if not done:
        return
    pack(a, "disc", done, state=False)
    jobs = [{"name": "lambda1", "model": "diffflow", "params": {"lambda": 1.0}},
            {"name": "shipped", "model": "diffflow", "params": {"lambda": 0.5}}]  # the incumbent competes too
    jobs += [{"name": n, "model": "diffflow", "params": {"lambda": 0.5}, "overrides": {"discriminator": str(d)}}
             for n, d in done.items()]
    res = evaluate(a, jobs, reserve=a.reserve_after_disc - 40)
    pick["disc_evals"] = res
    cands = [r for r in res if (r["name"] in done or r["name"] == "shipped") and "fd_lenet" in r]
    if not cands:
        return
    best = min(cands, key=lambda r: r["fd_lenet"])
    pick["disc_choice"] = best["name"]
    if best["name"] == "shipped":
        log(a, f"discriminator: the shipped one stays (FD-LeNet at lambda 0.5: {best['fd_lenet']}, lowest)")
        return
    install(done[best["name"]], ROOT / "checkpoints/mnist-diffflow/discriminator")
    log(a, f"discriminator: {best['name']} (FD-LeNet at lambda 0.5: {best['fd_lenet']}) installed")
    w2 = evaluate(a, [{"name": f"{best['name']}_w2", "model": "diffflow", "params": {"lambda": 0.5, "disc_weight": 2.0}}],
                  reserve=a.reserve_after_disc - 60)
    pick["disc_evals"] += w2


def stage_table(a) -> None:
    cmd = [PY, "scripts/mnist_table.py", "--n", a.table_n, "-b", a.table_batch, "--device", a.device,
           "--threads", 8, "--fd-ref", a.fd_ref, "--json", a.out / "table.json", "--md", a.work / "table.md",
           "--png", a.work / "fd_lenet_lambda.png", "--only", *a.table_rows]
    p = start(a, "table", list(map(str, cmd)))
    wait(a, {"table": p}, reserve=a.reserve_after_table)


def stage_noise(a) -> None:
    """Per-sample noise against one network evaluation, for both engines (one generator per sample; Philox)."""
    code = r'''
import json, sys, time, torch
sys.path.insert(0, ".")
from gpmcli.noise import BatchNoise
from gpmcli.registry import load_bundle
from gpmcli.samplers.scorekit import denoiser_from_component
dev = sys.argv[1]; out = {}
den = denoiser_from_component(load_bundle("mnist-edm", device=dev)["score"])
sync = (lambda: torch.cuda.synchronize()) if dev.startswith("cuda") else (lambda: None)
for b in (256, 2000):
    x = torch.randn(b, 1, 32, 32, device=dev)
    with torch.no_grad():
        for _ in range(3):
            den.denoise(x, 1.0)
        sync()
        t = time.perf_counter()
        for _ in range(20):
            den.denoise(x, 1.0)
        sync()
    tf = (time.perf_counter() - t) / 20
    out[str(b)] = {"score_ms": round(tf * 1e3, 3)}
    for engine in ("generator", "philox"):
        noise = BatchNoise(0, range(b), dev, engine=engine)
        for _ in range(3):
            noise.randn(1, 32, 32)
        sync()
        t = time.perf_counter()
        for _ in range(20):
            noise.randn(1, 32, 32)
        sync()
        tn = (time.perf_counter() - t) / 20
        out[str(b)][engine] = {"noise_ms": round(tn * 1e3, 3), "ratio_to_score": round(tn / tf, 3)}
print(json.dumps(out))
'''
    try:
        r = subprocess.run([PY, "-c", code, a.device], cwd=ROOT, capture_output=True, text=True,
                           timeout=max(1.0, left(a) - 5))
        (a.work / "noise_cost.json").write_text(r.stdout + r.stderr[-2000:])
        log(a, f"noise cost: {r.stdout.strip()} {r.stderr[-500:] if r.returncode else ''}")
    except subprocess.TimeoutExpired:
        log(a, "noise cost: out of time")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=560.0, help="seconds for the whole session")
    ap.add_argument("--score-minutes", type=float, default=3.6)
    ap.add_argument("--score-runs", nargs="+", default=["1024:1e-3"],
                    help="BATCH:LR of each score continuation run side by side (2026-12-04: 1024:1e-3 512:5e-4; "
                         "the batch-1024 one won, and two runs halve each other's speed)")
    ap.add_argument("--disc-variants", nargs="+",
                    default=["discT32:trajectories:32:1:4000", "discL32:trajectories:32:0.5:500",
                             "discL64:trajectories:64:0.5:500"],
                    help="NAME:FAKE:CH:LAM:REFRESH of each discriminator trained side by side (2026-12-04: "
                         "discT32:trajectories:32:1:4000 discS32:samples:32:1:4000 discT64:trajectories:64:1:4000)")
    ap.add_argument("--disc-minutes", type=float, default=1.6)
    ap.add_argument("--pool", type=int, default=8192)
    ap.add_argument("--eval-pool", type=int, default=512, help="held-out trajectories per discriminator")
    ap.add_argument("--pick-n", type=int, default=2000)
    ap.add_argument("--table-n", type=int, default=10000)
    ap.add_argument("--table-batch", type=int, default=2000)
    ap.add_argument("--table-rows", nargs="*",
                    default=["diffflow", "langevin", "ancestral", "ode", "pc", "ddls", "edm"],
                    help="mnist_table.py --only words, run in this order (default: the rows the 28x28-frame table "
                         "still lacks at N = 10,000 first; discr-flow, score-gan and gan are measured on CPU)")
    ap.add_argument("--reserve-after-score", type=float, default=300.0)
    ap.add_argument("--reserve-after-disc", type=float, default=150.0)
    ap.add_argument("--reserve-after-table", type=float, default=15.0)
    ap.add_argument("--skip", nargs="*", default=["score"],
                    help="stages to skip: score disc table noise (default: score, since mnist-edm meets its bar; "
                         "a bare --skip runs every stage)")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    a.work = Path(os.environ.get("TMPDIR", "/tmp")) / "gpm-session-work"
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    a.data_dir = a.data_dir.resolve()
    a.fd_ref = a.data_dir / "t10k-images-idx3-ubyte.gz"
    pick: dict = {"device": a.device}
    try:
        import torch

        pick["device_name"] = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
        pick["torch"] = torch.__version__
    except Exception as e:  # noqa: BLE001
        pick["device_error"] = repr(e)
    log(a, f"session: {pick}")
    for name, fn in (("score", stage_score), ("disc", stage_disc)):
        if name in a.skip:
            continue
        try:
            fn(a, pick)
        except Exception as e:  # noqa: BLE001 - keep going: later stages still return what they can
            import traceback

            log(a, f"stage {name} failed: {e!r}\n{traceback.format_exc()}")
        (a.work / "pick.json").write_text(json.dumps(pick, indent=1))
        snapshot(a)
    if "table" not in a.skip:
        stage_table(a)
        snapshot(a)
    if "noise" not in a.skip:
        stage_noise(a)
    log(a, "done")
    snapshot(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
