"""What ``gpm models list|pull|info|verify`` do, as functions returning plain data (the CLI only prints it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpmcli.errors import DownloadError, IntegrityError, UsageError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


def ref_kind(ref: str) -> str:
    if ref.startswith("hf:"):
        return "hf"
    if ref.startswith("url:"):
        return "url"
    if ref.startswith("toy:"):
        return "toy"
    return "local"


def _local_path(ref: str, base: Path) -> Path:
    p = Path(ref)
    return p if p.is_absolute() or p.exists() else base / p


# ---- list ----------------------------------------------------------------------------------------------------------
def list_models(*, registry=None, cache_dir=None) -> dict[str, Any]:
    """Registry bundles (with the ``--model`` kinds they are the default of) and the Hub cache contents."""
    from gpmcli.hub import cache_contents, hub_cache_dir, is_cached
    from gpmcli.registry import Registry

    reg = registry or Registry.load()
    bundles = []
    for name, spec in reg.bundles.items():
        comps = {}
        for role, c in spec.components.items():
            kind = ref_kind(c.ref)
            if c.convert:
                from gpmcli.zoo import cached_conversion

                present = cached_conversion(c.ref, c.convert) is not None
            elif kind == "hf":
                present = is_cached(c.ref, cache_dir=cache_dir)
            elif kind == "local":
                present = (_local_path(c.ref, reg.root) / "model.safetensors").is_file()
            else:
                present = True
            comps[role] = {"ref": c.ref, "sha256": c.sha256, "source": kind, "available": present, "pin": c.pin,
                           "convert": c.convert, "unpinned": c.unpinned}
        bundles.append({"name": name, "description": spec.description, **spec.info,
                        "default_for": sorted(k for k, v in reg.defaults.items() if v == name), "components": comps})
    return {"registry": str(reg.root / "registry.toml"), "bundles": bundles,
            "cache_dir": str(hub_cache_dir(cache_dir)), "cache": cache_contents(cache_dir)}


# ---- pull ----------------------------------------------------------------------------------------------------------
def pull(ref: str, *, force: bool = False, registry=None) -> list[dict[str, Any]]:
    """Download a registry bundle's Hub components, or a Hub repository (``[hf:]ORG/NAME[@REV][/SUB]``).

    Every file is sha256-verified; returns one record per component or repository."""
    from gpmcli.checkpoint import sha256_file
    from gpmcli.hub import download_checkpoint, download_repo
    from gpmcli.registry import Registry

    from gpmcli.refs import parse_ref

    reg = registry or Registry.load()
    r = parse_ref(ref, registry=reg)
    out = []
    if r.kind == "bundle":
        for role, c in reg.bundles[ref].components.items():
            kind = ref_kind(c.ref)
            rec = {"role": role, "ref": c.ref, "source": kind}
            if c.convert:  # a foreign repository or file: download, convert once, cache the conversion
                from gpmcli.registry import load_component

                comp = load_component(c.ref, role, sha256=c.sha256, convert=c.convert)
                rec.update(path=str(comp.path), sha256=comp.sha256, convert=c.convert, pin=c.pin,
                           resolved=comp.config.get("provenance", {}).get("resolved"))
            elif kind == "hf":
                path = download_checkpoint(c.ref, expected_sha256=c.sha256, force=force)
                rec.update(path=str(path), sha256=sha256_file(path / "model.safetensors"))
            elif kind == "local":
                path = _local_path(c.ref, reg.root)
                w = path / "model.safetensors"
                if not w.is_file():
                    raise UsageError(f"bundle {ref}: {role} checkpoint {c.ref} is missing from {reg.root}")
                digest = sha256_file(w)
                if c.sha256 and digest != c.sha256.lower():
                    raise IntegrityError(f"{w}: sha256 {digest[:12]}… does not match the pinned {c.sha256[:12]}…")
                rec.update(path=str(path), sha256=digest)
            out.append(rec)
        return out
    if r.kind == "toy":
        return [{"role": None, "ref": r.value, "source": "toy"}]
    if r.kind == "path":
        return [{"role": None, "ref": r.value, "source": "local", "path": r.value,
                 "note": "a local file or folder: nothing to download"}]
    path = download_repo(r.value, force=force)
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    return [{"ref": r.value, "source": "hf", "path": str(path), "files": files}]


# ---- info ----------------------------------------------------------------------------------------------------------
def _collect_tensors(obj: Any, prefix: str, out: dict, other: dict, depth: int = 0) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix or "<tensor>"] = obj
    elif isinstance(obj, dict) and depth < 8:
        for k, v in obj.items():
            _collect_tensors(v, f"{prefix}.{k}" if prefix else str(k), out, other, depth + 1)
    elif isinstance(obj, (list, tuple)) and depth < 8 and any(isinstance(v, (torch.Tensor, dict)) for v in obj):
        for i, v in enumerate(obj):
            _collect_tensors(v, f"{prefix}.{i}" if prefix else str(i), out, other, depth + 1)
    else:
        r = repr(obj)
        other[prefix or "<object>"] = r if len(r) <= 80 else r[:77] + "..."


def weight_file_info(path: str | Path, *, trust_pickle: bool = False) -> dict[str, Any]:
    """Tensors (name, shape, dtype, parameter count) of a weight file, read without running pickled code."""
    from gpmcli.checkpoint import sha256_file

    p = Path(path)
    tensors: list[dict[str, Any]] = []
    other: dict[str, str] = {}
    metadata = None
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                metadata = f.metadata()
                for k in f.keys():
                    sl = f.get_slice(k)
                    shape = list(sl.get_shape())
                    n = 1
                    for s in shape:
                        n *= s
                    tensors.append({"name": k, "shape": shape, "dtype": str(sl.get_dtype()), "numel": n})
        except Exception as e:
            raise UsageError(f"{p}: not a readable safetensors file ({e})") from None
    else:
        from gpmcli.safeload import load_weights

        obj = load_weights(p, trust_pickle=trust_pickle)
        found: dict = {}
        _collect_tensors(obj, "", found, other)
        tensors = [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
                    "numel": int(v.numel())} for k, v in found.items()]
    info = {"kind": "weights", "path": str(p), "format": "safetensors" if p.suffix == ".safetensors" else "pickle",
            "sha256": sha256_file(p), "size": p.stat().st_size, "tensors": tensors,
            "parameters": int(sum(t["numel"] for t in tensors))}
    if other:
        info["other"] = other
    if metadata:
        info["metadata"] = {k: (v if len(v) <= 200 else v[:197] + "...") for k, v in metadata.items()}
    return info


def checkpoint_info(path: str | Path, ref: str | None = None) -> dict[str, Any]:
    """A gpm checkpoint directory: its config and the tensors of ``model.safetensors``."""
    from gpmcli.checkpoint import read_config

    d = Path(path)
    if not (d / "model.safetensors").is_file():
        weights = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.suffix in WEIGHT_SUFFIXES)[:20]
        hint = f" (weight files inside: {', '.join(weights)}; pass one of them)" if weights else ""
        raise UsageError(f"{d} is not a gpm checkpoint (no model.safetensors){hint}")
    config = read_config(d)
    w = weight_file_info(d / "model.safetensors")
    w.pop("metadata", None)
    return {"kind": "checkpoint", "ref": ref or str(d), "path": str(d), "role": config.get("role"),
            "arch": config.get("arch"), "config": config, "sha256": w["sha256"], "parameters": w["parameters"],
            "tensors": w["tensors"]}


def info(ref: str, *, trust_pickle: bool = False, registry=None) -> dict[str, Any]:
    """Describe a registry bundle, a checkpoint directory, a ``hf:`` checkpoint, a ``toy:`` target or a weight file."""
    from gpmcli.registry import Registry

    from gpmcli.refs import parse_ref

    reg = registry or Registry.load()
    r = parse_ref(ref, registry=reg)
    if r.kind == "bundle":
        spec = reg.bundles[ref]
        comps = {}
        for role, c in spec.components.items():
            entry: dict[str, Any] = {"ref": c.ref, "sha256": c.sha256, "source": ref_kind(c.ref)}
            try:
                if c.convert:
                    from gpmcli.zoo import cached_conversion

                    entry.update(convert=c.convert, pin=c.pin, unpinned=c.unpinned)
                    done = cached_conversion(c.ref, c.convert)
                    sub = (checkpoint_info(done, ref=c.ref) if done else
                           {"role": role, "path": None, "note": "not converted yet (`gpm models pull`)"})
                elif entry["source"] == "hf":
                    sub = _cached_hf_info(c.ref, c.sha256)
                elif entry["source"] == "toy":
                    sub = info(c.ref, registry=reg)
                else:  # a path under the registry folder, even when it is spelled like a bundle name
                    p = Path(c.ref) if Path(c.ref).is_absolute() else reg.root / c.ref
                    sub = checkpoint_info(p, ref=c.ref)
                entry.update({k: sub.get(k) for k in ("role", "arch", "parameters", "path", "config") if k in sub})
            except (DownloadError, UsageError) as e:
                entry["error"] = str(e)
            comps[role] = entry
        return {"kind": "bundle", "name": ref, "description": spec.description, **spec.info,
                "default_for": sorted(k for k, v in reg.defaults.items() if v == ref), "components": comps}
    if r.kind == "hf":
        from gpmcli.hub import download_checkpoint

        return checkpoint_info(download_checkpoint(r.value), ref=r.value)
    if r.kind == "toy":
        from gpmcli.fields.toy import load_toy, toy_config

        gm = load_toy(r.value[4:])
        cfg = toy_config(gm, r.value)
        return {"kind": "toy", "ref": r.value, "role": "score", "config": cfg, "components": int(gm.weights.numel()),
                "dim": int(gm.means.shape[-1]), "parameters": 0}
    p = r.path
    if p.is_file():
        if p.suffix not in WEIGHT_SUFFIXES + (".pkl", ".tar"):
            raise UsageError(f"{p}: not a weight file ({', '.join(WEIGHT_SUFFIXES)})")
        return weight_file_info(p, trust_pickle=trust_pickle)
    return checkpoint_info(p, ref=ref)


def _cached_hf_info(ref: str, sha256: str | None) -> dict[str, Any]:
    from gpmcli.hub import download_checkpoint

    try:
        return checkpoint_info(download_checkpoint(ref, expected_sha256=sha256, offline=True), ref=ref)
    except DownloadError:
        return {"path": None, "note": "not downloaded yet (`gpm models pull`)"}


# ---- verify --------------------------------------------------------------------------------------------------------
def verify(ref: str, *, registry=None) -> list[dict[str, Any]]:
    """Offline integrity check. One record per component: ``status`` is ``ok``, ``mismatch`` or ``missing``."""
    from gpmcli.checkpoint import sha256_file
    from gpmcli.hub import download_checkpoint
    from gpmcli.registry import Registry

    from gpmcli.refs import parse_ref

    reg = registry or Registry.load()
    r = parse_ref(ref, registry=reg)
    if r.kind == "bundle":
        items = [(role, c.ref, c.sha256) for role, c in reg.bundles[ref].components.items()]
        converted = {role: c.convert for role, c in reg.bundles[ref].components.items() if c.convert}
    elif r.kind == "path" and not r.path.is_dir():
        raise UsageError(f"{ref}: a single file has no pinned sha256 to verify against; `gpm models verify` takes a "
                         "bundle, a checkpoint folder or a Hub reference")
    else:
        items = [(None, r.value, None)]
        converted = {}
    out = []
    for role, r, sha in items:
        rec: dict[str, Any] = {"role": role, "ref": r, "pinned_sha256": sha}
        kind = ref_kind(r)
        try:
            if kind == "toy":
                rec["status"] = "ok"
                rec["detail"] = "analytic target"
            elif role in converted:  # a foreign source converted by gpm: check the cached conversion
                from gpmcli.zoo import cached_conversion

                path = cached_conversion(r, converted[role])
                if path is None:
                    rec.update(status="missing", detail="not converted yet (`gpm models pull`)")
                else:
                    rec.update(status="ok", path=str(path), sha256=sha256_file(path / "model.safetensors"))
                    _check_header(path / "model.safetensors", path)
            elif kind == "url":
                from gpmcli.fetch import cache_dir

                path = cache_dir() / r.rsplit("/", 1)[-1]
                if not path.is_file():
                    rec.update(status="missing", detail=f"{path} not found (`gpm models pull`)")
                else:
                    digest = sha256_file(path)
                    ok = not sha or digest == sha.lower()
                    rec.update(status="ok" if ok else "mismatch", path=str(path), sha256=digest,
                               detail=None if ok else f"sha256 {digest} != pinned {sha}")
            elif kind == "hf":
                path = download_checkpoint(r, expected_sha256=sha, offline=True)
                rec.update(status="ok", path=str(path), sha256=sha256_file(path / "model.safetensors"))
            else:
                path = _local_path(r, reg.root)
                w = path / "model.safetensors"
                if not w.is_file():
                    rec.update(status="missing", detail=f"{w} not found")
                else:
                    digest = sha256_file(w)
                    rec.update(path=str(path), sha256=digest)
                    if sha and digest != sha.lower():
                        rec.update(status="mismatch", detail=f"sha256 {digest} != pinned {sha}")
                    else:
                        rec.update(status="ok", detail=None if sha else "no pinned sha256; header read")
                        _check_header(w, path)
        except IntegrityError as e:
            rec.update(status="mismatch", detail=str(e))
        except DownloadError as e:
            rec.update(status="missing", detail=str(e))
        except UsageError as e:
            rec.update(status="mismatch", detail=str(e))
        out.append(rec)
    return out


def _check_header(weights: Path, ckpt_dir: Path) -> None:
    """The config in the safetensors header must agree with ``config.json``."""
    from safetensors import safe_open

    from gpmcli.checkpoint import read_config

    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise UsageError(f"{weights}: unreadable safetensors header ({e})") from None
    if "gpm.config" in meta:
        head, cfg = json.loads(meta["gpm.config"]), read_config(ckpt_dir)
        for key in ("role", "arch"):
            if head.get(key) != cfg.get(key):
                raise UsageError(f"{ckpt_dir}: config.json {key!r} differs from the config stored in model.safetensors")
