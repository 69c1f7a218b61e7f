"""The network of ``gpm train discriminator --for diffflow``: built fresh (an MLP for low-dimensional data, a
noise-conditioned conv net for images, both behind EDM-style input scaling) or taken from ``--init``."""

from __future__ import annotations

from gpmcli.errors import UsageError
from gpmcli.nets import arch_config


def build_disc_net(shape: tuple[int, ...], args: dict, sigma_data: float):
    arch = args["arch"]
    if arch == "auto":
        arch = "mlp" if len(shape) == 1 else "convnet"
    if arch == "mlp":
        if len(shape) != 1:
            raise UsageError("--arch mlp is for low-dimensional data; use --arch convnet for images")
        inner = {"name": "mlp", "kwargs": dict(in_dim=shape[0], out_dim=1, hidden=args["hidden"], depth=args["depth"],
                                                cond_dim=32, conditional=True, act=args["act"],
                                                fourier_scale=args["fourier_scale"])}
    elif arch == "convnet":
        if len(shape) != 3:
            raise UsageError("--arch convnet needs image data (C, H, W)")
        inner = {"name": "cond-convnet", "kwargs": dict(in_ch=shape[0], ch=args["ch"], mults=list(args["mults"]),
                                                        blocks=1, emb=128)}
    else:
        raise UsageError(f"--arch must be auto, mlp or convnet, not {arch!r}")
    from gpmcli.nets.precond import SigmaPrecond

    net = SigmaPrecond(inner, sigma_data)
    return net, arch_config(net, inner=inner, sigma_data=sigma_data)


def init_component(a: dict, family: str, shape: tuple[int, ...], dev):
    """``--init REF``: a DiffFlow discriminator of this family and data shape, to continue training (its grid and
    architecture are kept; grid options that disagree with them are refused)."""
    from gpmcli.refs import parse_ref

    comp = parse_ref(a["init"]).component("discriminator", device=dev)
    t = comp.config.get("time") or {}
    if t.get("kind") != "sigma" or comp.config.get("output") != "logit" or not t.get("sigmas"):
        raise UsageError(f"--init {a['init']}: not a DiffFlow discriminator (a noise-conditioned logit with a "
                         "sigma grid in its config)")
    if t.get("family") != family:
        raise UsageError(f"--init {a['init']} is a --family {t.get('family')} discriminator, this run is "
                         f"--family {family}")
    if comp.data_shape and tuple(comp.data_shape) != shape:
        raise UsageError(f"--init {a['init']} is for data of shape {list(comp.data_shape)}, the data has "
                         f"{list(shape)}")
    n = len([v for v in t["sigmas"] if float(v) > 0])
    if a["n_steps"] is not None and a["n_steps"] != n:
        raise UsageError(f"--init {a['init']} has {n} noise levels, not --n-steps {a['n_steps']} (the grid "
                         "comes from --init: leave --n-steps out)")
    if a["sigma_min"] or a["sigma_max"]:
        raise UsageError("--sigma-min/--sigma-max do not go with --init (the grid comes from --init)")
    return comp
