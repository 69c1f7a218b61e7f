"""Hugging Face Hub downloads: pinned revisions, cache reuse, offline mode, sha256 verified by gpm.

References look like ``hf:ORG/NAME[@REV][/SUBFOLDER]``. Files land in the ordinary Hugging Face cache (so ``hf`` and
``huggingface_hub`` see them too). ``huggingface_hub`` itself only checks sizes; gpm hashes every file it hands out:
against the sha256 pinned in the registry when there is one, else against the hash the server announced, which the
cache keeps as the blob's file name (sha256 for large files, the git blob id for small ones).

The environment is read at call time, not at import: ``HF_ENDPOINT`` (or ``endpoint=``), ``HF_HUB_CACHE`` /
``HF_HOME`` (or ``cache_dir=``) and ``HF_HUB_OFFLINE`` (or ``offline=``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from gpmcli.errors import DownloadError, IntegrityError, UsageError
from gpmcli.hashing import git_blob_sha1, sha256_file

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REF_RE = re.compile(rf"^(?P<org>{_NAME})/(?P<name>{_NAME})(?:@(?P<rev>[A-Za-z0-9._-]+))?(?:/(?P<sub>[^@]+?))?/?$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

CHECKPOINT_FILES = ("model.safetensors", "config.json")
OPTIONAL_FILES = ("README.md",)


@dataclass(frozen=True)
class HfRef:
    repo_id: str
    revision: str | None = None
    subfolder: str | None = None

    def __str__(self) -> str:
        s = "hf:" + self.repo_id
        if self.revision:
            s += "@" + self.revision
        if self.subfolder:
            s += "/" + self.subfolder
        return s

    @property
    def rev(self) -> str:
        return self.revision or "main"


def parse_hf_ref(ref: str) -> HfRef:
    """``hf:ORG/NAME[@REV][/SUBFOLDER]`` (the ``hf:`` prefix is optional here) -> :class:`HfRef`."""
    s = ref[3:] if ref.startswith("hf:") else ref
    m = _REF_RE.match(s)
    if not m or ".." in (m.group("sub") or "").split("/"):
        raise UsageError(f"not a Hub reference: {ref!r} (expected hf:ORG/NAME[@REV][/SUBFOLDER])")
    return HfRef(f"{m.group('org')}/{m.group('name')}", m.group("rev"), m.group("sub"))


# ---- settings, read at call time -------------------------------------------------------------------------------------
def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "huggingface" / "hub"


def hub_offline(offline: bool | None = None) -> bool:
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) if offline is None else offline


# ---- hashing -------------------------------------------------------------------------------------------------------
def announced_hash(path: str | os.PathLike) -> str | None:
    """The hash the server announced for a cached file: the name of the blob its snapshot entry links to."""
    p = Path(path)
    if not p.is_symlink():
        return None
    name = Path(os.path.realpath(p)).name
    return name if (_HEX64.match(name) or _HEX40.match(name)) else None


def verify_file(path: str | os.PathLike, expected_sha256: str | None = None) -> str:
    """Check ``path`` against ``expected_sha256`` (pinned), else against its announced hash. Returns its sha256.

    Raises :class:`IntegrityError` on a mismatch."""
    digest = sha256_file(path)
    if expected_sha256:
        if digest != expected_sha256.lower():
            raise IntegrityError(f"{path}: sha256 {digest[:12]}… does not match the pinned {expected_sha256[:12]}…; "
                                 "the cached file is corrupt or the revision changed: run `gpm models pull --force`")
        return digest
    ann = announced_hash(path)
    if ann is not None:
        actual = digest if len(ann) == 64 else git_blob_sha1(path)
        if actual != ann:
            raise IntegrityError(f"{path}: content hash {actual[:12]}… does not match the {ann[:12]}… the Hub "
                                 "announced; the cached file is corrupt: run `gpm models pull --force`")
    return digest


# ---- error mapping -------------------------------------------------------------------------------------------------
def _hub_errors() -> dict[str, type]:
    import huggingface_hub.errors as E

    def get(*names):
        for n in names:
            if hasattr(E, n):
                return getattr(E, n)
        return type(f"_Missing{names[0]}", (Exception,), {})

    return {"gated": get("GatedRepoError"), "repo": get("RepositoryNotFoundError"),
            "revision": get("RevisionNotFoundError"), "local": get("LocalEntryNotFoundError"),
            "remote": get("RemoteEntryNotFoundError", "EntryNotFoundError"), "entry": get("EntryNotFoundError"),
            "offline": get("OfflineModeIsEnabled"), "http": get("HfHubHTTPError")}


def _map_error(e: Exception, r: HfRef, filename: str | None, endpoint: str, offline: bool, cache: Path) -> Exception:
    E = _hub_errors()
    what = f"{r.repo_id}@{r.rev}" + (f"/{filename}" if filename else "")

    def error(reason: str, message: str) -> DownloadError:
        return DownloadError(message, reason=reason, repo_id=r.repo_id, revision=r.rev, filename=filename)

    if isinstance(e, E["gated"]):
        return error("gated", f"{r.repo_id} is gated or private on {endpoint}: accept its terms and log in "
                              "(`hf auth login`), or set HF_TOKEN")
    if isinstance(e, E["revision"]):
        return error("revision", f"revision {r.rev!r} not found in {r.repo_id} on {endpoint}; check the @REV part")
    if isinstance(e, E["repo"]):
        return error("repo", f"repository {r.repo_id} not found on {endpoint} (or it is private); check the name")
    if isinstance(e, (E["local"], E["offline"])) or (offline and isinstance(e, FileNotFoundError)):
        if offline:
            return error("offline", f"offline (HF_HUB_OFFLINE=1) and {what} is not in the cache {cache}; "
                                    "run `gpm models pull` while online")
        return error("unreachable", f"cannot reach {endpoint} and {what} is not in the cache {cache}; check the "
                                    "network (or HF_ENDPOINT)")
    if isinstance(e, (E["remote"], E["entry"])):
        return error("entry", f"file {filename or ''} not found in {r.repo_id}@{r.rev} on {endpoint}"
                              + (f" (subfolder {r.subfolder!r})" if r.subfolder else ""))
    if isinstance(e, E["http"]):
        return error("http", f"download of {what} from {endpoint} failed: {str(e).splitlines()[0]}")
    if isinstance(e, (OSError, ConnectionError)) or type(e).__module__.split(".")[0] in ("httpx", "httpx2", "requests",
                                                                                           "urllib3"):
        return error("network", f"download of {what} from {endpoint} failed ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else 'no detail'}); check the network")
    return e


# ---- reachability ----------------------------------------------------------------------------------------------
_UNREACHABLE: dict[str, float] = {}  # endpoint -> time of the last failed probe


def endpoint_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """A quick TCP check of the endpoint, so that a machine without network falls back to the cache, or fails, at
    once instead of after huggingface_hub's retries (about 25 s). A failure is remembered for a minute; behind a
    proxy the check is skipped (assumed reachable)."""
    import socket
    import time
    from urllib.parse import urlsplit

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                       "all_proxy")):
        return True
    if time.monotonic() - _UNREACHABLE.get(endpoint, -1e9) < 60:
        return False
    u = urlsplit(endpoint)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        _UNREACHABLE[endpoint] = time.monotonic()
        return False


# ---- downloads -----------------------------------------------------------------------------------------------------
def _hf_download(r: HfRef, filename: str, *, endpoint: str, cache: Path, offline: bool, force: bool) -> Path:
    from huggingface_hub import hf_hub_download

    if not offline and not force and r.revision and _HEX40.match(r.revision):
        try:  # a commit is immutable: a cached file needs no network at all
            return Path(hf_hub_download(r.repo_id, filename, subfolder=r.subfolder, revision=r.revision,
                                        cache_dir=cache, endpoint=endpoint, local_files_only=True))
        except Exception:
            pass
    if not offline and not endpoint_reachable(endpoint):
        try:  # what huggingface_hub does without network: use the cache for the revision if it is there
            return Path(hf_hub_download(r.repo_id, filename, subfolder=r.subfolder, revision=r.revision,
                                        cache_dir=cache, endpoint=endpoint, local_files_only=True))
        except Exception:
            what = f"{r.repo_id}@{r.rev}/" + (f"{r.subfolder}/" if r.subfolder else "") + filename
            raise DownloadError(f"cannot reach {endpoint} and {what} is not in the cache {cache}; check the "
                                "network (or HF_ENDPOINT)", reason="unreachable", repo_id=r.repo_id, revision=r.rev,
                                filename=filename) from None
    try:
        return Path(hf_hub_download(r.repo_id, filename, subfolder=r.subfolder, revision=r.revision,
                                    cache_dir=cache, endpoint=endpoint, local_files_only=offline,
                                    force_download=force and not offline, library_name="gpm"))
    except Exception as e:  # huggingface_hub raises many types; map the ones a user can cause
        raise _map_error(e, r, filename, endpoint, offline, cache) from None


def download_checkpoint(ref: str, *, expected_sha256: str | None = None, force: bool = False,
                        endpoint: str | None = None, cache_dir: str | os.PathLike | None = None,
                        offline: bool | None = None) -> Path:
    """Fetch (or find in the cache) the gpm checkpoint at ``ref`` and return its local directory.

    ``model.safetensors`` and ``config.json`` are required, ``README.md`` is fetched when present. Every file is
    verified; ``model.safetensors`` against ``expected_sha256`` when given. ``offline=True`` (or ``HF_HUB_OFFLINE=1``)
    never touches the network. Raises :class:`DownloadError` (exit 3) or :class:`IntegrityError` (exit 4)."""
    r = parse_hf_ref(ref)
    ep, cache, off = hub_endpoint(endpoint), hub_cache_dir(cache_dir), hub_offline(offline)
    paths = {f: _hf_download(r, f, endpoint=ep, cache=cache, offline=off, force=force) for f in CHECKPOINT_FILES}
    for f in OPTIONAL_FILES:
        try:
            paths[f] = _hf_download(r, f, endpoint=ep, cache=cache, offline=off, force=force)
        except DownloadError as e:
            if "not found in" not in str(e) and "not in the cache" not in str(e):
                raise
    arch_file = _user_module_file(paths["config.json"])
    if arch_file is not None:  # an architecture shipped as Python code travels with the weights (gpm convert --module)
        name, digest = arch_file
        paths[name] = _hf_download(r, name, endpoint=ep, cache=cache, offline=off, force=force)
        verify_file(paths[name], digest)
    for f, p in paths.items():
        verify_file(p, expected_sha256 if f == "model.safetensors" else None)
    return paths["model.safetensors"].parent


def _user_module_file(config_path: Path) -> tuple[str, str | None] | None:
    """``(file, sha256)`` of a ``user-module`` checkpoint's architecture file, else None."""
    import json

    try:
        arch = json.loads(Path(config_path).read_text()).get("arch") or {}
    except (OSError, ValueError):
        return None  # loading the checkpoint reports a broken config with its own message
    kw = arch.get("kwargs") or {}
    if arch.get("name") != "user-module" or not isinstance(kw.get("file"), str):
        return None
    name = kw["file"]
    if name.startswith("/") or ".." in Path(name).parts:
        return None  # build_user_module refuses paths outside the checkpoint directory
    return name, kw.get("sha256")


