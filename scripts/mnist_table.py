"""One table of every MNIST figure: FD-LeNet, LeNet confidence and classes, NFE and wall time for every sampler kind
on every MNIST bundle, plus a PNG of FD-LeNet against DiffFlow's lambda (and against NFE).

    python scripts/mnist_table.py --n 10000 --json mnist_table.json --md mnist_table.md --png docs/fd_lenet_lambda.png
    python scripts/mnist_table.py --n 64 --only diffflow --json /tmp/t.json      # a quick check of the pipeline
    python scripts/mnist_table.py --merge gpu.json cpu.json --json all.json --md all.md --png docs/fd_lenet_lambda.png

Rows (``--only`` keeps the rows whose label has one of the given words, e.g. ``gan`` or ``lambda=0.5``, and runs them in
the order of the words): ``edm``, ``pc``, ``ancestral``,
``ode``, ``langevin`` on ``mnist-edm``; ``diffflow`` at lambda in {0, 0.25, 0.5, 0.75, 1} on ``mnist-diffflow``;
``discr-flow`` on ``mnist-discr-flow``; ``score-gan`` on ``mnist-score-gan``; ``gan`` on ``mnist-gan``,
``mnist-mlp-gan`` and ``mnist-wgangp``; ``ddls`` on each pretrained pair with its own discriminator (before
calibration) and on its calibrated bundle (``mnist-mlp-gan-ddls``, ``mnist-wgangp-ddls``); rows whose bundle is not
registered are skipped with a note. Every row uses the bundle's registry defaults (``params.KIND``), as
``gpm sample`` does, and seed 0.

Protocol per row: N samples (``--n``, seed 0, batch ``-b``), clamped to the data range, mapped to [0, 1], 32x32 ones
cropped to their 28x28 frame (gpm's MNIST is the 28x28 digits padded by 2; ``--no-crop`` keeps them whole, the
protocol before 2026-12-04), resized to 32x32, classified by the csinva LeNet-5 (``mnist-lenet``): class histogram, classes present, mean
max-probability; FD-LeNet of the same (cropped) samples to the 10,000 MNIST test digits exactly as ``gpm fid SAMPLES.npz REF
--features lenet`` measures it (scripts/eval_mnist_lenet.py ``fd_lenet_of``); NFE per sample as the sampler reports it
(network evaluations; for DDLS and DiffFlow the chain's steps); wall time of the sampling alone, on this machine, with
``--threads`` torch threads. FD-LeNet carries a positive small-N bias: compare rows at equal N only, and quote the
table at N = 10,000 (MNIST test vs train is 0.70 there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from gpmcli.api import resolve_bundle, with_bundle_defaults  # noqa: E402
from gpmcli.noise import BatchNoise  # noqa: E402
from gpmcli.registry import Registry, load_bundle  # noqa: E402
from gpmcli.samplers import get_kind  # noqa: E402

MNIST_TEST = ROOT.parent / "shared" / "assets" / "mnist" / "t10k-images-idx3-ubyte.gz"
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def rows() -> list[tuple[str, str, str, dict]]:
    """(label, kind, bundle, params) for every row of the table."""
    out = [(f"{k} mnist-edm", k, "mnist-edm", {}) for k in ("edm", "pc", "ancestral", "ode", "langevin")]
    out += [(f"diffflow lambda={lam:g} mnist-diffflow", "diffflow", "mnist-diffflow", {"lambda": lam})
            for lam in LAMBDAS]
    out += [("discr-flow mnist-discr-flow", "discr-flow", "mnist-discr-flow", {}),
            ("score-gan mnist-score-gan", "score-gan", "mnist-score-gan", {})]
    out += [(f"gan {b}", "gan", b, {}) for b in ("mnist-gan", "mnist-mlp-gan", "mnist-wgangp")]
    for pair in ("mnist-mlp-gan", "mnist-wgangp"):
        out.append((f"ddls {pair} (its own discriminator)", "ddls", pair, {}))
        out.append((f"ddls {pair}-ddls (calibrated)", "ddls", f"{pair}-ddls", {}))
    return out


def selected(table: list[tuple], only: list[str] | None) -> list[tuple]:
    """The rows whose label has one of the words ``only`` (all rows if None), in the order of the words: the rows of
    the first word first (a run stopped by a time limit keeps the rows asked for first), the table's order within."""
    if not only:
        return list(table)
    first = [min((i for i, w in enumerate(only) if w in row[0].split()), default=None) for row in table]
    keep = [j for j in range(len(table)) if first[j] is not None]
    return [table[j] for j in sorted(keep, key=lambda j: first[j])]  # sorted() is stable: table order within


