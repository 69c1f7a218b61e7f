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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, help="write each repository under OUT/ORG/NAME")
    ap.add_argument("--serve", action="store_true", help="serve the replicas from the stand-in Hub until Ctrl-C")
    ap.add_argument("--repo", action="append", choices=sorted(replicas.REPOS), help="only these (repeatable)")
    ap.add_argument("--width-div", type=int, default=1, help="divide channel widths (1 = the published size)")
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
    if hub is not None:
        print(f"export HF_ENDPOINT={hub.url}   # Ctrl-C stops the server", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
