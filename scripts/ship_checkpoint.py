"""Copy a trained checkpoint directory into checkpoints/ with its measured metrics in the config and model card.

    python scripts/ship_checkpoint.py OUT/generator checkpoints/toy-pentagon-gan/generator \
        --metrics eval.json --note "Smaller than the paper because CPU."

``--metrics FILE.json`` (repeatable): a JSON object per file, e.g. the ``--json`` output of scripts/eval_toy.py; each is
stored under ``metrics[<its "name" or the file stem>]`` with the command that produced it (``"command"`` key, or
``--command``). The training state (train_state.pt) is not copied; weights are re-written unchanged with the updated
config in their safetensors header.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpmcli.checkpoint import CARD, load_checkpoint, save_checkpoint  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dest")
    ap.add_argument("--metrics", action="append", default=[], help="JSON file with one measurement")
    ap.add_argument("--command", action="append", default=[], help="command that produced the matching --metrics")
    ap.add_argument("--note", action="append", default=[], help="a line for the model card")
    a = ap.parse_args(argv)
    src, dest = Path(a.src), Path(a.dest)
    comp = load_checkpoint(src)
    cfg = {k: v for k, v in comp.config.items() if k != "gpm_format"}
    card = (src / CARD).read_text()
    metrics = dict(cfg.get("metrics") or {})
    lines = []
    for i, mfile in enumerate(a.metrics):
        m = json.loads(Path(mfile).read_text())
        name = m.pop("name", Path(mfile).stem)
        if i < len(a.command):
            m["command"] = a.command[i]
        metrics[name] = m
        shown = ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("command", "checkpoint"))
        lines.append(f"- **{name}**: {shown}. Reproduce: `{m.get('command', '')}`")
    cfg["metrics"] = metrics
    if lines:
        card = card.rstrip() + "\n\n## Measured metrics\n\n" + "\n".join(lines) + "\n"
    if a.note:
        card = card.rstrip() + "\n\n" + "\n".join(a.note) + "\n"
    save_checkpoint(dest, comp.module, cfg, card=card)
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