def lenet_probs(lenet, x: torch.Tensor, data_range, batch: int, crop: bool = True) -> torch.Tensor:
    import eval_mnist_lenet

    lo, hi = data_range or (-1.0, 1.0)
    x = eval_mnist_lenet.lenet_frame((x.reshape(x.shape[0], 1, *x.shape[-2:]) - lo) / (hi - lo), crop).clamp(0, 1)
    if x.shape[-1] != 32:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return torch.cat([lenet(x[i:i + batch]).exp() for i in range(0, len(x), batch)])


def measure(label, kind, bundle_name, params, args, lenet) -> dict:
    from eval_mnist_lenet import fd_lenet_of

    bundle = resolve_bundle(kind, bundle_name, None, device=args.device)
    sampler = get_kind(kind).build(bundle, with_bundle_defaults(bundle, kind, dict(params)))
    xs, nfe = [], 0
    t0 = time.perf_counter()
    for i in range(0, args.n, args.batch_size):
        res = sampler(BatchNoise(args.seed, range(i, min(args.n, i + args.batch_size)), args.device))
        xs.append(res.x.float().cpu())
        nfe = res.nfe
    wall = time.perf_counter() - t0
    x = torch.cat(xs)
    lo, hi = sampler.data_range or (-1.0, 1.0)
    outside = float(((x < lo) | (x > hi)).float().mean())
    x = x.clamp(lo, hi)
    p = lenet_probs(lenet, x, (lo, hi), args.batch_size, not args.no_crop)
    conf, cls = p.max(1)
    hist = torch.bincount(cls, minlength=10).tolist()
    out = {"label": label, "kind": kind, "bundle": bundle_name, "params": params, "n": args.n, "seed": args.seed,
           "resolved": {k: v for k, v in sampler.resolved.items() if isinstance(v, (int, float, str, bool))},
           "nfe": nfe, "wall_seconds": round(wall, 2), "threads": torch.get_num_threads(), "device": device_label(args.device),
           "mean_max_prob": round(float(conf.mean()), 4), "classes_present": sum(h > 0 for h in hist),
           "class_histogram": hist, "fraction_outside_range": round(outside, 4), "sample_shape": list(x.shape[1:])}
    if args.fd_ref:
        out.update(fd_lenet_of(x, (lo, hi), args.fd_ref, not args.no_crop))
    return out


