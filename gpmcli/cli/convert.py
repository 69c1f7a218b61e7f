"""``gpm convert``: a thin layer over :func:`gpmcli.convert.convert`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gpmcli.cli.base import app, info
from gpmcli.errors import UsageError

_META = "Role metadata (written to config.json)"


def _floats(text: str | None, what: str, n: int | None = None) -> list[float] | None:
    if text is None:
        return None
    try:
        v = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if n is not None and len(v) != n:
        raise UsageError(f"{what}: expected {n} numbers, got {text!r}")
    return v


def meta_from_flags(*, parameterization=None, sigma_data=None, sigma_min=None, sigma_max=None, schedule=None,
                    latent_dim=None, latent_shape=None, output=None, loss=None, data_shape=None, data_range=None,
                    dataset=None, meta=None) -> dict:
    """Role metadata (config.json form) from the convert flags; ``meta`` (JSON) is merged last."""
    from gpmcli.convert.common import deep_update as _deep_update, parse_json

    m: dict = {}
    p = {k: v for k, v in (("type", parameterization), ("sigma_data", sigma_data), ("sigma_min", sigma_min),
                           ("sigma_max", sigma_max)) if v is not None}
    if schedule is not None:
        p["schedule"] = parse_json(schedule, "--schedule")
    if p:
        m["parameterization"] = p
    lat = {}
    if latent_dim is not None:
        lat["dim"] = latent_dim
    if latent_shape is not None:
        lat["shape"] = [int(v) for v in _floats(latent_shape, "--latent-shape")]
        lat.setdefault("dim", int(__import__("math").prod(lat["shape"])))
    if lat:
        m["latent"] = lat
    if output is not None:
        m["output"] = output
    if loss is not None:
        m["loss"] = loss
    data = {}
    if data_shape is not None:
        data["shape"] = [int(v) for v in _floats(data_shape, "--data-shape")]
    if data_range is not None:
        data["range"] = _floats(data_range, "--data-range", 2)
    if dataset is not None:
        data["dataset"] = dataset
    if data:
        m["data"] = data
    return _deep_update(m, parse_json(meta, "--meta"))


@app.command()
def convert(
    src: str = typer.Argument(..., help="Source weights: a file, a diffusers folder, or hf:ORG/NAME\\[@REV]."),
    out: Path = typer.Option(..., "-o", "--out", help="Output checkpoint directory."),
    fmt: str = typer.Option(..., "--from", help="Format: csinva-mlp-gan-g, csinva-mlp-gan-d, ryhan-wgangp-g, "
                            "ryhan-wgangp-critic, csinva-lenet, csinva-dcgan-d, dcgan-g, dcgan-d, state-dict, "
                            "score-sde, diffusers, edm-pkl, studiogan-g, studiogan-d."),
    role: Optional[str] = typer.Option(None, "--role", help="score|discriminator|generator|classifier|features "
                                       "(state-dict; presets know theirs)."),
    module: Optional[str] = typer.Option(None, "--module", help="Architecture FILE.py:Class (state-dict, score-sde); "
                                         "the file is copied into the checkpoint."),
    kwargs: Optional[str] = typer.Option(None, "--kwargs", help="Constructor kwargs as JSON (also overrides a "
                                         "preset's)."),
    key: Optional[str] = typer.Option(None, "--key", help="Entry of the weight file that holds the state dict "
                                      "(e.g. state_dict or ema)."),
    keep_sigmoid: bool = typer.Option(False, "--keep-sigmoid", help="Presets: keep a discriminator's final sigmoid "
                                      "(output prob instead of logit)."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="score-sde: apply the EMA weights."),
    parameterization: Optional[str] = typer.Option(None, "--parameterization", help="Score: edm|score|eps|x0.",
                                                   rich_help_panel=_META),
    sigma_data: Optional[float] = typer.Option(None, "--sigma-data", rich_help_panel=_META),
    sigma_min: Optional[float] = typer.Option(None, "--sigma-min", rich_help_panel=_META),
    sigma_max: Optional[float] = typer.Option(None, "--sigma-max", rich_help_panel=_META),
    schedule: Optional[str] = typer.Option(None, "--schedule", help='Score eps: JSON, e.g. {"kind": "linear", '
                                           '"beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000}.',
                                           rich_help_panel=_META),
    latent_dim: Optional[int] = typer.Option(None, "--latent-dim", help="Generator latent dimension.",
                                             rich_help_panel=_META),
    latent_shape: Optional[str] = typer.Option(None, "--latent-shape", help="Generator latent shape, e.g. 100,1,1.",
                                               rich_help_panel=_META),
    output: Optional[str] = typer.Option(None, "--output", help="Discriminator output: logit|prob|critic.",
                                         rich_help_panel=_META),
    loss: Optional[str] = typer.Option(None, "--loss", help="Discriminator loss: vanilla|ipm|hinge.",
                                       rich_help_panel=_META),
    data_shape: Optional[str] = typer.Option(None, "--data-shape", help="Data shape, e.g. 1,28,28.",
                                             rich_help_panel=_META),
    data_range: Optional[str] = typer.Option(None, "--data-range", help="Data range lo,hi, e.g. -1,1.",
                                             rich_help_panel=_META),
    dataset: Optional[str] = typer.Option(None, "--dataset", rich_help_panel=_META),
    meta: Optional[str] = typer.Option(None, "--meta", help="Further config.json entries as JSON (merged last).",
                                       rich_help_panel=_META),
    license: Optional[str] = typer.Option(None, "--license", help="License of the original weights.",
                                          rich_help_panel=_META),
    source: Optional[str] = typer.Option(None, "--source", help="Where the weights come from (URL, repo@commit).",
                                         rich_help_panel=_META),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow weight files that run pickled code."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing checkpoint in --out."),
):
    """Convert weights from another project into a gpm checkpoint directory (safetensors + config + card)."""
    from gpmcli.convert import convert as do_convert, parse_json

    m = meta_from_flags(parameterization=parameterization, sigma_data=sigma_data, sigma_min=sigma_min,
                        sigma_max=sigma_max, schedule=schedule, latent_dim=latent_dim, latent_shape=latent_shape,
                        output=output, loss=loss, data_shape=data_shape, data_range=data_range, dataset=dataset,
                        meta=meta)
    res = do_convert(src, out, fmt, role=role, module=module, kwargs=parse_json(kwargs, "--kwargs"), meta=m,
                     keep_sigmoid=keep_sigmoid, ema=ema, key=key, license=license, source=source,
                     trust_pickle=trust_pickle, force=force)
    cfg = res.config
    extra = ""
    if cfg["role"] == "discriminator":
        extra = f", output {cfg['output']}"
    info(f"wrote {cfg['role']} checkpoint {res.out}/ (arch {cfg['arch']['name']}{extra}, "
         f"source sha256 {str(cfg['provenance'].get('sha256'))[:12]}…)")
