"""The stored batches of a run (``.gpm-parts/bNNNNNN-NNNNNN-CRC.npz``) and a finished run's ``samples.npz``, as
sources of rows for the final assembly."""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from gpmcli.errors import UsageError
from gpmcli.output.npz import _NpyRows

CHUNK_BYTES = 4 << 20  # rows are assembled into samples.npz in chunks of about this size
PART = re.compile(r"^b(\d+)-(\d+)-[0-9a-f]{8}\.npz$")


class Part:
    """One stored batch: its indices and rows (loaded when the assembly reaches it)."""

    def __init__(self, path: Path, first: int, last: int):
        self.path, self.first, self.last = path, first, last

    def load(self) -> "Part":
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


class Finished:
    """The ``samples.npz`` of a finished run being extended: rows ``0 … m-1``, read from disk chunk by chunk."""

    def __init__(self, rows: _NpyRows, recorded_outside: int | None, clip):
        self.first, self.last, self.src = 0, rows.shape[0] - 1, rows
        self.recorded = recorded_outside
        self.clip = clip
        self.outside = recorded_outside or 0

    def load(self) -> "Finished":
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


def part_files(parts: Path) -> list[tuple[Path, int, int]]:
    """(path, first index, last index) of every stored batch in folder ``parts``, in index order."""
    out = []
    for name in os.listdir(parts) if parts.is_dir() else []:
        m = PART.match(name)
        if m:
            out.append((parts / name, int(m.group(1)), int(m.group(2))))
    out.sort(key=lambda t: (t[1], t[2], t[0].name))
    return out


def finished_rows(npz: Path) -> _NpyRows | None:
    """The rows of a finished run's ``samples.npz`` (None if absent; an unreadable one is deleted with a warning, so
    its samples are made again)."""
    if not npz.is_file():
        return None
    try:
        return _NpyRows(npz)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        logging.getLogger("gpm").warning("%s is unreadable; its samples are made again", npz)
        npz.unlink(missing_ok=True)
        return None


def sources(parts: Path, finished: _NpyRows | None, recorded_outside: int | None, clip) -> list:
    """The stored batches (unreadable ones are deleted with a warning, so their samples are made again) and the
    ``finished`` rows of the run being extended, sorted by first index."""
    srcs: list = []
    if finished is not None:
        srcs.append(Finished(finished, recorded_outside, clip))
    for path, first, last in part_files(parts):
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
        srcs.append(Part(path, first, last))
    srcs.sort(key=lambda s: (s.first, s.last))
    return srcs


def held_up_to(parts: Path, npz: Path | None) -> int:
    """The highest sample index the stored batches (and ``npz``, a finished run's samples) hold; -1 for none."""
    held = max((last for _, _, last in part_files(parts)), default=-1)
    if npz is not None and npz.is_file():
        try:
            held = max(held, _NpyRows(npz).shape[0] - 1)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass
    return held


def assemble(srcs: list, n: int, shape: tuple[int, ...], where: Path):
    """Yield ``(first index, rows)`` covering samples ``0 … n-1`` in order from the sources (:func:`sources`), a
    chunk of about :data:`CHUNK_BYTES` at a time, each source loaded while the chunks reach it; returns the number
    of values the sources counted outside the data range."""
    row_bytes = max(1, int(np.prod(shape, dtype=np.int64)) * 4)
    step = max(1, min(n, CHUNK_BYTES // row_bytes))
    k, active, outside = 0, [], 0
    for a in range(0, n, step):
        b = min(n, a + step)
        while k < len(srcs) and srcs[k].first < b:
            active.append(srcs[k].load())
            k += 1
        buf = np.empty((b - a, *shape), dtype=np.float32)
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
            raise UsageError(f"{where}: sample {missing} was never written (its batch file is missing); run the same "
                             "command with --resume to make it")
        yield a, buf
    return outside
