"""Sample output: per-sample PNGs, grid, ``samples.npz``, scatter plot for low-dimensional data, ``run.json``.

Every file is written through a hidden temp file and a rename, so no truncated file is ever visible under its final
name. Resumable state lives in ``DIR/.gpm-parts/``: one ``.npz`` per written batch (its global indices, float32 rows
and the count of values that were outside the data range, written after the batch's PNGs), ``manifest.json`` (what
the samples depend on: model, checkpoints, seed, resolved parameters, data shape) and ``lock`` (the writer's
``flock``, with its pid). ``run.json`` is removed when a run starts and written last, so it exists only for a finished
run. ``samples.npz`` is assembled from the parts a chunk of rows at a time, so memory does not grow with ``n``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import signal
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gpmcli.checkpoint import atomic_open, atomic_write_bytes, atomic_write_text
from gpmcli.errors import UsageError


def is_image_shape(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3, 4)


def to_uint8(x: np.ndarray, data_range: tuple[float, float] | None) -> np.ndarray:
    """(N, C, H, W) float in ``data_range`` -> (N, H, W, C) uint8 (round half to even, clipped)."""
    lo, hi = data_range or (-1.0, 1.0)
    y = (x.astype(np.float64) - lo) / (hi - lo) * 255.0
    y = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1))


def png_bytes(img: np.ndarray) -> bytes:
    """(H, W, C) uint8 -> PNG bytes (deterministic: no time stamps)."""
    if img.shape[-1] == 1:
        pil = Image.fromarray(img[..., 0], mode="L")
    else:
        pil = Image.fromarray(img)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def grid_image(imgs: np.ndarray, ncol: int | None = None, pad: int = 2) -> np.ndarray:
    n, h, w, c = imgs.shape
    ncol = ncol or max(1, int(math.ceil(math.sqrt(n))))
    nrow = int(math.ceil(n / ncol))
    out = np.zeros((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = imgs[i]
    return out


def scatter_image(points: np.ndarray, target: np.ndarray | None = None, size: int = 512, lim: float | None = None) -> np.ndarray:
    """A 2-D scatter (first two coordinates) of ``points`` (blue) over ``target`` samples (grey), as RGB uint8."""
    from PIL import ImageDraw

    pts = points[:, :2].astype(np.float64)
    if lim is None:
        allp = pts if target is None else np.concatenate([pts, target[:, :2]])
        finite = allp[np.isfinite(allp).all(1)]
        lim = float(np.quantile(np.abs(finite), 0.995)) * 1.15 if len(finite) else 1.0
        lim = max(lim, 1e-3)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)

    def to_px(p):
        return (p[:, 0] / lim * 0.5 + 0.5) * (size - 1), (0.5 - p[:, 1] / lim * 0.5) * (size - 1)

    c = (size - 1) / 2
    draw.line([(0, c), (size - 1, c)], fill=(230, 230, 230))
    draw.line([(c, 0), (c, size - 1)], fill=(230, 230, 230))
    for arr, col, r in ((target, (170, 170, 170), 1), (pts, (31, 119, 180), 1.5)):
        if arr is None:
            continue
        xs, ys = to_px(arr[:, :2])
        for x, y in zip(xs, ys):
            if np.isfinite(x) and np.isfinite(y):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=col)
    return np.asarray(img)


_SAMPLE_PNG = re.compile(r"^\d{6,}\.png$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """An uncompressed ``.npz`` that ``np.load`` reads, written atomically and byte-for-byte reproducibly (fixed
    time stamps in the zip, unlike ``np.savez``)."""
    with atomic_open(path) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            arr = np.ascontiguousarray(arr)
            with z.open(info, "w", force_zip64=arr.nbytes > (1 << 31)) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _npy_header(shape: tuple[int, ...], dtype=np.float32) -> bytes:
    """The ``.npy`` header ``np.lib.format.write_array`` writes for a C-order array of this shape and dtype."""
    buf = io.BytesIO()
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    try:
        np.lib.format.write_array_header_1_0(buf, d)
    except ValueError:  # a header over 64 KiB: format 2.0, as write_array does
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, d)
    return buf.getvalue()


def write_npz_stream(path: str | Path, name: str, shape: tuple[int, ...], chunks, dtype=np.float32) -> None:
    """A one-array ``.npz`` (the bytes :func:`write_npz` writes) from ``chunks``: arrays whose rows, concatenated,
    are the ``shape[0]`` rows of the array. Only one chunk is in memory at a time."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    rows = 0
    with atomic_open(path) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
        info.external_attr = 0o644 << 16
        with z.open(info, "w", force_zip64=nbytes > (1 << 31)) as member:
            member.write(_npy_header(shape, dtype))
            for c in chunks:
                c = np.ascontiguousarray(c, dtype=dtype)
                if c.shape[1:] != tuple(shape[1:]):
                    raise ValueError(f"chunk of shape {c.shape} for an array of shape {shape}")
                member.write(c.data)
                rows += c.shape[0]
        if rows != shape[0]:
            raise ValueError(f"{rows} rows written for an array of {shape[0]}")


