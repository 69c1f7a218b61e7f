"""A stand-in for the Hugging Face Hub, for offline tests (standard library only).

It serves arbitrary files per (repository, revision) from memory over threaded HTTP/1.1 on 127.0.0.1 (random port)
and answers what ``huggingface_hub`` asks for (docs/interfaces.md#hub-endpoints):

- ``HEAD/GET /{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` and, for large-file-storage (LFS) files,
  ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``; ``Range: bytes=a-b`` on GET;
- ``GET /api/models/{repo}[/revision/{rev}]`` -> ``{"id", "sha", "siblings": [{"rfilename"}]}``;
- ``GET /api/models/{repo}/tree/{rev}[/{path}]`` -> ``[{"type", "path", "size", "oid", "lfs"?}]``;
- 404s with ``X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound``.

Dataset and space repositories work the same under ``/datasets/...`` and ``/api/datasets/...``.

Usage::

    with HubServer() as hub:
        hub.add_revision("org/name", {"model.safetensors": b"...", "config.json": b"{}"}, branch="main")
        hf_hub_download("org/name", "config.json", endpoint=hub.url, cache_dir=...)

The server is bounded (at most ``max_connections`` connections served at once, each with a socket timeout) and stops
itself after ``lifetime`` seconds, so a test that forgets it never leaves a thread behind.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".npz", ".npy", ".pkl", ".onnx", ".msgpack", ".h5",
                ".gz", ".zip", ".tar")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub uses as ETag for files not stored in LFS)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def files_of_dir(path: str | Path, prefix: str = "") -> dict[str, bytes]:
    """Every file under ``path`` as ``{prefix/relative/path: bytes}`` (e.g. a gpm checkpoint directory)."""
    root = Path(path)
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            out[f"{prefix.strip('/')}/{rel}" if prefix else rel] = p.read_bytes()
    return out


@dataclass
class Revision:
    commit: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    repo_type: str = "model"
    commits: dict[str, Revision] = field(default_factory=dict)  # commit sha -> files
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit sha

    def resolve(self, rev: str) -> Revision | None:
        if rev in self.refs:
            return self.commits[self.refs[rev]]
        return self.commits.get(rev)


class HubServer:
    """In-memory Hub stand-in. ``url`` is the endpoint to pass as ``endpoint=`` / ``HF_ENDPOINT``."""

    def __init__(self, *, lifetime: float = 300.0, max_connections: int = 16, lfs_suffixes=LFS_SUFFIXES):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for tests
        self.lfs_suffixes = tuple(lfs_suffixes)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self.lifetime = lifetime
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # ---- content ---------------------------------------------------------------------------------------------------
    def add_revision(self, repo_id: str, files: dict[str, bytes | str], *, branch: str | None = "main",
                     tags: tuple[str, ...] = (), repo_type: str = "model") -> str:
        """Add one commit holding exactly ``files``; point ``branch`` and ``tags`` at it. Returns the commit sha."""
        blobs = {k.strip("/"): (v.encode() if isinstance(v, str) else bytes(v)) for k, v in files.items()}
        h = hashlib.sha1(repo_id.encode())
        with self._lock:
            repo = self.repos.setdefault((repo_type, repo_id), Repo(repo_id, repo_type))
            h.update(str(len(repo.commits)).encode())
            for k in sorted(blobs):
                h.update(k.encode() + b"\0" + hashlib.sha256(blobs[k]).digest())
            commit = h.hexdigest()
            repo.commits[commit] = Revision(commit, blobs)
            for ref in ((branch,) if branch else ()) + tuple(tags):
                repo.refs[ref] = commit
        return commit

    def is_lfs(self, path: str) -> bool:
        return path.endswith(self.lfs_suffixes)

    # ---- lifecycle -------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.slots = self._slots
        self._httpd.active, self._httpd.lock = set(), threading.Lock()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="hubserver", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        httpd = self._httpd
        if httpd is not None and self._thread is not None and self._thread.is_alive():
            httpd.shutdown()
            httpd.server_close()
            httpd.close_connections()
            self._thread.join(timeout=5)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    slots: threading.BoundedSemaphore

    def process_request(self, request, client_address):
        if not self.slots.acquire(timeout=10):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        with self.lock:
            self.active.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.active.discard(request)
            self.slots.release()

    def close_connections(self) -> None:
        """Drop kept-alive client connections too (a stopped server must look down to pooled clients)."""
        with self.lock:
            socks = list(self.active)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    hub: HubServer

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    # ---- responses -------------------------------------------------------------------------------------------------
    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _error(self, code: str, message: str, head: bool, commit: str | None = None):
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(404, json.dumps({"error": message}).encode(), headers, head)

    def _json(self, obj, head: bool = False):
        self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head)

    # ---- routing ---------------------------------------------------------------------------------------------------
    def do_HEAD(self):
        self._route(head=True)

    def do_GET(self):
        self._route(head=False)

    def _route(self, head: bool):
        split = urlsplit(self.path)
        parts = [unquote(p) for p in split.path.split("/") if p]
        with self.hub._lock:
            self.hub.requests.append((self.command, split.path))
        try:
            if parts and parts[0] == "api" and len(parts) >= 4 and parts[1] in ("models", "datasets", "spaces"):
                return self._api(parts[1][:-1], parts[2:], parse_qs(split.query), head)
            repo_type = "model"
            if parts and parts[0] in ("datasets", "spaces"):
                repo_type, parts = parts[0][:-1], parts[1:]
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
            self._send(404, b"not found", {}, head)
        except (BrokenPipeError, ConnectionResetError):  # client went away
            pass

    def _repo(self, repo_type: str, repo_id: str, head: bool) -> Repo | None:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None:
            self._error("RepoNotFound", f"Repository Not Found for url: {self.path}.", head)
        return repo

    def _revision(self, repo: Repo, rev: str, head: bool) -> Revision | None:
        r = repo.resolve(rev)
        if r is None:
            self._error("RevisionNotFound", f"Invalid rev id: {rev}", head)
        return r

    def _resolve(self, repo_type: str, repo_id: str, rev: str, path: str, head: bool):
        repo = self._repo(repo_type, repo_id, head)
        if repo is None:
            return
        r = self._revision(repo, rev, head)
        if r is None:
            return
        if path not in r.files:
            return self._error("EntryNotFound", f"Entry not found: {path}", head, commit=r.commit)
        data = r.files[path]
        headers = {"X-Repo-Commit": r.commit, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if self.hub.is_lfs(path):
            sha = hashlib.sha256(data).hexdigest()
            headers.update({"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))})
        else:
            headers["ETag"] = f'"{git_blob_sha1(data)}"'
        rng = self.headers.get("Range")
        if rng and not head and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a or 0)
            end = min(int(b), len(data) - 1) if b else len(data) - 1
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start:end + 1], headers)
        self._send(200, data, headers, head)

    def _api(self, repo_type: str, parts: list[str], query: dict, head: bool):
        repo_id = f"{parts[0]}/{parts[1]}"
        repo = self._repo(repo_type, repo_id, head)
        if repo is None:
            return
        rest = parts[2:]
        if not rest or rest[0] == "revision":
            r = self._revision(repo, rest[1] if len(rest) > 1 else "main", head)
            if r is None:
                return
            return self._json({"id": repo_id, "modelId": repo_id, "sha": r.commit, "private": False,
                               "siblings": [{"rfilename": k} for k in sorted(r.files)]}, head)
        if rest[0] == "tree" and len(rest) >= 2:
            r = self._revision(repo, rest[1], head)
            if r is None:
                return
            base = "/".join(rest[2:]).strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            entries, dirs = [], set()
            for k in sorted(r.files):
                if base and not k.startswith(base + "/"):
                    continue
                rel = k[len(base) + 1:] if base else k
                if not recursive and "/" in rel:
                    d = (base + "/" if base else "") + rel.split("/")[0]
                    if d not in dirs:
                        dirs.add(d)
                        entries.append({"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(),
                                        "size": 0})
                    continue
                if recursive:
                    segs = k.split("/")[:-1]
                    for i in range(len(base.split("/")) if base else 0, len(segs)):
                        d = "/".join(segs[:i + 1])
                        if d not in dirs:
                            dirs.add(d)
                            entries.append({"type": "directory", "path": d,
                                            "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0})
                data = r.files[k]
                e = {"type": "file", "path": k, "size": len(data), "oid": git_blob_sha1(data)}
                if self.hub.is_lfs(k):
                    e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(e)
            if base and not entries:
                return self._error("EntryNotFound", f"Entry not found: {base}", head, commit=r.commit)
            return self._json(entries, head)
        self._send(404, b"not found", {}, head)
