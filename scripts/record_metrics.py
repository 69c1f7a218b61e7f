"""Record measured metrics in a checkpoint's config (``metrics``) and model card.

    python scripts/eval_toy.py --model edm --checkpoint toy-pentagon-score --json > m.jsonl
    python scripts/record_metrics.py checkpoints/toy-pentagon-score m.jsonl --command "python scripts/eval_toy.py ..."

Each line of the JSON-lines file is one result of ``scripts/eval_toy.py --json`` (or any flat JSON object); it is
stored under ``metrics`` keyed by its sampler and parameters, with the reproduction command, and listed in the card.
The weights are unchanged; ``model.safetensors`` is rewritten only to carry the updated config in its header.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpmcli.checkpoint import CARD, load_checkpoint, save_checkpoint  # noqa: E402


def key_of(res: dict) -> str:
    params = ",".join(f"{k}={v}" for k, v in sorted(res.get("params", {}).items()))
    seed = f"@seed{res['seed']}" if res.get("seed") else ""  # seed 0 (the protocol's) is not spelled out
    return f"{res.get('model', 'metric')}" + (f"[{params}]" if params else "") + seed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("results", type=Path, help="JSON lines")
    ap.add_argument("--command", action="append", default=[], help="reproduction command(s), one per result line")
    ap.add_argument("--replace", action="store_true", help="drop the metrics recorded before (a newer protocol)")
    a = ap.parse_args(argv)
    comp = load_checkpoint(a.checkpoint)
    cfg = dict(comp.config)
    lines = [json.loads(ln) for ln in a.results.read_text().splitlines() if ln.strip().startswith("{")]
    metrics = {} if a.replace else dict(cfg.get("metrics") or {})
    card_lines = []
    for i, res in enumerate(lines):
        cmd = a.command[i] if i < len(a.command) else (a.command[-1] if a.command else None)
        entry = {k: v for k, v in res.items() if k not in ("checkpoint",)}
        if cmd:
            entry["command"] = cmd
        metrics[key_of(res)] = entry
    cfg["metrics"] = metrics
    for k, m in metrics.items():
        if "ratio" in m:
            verdict = "pass" if m.get("pass") else "FAIL"
            sets = (f"; mean over {m['fresh_sets']} fresh exact sets, each "
                    f"{', '.join(str(v) for v in m['ratio_per_set'])}" if m.get("fresh_sets", 1) > 1 else "")
            card_lines.append(f"- `{k}`: sliced Wasserstein {m['sw']} = {m['ratio']} x the two-sample noise floor "
                              f"{m['noise_floor']} (N = {m['n']}{sets}; {verdict} at <= 2); `{m.get('command', '')}`")
        else:
            card_lines.append(f"- `{k}`: {json.dumps({kk: vv for kk, vv in m.items() if kk != 'command'})}; "
                              f"`{m.get('command', '')}`")
    card = (a.checkpoint / CARD).read_text()
    marker = "\n## Measured metrics\n"
    before, _, after = card.partition(marker)
    # keep what follows the old list of metrics (notes written after it); the list is the first run of "- " lines
    rest = after.lstrip("\n").splitlines()
    while rest and (rest[0].startswith("- ") or rest[0].startswith("  ")):
        rest.pop(0)
    tail = "\n".join(rest).strip("\n")
    card = (before.rstrip("\n") + "\n" + marker + "\n" + "\n".join(card_lines) + "\n"
            + (f"\n{tail}\n" if tail else ""))
    cfg.pop("gpm_format", None)
    save_checkpoint(a.checkpoint, comp.module, cfg, card=card)
    print(f"recorded {len(lines)} result(s) in {a.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