class _NpyRows:
    """Rows of an array stored uncompressed in an ``.npz`` (as gpm writes them), read from disk on demand."""

    def __init__(self, path: Path, key: str = "samples"):
        self.path = path
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(f"{key}.npy")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError("compressed member")
            with z.open(info) as m:
                version = np.lib.format.read_magic(m)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(m)
                header_len = m.tell()
        if fortran or dtype != np.float32:
            raise ValueError(f"unexpected array layout ({dtype}, fortran={fortran})")
        with open(path, "rb") as f:  # the member's data starts after its local header (30 bytes + name + extra)
            f.seek(info.header_offset)
            local = f.read(30)
            name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        self.offset = info.header_offset + 30 + name_len + extra_len + header_len
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * 4

    def rows(self, a: int, b: int) -> np.ndarray:
        with open(self.path, "rb") as f:
            f.seek(self.offset + a * self.row_bytes)
            data = f.read((b - a) * self.row_bytes)
        return np.frombuffer(data, dtype=np.float32).reshape((b - a, *self.shape[1:])).copy()


@contextlib.contextmanager
def deferred_sigint():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block has ended, so a batch's files are all
    written or not started (main thread only; elsewhere, and where SIGINT is ignored, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got and callable(old):
            old(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
        elif got and old == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


_PART = re.compile(r"^b(\d+)-(\d+)-[0-9a-f]{8}\.npz$")
_CHUNK_BYTES = 4 << 20  # rows are assembled into samples.npz in chunks of about this size
SCATTER_MAX = 10_000  # scatter.png shows the first this many samples


class OutputError(UsageError):
    """The output folder cannot be created or written, or another run is writing it (exit 2)."""


def _os_error(e: OSError, what: str | Path) -> OutputError:
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left writing {what}; free some space and run the same command with --resume "
                           "(written samples are kept)")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {what}: permission denied")
    return OutputError(f"cannot write {what}: {e.strerror or e}")


class FolderLock:
    """One writer per output folder: an exclusive ``flock`` on ``DIR/.gpm-parts/lock``, which records the pid.

    The kernel drops the lock when its process ends, however it ends, so a killed run's lock never blocks the next
    run; the pid in the file only names the holder in the message. (Where ``fcntl`` is missing, the recorded pid is
    checked for liveness instead.)"""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None
        self.took_over: int | None = None  # pid of a dead run whose lock file was left behind

    def _holder(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text() or "{}").get("pid"))
        except (OSError, ValueError, TypeError):
            return None

    def acquire(self) -> None:
        import socket

        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock here: pid liveness
            fcntl = None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        locked = False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                os.close(fd)
                pid = self._holder()
                raise OutputError(f"-o {self.path.parent.parent}: folder in use by pid {pid if pid else '?'} (another "
                                  "gpm run writes there); wait for it to end or use another -o") from None
            except OSError:  # a file system without flock: fall back to the recorded pid
                pass
        if not locked:  # pragma: no cover
            pid = self._holder()
            if pid and pid != os.getpid() and _pid_alive(pid):
                os.close(fd)
                raise OutputError(f"-o {self.path.parent.parent}: folder in use by pid {pid}; wait for it to end or "
                                  "use another -o")
        old = self._holder()
        if old and old != os.getpid():
            self.took_over = old
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:  # the file stays: removing it would let two runs lock two different files
            os.close(self.fd)
            self.fd = None


