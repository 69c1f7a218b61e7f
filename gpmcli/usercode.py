"""Architectures shipped as the user's own Python file (``gpm convert --module FILE.py:Class``).

Checkpoint I/O needs :func:`build_user_module` to rebuild such a checkpoint; it lives here, apart from the converters,
so that loading a checkpoint never imports them. Loading a user-module checkpoint runs its Python file, so
:func:`build_user_module` refuses unless trusted (``--trust-pickle``).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from torch import nn

from gpmcli.errors import IntegrityError, UnsafeFileError, UsageError
from gpmcli.hashing import sha256_file

USER_ARCH = "user-module"


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
    digest = sha256_file(path)[:16]
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
    digest = sha256_file(path)
    if kw.get("sha256") and digest != kw["sha256"]:
        raise IntegrityError(f"{path}: sha256 {digest[:12]}… differs from the config's {kw['sha256'][:12]}…")
    if not trust_code:
        raise UnsafeFileError(f"{base} carries Python code ({fname}, class {cls}); loading it runs that code. "
                              "Re-run with --trust-pickle only if you trust its source")
    return instantiate(path, cls, dict(kw.get("kwargs", {})))