def device_label(device: str) -> str:
    """``cpu (N threads)`` or the accelerator's name, for the wall-time column."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{device} ({torch.get_num_threads()} threads)"


def markdown(results: list[dict], n: int) -> str:
    lines = [f"| sampler, bundle (N = {n:,}) | FD-LeNet | LeNet confidence | classes (min share) | NFE | wall s (where) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['label']} | skipped: {r['skipped']} | | | | |")
            continue
        share = min(r["class_histogram"]) / max(1, r["n"])
        lines.append(f"| {r['label']} | {r.get('fd_lenet', 'n/a')} | {r['mean_max_prob']:.3f} | "
                     f"{r['classes_present']} ({share:.1%}) | {r['nfe']} | {r['wall_seconds']:.1f} ({r.get('device', '')}) |")
    return "\n".join(lines) + "\n"


# ---- a small line chart with Pillow (no plotting library needed) ----------------------------------------------------
def line_chart(panels: list[dict], path: Path, size=(520, 380)) -> None:
    """``panels``: [{"title", "xlabel", "points": [(x, y, label)], "log_x": bool}], drawn side by side."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", (w * len(panels), h), "white")
    dr = ImageDraw.Draw(img)
    for k, pan in enumerate(panels):
        pts = [(float(x), float(y), lab) for x, y, lab in pan["points"] if np.isfinite(y)]
        ox, L, R, T, B = k * w, 60, 20, 40, 50
        dr.text((ox + L, 12), pan["title"], fill="black")
        dr.rectangle([ox + L, T, ox + w - R, h - B], outline="black")
        if not pts:
            continue
        tx = (lambda v: np.log10(v)) if pan.get("log_x") else (lambda v: v)
        xs, ys = [tx(p[0]) for p in pts], [p[1] for p in pts]
        x0, x1 = min(xs), max(xs)
        y0, y1 = 0.0, max(ys) * 1.1 or 1.0
        x1 = x1 if x1 > x0 else x0 + 1

        def px(x, y):
            return (ox + L + (x - x0) / (x1 - x0) * (w - L - R - 20) + 10, T + (1 - (y - y0) / (y1 - y0)) * (h - T - B))

        for i in range(5):
            yv = y0 + (y1 - y0) * i / 4
            _, yy = px(x0, yv)
            dr.line([ox + L - 4, yy, ox + L, yy], fill="black")
            dr.text((ox + 8, yy - 6), f"{yv:.3g}", fill="black")
        xy = [px(a, b) for a, b in zip(xs, ys)]
        if pan.get("connect", True):
            dr.line(xy, fill=(40, 90, 200), width=2)
        for (a, b), p in zip(xy, pts):
            dr.ellipse([a - 4, b - 4, a + 4, b + 4], fill=(40, 90, 200))
            dr.text((a - 12, b - 18), p[2], fill="black")
        dr.text((ox + L + 10, h - B + 8), pan["xlabel"], fill="black")
        dr.text((ox + 8, T - 16), "FD-LeNet", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def chart(results: list[dict], path: Path) -> None:
    diff = [r for r in results if r["kind"] == "diffflow" and "fd_lenet" in r]
    pan1 = {"title": f"DiffFlow (mnist-diffflow), N = {results[0]['n']:,}", "xlabel": "lambda",
            "points": [(r["params"]["lambda"], r["fd_lenet"], f"{r['params']['lambda']:g}") for r in diff]}
    every = [r for r in results if "fd_lenet" in r and r["nfe"] > 0]
    pan2 = {"title": "every row: FD-LeNet against NFE", "xlabel": "NFE per sample (log scale)", "log_x": True,
            "connect": False, "points": [(r["nfe"], r["fd_lenet"], r["kind"]) for r in every]}
    line_chart([pan1, pan2], path)


def frame_of(row: dict) -> str:
    """The LeNet frame of a row's FD-LeNet (``eval_mnist_lenet.frame_label``). 28x28 samples have one frame, so their
    rows join a table of either protocol; rows written before frames were recorded are 32x32 ones fed whole ("as
    sampled") unless their bundle's config says 28x28."""
    shape = row.get("sample_shape") or _bundle_shape(row.get("bundle", ""))
    if shape and tuple(shape[-2:]) != (32, 32):
        return f"{shape[-2]}x{shape[-1]} native"
    return row.get("frame") or "as sampled"


def _bundle_shape(name: str) -> list[int] | None:
    """``data.shape`` from the config of a registered bundle's first component (no weights are loaded)."""
    from gpmcli.registry import checkpoints_dir

    try:
        spec = Registry.load().bundles[name]
    except Exception:
        return None
    for comp in spec.components.values():
        cfg = checkpoints_dir() / comp.ref / "config.json"
        if cfg.is_file():
            shape = (json.loads(cfg.read_text()).get("data") or {}).get("shape")
            if shape:
                return list(shape)
    return None


def merge(a) -> int:
    by_label: dict[str, dict] = {}
    for f in a.merge:
        for r in json.loads(f.read_text()):
            if "skipped" not in r or r["label"] not in by_label:
                by_label[r["label"]] = r
    order = [label for label, *_ in rows()]
    results = [by_label[lab] for lab in order if lab in by_label]
    frames = {frame_of(r) for r in results if "fd_lenet" in r} - {"28x28 native"}
    if len(frames) > 1:
        print(f"error: the files mix LeNet frames {sorted(frames)} (--no-crop and cropped rows of 32x32 bundles); "
              "merge rows of one", file=sys.stderr)
        return 2
    ns = {r["n"] for r in results if "n" in r}
    if len(ns) > 1:
        print(f"error: the files mix sample counts {sorted(ns)}; merge rows of one N", file=sys.stderr)
        return 2
    n = ns.pop() if ns else 0
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    if a.md:
        a.md.write_text(markdown(results, n))
    done = [r for r in results if "skipped" not in r]
    if a.png and done:
        chart(done, a.png)
    print(markdown(results, n))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="samples per row (10,000 for the published table)")
    ap.add_argument("-b", "--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-crop", action="store_true", help="feed 32x32 samples to the LeNet uncropped (the protocol "
                    "before 2026-12-04; scripts/eval_mnist_lenet.py CROP says why it is biased)")
    ap.add_argument("--device", default="cpu", help="where the samplers run (cpu, cuda, cuda:N); LeNet and the "
                    "Fréchet distance stay on the CPU")
    ap.add_argument("--only", nargs="*", default=None, help="keep rows whose label has one of these words (e.g. gan, lambda=0.5, mnist-edm)")
    ap.add_argument("--fd-ref", default=str(MNIST_TEST) if MNIST_TEST.is_file() else None)
    ap.add_argument("--json", type=Path, default=None, help="write the results (a list of rows) here")
    ap.add_argument("--md", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--png", type=Path, default=None, help="write FD-LeNet against lambda and against NFE here")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="sample nothing: merge the rows of these --json files (a later file's row replaces an "
                         "earlier one with the same label; rows keep their own device and wall time) and write "
                         "--json/--md/--png from them, in the table's row order")
    a = ap.parse_args(argv)
    if a.merge:
        return merge(a)
    if a.n < 1 or a.batch_size < 1:
        ap.error("--n and --batch-size must be >= 1")
    torch.set_num_threads(a.threads)
    reg = Registry.load()
    lenet = load_bundle("mnist-lenet", registry=reg)["classifier"].module.eval()
    results = []
    for label, kind, bname, params in selected(rows(), a.only):
        if bname not in reg.bundles:
            results.append({"label": label, "kind": kind, "bundle": bname, "skipped": "bundle not registered"})
            print(f"{label}: skipped (bundle not registered)", flush=True)
            continue
        r = measure(label, kind, bname, params, a, lenet)
        results.append(r)
        if a.json:  # after every row, so a run stopped early keeps what it measured
            a.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{label}: FD-LeNet {r.get('fd_lenet')}, confidence {r['mean_max_prob']}, classes "
              f"{r['class_histogram']}, NFE {r['nfe']}, {r['wall_seconds']} s", flush=True)
    done = [r for r in results if "skipped" not in r]
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    if a.md:
        a.md.write_text(markdown(results, a.n))
    if a.png and done:
        chart(done, a.png)
    print(markdown(results, a.n))
    return 0


if __name__ == "__main__":
    from gpmcli.hostmem import tune_malloc

    tune_malloc()  # as the gpm command does: reuse activation buffers (gpmcli/hostmem.py)
    raise SystemExit(main())
