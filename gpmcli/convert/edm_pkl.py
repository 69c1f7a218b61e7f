"""``--from edm-pkl``: NVlabs EDM network pickles (``edm-cifar10-32x32-uncond-vp.pkl`` and friends), read without
running any of their code.

Those files are plain pickles whose networks are "persistent" objects: each is stored as a call of
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where ``meta`` holds the Python source of the module
that defines the class (``module_src``), the class name and the object's ``__dict__`` (parameters, buffers,
submodules, constructor arguments). Unpickling normally executes ``module_src``. gpm's :class:`RecordUnpickler`
resolves only:

- the persistence hook, to a function that returns the ``meta`` data as a :class:`Record` (the source is kept as a
  string and never compiled);
- tensor, parameter and storage rebuilding (storages through ``torch.load(weights_only=True)``), ``OrderedDict``,
  ``set``, torch dtypes, numpy scalars and dtypes;
- torch container modules and ``dnnlib.EasyDict``, to records / plain dicts.

Anything else is refused (exit 5) naming the global. The state dict and the constructor arguments are read from the
records and the network is rebuilt with gpm's own implementation (:mod:`gpmcli.nets.edm`).
"""

from __future__ import annotations

import collections
import io
import pickle
from pathlib import Path
from typing import Any

import torch

from gpmcli.convert.common import Converted, Options, deep_update, load_strict, provenance, sha256_file, source_file
from gpmcli.convert.common import write
from gpmcli.errors import UnsafeFileError, UsageError

PRECONDS = {"VPPrecond": "vp", "VEPrecond": "ve", "EDMPrecond": "edm"}


class Record:
    """What a pickled object held, as data: ``kind`` (the persistent class name or the container's), ``state``."""

    kind, state, source = "object", None, None

    def __init__(self, kind: str, state: Any = None, source: str | None = None):
        self.kind, self.state, self.source = kind, state if state is not None else {}, source

    def __setstate__(self, state):  # pickle's BUILD for container modules
        self.state = state if isinstance(state, dict) else {}


def _persistent(meta: dict) -> Record:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafeFileError("a persistence record that is not a class record; refused")
    return Record(str(meta.get("class_name")), dict(meta.get("state") or {}), source=meta.get("module_src"))


def _container(name: str) -> type:
    """A stand-in class for a torch container module: pickle's NEWOBJ + BUILD fill in its state, nothing runs."""
    return type(f"{name}Record", (Record,), {"kind": name})


def _storage_from_bytes(b: bytes):
    return torch.load(io.BytesIO(b), weights_only=True)


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("dnnlib.util", "EasyDict"): dict,
}
for _m in ("ModuleDict", "ModuleList", "Sequential"):
    _ALLOWED[("torch.nn.modules.container", _m)] = _container(_m)


class RecordUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            import importlib

            return importlib.import_module("numpy._core.multiarray").scalar
        if module == "numpy" and name == "dtype":
            import numpy as np

            return np.dtype
        raise UnsafeFileError(f"the pickle needs {module}.{name}, which gpm does not run for --from edm-pkl; refused")


def read_records(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RecordUnpickler` (never runs code from the file)."""
    with open(path, "rb") as f:
        try:
            return RecordUnpickler(f).load()
        except (UnsafeFileError, UsageError):
            raise
        except Exception as e:
            raise UsageError(f"{path.name}: not a readable EDM network pickle ({type(e).__name__}: {e})") from None


def state_dict_of(rec: Record, prefix: str = "") -> dict[str, torch.Tensor]:
    """The flat state dict of a module record (parameters, persistent buffers, submodules, in order)."""
    st = rec.state
    out: dict[str, torch.Tensor] = {}
    for k, v in (st.get("_parameters") or {}).items():
        if v is not None:
            out[prefix + k] = torch.as_tensor(v).detach()
    skip = set(st.get("_non_persistent_buffers_set") or ())
    for k, v in (st.get("_buffers") or {}).items():
        if v is not None and k not in skip:
            out[prefix + k] = torch.as_tensor(v).detach()
    for k, sub in (st.get("_modules") or {}).items():
        if isinstance(sub, Record):
            out.update(state_dict_of(sub, f"{prefix}{k}."))
    return out


def _network(obj: Any) -> Record:
    if isinstance(obj, Record):
        return obj
    if isinstance(obj, dict):
        for key in ("ema", "net"):
            if isinstance(obj.get(key), Record):
                return obj[key]
    raise UsageError("no network in the pickle (expected a dict with 'ema' or a persistent network object)")


def edm_arch(net: Record) -> dict[str, Any]:
    """gpm's ``edm-network`` arch kwargs from the precond record's constructor arguments."""
    if net.kind not in PRECONDS:
        raise UsageError(f"network class {net.kind!r} is not an EDM preconditioner gpm knows "
                         f"({', '.join(PRECONDS)})")
    kw = dict(net.state.get("_init_kwargs") or {})
    args = list(net.state.get("_init_args") or ())
    for name, v in zip(("img_resolution", "img_channels", "label_dim", "use_fp16"), args):
        kw.setdefault(name, v)
    model_type = kw.pop("model_type", "SongUNet")
    if model_type != "SongUNet":
        raise UsageError(f"model_type {model_type!r}: gpm implements EDM's SongUNet (DDPM++/NCSN++) only")
    out = {"precond": PRECONDS[net.kind], "img_resolution": int(kw.pop("img_resolution")),
           "img_channels": int(kw.pop("img_channels")), "label_dim": int(kw.pop("label_dim", 0) or 0),
           "model_type": model_type}
    kw.pop("use_fp16", None)
    for k in ("beta_d", "beta_min", "M", "sigma_data"):
        if k in kw:
            out[k] = kw.pop(k)
    kw.pop("epsilon_t", None), kw.pop("sigma_min", None), kw.pop("sigma_max", None)
    out["model"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
    return out


def convert_edm_pkl(src: str | Path, out: str | Path, fmt: str, opts: Options) -> Converted:
    srcp = source_file(src)
    net_rec = _network(read_records(srcp))
    arch_kw = edm_arch(net_rec)
    sd = state_dict_of(net_rec)
    from gpmcli.nets.edm import EDMNetwork

    try:
        net = EDMNetwork(**arch_kw)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{srcp.name}: cannot build the EDM network from its arguments ({e})") from None
    load_strict(net, sd, srcp.name)
    net.eval()
    size = arch_kw["img_resolution"]
    cfg = {"parameterization": {"type": "x0", "noise_cond": "sigma", "sigma_min": 0.002, "sigma_max": 80.0,
                                "sigma_data": 0.5, "note": "EDM sampler defaults (Karras et al. 2022, Table 1)"},
           "data": {"shape": [arch_kw["img_channels"], size, size], "range": [-1.0, 1.0], "dataset": None}}
    if arch_kw["label_dim"]:
        cfg["classes"] = arch_kw["label_dim"]
    cfg = deep_update(cfg, opts.meta)
    prov = provenance(srcp, sha256_file(srcp), opts.license, opts.source, fmt,
                      {"network_class": net_rec.kind, "module_source_executed": False})
    return write(Path(out), net, {"name": "edm-network", "kwargs": arch_kw}, "score", cfg, prov, fmt, srcp.name,
                 force=opts.force)
