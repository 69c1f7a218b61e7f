"""Converters: weights from other projects -> gpm checkpoint directories, and networks used without converting.

Formats (``gpm convert SRC -o OUT --from FORMAT``):

- presets for known checkpoints (:data:`PRESETS`): ``csinva-mlp-gan-g``, ``csinva-mlp-gan-d``, ``ryhan-wgangp-g``,
  ``ryhan-wgangp-critic``, ``csinva-lenet``, ``csinva-dcgan-d``, ``dcgan-g``, ``dcgan-d``;
- ``state-dict``: any state dict + the user's architecture ``--module FILE.py:Class [--kwargs JSON]`` + ``--role``
  and the role's metadata;
- ``score-sde``: score_sde_pytorch checkpoint dicts (``model`` with ``module.`` prefix, ``ema.shadow_params``),
  EMA weights applied unless ``ema=False``;
- ``diffusers``: a UNet2DModel repo (local folder or ``hf:ORG/NAME[@REV]``), parameterisation and schedule from its
  scheduler config.

Weights never unpickle code (:func:`gpmcli.safeload.load_weights`) unless ``trust_pickle``. A user architecture is
the user's own Python file: it is imported, and copied into the checkpoint directory (arch ``user-module``, kwargs
``{"file", "class", "kwargs", "sha256"}``) so that the checkpoint is self-contained. Loading such a checkpoint runs
that file, so :func:`build_user_module` refuses unless trusted (``--trust-pickle``).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.machinery
import importlib.util
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gpmcli.errors import DownloadError, IntegrityError, UnsafeFileError, UsageError
from gpmcli.fields.base import Component

ROLES = ("score", "discriminator", "generator", "classifier", "features")
USER_ARCH = "user-module"
_CSINVA = "github.com/csinva/gan-vae-pretrained-pytorch@9b6401e122fa186a3a57f97c5df57e3603121fba"
_RYHAN = "github.com/Ryhan9834/Digit-Generation-WGAN-GP@2edf71e3a2c1191715371c5838d44d222bda5078"
_PTEX = "pytorch/examples DCGAN layout"


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _sha256(path: Path) -> str:
    from gpmcli.checkpoint import sha256_file

    return sha256_file(path)


def parse_json(text: str | None, what: str) -> dict[str, Any]:
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        v = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{what}: not valid JSON ({e})") from None
    if not isinstance(v, dict):
        raise UsageError(f"{what}: expected a JSON object, got {type(v).__name__}")
    return v


def _deep_update(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``module`` requiring identical keys and shapes (one clear error otherwise)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}")
        if bad:
            k = bad[0]
            parts.append(f"shape of {k}: file {tuple(state[k].shape)} vs architecture {tuple(own[k].shape)}")
        raise UsageError(f"{what}: weights do not fit the architecture ({'; '.join(parts)}); check --kwargs / --from")
    module.load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------------------------------------------
# user modules (bring your own network)


def parse_module_spec(spec: str) -> tuple[Path, str]:
    """``FILE.py:Class`` -> (path, class name)."""
    if ":" not in spec:
        raise UsageError(f"--module {spec!r}: expected FILE.py:Class")
    file, cls = spec.rsplit(":", 1)
    path = Path(file).expanduser()
    if not path.is_file():
        raise UsageError(f"--module: file not found: {path}")
    if not cls.isidentifier():
        raise UsageError(f"--module {spec!r}: {cls!r} is not a class name")
    return path, cls


def import_class(path: Path, cls: str) -> type:
    """Import class ``cls`` from the Python file ``path`` (the user's own code)."""
    path = Path(os.path.abspath(path))  # not resolved: in a Hub cache the .py name is a symlink to a suffix-less blob
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    stem = re.sub(r"\W", "_", path.stem)
    mod_name = f"gpm_user_{stem}_{digest}"
    mod = sys.modules.get(mod_name)
    if mod is None:
        loader = importlib.machinery.SourceFileLoader(mod_name, str(path))
        spec = importlib.util.spec_from_file_location(mod_name, path, loader=loader)
        if spec is None or spec.loader is None:
            raise UsageError(f"--module: cannot import {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as e:
            del sys.modules[mod_name]
            raise UsageError(f"--module: importing {path} failed: {type(e).__name__}: {e}") from None
    obj = getattr(mod, cls, None)
    if obj is None:
        raise UsageError(f"--module: {path} has no {cls!r}")
    return obj


def instantiate(path: Path, cls: str, kwargs: dict[str, Any]) -> nn.Module:
    klass = import_class(path, cls)
    try:
        module = klass(**kwargs)
    except Exception as e:
        raise UsageError(f"--module {path.name}:{cls}: constructing it with --kwargs {json.dumps(kwargs)} failed: "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(module, nn.Module):
        raise UsageError(f"--module {path.name}:{cls} is not a torch.nn.Module")
    return module


def build_user_module(arch: dict[str, Any], base: Path, *, trust_code: bool = False) -> nn.Module:
    """Rebuild a ``user-module`` architecture from the Python file stored in checkpoint directory ``base``."""
    kw = arch.get("kwargs", {})
    try:
        fname, cls = kw["file"], kw["class"]
    except KeyError:
        raise UsageError(f"{base}: arch {USER_ARCH!r} needs 'file' and 'class' in its kwargs") from None
    # Checked on the path as written, not resolved: a Hub cache snapshot holds symlinks into its blob store.
    path = Path(os.path.normpath(Path(base).absolute() / fname))
    if Path(os.path.normpath(Path(base).absolute())) not in path.parents:
        raise UnsafeFileError(f"{base}: arch file {fname!r} lies outside the checkpoint directory; refused")
    if not path.is_file():
        raise UsageError(f"{base}: the architecture file {fname} is missing from the checkpoint")
    digest = _sha256(path)
    if kw.get("sha256") and digest != kw["sha256"]:
        raise IntegrityError(f"{path}: sha256 {digest[:12]}… differs from the config's {kw['sha256'][:12]}…")
    if not trust_code:
        raise UnsafeFileError(f"{base} carries Python code ({fname}, class {cls}); loading it runs that code. "
                              "Re-run with --trust-pickle only if you trust its source")
    return instantiate(path, cls, dict(kw.get("kwargs", {})))


# ----------------------------------------------------------------------------------------------------------------
# role metadata


def _default_latent(module: nn.Module) -> int | None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
        if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
            return m.in_channels
    return None


def _final_range(module: nn.Module) -> list[float] | None:
    last = [m for m in module.modules() if not list(m.children())]
    if last and isinstance(last[-1], nn.Tanh):
        return [-1.0, 1.0]
    if last and isinstance(last[-1], nn.Sigmoid):
        return [0.0, 1.0]
    return None


def role_config(role: str, module: nn.Module, meta: dict[str, Any], *, where: str = "--meta") -> dict[str, Any]:
    """Role data + ``data`` for ``role`` from user metadata, with defaults where they are safe to infer."""
    if role not in ROLES:
        raise UsageError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    meta = copy.deepcopy(meta)
    data = dict(meta.pop("data", {}) or {})
    cfg: dict[str, Any] = {}
    if role == "score":
        p = dict(meta.pop("parameterization", {}) or {})
        if not p.get("type"):
            raise UsageError(f"a score network needs its parameterization (edm|score|eps|x0): {where} / "
                             "--parameterization")
        cfg["parameterization"] = p
        if not data.get("shape"):
            raise UsageError(f"a score network needs its data shape: {where} / --data-shape C,H,W")
    elif role == "generator":
        lat = dict(meta.pop("latent", {}) or {})
        if not lat.get("dim"):
            dim = _default_latent(module)
            if dim is None:
                raise UsageError(f"cannot infer the generator's latent dimension; give it ({where} / --latent-dim)")
            lat["dim"] = dim
        lat.setdefault("distribution", "normal")
        lat.setdefault("shape", [int(lat["dim"])])
        cfg["latent"] = lat
        if not data.get("shape") or "range" not in data:
            p = next(module.parameters(), None)
            with torch.no_grad():
                z = torch.zeros(1, *lat["shape"], device=p.device if p is not None else "cpu")
                was = module.training
                module.eval()
                try:
                    y = module(z)
                except Exception as e:
                    raise UsageError(f"the generator does not accept z of shape {list(z.shape)}: "
                                     f"{type(e).__name__}: {e}; set latent shape") from None
                finally:
                    module.train(was)
            data.setdefault("shape", list(y.shape[1:]))
            data.setdefault("range", _final_range(module))
    elif role == "discriminator":
        cfg["output"] = meta.pop("output", "logit")
        if cfg["output"] not in ("logit", "prob", "critic"):
            raise UsageError(f"discriminator output must be logit|prob|critic, not {cfg['output']!r}")
        cfg["loss"] = meta.pop("loss", "ipm" if cfg["output"] == "critic" else "vanilla")
        cfg["time"] = meta.pop("time", None)
    elif role in ("classifier", "features"):
        if "features" in meta:
            cfg["features"] = meta.pop("features")
    cfg.update(meta)
    data.setdefault("range", None)
    data.setdefault("dataset", None)
    cfg["data"] = data
    return cfg


# ----------------------------------------------------------------------------------------------------------------
# presets


@dataclass
class Preset:
    name: str
    role: str
    help: str
    build: Callable[[dict[str, torch.Tensor], bool], tuple[str, dict[str, Any], dict[str, Any]]]
    """state dict, keep_sigmoid -> (arch name, arch kwargs, role config incl. data)"""
    license: str = "unknown"
    source: str = ""


def _n_conv(sd, prefix="main.") -> list[str]:
    keys = [k for k, v in sd.items() if k.startswith(prefix) and k.endswith(".weight") and v.ndim == 4]
    return sorted(keys, key=lambda k: int(k.split(".")[1]))


def _mlp_g(sd, keep):
    z, h, o = sd["0.weight"].shape[1], sd["0.weight"].shape[0], sd["4.weight"].shape[0]
    if o == 1:  # the discriminator has the same three layers, ending in one unit
        raise UsageError(f"the file's last layer has 1 output unit and {z} inputs: a csinva-mlp-gan-d "
                         "(discriminator) layout, not a generator; use --from csinva-mlp-gan-d")
    shape = [1, 28, 28] if o == 784 else [o]
    return "csinva-mlp-gan-g", {"z_dim": z, "hidden": h, "out_shape": shape}, {
        "latent": {"dim": z, "distribution": "normal", "shape": [z]},
        "data": {"shape": shape, "range": [-1.0, 1.0], "dataset": "mnist"}}


def _mlp_d(sd, keep):
    i, h = sd["0.weight"].shape[1], sd["0.weight"].shape[0]
    if sd["4.weight"].shape[0] != 1:
        raise UsageError(f"the file's last layer has {sd['4.weight'].shape[0]} output units: a csinva-mlp-gan-g "
                         "(generator) layout, not a discriminator (one logit); use --from csinva-mlp-gan-g")
    shape = [1, 28, 28] if i == 784 else [i]
    return "csinva-mlp-gan-d", {"in_dim": i, "hidden": h, "prob": keep}, {
        "output": "prob" if keep else "logit", "loss": "vanilla", "time": None,
        "data": {"shape": shape, "range": [-1.0, 1.0], "dataset": "mnist"}}


def _wgan_g(sd, keep):
    w0 = sd["gen.0.0.weight"]
    z, hidden, c = w0.shape[0], w0.shape[1] // 4, sd["gen.3.0.weight"].shape[1]
    return "wgangp-generator", {"z_dim": z, "hidden": hidden, "im_chan": c}, {
        "latent": {"dim": z, "distribution": "normal", "shape": [z]},
        "data": {"shape": [c, 28, 28], "range": [-1.0, 1.0], "dataset": "mnist"}}


def _wgan_c(sd, keep):
    w0 = sd["crit.0.0.weight"]
    return "wgangp-critic", {"im_chan": w0.shape[1], "hidden": w0.shape[0]}, {
        "output": "critic", "loss": "ipm", "time": None,
        "data": {"shape": [w0.shape[1], 28, 28], "range": [-1.0, 1.0], "dataset": "mnist"}}


def _lenet(sd, keep):
    n = sd["fc.f7.weight"].shape[0]
    return "lenet5", {"n_classes": n}, {
        "output": "log_softmax", "classes": n,
        "features": {"dim": sd["fc.f6.weight"].shape[0], "layer": "f6", "method": "features",
                     "description": "f6 activations after ReLU"},
        "data": {"shape": [1, 32, 32], "range": [0.0, 1.0], "dataset": "mnist",
                 "preprocess": {"resize": [32, 32], "mode": "bilinear", "from_shape": [1, 28, 28],
                                "note": "trained on 28x28 digits resized bilinearly to 32x32, no normalisation"}}}


def _dcgan_d_kwargs(sd, keep):
    convs = _n_conv(sd)
    if not convs or convs[0] != "main.0.weight":
        raise UsageError("not a DCGAN discriminator state dict (expected keys main.0.weight ...)")
    w0, wl = sd[convs[0]], sd[convs[-1]]
    L = len(convs) - 1
    return {"nc": int(w0.shape[1]), "ndf": int(w0.shape[0]), "n_layers": L, "final_kernel": int(wl.shape[-1]),
            "bias": "main.0.bias" in sd, "prob": keep}


def _dcgan_d(sd, keep):
    kw = _dcgan_d_kwargs(sd, keep)
    kw.update(final_stride=1, final_padding=0)
    size = 4 * 2 ** kw["n_layers"]
    return "dcgan-discriminator", kw, {
        "output": "prob" if keep else "logit", "loss": "vanilla", "time": None,
        "data": {"shape": [kw["nc"], size, size], "range": [-1.0, 1.0], "dataset": None}}


def _csinva_dcgan_d(sd, keep):
    kw = _dcgan_d_kwargs(sd, keep)
    kw.update(final_stride=2, final_padding=1)
    return "dcgan-discriminator", kw, {
        "output": "prob" if keep else "logit", "loss": "vanilla", "time": None,
        "data": {"shape": [kw["nc"], 28, 28], "range": [0.0, 1.0], "dataset": "mnist",
                 "note": "trained on inputs in [0, 1] (mean D(real) 0.94 in [0, 1], 0.37 in [-1, 1])"}}


def _dcgan_g(sd, keep):
    convs = _n_conv(sd)
    if not convs or convs[0] != "main.0.weight":
        raise UsageError("not a DCGAN generator state dict (expected keys main.0.weight ...)")
    w0, wl = sd[convs[0]], sd[convs[-1]]
    L = len(convs) - 1
    kw = {"nz": int(w0.shape[0]), "ngf": int(wl.shape[0]), "nc": int(wl.shape[1]), "n_layers": L,
          "final_kernel": int(wl.shape[-1]), "final_stride": 2, "final_padding": 1, "bias": "main.0.bias" in sd}
    return "dcgan-generator", kw, {
        "latent": {"dim": kw["nz"], "distribution": "normal", "shape": [kw["nz"]]},
        "data": {"range": [-1.0, 1.0], "dataset": None}}


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("csinva-mlp-gan-g", "generator", "csinva MNIST MLP GAN generator (G--300.ckpt)", _mlp_g, "MIT",
           f"{_CSINVA}/mnist_gan_mlp/weights/G--300.ckpt"),
    Preset("csinva-mlp-gan-d", "discriminator", "csinva MNIST MLP GAN discriminator (D--300.ckpt), logit output",
           _mlp_d, "MIT", f"{_CSINVA}/mnist_gan_mlp/weights/D--300.ckpt"),
    Preset("ryhan-wgangp-g", "generator", "Ryhan9834 MNIST WGAN-GP generator (generator.pth)", _wgan_g, "MIT",
           f"{_RYHAN}/models/generator.pth"),
    Preset("ryhan-wgangp-critic", "discriminator", "Ryhan9834 MNIST WGAN-GP critic (critic.pth)", _wgan_c, "MIT",
           f"{_RYHAN}/models/critic.pth"),
    Preset("csinva-lenet", "classifier", "csinva MNIST LeNet-5 (classifier; 84-d f6 features)", _lenet, "MIT",
           f"{_CSINVA}/mnist_classifier/weights/lenet_epoch=12_test_acc=0.991.pth"),
    Preset("csinva-dcgan-d", "discriminator", "csinva MNIST DCGAN discriminator (netD_epoch_99.pth), inputs in [0,1]",
           _csinva_dcgan_d, "MIT", f"{_CSINVA}/mnist_dcgan/weights/netD_epoch_99.pth"),
    Preset("dcgan-g", "generator", "pytorch/examples DCGAN generator of any width/depth (keys main.i)", _dcgan_g,
           "unknown", _PTEX),
    Preset("dcgan-d", "discriminator", "pytorch/examples DCGAN discriminator of any width/depth (keys main.i)",
           _dcgan_d, "unknown", _PTEX),
]}

FORMATS = tuple(PRESETS) + ("state-dict", "score-sde", "diffusers")


# ----------------------------------------------------------------------------------------------------------------
# conversion


@dataclass
class Converted:
    out: Path
    config: dict[str, Any]
    module: nn.Module


def _card(config: dict[str, Any], fmt: str, src_name: str) -> str:
    from gpmcli.checkpoint import model_card

    prov = config["provenance"]
    lines = [f"# {config['role']} network converted from {src_name}", "",
             f"Converted with `gpm convert --from {fmt}` from `{prov.get('source') or src_name}`.", "",
             f"- License: {prov.get('license', 'unknown')} (the original's; check it before redistributing)",
             f"- Original file sha256: `{prov.get('sha256')}`",
             f"- Architecture: `{config['arch']['name']}` {json.dumps(config['arch'].get('kwargs', {}))}"]
    if config["role"] == "discriminator":
        lines.append(f"- Output: `{config['output']}` (loss `{config['loss']}`)")
    if config["role"] == "generator":
        lines.append(f"- Latent: {json.dumps(config['latent'])}")
    if config["role"] == "score":
        lines.append(f"- Parameterization: {json.dumps(config['parameterization'])}")
    if config.get("features"):
        lines.append(f"- Features: {json.dumps(config['features'])}")
    d = config.get("data", {})
    lines.append(f"- Data: shape {d.get('shape')}, range {d.get('range')}, dataset {d.get('dataset')}")
    if config["arch"]["name"] == USER_ARCH:
        lines += ["", f"The architecture is the Python file `{config['arch']['kwargs']['file']}` in this folder; "
                  "loading the checkpoint runs it (gpm asks for `--trust-pickle`)."]
    return model_card(config, "\n".join(lines) + "\n")


def _read_state(src: Path, trust_pickle: bool, key: str | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
    from gpmcli.safeload import load_weights, state_dict_of

    obj = load_weights(src, trust_pickle=trust_pickle)
    if isinstance(obj, nn.Module):  # only reachable with --trust-pickle (a pickled whole module)
        obj = obj.state_dict()
    return obj, state_dict_of(obj, key)


def _strip_prefix(sd: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _user_arch(module_spec: str, kwargs: dict[str, Any]) -> tuple[nn.Module, Path, str]:
    path, cls = parse_module_spec(module_spec)
    return instantiate(path, cls, kwargs), path, cls


def _write(out: Path, module: nn.Module, arch: dict[str, Any], role: str, role_cfg: dict[str, Any],
           provenance: dict[str, Any], fmt: str, src_name: str, user_file: Path | None = None,
           force: bool = False) -> Converted:
    from gpmcli.checkpoint import CONFIG, WEIGHTS, save_checkpoint

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    if out.is_dir() and (out / WEIGHTS).exists() and not force:
        raise UsageError(f"-o {out}: already holds a checkpoint; pass --force to overwrite")
    config = {"role": role, "arch": arch, **role_cfg, "provenance": provenance, "metrics": {}}
    if user_file is not None:
        out.mkdir(parents=True, exist_ok=True)
        dst = out / arch["kwargs"]["file"]
        if dst.resolve() != user_file.resolve():
            shutil.copyfile(user_file, dst)
    save_checkpoint(out, module, config, card=None)
    # the card needs the final config (with gpm_format); rewrite it with the converter's text
    from gpmcli.checkpoint import atomic_write_text, read_config

    config = read_config(out)
    atomic_write_text(out / "README.md", _card(config, fmt, src_name))
    # round trip: the stored tensors must equal the converted module's
    from safetensors.torch import load_file

    stored = load_file(str(out / WEIGHTS))
    for k, v in module.state_dict().items():
        if not torch.equal(stored[k], v.detach().cpu()):
            raise IntegrityError(f"{out}: stored tensor {k} differs from the converted one")
    assert (out / CONFIG).is_file()
    return Converted(out, config, module)


def _provenance(src: Path | str, digest: str | None, license: str | None, source: str | None, fmt: str,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    prov = {"source": source or str(src), "license": license or "unknown", "sha256": digest,
            "file": Path(str(src)).name, "converted_from": fmt}
    prov.update(extra or {})
    return prov


def convert(src: str | Path, out: str | Path, fmt: str, *, role: str | None = None, module: str | None = None,
            kwargs: dict[str, Any] | None = None, meta: dict[str, Any] | None = None, keep_sigmoid: bool = False,
            ema: bool = True, key: str | None = None, license: str | None = None, source: str | None = None,
            trust_pickle: bool = False, force: bool = False) -> Converted:
    """Convert ``src`` (format ``fmt``) into a gpm checkpoint directory ``out``."""
    kwargs = dict(kwargs or {})
    meta = dict(meta or {})
    if fmt == "diffusers":
        return convert_diffusers(str(src), out, meta=meta, license=license, source=source, force=force)
    if fmt not in FORMATS:
        raise UsageError(f"--from {fmt!r} is not a known format; choose one of {', '.join(FORMATS)}")
    srcp = Path(src)
    if not srcp.is_file():
        raise UsageError(f"source file not found: {srcp}")
    digest = _sha256(srcp)

    if fmt in PRESETS:
        preset = PRESETS[fmt]
        if role and role != preset.role and not (preset.role == "classifier" and role == "features"):
            raise UsageError(f"--from {fmt} makes a {preset.role}, not a {role}")
        if module:
            raise UsageError(f"--module is for --from state-dict/score-sde; --from {fmt} knows its architecture")
        _, sd = _read_state(srcp, trust_pickle, key)
        try:
            arch_name, arch_kw, role_cfg = preset.build(sd, keep_sigmoid)
        except KeyError as e:
            raise UsageError(f"{srcp.name} does not look like a {fmt} state dict (no key {e})") from None
        arch_kw.update(kwargs)
        from gpmcli.nets import build_arch

        net = build_arch({"name": arch_name, "kwargs": arch_kw})
        load_strict(net, sd, f"{srcp.name} (--from {fmt})")
        net.eval()
        role_cfg = _deep_update(role_cfg, meta)
        if preset.role == "generator" and not role_cfg.get("data", {}).get("shape"):
            with torch.no_grad():
                y = net(torch.zeros(1, *role_cfg["latent"]["shape"]))
            role_cfg.setdefault("data", {})["shape"] = list(y.shape[1:])
        prov = _provenance(srcp, digest, license or preset.license, source or preset.source, fmt)
        return _write(Path(out), net, {"name": arch_name, "kwargs": arch_kw}, role or preset.role, role_cfg, prov,
                      fmt, srcp.name, force=force)

    # state-dict and score-sde: the user's architecture
    if not module:
        raise UsageError(f"--from {fmt} needs the architecture: --module FILE.py:Class [--kwargs JSON]")
    if fmt == "score-sde":
        role = role or "score"
    if not role:
        raise UsageError(f"--from {fmt} needs --role ({'|'.join(ROLES)})")
    net, path, cls = _user_arch(module, kwargs)
    obj, _ = None, None
    extra: dict[str, Any] = {}
    if fmt == "score-sde":
        from gpmcli.safeload import load_weights

        obj = load_weights(srcp, trust_pickle=trust_pickle)
        if not isinstance(obj, dict) or "model" not in obj:
            raise UsageError(f"{srcp.name}: not a score_sde checkpoint (no 'model' entry)")
        sd = _strip_prefix({k: v for k, v in obj["model"].items() if isinstance(v, torch.Tensor)})
        load_strict(net, sd, srcp.name)
        extra["step"] = int(obj["step"]) if "step" in obj and obj["step"] is not None else None
        if ema:
            apply_ema(net, obj)
        extra["ema"] = bool(ema)
    else:
        _, sd = _read_state(srcp, trust_pickle, key)
        load_strict(net, _strip_prefix(sd), srcp.name)
    net.eval()
    role_cfg = role_config(role, net, meta, where="--meta")
    file_digest = _sha256(path)
    arch = {"name": USER_ARCH, "kwargs": {"file": path.name, "class": cls, "kwargs": kwargs, "sha256": file_digest}}
    prov = _provenance(srcp, digest, license, source, fmt, extra)
    return _write(Path(out), net, arch, role, role_cfg, prov, fmt, srcp.name, user_file=path, force=force)


def apply_ema(net: nn.Module, ckpt: dict[str, Any]) -> None:
    """Copy score_sde's ``ema.shadow_params`` (an unnamed list in parameter order) into ``net``'s parameters."""
    e = ckpt.get("ema")
    shadow = e.get("shadow_params") if isinstance(e, dict) else None
    if not isinstance(shadow, (list, tuple)):
        raise UsageError("the checkpoint has no ema.shadow_params; pass --no-ema to use the raw weights")
    params = [p for p in net.parameters() if p.requires_grad]
    if len(shadow) != len(params):
        raise UsageError(f"ema.shadow_params has {len(shadow)} tensors but the architecture has {len(params)} "
                         "trainable parameters; wrong --module/--kwargs?")
    with torch.no_grad():
        for i, (p, s) in enumerate(zip(params, shadow)):
            if tuple(p.shape) != tuple(s.shape):
                raise UsageError(f"ema.shadow_params[{i}] has shape {tuple(s.shape)}, parameter {i} of the "
                                 f"architecture {tuple(p.shape)}")
            p.copy_(s)


# ----------------------------------------------------------------------------------------------------------------
# diffusers


def _diffusers_folder(src: str) -> tuple[Path, str]:
    if not src.startswith("hf:"):
        p = Path(src)
        if not p.is_dir():
            raise UsageError(f"--from diffusers expects a folder or hf:ORG/NAME[@REV], not {src}")
        return p, str(p.resolve())
    patterns = ["*.json", "*.safetensors", "*.md"]
    try:  # gpm's Hub layer: pinned revisions, cache reuse, offline mode, every file verified
        from gpmcli.hub import download_repo
    except ImportError:  # pragma: no cover - older hub module
        download_repo = None
    if download_repo is not None:
        path = download_repo(src, allow_patterns=patterns)
        return Path(path), src
    repo, _, rev = src[3:].partition("@")
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo, revision=rev or None, allow_patterns=patterns)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise DownloadError(f"could not download {src}: {type(e).__name__}: {msg}") from None
    return Path(path), src


def convert_diffusers(src: str, out: str | Path, *, meta: dict[str, Any] | None = None, license: str | None = None,
                      source: str | None = None, force: bool = False) -> Converted:
    """A diffusers UNet2DModel repo (folder with ``unet/`` + ``scheduler/``, or a bare UNet folder)."""
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise UsageError("--from diffusers needs the optional dependency: pip install 'gpm[diffusers]'") from None
    root, origin = _diffusers_folder(src)
    unet_dir = root / "unet" if (root / "unet" / "config.json").is_file() else root
    cfg_path = unet_dir / "config.json"
    if not cfg_path.is_file():
        raise UsageError(f"{root}: no unet/config.json or config.json")
    ucfg = json.loads(cfg_path.read_text())
    if ucfg.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise UsageError(f"{cfg_path}: a {ucfg.get('_class_name')}, only UNet2DModel is supported")
    wfiles = [unet_dir / n for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")]
    wfile = next((w for w in wfiles if w.is_file()), None)
    if wfile is None:
        raise UsageError(f"{unet_dir}: no diffusion_pytorch_model.safetensors (or .bin)")
    from gpmcli.safeload import load_weights

    sd = load_weights(wfile)
    unet_kwargs = {k: v for k, v in ucfg.items() if not k.startswith("_")}
    from gpmcli.nets.foreign import DiffusersUNet2D

    net = DiffusersUNet2D(config=unet_kwargs)
    load_strict(net.unet, sd, wfile.name)
    net.eval()

    sched_path = next((p for p in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json")
                       if p.is_file()), None)
    if sched_path is None and "parameterization" not in (meta or {}):
        raise UsageError(f"{root}: no scheduler/scheduler_config.json; give the parameterization with --meta")
    param: dict[str, Any] = {}
    if sched_path is not None:
        scfg = json.loads(sched_path.read_text())
        param = parameterization_from_scheduler(scfg)
    cfg = {"parameterization": param,
           "data": {"shape": [int(ucfg.get("in_channels", 3)), *_size2(ucfg.get("sample_size", 32))],
                    "range": [-1.0, 1.0], "dataset": None}}
    cfg = _deep_update(cfg, meta or {})
    prov = _provenance(wfile, _sha256(wfile), license, source or origin, "diffusers",
                       {"scheduler": json.loads(sched_path.read_text()) if sched_path else None})
    return _write(Path(out), net, {"name": "diffusers-unet2d", "kwargs": {"config": unet_kwargs}}, "score", cfg,
                  prov, "diffusers", origin, force=force)


def _size2(s) -> list[int]:
    return [int(s), int(s)] if isinstance(s, int) else [int(v) for v in s]


def parameterization_from_scheduler(scfg: dict[str, Any]) -> dict[str, Any]:
    """``eps`` with the DDPM schedule (beta schedule + alphas_cumprod) of a diffusers scheduler config.

    The network is called as ``net(x_t, t)`` with ``t`` the (fractional) training timestep (``noise_cond``
    ``"timestep"``).
    """
    pred = scfg.get("prediction_type", "epsilon")
    if pred != "epsilon":
        raise UsageError(f"scheduler prediction_type {pred!r} is not supported (gpm reads epsilon-prediction "
                         "UNets); convert with --from state-dict and give --meta instead")
    kind = "eps"
    T = int(scfg.get("num_train_timesteps", 1000))
    bs = scfg.get("beta_schedule", "linear")
    b0, b1 = float(scfg.get("beta_start", 1e-4)), float(scfg.get("beta_end", 0.02))
    if scfg.get("trained_betas") is not None:
        betas = torch.tensor(scfg["trained_betas"], dtype=torch.float64)
    elif bs == "linear":
        betas = torch.linspace(b0, b1, T, dtype=torch.float64)
    elif bs == "scaled_linear":
        betas = torch.linspace(b0**0.5, b1**0.5, T, dtype=torch.float64) ** 2
    elif bs == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float64)
    else:
        raise UsageError(f"scheduler beta_schedule {bs!r} is not supported")
    ac = torch.cumprod(1.0 - betas, 0)
    sig = ((1 - ac) / ac).sqrt()
    return {"type": kind, "noise_cond": "timestep",
            "schedule": {"kind": bs, "beta_start": b0, "beta_end": b1, "num_train_timesteps": T,
                         "alphas_cumprod": [float(a) for a in ac]},
            "sigma_min": float(sig[0]), "sigma_max": float(sig[-1]), "sigma_data": 0.5}


# ----------------------------------------------------------------------------------------------------------------
# bring your own network without converting


def component_from_module(module: str, weights: str, role: str, *, kwargs: dict[str, Any] | None = None,
                          meta: dict[str, Any] | None = None, trust_pickle: bool = False, key: str | None = None,
                          device: str | torch.device = "cpu") -> Component:
    """A :class:`Component` from the user's ``FILE.py:Class`` and a weight file, as a converted checkpoint would load.

    ``meta`` holds the role data in config.json form (``parameterization``, ``latent``, ``output``, ``loss``,
    ``time``, ``features``, ``data``). score_sde checkpoint dicts are recognised (EMA applied).
    """
    from gpmcli.safeload import load_weights, state_dict_of

    kwargs = dict(kwargs or {})
    path, cls = parse_module_spec(module)
    net = instantiate(path, cls, kwargs)
    wpath = Path(weights)
    obj = load_weights(wpath, trust_pickle=trust_pickle)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and key is None and isinstance(obj.get("model"), dict) and "ema" in obj:
        load_strict(net, _strip_prefix(state_dict_of(obj["model"])), wpath.name)
        if isinstance(obj["ema"], dict) and "shadow_params" in obj["ema"]:
            apply_ema(net, obj)
    else:
        load_strict(net, _strip_prefix(state_dict_of(obj, key)), wpath.name)
    net.to(device).eval()
    role_cfg = role_config(role, net, dict(meta or {}), where=f"--meta {role}=JSON")
    digest = _sha256(wpath)
    config = {"gpm_format": 1, "role": role,
              "arch": {"name": USER_ARCH, "kwargs": {"file": str(path.resolve()), "class": cls, "kwargs": kwargs,
                                                    "sha256": _sha256(path)}},
              **role_cfg,
              "provenance": {"source": str(wpath.resolve()), "license": "unknown", "sha256": digest}, "metrics": {}}
    return Component(role=role, module=net, config=config, ref=f"{path.name}:{cls}+{wpath.name}", path=None,
                     sha256=digest)


def _split_role(value: str, default_role: str | None, flag: str) -> tuple[str, str]:
    head, sep, rest = value.partition("=")
    if sep and head in ROLES:
        return head, rest
    if default_role is None:
        raise UsageError(f"{flag} {value!r}: say which role it is for ({flag} ROLE=..., or --role ROLE)")
    if default_role not in ROLES:
        raise UsageError(f"--role must be one of {', '.join(ROLES)}, not {default_role!r}")
    return default_role, value


def module_options(modules: list[str] | None, weights: list[str] | None, kwargs: list[str] | None,
                   meta: list[str] | None, role: str | None) -> dict[str, dict[str, Any]]:
    """Parse ``gpm sample``'s ``--module/--weights/--kwargs/--meta [ROLE=]VALUE`` (each repeatable) by role.

    Returns ``{role: {"module", "weights", "kwargs", "meta"}}`` for :func:`gpmcli.api.resolve_bundle`.
    """
    out: dict[str, dict[str, Any]] = {}
    for flag, values, field in (("--module", modules, "module"), ("--weights", weights, "weights"),
                                ("--kwargs", kwargs, "kwargs"), ("--meta", meta, "meta")):
        for v in values or []:
            r, val = _split_role(v, role, flag)
            entry = out.setdefault(r, {})
            if field in entry:
                raise UsageError(f"{flag} given twice for role {r}")
            entry[field] = parse_json(val, f"{flag} {r}") if field in ("kwargs", "meta") else val
    for r, e in out.items():
        if "module" not in e or "weights" not in e:
            raise UsageError(f"role {r}: --module and --weights go together (got only "
                             f"{', '.join('--' + k for k in e)})")
    return out
