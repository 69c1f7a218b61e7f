"""Every shipped toy bundle and sampler on GPM's pentagon in one table (the README's toy table and the cards' figures).

    python scripts/toy_table.py [--md OUT.md] [--json OUT.jsonl] [--record] [--only BUNDLE,...]

Each row is ``python scripts/eval_toy.py --model KIND --checkpoint BUNDLE [--param ...] [--seed S]`` with the
protocol's defaults (N = 5,000, seed 0, mean over 3 fresh exact sets); ``--record`` writes each bundle's rows into the
model card and config of the component the row measures (``scripts/record_metrics.py --replace``). The exact
analytic score ``toy-pentagon`` is measured with the same samplers as the trained one, for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import eval_toy  # noqa: E402
import record_metrics  # noqa: E402

# (bundle, kind, sampler params, seed, component folder the figure belongs to; None: not recorded)
ROWS = [
    ("toy-pentagon", "edm", {}, 0, None),
    ("toy-pentagon", "ode", {}, 0, None),
    ("toy-pentagon", "ancestral", {}, 0, None),
    ("toy-pentagon", "langevin", {}, 0, None),
    ("toy-pentagon", "pc", {}, 0, None),
    ("toy-pentagon-score", "edm", {}, 0, "toy-pentagon-score"),
    ("toy-pentagon-score", "ode", {}, 0, "toy-pentagon-score"),
    ("toy-pentagon-score", "ancestral", {}, 0, "toy-pentagon-score"),
    ("toy-pentagon-score", "langevin", {}, 0, "toy-pentagon-score"),
    ("toy-pentagon-score", "pc", {}, 0, "toy-pentagon-score"),
    ("toy-pentagon-diffflow", "diffflow", {"lambda": 0}, 0, "toy-pentagon-diffflow/discriminator"),
    ("toy-pentagon-diffflow", "diffflow", {"lambda": 0.5}, 0, "toy-pentagon-diffflow/discriminator"),
    ("toy-pentagon-diffflow", "diffflow", {"lambda": 1}, 0, "toy-pentagon-diffflow/discriminator"),
    ("toy-pentagon-diffflow-kl", "diffflow", {"lambda": 0}, 0, "toy-pentagon-diffflow-kl/discriminator"),
    ("toy-pentagon-diffflow-kl", "diffflow", {"lambda": 0.5}, 0, "toy-pentagon-diffflow-kl/discriminator"),
    ("toy-pentagon-diffflow-kl", "diffflow", {"lambda": 1}, 0, "toy-pentagon-diffflow-kl/discriminator"),
    ("toy-pentagon-discr-flow", "discr-flow", {}, 0, "toy-pentagon-discr-flow/discriminator"),
    ("toy-pentagon-score-gan", "score-gan", {}, 0, "toy-pentagon-score-gan/generator"),
    ("toy-pentagon-gan", "gan", {}, 0, "toy-pentagon-gan/generator"),
    ("toy-pentagon-gan", "gan", {}, 1, "toy-pentagon-gan/generator"),
    ("toy-pentagon-ddls", "ddls", {}, 0, "toy-pentagon-ddls/discriminator"),
]


def command(bundle: str, kind: str, params: dict, seed: int) -> str:
    extra = "".join(f" --param {k}={v}" for k, v in params.items()) + (f" --seed {seed}" if seed else "")
    return f"python scripts/eval_toy.py --model {kind} --checkpoint {bundle}{extra}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--md", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--json", type=Path, default=None, help="write one JSON line per row here")
    ap.add_argument("--record", action="store_true", help="record each row in its component's card and config")
    ap.add_argument("--only", default=None, help="comma-separated bundles")
    a = ap.parse_args(argv)
    only = set(a.only.split(",")) if a.only else None
    results, lines = [], ["| bundle | sampler | SW / noise floor (mean of 3 sets; each set) | pass (<= 2) | reproduce |",
                          "|---|---|---|---|---|"]
    for bundle, kind, params, seed, comp in ROWS:
        if only and bundle not in only:
            continue
        res = eval_toy.evaluate(kind, bundle, "pentagon", params=params or None, seed=seed, fresh_sets=3)
        res["command"] = command(bundle, kind, params, seed)
        results.append((comp, res))
        label = kind + "".join(f" --{k} {v}" for k, v in params.items()) + (f" --seed {seed}" if seed else "")
        per = ", ".join(f"{v:.2f}" for v in res["ratio_per_set"])
        row = (f"| `{bundle}` | `{label}` | {res['ratio']:.2f} ({per}) | {'yes' if res['pass'] else 'no'} | "
               f"`{res['command']}` |")
        lines.append(row)
        print(row, flush=True)
    floor = results[0][1]["noise_floor"] if results else float("nan")
    lines.append(f"\nNoise floor {floor:.4f} (N = 5,000); `python scripts/toy_table.py --md OUT.md` reproduces the table.")
    if a.md:
        a.md.write_text("\n".join(lines) + "\n")
    if a.json:
        a.json.write_text("".join(json.dumps(r) + "\n" for _, r in results))
    if a.record:
        by_comp: dict[str, list[dict]] = {}
        for comp, res in results:
            if comp:
                by_comp.setdefault(comp, []).append(res)
        import tempfile

        for comp, rs in by_comp.items():
            with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
                f.write("".join(json.dumps({k: v for k, v in r.items() if k != "command"}) + "\n" for r in rs))
            argv = [str(ROOT / "checkpoints" / comp), f.name, "--replace"]
            for r in rs:
                argv += ["--command", r["command"]]
            record_metrics.main(argv)
            Path(f.name).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
