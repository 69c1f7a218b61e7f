"""Rotate a 2-D toy checkpoint exactly: the network for the target rotated by an angle, without retraining.

    python scripts/rotate_toy_checkpoint.py checkpoints/toy-pentagon-discr-flow/discriminator OUT --degrees -90

For a rotation R of the plane, a discriminator or score field of the rotated target is the old one composed with
R^T on its input (``f'(x) = f(R^T x)``; isotropic noise and the flow commute with rotations), a denoiser's network
rotates its input and its output (``F'(y) = R F(R^T y)``; EDM's preconditioning is scalar), and a generator of the
rotated target is ``G'(z) = R G(z)``. Both are folded into the network's weights: ``W[:, :2] <- W[:, :2] R^T`` for
the first linear layer on the sample's two coordinates (a condition's embedding columns are left alone), ``W <- R W``,
``b <- R b`` for the last layer of a generator or a score network. Supported: the ``mlp`` architecture and ``sigma-precond`` around it (its
input scaling ``c_in(sigma)`` is a scalar, so it commutes with R). The config and model card are copied with a
``rotated`` record and a card note; the weights are otherwise unchanged. Checked by ``--check``: the rotated network
on R x equals the old one on x (discriminators) to float32 precision.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpmcli.checkpoint import CARD, load_checkpoint, save_checkpoint  # noqa: E402


def rotation(degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    return torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)


def mlp_of(module):
    inner = getattr(module, "inner", module)
    if not hasattr(inner, "net"):
        raise SystemExit("only the mlp architecture (optionally inside sigma-precond) can be rotated")
    return inner


@torch.no_grad()
def rotate(module, role: str, R: torch.Tensor) -> None:
    net = mlp_of(module).net
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    if role in ("generator", "score"):  # output coordinates rotate: W <- R W, b <- R b
        last = linears[-1]
        if last.out_features != 2:
            raise SystemExit("a generator of 2-D samples is needed")
        last.weight.copy_((R @ last.weight.double()).to(last.weight.dtype))
        last.bias.copy_((R @ last.bias.double()).to(last.bias.dtype))
    if role != "generator":  # input coordinates rotate: W[:, :2] <- W[:, :2] R^T
        first = linears[0]
        w = first.weight.double()
        w[:, :2] = w[:, :2] @ R.T
        first.weight.copy_(w.to(first.weight.dtype))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dest")
    ap.add_argument("--degrees", type=float, required=True, help="counter-clockwise rotation of the target")
    ap.add_argument("--note", default=None, help="a line for the model card")
    a = ap.parse_args(argv)
    comp = load_checkpoint(Path(a.src))
    role = comp.config["role"]
    if role not in ("discriminator", "score", "generator"):
        raise SystemExit(f"cannot rotate a {role} checkpoint")
    if (comp.config.get("data") or {}).get("shape") not in ([2], (2,)):
        raise SystemExit("only 2-D toy checkpoints can be rotated")
    R = rotation(a.degrees)
    old = load_checkpoint(Path(a.src)).module.eval()
    rotate(comp.module, role, R)
    new = comp.module.eval()
    torch.set_grad_enabled(False)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    c = torch.rand(64) + 0.1
    args_ = () if role == "generator" or not getattr(mlp_of(old), "conditional", False) else (c,)
    if role == "score":
        err = float((new((x.double() @ R.T).float(), c).double() - old(x, c).double() @ R.T).abs().max())
    elif role == "generator":
        z = torch.randn(64, mlp_of(old).net[0].in_features, generator=torch.Generator().manual_seed(0))
        err = float((new(z).double() - old(z).double() @ R.T).abs().max())
    else:
        err = float((new((x.double() @ R.T).float(), *args_) - old(x, *args_)).abs().max())
    if err > 1e-4:
        raise SystemExit(f"rotation check failed: max difference {err}")
    cfg = {k: v for k, v in comp.config.items() if k != "gpm_format"}
    cfg["rotated"] = {"from": a.src, "degrees": a.degrees, "check_max_abs_diff": err}
    cfg["metrics"] = {}
    card = (Path(a.src) / CARD).read_text()
    if "## Measured metrics" in card:
        card = card[:card.index("## Measured metrics")].rstrip() + "\n"
    card = card.rstrip() + (f"\n\nRotated exactly by {a.degrees:g} degrees from the checkpoint the command above trained "
                            f"(`python scripts/rotate_toy_checkpoint.py SRC DEST --degrees {a.degrees:g}`: the "
                            f"rotation folded into the weights, max deviation {err:.1e}).\n")
    if a.note:
        card += "\n" + a.note + "\n"
    save_checkpoint(Path(a.dest), comp.module, cfg, card=card)
    print(f"wrote {a.dest} (check: max difference {err:.2e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
