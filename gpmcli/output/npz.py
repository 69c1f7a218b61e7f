"""``.npz`` files written atomically and reproducibly, streamed row chunks at a time, and read back by rows."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from gpmcli.checkpoint import atomic_open

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
