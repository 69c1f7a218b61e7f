"""Model and checkpoint references: one parser, one class per form, the same four methods for every command.

:func:`parse_ref` turns what a user typed into a :class:`Ref`. Every command that takes a reference goes through it
(``gpm sample --checkpoint/--score/--discriminator/--generator``, ``gpm models pull|info|verify``, ``gpm train``'s
``--score``/``--generator``/``--init``, ``gpm fid --lenet-weights``), so all accept the same forms and refuse the rest
with the same one-line message (exit 2). The forms, tried in this order:

1. ``SCHEME:REST`` for a scheme in :data:`SCHEMES`: ``toy:NAME|FILE.json``, ``hf:ORG/NAME[@REV][/SUBFOLDER]``
   (``url:`` exists only inside the registry, for files converted on first use);
2. a bundle name in ``checkpoints/registry.toml``;
3. an existing file or folder, here or under the registry folder (``checkpoints/``, as the registry's own components);
4. ``ORG/NAME[@REV][/SUBFOLDER]``: a Hub reference written without ``hf:``.

A :class:`Ref` offers ``load()`` (a :class:`~gpmcli.fields.base.Bundle`; a bundle of one for a single network),
``component(role)``, ``verify()`` and ``pull()`` (lists of records, one per network) and ``info()``.

Adding a checkpoint source is one module with a :class:`Ref` subclass and one line in :data:`SCHEMES` (or a call to
:func:`register_scheme`): ``parse_ref`` then hands it every ``SCHEME:...`` text, and every command accepts it.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from gpmcli.errors import BadReferenceError
from gpmcli.refs.base import Ref, check_role

#: scheme -> "module:Class" of its :class:`Ref` subclass (imported on first use)
SCHEMES: dict[str, str] = {
    "toy": "gpmcli.refs.toy:ToyRef",
    "hf": "gpmcli.refs.hub:HubRef",
    "url": "gpmcli.refs.url:UrlRef",
}
KINDS = ("bundle", "hf", "toy", "path", "url")
FORMS = "a registry bundle, an existing file or folder, [hf:]ORG/NAME[@REV][/SUBFOLDER] or toy:NAME"
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):")

__all__ = ["FORMS", "KINDS", "SCHEMES", "Ref", "check_role", "parse_component", "parse_ref", "register_scheme"]


def register_scheme(scheme: str, target: str | type) -> None:
    """Make ``SCHEME:...`` references resolve through ``target`` (a :class:`Ref` subclass or ``"module:Class"``)."""
    SCHEMES[scheme] = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def _scheme_class(scheme: str) -> type[Ref]:
    mod, _, name = SCHEMES[scheme].partition(":")
    return getattr(importlib.import_module(mod), name)


def _schemed(text: str) -> str | None:
    m = _SCHEME.match(text)
    return m.group(1) if m and m.group(1) in SCHEMES else None


def parse_ref(text: str, *, registry=None) -> Ref:
    """The :class:`Ref` for what a user wrote (see the module docstring for the forms and their order).

    ``registry`` (a :class:`gpmcli.registry.Registry`) is read from ``checkpoints/`` when it is needed and not given.
    Raises :class:`~gpmcli.errors.BadReferenceError` (exit 2) for text that is none of the forms."""
    text = str(text).strip()
    if not text:
        raise BadReferenceError(f"empty reference; expected {FORMS}", ref=text, forms=FORMS)
    scheme = _schemed(text)
    if scheme is not None:
        return _scheme_class(scheme).parse(text)
    if registry is None:
        from gpmcli.registry import Registry

        registry = Registry.load()
    if text in registry.bundles:
        from gpmcli.refs.bundle import BundleRef

        return BundleRef(text, text, registry=registry)
    if Path(text).exists() or (registry.root / text).exists():
        from gpmcli.refs.local import PathRef

        return PathRef(text, text, base=registry.root)  # here, else under the registry folder (like its components)
    _refuse_missing_local_path(text, registry.root)
    from gpmcli.errors import UsageError
    from gpmcli.refs.hub import HubRef

    try:
        return HubRef.parse(text)
    except UsageError:
        pass
    m = _SCHEME.match(text)
    unknown = f" (unknown scheme {m.group(1)}:; known: {', '.join(s + ':' for s in SCHEMES)})" if m else ""
    raise BadReferenceError(f"checkpoint not found: {text} is not {FORMS}{unknown}; `gpm models list` shows the "
                            "bundles", ref=text, forms=FORMS)


def _refuse_missing_local_path(text: str, root: Path) -> None:
    """A path whose leading folder exists here (or under the registry folder) but which does not exist itself is a
    mistyped local path, not a Hub repository: say so, with the nearest names in the deepest folder that exists."""
    import difflib

    parts = Path(text).parts
    for base in (Path("."), root):
        if len(parts) < 2 or not (base / parts[0]).is_dir():
            continue
        folder, i = base / parts[0], 1
        while i < len(parts) - 1 and (folder / parts[i]).is_dir():
            folder, i = folder / parts[i], i + 1
        names = sorted(p.name for p in folder.iterdir())
        near = difflib.get_close_matches(parts[i], names, n=3)
        hint = f"; did you mean {', '.join(str(Path(*parts[:i], n)) for n in near)}?" if near else ""
        raise BadReferenceError(f"checkpoint not found: {text} does not exist (the folder {folder} does, and has no "
                                f"{parts[i]}){hint} (a Hub repository: hf:{text})", ref=text, forms=FORMS)


def parse_component(text: str, *, base: Path | None = None, sha256: str | None = None,
                    convert: str | None = None) -> Ref:
    """A registry component's reference: a scheme, else a checkpoint folder relative to ``base`` (the registry
    folder), even when it is spelled like a bundle name. ``sha256`` pins the weights; ``convert`` names the
    ``gpm convert`` format of a foreign source converted once on first use (:mod:`gpmcli.zoo`)."""
    text = str(text).strip()
    if convert is not None:
        from gpmcli.refs.converted import ConvertedRef

        return ConvertedRef(text, text, sha256=sha256, convert=convert, pinned=True)
    scheme = _schemed(text)
    if scheme is not None:
        return _scheme_class(scheme).parse(text, sha256=sha256, pinned=True)
    from gpmcli.refs.local import PathRef

    return PathRef(text, text, sha256=sha256, base=base, pinned=True)