def _pid_alive(pid: int) -> bool:  # pragma: no cover - used only without fcntl
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Part:
    """One stored batch: its indices and rows (loaded when the assembly reaches it)."""

    def __init__(self, path: Path, first: int, last: int):
        self.path, self.first, self.last = path, first, last

    def load(self) -> "_Part":
        with np.load(self.path) as z:
            self.indices, self.x = z["indices"], z["x"]
            self.outside = int(np.sum(z["outside"])) if "outside" in z.files else 0
        return self

    def release(self) -> None:
        self.indices = self.x = None

    def fill(self, buf: np.ndarray, seen: np.ndarray, a: int, b: int) -> None:
        sel = (self.indices >= a) & (self.indices < b)
        buf[self.indices[sel] - a] = self.x[sel]
        seen[self.indices[sel] - a] = True


class _Finished:
    """The ``samples.npz`` of a finished run being extended: rows ``0 … m-1``, read from disk chunk by chunk."""

    def __init__(self, rows: _NpyRows, recorded_outside: int | None, clip):
        self.first, self.last, self.src = 0, rows.shape[0] - 1, rows
        self.recorded = recorded_outside
        self.clip = clip
        self.outside = recorded_outside or 0

    def load(self) -> "_Finished":
        return self

    def release(self) -> None:
        pass

    def fill(self, buf: np.ndarray, seen: np.ndarray, a: int, b: int) -> None:
        hi = min(b, self.last + 1)
        if a >= hi:
            return
        rows = self.src.rows(a, hi)
        k, rows = self.clip(rows)
        if self.recorded is None:  # written before gpm recorded the count: count it now
            self.outside += k
        buf[: hi - a] = rows
        seen[: hi - a] = True