def download_file(ref: str, filename: str, *, expected_sha256: str | None = None, force: bool = False,
                  endpoint: str | None = None, cache_dir: str | os.PathLike | None = None,
                  offline: bool | None = None) -> Path:
    """One file of a Hub repository (``filename`` relative to the ref's subfolder), verified like every other."""
    r = parse_hf_ref(ref)
    path = _hf_download(r, filename, endpoint=hub_endpoint(endpoint), cache=hub_cache_dir(cache_dir),
                        offline=hub_offline(offline), force=force)
    verify_file(path, expected_sha256)
    return path


def download_repo(ref: str, *, allow_patterns: list[str] | None = None, force: bool = False,
                  endpoint: str | None = None, cache_dir: str | os.PathLike | None = None,
                  offline: bool | None = None, expected: dict[str, str] | None = None) -> Path:
    """Fetch a whole repository revision (or its ``/SUBFOLDER``) and verify every file; returns the local folder.

    ``expected`` maps repository paths to pinned sha256 values. Useful for repositories that are not gpm checkpoints
    (diffusers pipelines, feature-extractor weights)."""
    from huggingface_hub import snapshot_download

    r = parse_hf_ref(ref)
    ep, cache, off = hub_endpoint(endpoint), hub_cache_dir(cache_dir), hub_offline(offline)
    patterns = allow_patterns
    if r.subfolder:
        patterns = [f"{r.subfolder}/{p}" for p in (allow_patterns or ["*"])] + [f"{r.subfolder}/**"]
    unreachable = not off and not endpoint_reachable(ep)
    try:
        root = Path(snapshot_download(r.repo_id, revision=r.revision, cache_dir=cache, endpoint=ep,
                                      local_files_only=off or unreachable, force_download=force and not off,
                                      allow_patterns=patterns, library_name="gpm"))
    except Exception as e:
        if unreachable:
            raise DownloadError(f"cannot reach {ep} and {r.repo_id}@{r.rev} is not in the cache {cache}; check the "
                                "network (or HF_ENDPOINT)", reason="unreachable", repo_id=r.repo_id,
                                revision=r.rev) from None
        raise _map_error(e, r, None, ep, off, cache) from None
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            verify_file(p, (expected or {}).get(rel))
    return root / r.subfolder if r.subfolder else root
