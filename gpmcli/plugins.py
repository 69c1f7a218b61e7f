"""Discover the modules of a package that register themselves (architectures, sampler kinds, training roles).

Each such package keeps a registry dict filled by its modules at import time; :func:`import_all` imports every module
of the package once, so that adding one is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil

_DONE: set[tuple[str, tuple[str, ...]]] = set()


def import_all(package: str, path, *, skip: tuple[str, ...] = ()) -> None:
    """Import every module of ``package`` (its ``__path__`` is ``path``) but ``skip``, the first time it is asked for
    this path (a folder added to the package's ``__path__`` is searched on the next call)."""
    key = (package, tuple(str(p) for p in path))
    if key in _DONE:
        return
    for info in pkgutil.iter_modules(path):
        if info.name not in skip:
            importlib.import_module(f"{package}.{info.name}")
    _DONE.add(key)
