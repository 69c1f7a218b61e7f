"""Converters: weights from other projects -> gpm checkpoint directories, and networks used without converting.

``gpm convert SRC -o OUT --from FORMAT``. One module per source format, each with a function
``(src, out, fmt, opts: Options) -> Converted``; :data:`CONVERTERS` names them. Adding a format means adding its module
and one line there.

- presets for known checkpoints (:mod:`.presets`, a data table): ``csinva-mlp-gan-g``, ``dcgan-d``, ...;
- ``state-dict``: any state dict + the user's architecture ``--module FILE.py:Class`` (:mod:`.user`);
- ``score-sde``: score_sde_pytorch checkpoint dicts, EMA weights applied (:mod:`.score_sde`, :mod:`.ema`);
- ``diffusers``: a UNet2DModel repo, parameterisation from its scheduler config (:mod:`.diffusers`,
  :mod:`.schedulers`);
- ``edm-pkl``: NVlabs EDM network pickles, read by a restricted unpickler that never runs their code
  (:mod:`.edm_pkl`).

Weights never unpickle code (:func:`gpmcli.safeload.load_weights`) unless ``trust_pickle``. Checkpoint I/O
(:mod:`gpmcli.checkpoint`) and the Hub layer (:mod:`gpmcli.hub`) never import this package.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from gpmcli.convert.common import Converted, Options, deep_update, load_strict, parse_json
from gpmcli.convert.ema import apply_ema
from gpmcli.convert.presets import PRESETS, Preset
from gpmcli.convert.roles import ROLES, role_config
from gpmcli.convert.schedulers import parameterization_from_scheduler
from gpmcli.convert.user import component_from_module, module_options
from gpmcli.errors import UsageError
from gpmcli.usercode import USER_ARCH, build_user_module, import_class, instantiate, parse_module_spec

_deep_update = deep_update  # older name, still imported by callers

# format -> "module:function" (imported on use, so that a format's optional dependencies load only when it is used)
CONVERTERS: dict[str, str] = {
    **{name: "presets:convert_preset" for name in PRESETS},
    "state-dict": "user:convert_state_dict",
    "score-sde": "score_sde:convert_score_sde",
    "diffusers": "diffusers:convert_diffusers",
    "edm-pkl": "edm_pkl:convert_edm_pkl",
    "studiogan-g": "studiogan:convert_studiogan",
    "studiogan-d": "studiogan:convert_studiogan",
}
FORMATS = tuple(CONVERTERS)


def converter(fmt: str):
    if fmt not in CONVERTERS:
        raise UsageError(f"--from {fmt!r} is not a known format; choose one of {', '.join(FORMATS)}")
    mod, func = CONVERTERS[fmt].split(":")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), func)


def convert(src: str | Path, out: str | Path, fmt: str, *, role: str | None = None, module: str | None = None,
            kwargs: dict[str, Any] | None = None, meta: dict[str, Any] | None = None, keep_sigmoid: bool = False,
            ema: bool = True, key: str | None = None, license: str | None = None, source: str | None = None,
            trust_pickle: bool = False, force: bool = False) -> Converted:
    """Convert ``src`` (format ``fmt``) into a gpm checkpoint directory ``out``."""
    opts = Options(role=role, module=module, kwargs=dict(kwargs or {}), meta=dict(meta or {}),
                   keep_sigmoid=keep_sigmoid, ema=ema, key=key, license=license, source=source,
                   trust_pickle=trust_pickle, force=force)
    return converter(fmt)(src, out, fmt, opts)


__all__ = ["CONVERTERS", "FORMATS", "PRESETS", "ROLES", "USER_ARCH", "Converted", "Options", "Preset", "apply_ema",
           "build_user_module", "component_from_module", "convert", "converter", "deep_update", "import_class",
           "instantiate", "load_strict", "module_options", "parameterization_from_scheduler", "parse_json",
           "parse_module_spec", "role_config"]