class SampleWriter:
    """Writes the samples of one run into ``out_dir``.

    ``pending()`` lists the global indices still to produce (all of them unless ``resume``); ``write(indices, x)``
    stores one batch (PNGs first, then its part file); ``finish(run_info)`` writes the grid / scatter, ``samples.npz``
    and, last, ``run.json``. Memory stays bounded by a batch and a chunk of rows, whatever ``n`` is.

    ``clamp`` (default) clips values to ``data_range`` before anything is written and counts the values that were
    outside it (``out_of_range`` in ``run.json``); ``clamp=False`` keeps the raw values.

    ``identity`` is what the samples depend on (model, checkpoint hashes, seed, resolved parameters); it is kept in
    ``.gpm-parts/manifest.json`` and a ``resume`` with a different identity is refused instead of mixing samples of two
    runs. ``primary=False`` (other processes of a distributed run) skips the lock, the clean-up and the manifest, which
    the primary process owns. Call ``close()`` when the run ends (it releases the folder's lock).
    """

    def __init__(self, out_dir: str | Path, n: int, data_shape: tuple[int, ...], data_range: tuple[float, float] | None,
                 formats: tuple[str, ...] = ("png", "npz"), resume: bool = False, target: np.ndarray | None = None,
                 identity: dict[str, Any] | None = None, primary: bool = True, clamp: bool = True):
        self.dir = Path(out_dir)
        self.n = n
        self.shape = tuple(data_shape)
        self.range = data_range
        self.clamp = bool(clamp) and data_range is not None
        self.image = is_image_shape(self.shape)
        self.formats = set(formats) if self.image else {"npz"}
        self.target = target
        self.resume = resume
        self.primary = primary
        extra = {"raw_values": True} if (data_range is not None and not clamp) else {}
        self.identity = _jsonable({**(identity or {}), **extra, "data_shape": list(self.shape),
                                   "data_range": list(data_range) if data_range else None})
        self.previous: dict[str, Any] | None = None  # run.json of the run being resumed, if it had finished
        self.outside: int | None = None  # values outside the data range (set by finalize)
        self.lock: FolderLock | None = None
        self.written = 0  # samples written by this run
        if self.dir.exists() and not self.dir.is_dir():
            raise OutputError(f"-o {self.dir}: exists and is not a directory")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.dir}: {e.strerror or e}") from None
        self.parts = self.dir / ".gpm-parts"
        self.manifest = self.parts / "manifest.json"
        if primary:
            try:
                self.parts.mkdir(exist_ok=True)
                self.lock = FolderLock(self.parts / "lock")
                self.lock.acquire()
                self._prepare()
            except OSError as e:
                self.close()
                raise _os_error(e, self.parts) from None
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()

    # ---- start of a run ------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        import logging

        log = logging.getLogger("gpm")
        if self.lock and self.lock.took_over:
            log.info("%s: taking over from pid %d, which is no longer running", self.dir, self.lock.took_over)
        was_gpm_dir = (self.dir / "run.json").is_file() or self.manifest.is_file() or any(self._part_files())
        for folder in (self.dir, self.parts):  # temp files of a killed run
            for p in folder.glob(".*.tmp"):
                p.unlink(missing_ok=True)
        run_json = self.dir / "run.json"
        if self.resume:
            if run_json.is_file():
                try:
                    self.previous = json.loads(run_json.read_text())
                except ValueError:
                    self.previous = None
            if self.manifest.is_file():
                try:
                    old = json.loads(self.manifest.read_text())
                except ValueError:
                    raise UsageError(f"--resume: {self.manifest} is unreadable, so the samples in {self.dir} cannot be "
                                     "matched to this run; drop --resume to start over") from None
                self._check_identity(old)
            self._check_resume_n()
        run_json.unlink(missing_ok=True)  # from now on the folder does not claim a finished run
        if not self.resume:
            for name in ("samples.npz", "grid.png", "scatter.png"):
                (self.dir / name).unlink(missing_ok=True)
            for p in self.parts.iterdir():
                if p.name != "lock":
                    p.unlink()
            if was_gpm_dir:
                for p in self.dir.iterdir():
                    if _SAMPLE_PNG.match(p.name):
                        p.unlink()
        atomic_write_text(self.manifest, json.dumps(self.identity, indent=2, sort_keys=True) + "\n")

    def _check_identity(self, old: dict[str, Any]) -> None:
        keys = sorted(set(old) | set(self.identity))
        diff = [k for k in keys if old.get(k) != self.identity.get(k)]
        if diff:
            detail = "; ".join(f"{k}: {json.dumps(old.get(k))[:60]} then, {json.dumps(self.identity.get(k))[:60]} now"
                               for k in diff[:3])
            raise UsageError(f"--resume: {self.dir} holds samples of a different run ({detail}); use another -o or "
                             "drop --resume to start over")

    def _check_resume_n(self) -> None:
        """A resume never drops samples: -n below what the folder holds is refused."""
        held = -1
        for p, first, last in self._part_files():
            held = max(held, last)
        npz = self.dir / "samples.npz"
        if self.manifest.is_file() and npz.is_file():
            try:
                held = max(held, _NpyRows(npz).shape[0] - 1)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass
        if held >= self.n:
            raise UsageError(f"--resume with -n {self.n}: {self.dir} already holds samples up to index {held}; "
                             f"pass -n {held + 1} or more (or drop --resume to start over)")

    # ---- bookkeeping ---------------------------------------------------------------------------------------------
    def _part_files(self):
        """(path, first index, last index) of every stored batch, in index order of their first sample."""
        out = []
        for name in os.listdir(self.parts) if self.parts.is_dir() else []:
            m = _PART.match(name)
            if m:
                out.append((self.parts / name, int(m.group(1)), int(m.group(2))))
        out.sort(key=lambda t: (t[1], t[2], t[0].name))
        return out

    def _finished_npz(self) -> _NpyRows | None:
        npz = self.dir / "samples.npz"
        if not (self.resume and npz.is_file() and self.manifest.is_file()):
            return None
        try:
            return _NpyRows(npz)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            import logging

            logging.getLogger("gpm").warning("%s is unreadable; its samples are made again", npz)
            npz.unlink(missing_ok=True)
            return None

    def _sources(self) -> list:
        """The stored batches (unreadable ones are deleted with a warning, so their samples are made again) and,
        when extending a finished run, its ``samples.npz``; sorted by first index."""
        import logging

        srcs: list = []
        rows = self._finished_npz()
        if rows is not None:
            rec = (self.previous or {}).get("out_of_range") or {}
            srcs.append(_Finished(rows, rec.get("values"), self._clip))
        for path, first, last in self._part_files():
            try:
                with np.load(path) as z:
                    idx = z["indices"]
                    if idx.ndim != 1 or not len(idx) or idx.min() < first or idx.max() > last:
                        raise ValueError("indices do not match the file name")
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                logging.getLogger("gpm").warning("%s is unreadable (%s); its samples are made again", path,
                                                 type(e).__name__)
                path.unlink(missing_ok=True)
                continue
            srcs.append(_Part(path, first, last))
        srcs.sort(key=lambda s: (s.first, s.last))
        return srcs

    def _done_mask(self) -> np.ndarray:
        done = np.zeros(self.n, dtype=bool)
        for s in self._sources():
            if isinstance(s, _Finished):
                done[: min(self.n, s.last + 1)] = True
                continue
            with np.load(s.path) as z:
                idx = z["indices"]
            done[idx[idx < self.n]] = True
        if "png" in self.formats:
            pngs = np.zeros(self.n, dtype=bool)
            with os.scandir(self.dir) as it:  # streamed: no list of every file name
                for e in it:
                    if _SAMPLE_PNG.match(e.name) and int(e.name[:-4]) < self.n:
                        pngs[int(e.name[:-4])] = True
            done &= pngs
        return done

    def done_indices(self) -> set[int]:
        return {int(i) for i in np.flatnonzero(self._done_mask())}

    def pending(self):
        """The indices still to produce, in increasing order: ``range(n)`` for a fresh run, else an int64 array."""
        if not self.resume:
            return range(self.n)
        return np.flatnonzero(~self._done_mask())

    def _part(self, indices) -> Path:
        import zlib

        crc = zlib.crc32(np.asarray(indices, dtype=np.int64).tobytes())
        return self.parts / f"b{int(indices[0]):06d}-{int(indices[-1]):06d}-{crc:08x}.npz"

    def _clip(self, x: np.ndarray) -> tuple[int, np.ndarray]:
        """(number of values outside the data range, x clipped to it unless the raw values are kept)."""
        if self.range is None:
            return 0, x
        lo, hi = self.range
        k = int(np.count_nonzero((x < lo) | (x > hi)))
        if self.clamp and k:
            x = np.clip(x, lo, hi)
        return k, x

    # ---- writing -------------------------------------------------------------------------------------------------
    def write(self, indices, x: np.ndarray) -> None:
        """Store one batch: rows ``x[r]`` are samples ``indices[r]`` (float32)."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape != (len(indices), *self.shape):
            raise ValueError(f"batch of shape {x.shape} for {len(indices)} samples of shape {self.shape}")
        outside, x = self._clip(x)
        path = self.dir
        with deferred_sigint():  # a Ctrl-C now takes effect once the batch is stored
            try:
                if "png" in self.formats:
                    imgs = to_uint8(x, self.range)
                    for r, i in enumerate(indices):
                        path = self.dir / f"{int(i):06d}.png"
                        atomic_write_bytes(path, png_bytes(imgs[r]))
                path = self._part(indices)
                write_npz(path, indices=np.asarray(indices, dtype=np.int64), x=x,
                          outside=np.asarray(outside, np.int64))
            except OSError as e:
                raise _os_error(e, path) from None
            self.written += len(indices)

    def chunks(self):
        """``(first index, rows)`` covering samples ``0 … n-1`` in order, read from the stored batches a chunk at a
        time; counts the values outside the data range into ``self.outside``."""
        row_bytes = max(1, int(np.prod(self.shape, dtype=np.int64)) * 4)
        step = max(1, min(self.n, _CHUNK_BYTES // row_bytes))
        srcs, k, active, outside = self._sources(), 0, [], 0
        for a in range(0, self.n, step):
            b = min(self.n, a + step)
            while k < len(srcs) and srcs[k].first < b:
                active.append(srcs[k].load())
                k += 1
            buf = np.empty((b - a, *self.shape), dtype=np.float32)
            seen = np.zeros(b - a, dtype=bool)
            for s in active:
                s.fill(buf, seen, a, b)
            for s in active:
                if s.last < b:  # done with it: count it and let its rows go
                    outside += s.outside
                    s.release()
            active = [s for s in active if s.last >= b]
            if not seen.all():
                missing = a + int(np.flatnonzero(~seen)[0])
                raise UsageError(f"{self.dir}: sample {missing} was never written (its batch file is missing); run "
                                 "the same command with --resume to make it")
            yield a, buf
        self.outside = outside

    def finalize(self) -> dict[str, str]:
        """``samples.npz``, ``grid.png`` or ``scatter.png`` from the stored batches; returns the files written."""
        files = {}
        head: list[np.ndarray] = []  # the first samples, for the grid or the scatter plot
        keep = 64 if self.image else SCATTER_MAX

        def rows():
            got = 0
            for _, buf in self.chunks():
                if got < keep:
                    head.append(buf[: keep - got].copy())
                    got += len(head[-1])
                yield buf

        try:
            if "npz" in self.formats:
                path = self.dir / "samples.npz"
                write_npz_stream(path, "samples", (self.n, *self.shape), rows())
                files["npz"] = str(path)
            else:
                for _ in rows():
                    pass
            first = np.concatenate(head)
            if self.image:
                path = self.dir / "grid.png"
                atomic_write_bytes(path, png_bytes(grid_image(to_uint8(first, self.range))))
                files["grid"] = str(path)
                if "png" in self.formats:
                    files["png"] = str(self.dir / "NNNNNN.png")
            elif len(self.shape) == 1 and self.shape[0] >= 2:
                path = self.dir / "scatter.png"
                atomic_write_bytes(path, png_bytes(scatter_image(first, self.target)))
                files["scatter"] = str(path)
        except OSError as e:
            raise _os_error(e, path) from None
        return files

    def out_of_range(self) -> dict[str, Any] | None:
        """What ``run.json`` reports under ``out_of_range`` (None when the data has no range)."""
        if self.range is None or self.outside is None:
            return None
        total = self.n * int(np.prod(self.shape, dtype=np.int64))
        return {"range": list(self.range), "values": int(self.outside), "fraction": self.outside / max(total, 1),
                "clamped": self.clamp}

    def write_run_json(self, run_info: dict[str, Any]) -> None:
        """The last file of a run. The per-batch parts are dropped once ``samples.npz`` holds every sample."""
        try:
            atomic_write_text(self.dir / "run.json", json.dumps(run_info, indent=2, default=str) + "\n")
        except OSError as e:
            raise _os_error(e, self.dir / "run.json") from None
        if "npz" in self.formats:
            for p, _, _ in self._part_files():
                p.unlink(missing_ok=True)

    def finish(self, run_info: dict[str, Any]) -> dict[str, str]:
        files = self.finalize()
        self.write_run_json({**run_info, "files": files, "out_of_range": self.out_of_range()})
        return files
