"""Loading foreign weight files without running their code.

``.safetensors`` is read directly. ``.pth/.pt/.ckpt/.bin`` go through ``torch.load(weights_only=True)`` with a narrow
allow-list of harmless globals; a file that needs anything else is refused with :class:`UnsafeFileError` (exit 5)
naming the offending global, unless the caller passes ``trust_pickle=True``.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path
from typing import Any

import torch

from gpmcli.errors import UnsafeFileError, UsageError

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl", ".tar")


def _allowed_globals() -> list[Any]:
    allowed: list[Any] = [argparse.Namespace, collections.OrderedDict, set, frozenset, slice, range, complex]
    try:
        import numpy as np

        allowed += [np.dtype, np.ndarray]
        core = getattr(np, "_core", None) or getattr(np, "core")
        allowed += [core.multiarray.scalar, core.multiarray._reconstruct]
        allowed += [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                                 "uint8", "bool")]
    except Exception:  # pragma: no cover - numpy is a dependency, but stay robust across versions
        pass
    return allowed


def _safe_globals_context(allowed: list[Any]):
    """``torch.serialization.safe_globals`` where it exists (torch >= 2.5); else a no-op (stricter: default list)."""
    ctx = getattr(torch.serialization, "safe_globals", None)
    if ctx is not None:
        return ctx(allowed)
    import contextlib

    return contextlib.nullcontext()


def _pickle_streams(p: Path) -> list[bytes]:
    """The pickle byte streams inside a torch weight file (zip format: ``*/data.pkl``; legacy: the file itself)."""
    import zipfile

    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            return [z.read(n) for n in z.namelist() if n.endswith(".pkl")]
    return [p.read_bytes()]


def scan_pickle_globals(path: str | Path, max_pickles: int = 6) -> list[str] | None:
    """Every ``module.name`` global a weight file's pickles would import, found by parsing the opcodes without
    executing them (:mod:`pickletools`). ``None`` when the file is not a pickle at all."""
    import io
    import pickletools

    found: list[str] = []
    parsed_any = False
    for data in _pickle_streams(Path(path)):
        buf = io.BytesIO(data)
        for _ in range(max_pickles):  # the legacy format is several pickles back to back
            if buf.tell() >= len(data):
                break
            strings: list[str] = []
            try:
                for op, arg, _pos in pickletools.genops(buf):
                    if op.name == "GLOBAL" and isinstance(arg, str):
                        found.append(arg.replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str) and "UNICODE" in op.name or op.name in ("STRING", "BINSTRING",
                                                                                      "SHORT_BINSTRING"):
                        strings.append(str(arg))
                parsed_any = True
            except Exception:
                break  # raw tensor bytes follow the pickles in the legacy format
    if not parsed_any:
        return None
    return list(dict.fromkeys(found))


def _allowed_names() -> set[str]:
    names = set()
    for g in _allowed_globals():
        names.add(f"{getattr(g, '__module__', '')}.{getattr(g, '__qualname__', getattr(g, '__name__', ''))}")
    return names


_TORCH_OK = re.compile(r"^(torch\.|collections\.OrderedDict$|builtins\.(set|frozenset|slice|range|complex|bytearray)$|"
                       r"_codecs\.encode$|numpy\.)")


def load_weights(path: str | Path, *, trust_pickle: bool = False, map_location: str = "cpu") -> Any:
    """The object stored in a weight file (usually a state dict), loaded safely.

    Raises :class:`UnsafeFileError` (exit 5) naming the offending global when the file would need code to unpickle
    and ``trust_pickle`` is false, and :class:`UsageError` (exit 2) when it is not a weight file at all."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"weight file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device=map_location)
        except Exception as e:
            raise UsageError(f"{p}: not a readable safetensors file ({e})") from None
    if trust_pickle:
        try:
            return torch.load(str(p), map_location=map_location, weights_only=False)
        except (ImportError, AttributeError) as e:
            raise UsageError(f"{p}: its pickled objects need code that is not importable here ({e}); add the "
                             "defining module to PYTHONPATH") from None
        except Exception as e:
            raise UsageError(f"{p}: cannot read as a torch weight file ({type(e).__name__}: {e})") from None
    try:
        import warnings

        with _safe_globals_context(_allowed_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol ..." is noise for the user
            return torch.load(str(p), map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError (or RuntimeError on older versions)
        msg = str(e)
    hint = " Re-run with --trust-pickle only if you trust its source."
    m = re.search(r"(?:unsupported global:? (?:GLOBAL )?|GLOBAL )([\w\.]+)", msg, re.IGNORECASE)
    if m:
        raise UnsafeFileError(f"{p}: refused to unpickle {m.group(1)}; loading it would run code from the file."
                              + hint) from None
    globs = scan_pickle_globals(p)
    if globs is None:
        raise UsageError(f"{p}: not a torch weight file (neither torch's zip format nor a pickle)") from None
    allowed = _allowed_names()
    bad = [g for g in globs if g not in allowed and not _TORCH_OK.match(g)]
    if bad:
        raise UnsafeFileError(f"{p}: refused to unpickle {', '.join(bad[:3])}; loading it would run code from the "
                              "file." + hint) from None
    op = re.search(r"Unsupported operand (\d+)", msg)
    what = f"pickle opcode {op.group(1)}" if op else (msg.strip().splitlines()[0][:120] if msg.strip() else "it")
    raise UnsafeFileError(f"{p}: the safe loader cannot read this file ({what}), so it was not loaded." + hint) from None


def state_dict_of(obj: Any, key: str | None = None) -> dict[str, torch.Tensor]:
    """Find the tensor dict in a loaded checkpoint object (``obj[key]``, ``state_dict``, ``model``, or ``obj``)."""
    if key is not None:
        for part in key.split("."):
            if not isinstance(obj, dict) or part not in obj:
                raise UsageError(f"no entry {key!r} in the weight file")
            obj = obj[part]
    elif isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for k in ("state_dict", "model_state_dict", "model", "net", "ema"):
            if isinstance(obj.get(k), dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict):
        raise UsageError("the weight file holds no state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UsageError("the weight file holds no tensors")
    return tensors
