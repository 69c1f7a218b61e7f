"""What ``gpm models list|pull|info|verify`` do, as functions returning plain data (the CLI only prints it).

Every reference goes through :func:`gpmcli.refs.parse_ref`, so the four subcommands (and ``gpm sample``) accept the
same forms."""

from __future__ import annotations

from typing import Any

from gpmcli.describe import WEIGHT_SUFFIXES, checkpoint_info, weight_file_info  # noqa: F401  (part of this API)


def _parse(ref: str, registry):
    from gpmcli.refs import parse_ref
    from gpmcli.registry import Registry

    return parse_ref(ref, registry=registry or Registry.load())


def list_models(*, registry=None, cache_dir=None) -> dict[str, Any]:
    """Registry bundles (with the ``--model`` kinds they are the default of) and the Hub cache contents."""
    from gpmcli.hub import hub_cache_dir
    from gpmcli.hubcache import cache_contents
    from gpmcli.refs.bundle import BundleRef
    from gpmcli.registry import Registry

    reg = registry or Registry.load()
    bundles = []
    for name, spec in reg.bundles.items():
        refs = BundleRef(name, name, registry=reg).components()
        comps = {role: {"ref": c.ref, "sha256": c.sha256, "source": refs[role].source,
                        "available": refs[role].available(cache_dir), "pin": c.pin, "convert": c.convert,
                        "unpinned": c.unpinned}
                 for role, c in spec.components.items()}
        bundles.append({"name": name, "description": spec.description, **spec.info,
                        "default_for": sorted(k for k, v in reg.defaults.items() if v == name), "components": comps})
    return {"registry": str(reg.root / "registry.toml"), "bundles": bundles,
            "cache_dir": str(hub_cache_dir(cache_dir)), "cache": cache_contents(cache_dir)}


def pull(ref: str, *, force: bool = False, registry=None) -> list[dict[str, Any]]:
    """Download what ``ref`` names (a bundle's components, a Hub repository), every file sha256-verified; one record
    per component or repository."""
    return _parse(ref, registry).pull(force=force)


def info(ref: str, *, trust_pickle: bool = False, registry=None) -> dict[str, Any]:
    """Describe a registry bundle, a checkpoint directory, a ``hf:`` checkpoint, a ``toy:`` target or a weight file."""
    return _parse(ref, registry).info(trust_pickle=trust_pickle)


def verify(ref: str, *, registry=None) -> list[dict[str, Any]]:
    """Offline integrity check. One record per component: ``status`` is ``ok``, ``mismatch`` or ``missing``."""
    return _parse(ref, registry).verify()
