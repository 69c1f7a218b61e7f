"""Full-size random-weight replicas of the model zoo's Hub repositories (published config, scheduler and key layout).

    python scripts/make_replicas.py -o replicas/            # writes replicas/google/ddpm-cifar10-32/... (about 1.5 GB)
    python scripts/make_replicas.py --serve                  # serves them from the stand-in Hub under the real names

With ``--serve`` it prints the ``HF_ENDPOINT`` to export; then the documented commands run end to end against the
replicas, e.g. ``gpm sample --model ancestral -c cifar10-ddpm -n 2 --steps 100``. The test suite uses reduced-width
twins of the same replicas (``tests/replicas.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import replicas  # noqa: E402


EDM_BASE = "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained"


def _others(out: Path | None, hub) -> None:
    """Full-size replicas of the EDM CIFAR-10 VP pickle (persistence records) and StudioGAN's CIFAR-10 SNGAN G/D."""
    import io

    import torch
    import test_convert_edm as edm
    import test_convert_studiogan as sg

    from gpmcli.nets.edm import EDMNetwork

    model = dict(edm.SMALL, model_channels=128, channel_mult=[2, 2, 2], num_blocks=4, attn_resolutions=[16])
    net = EDMNetwork("vp", 32, 3, model=model)
    init = dict(edm.INIT, img_resolution=32, **model)
    files = {("nvlabs/edm", "edm-cifar10-32x32-uncond-vp.pkl"): edm.persistence_pickle(net, init, "# not run\n")}
    n_edm = sum(p.numel() for p in net.parameters())
    g, d = sg.replica_g(channels=256, z_dim=128), sg.replica_d(channels=128)
    folder = "studiogan_official_ckpt/CIFAR10_tailored/CIFAR10-SNGAN-train-2022_03_06_02_24_46"
    for m, name in ((g, sg.G_FILE), (d, sg.D_FILE)):
        buf = io.BytesIO()
        torch.save({"state_dict": m.state_dict(), "step": 88000}, buf)
        files[("Mingguksky/PyTorch-StudioGAN", f"{folder}/{name}")] = buf.getvalue()
    print(f"edm-cifar10-32x32-uncond-vp.pkl: {n_edm:,} parameters", flush=True)
    print(f"StudioGAN SNGAN: G {sum(p.numel() for p in g.parameters()):,} parameters, "
          f"D {sum(p.numel() for n, p in d.named_parameters()):,} parameters", flush=True)
    by_repo: dict[str, dict[str, bytes]] = {}
    for (repo, path), data in files.items():
        by_repo.setdefault(repo, {})[path] = data
        if out:
            (out / repo / path).parent.mkdir(parents=True, exist_ok=True)
            (out / repo / path).write_bytes(data)
    if hub is not None:
        for repo, fs in by_repo.items():
            hub.add_revision(repo, fs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, help="write each repository under OUT/ORG/NAME")
    ap.add_argument("--serve", action="store_true", help="serve the replicas from the stand-in Hub until Ctrl-C")
    ap.add_argument("--repo", action="append", choices=sorted(replicas.REPOS), help="only these (repeatable)")
    ap.add_argument("--width-div", type=int, default=1, help="divide channel widths (1 = the published size)")
    ap.add_argument("--others", action="store_true", help="also the EDM CIFAR-10 VP pickle and StudioGAN's SNGAN "
                    "G and D (published sizes)")
    args = ap.parse_args(argv)
    if not args.out and not args.serve:
        ap.error("give -o OUT and/or --serve")
    hub = None
    if args.serve:
        from hubserver import HubServer

        hub = HubServer(lifetime=10 * 24 * 3600).start()
    for repo in args.repo or sorted(replicas.REPOS):
        files, unet = replicas.replica_files(repo, width_div=args.width_div)
        n = sum(p.numel() for p in unet.parameters())
        if args.out:
            d = args.out / repo
            d.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (d / name).write_bytes(data)
        if hub is not None:
            hub.add_revision(repo, files)
        print(f"{repo}: {n:,} parameters, {len(files['diffusion_pytorch_model.bin']) / 2**20:.0f} MiB"
              + (f" -> {args.out / repo}" if args.out else ""), flush=True)
    if args.others:
        _others(args.out, hub)
    if hub is not None:
        print(f"export HF_ENDPOINT={hub.url}   # Ctrl-C stops the server", flush=True)
        if args.others:
            print(f"export GPM_MIRROR='{EDM_BASE}/={hub.url}/nvlabs/edm/resolve/main/'", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
