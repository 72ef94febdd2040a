"""MRC maps and MRCS stacks via mrcfile; arrays are (z, y, x) / (n, y, x), voxel size in Å."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cryopipe.errors import CryopipeError
from cryopipe.io.atomic import atomic_path


def _fixed_label(mrc) -> None:
    # mrcfile stamps the creation time into label 0; a fixed label keeps files byte-identical per seed.
    mrc.header.label[0] = b"cryopipe"
    mrc.header.nlabl = 1


def write_mrc(path: str | os.PathLike, data: np.ndarray, voxel_size: float) -> None:
    import mrcfile

    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
            mrc.voxel_size = voxel_size
            _fixed_label(mrc)
            if data.ndim == 3 and Path(path).suffix == ".mrcs":
                mrc.set_image_stack()


def read_mrc(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Whole file into memory: (data, voxel size x)."""
    import mrcfile

    if not Path(path).exists():
        raise CryopipeError(f"{path}: MRC file not found")
    try:
        with mrcfile.open(path, permissive=True) as mrc:
            return np.asarray(mrc.data, dtype=np.float32).copy(), float(mrc.voxel_size.x)
    except ValueError as e:
        raise CryopipeError(f"{path}: not a readable MRC file ({e})") from None


def open_stack(path: str | os.PathLike) -> np.ndarray:
    """Memory-mapped (n, y, x) view of an .mrcs stack (a single image reads as n = 1)."""
    import mrcfile

    if not Path(path).exists():
        raise CryopipeError(f"{path}: image stack not found")
    try:
        with warnings.catch_warnings():
            # permissive mode's warnings (e.g. a truncated data block) become the one-line errors below
            warnings.simplefilter("ignore")
            mrc = mrcfile.mmap(path, mode="r", permissive=True)
    except ValueError as e:
        raise CryopipeError(f"{path}: not a readable MRC stack ({e})") from None
    data = mrc.data
    if data is None:  # permissive mode could not map the data block: the file is shorter than its header says
        h = read_stack_header(path)
        raise CryopipeError(
            f"{path}: truncated: its header describes {h.expected_size} bytes, the file has {h.file_size}"
        )
    return data[None] if data.ndim == 2 else data


@dataclass(frozen=True)
class StackHeader:
    """What an MRC/MRCS header says about its data, read without touching the data block."""

    path: Path
    shape: tuple[int, int, int]  # (n, y, x): nz images of ny × nx pixels
    mode: int
    itemsize: int  # bytes per pixel
    data_offset: int  # 1024 + extended header
    file_size: int
    voxel_size: float  # Å (cella.x / mx); 0 or 1 usually means "not set"

    @property
    def expected_size(self) -> int:
        n, ny, nx = self.shape
        return self.data_offset + n * ny * nx * self.itemsize


def read_stack_header(path: str | os.PathLike) -> StackHeader:
    """The header of an MRC stack or image (1024 bytes + the extended header); the data block is not read."""
    import mrcfile
    from mrcfile.utils import data_dtype_from_header

    path = Path(path)
    if not path.is_file():
        raise CryopipeError(f"{path}: image stack not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # permissive mode warns; what matters is checked below
            with mrcfile.open(path, mode="r", permissive=True, header_only=True) as mrc:
                h = mrc.header
                nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
                mode, nsymbt = int(h.mode), int(h.nsymbt)
                voxel = float(mrc.voxel_size.x)
                itemsize = int(data_dtype_from_header(h).itemsize)
    except (ValueError, OSError) as e:
        raise CryopipeError(f"{path}: not a readable MRC stack ({e})") from None
    if min(nx, ny, nz) < 1 or nsymbt < 0:
        raise CryopipeError(f"{path}: not a readable MRC stack (header dimensions {nx} × {ny} × {nz})")
    if mode in (3, 4):
        raise CryopipeError(f"{path}: MRC mode {mode} holds complex numbers, not images")
    return StackHeader(path, (nz, ny, nx), mode, itemsize, 1024 + nsymbt, path.stat().st_size, voxel)


class StackReader:
    """Images of one stack read with plain file reads (no memory map): what is read is copied out and nothing
    of the file stays mapped into the process, so its resident memory does not grow with the stack."""

    def __init__(self, path: str | os.PathLike):
        from mrcfile.utils import data_dtype_from_header

        self.header = read_stack_header(path)
        if self.header.file_size < self.header.expected_size:
            raise CryopipeError(
                f"{path}: truncated: its header describes {self.header.expected_size} bytes, "
                f"the file has {self.header.file_size}"
            )
        import mrcfile

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", permissive=True, header_only=True) as mrc:
                self.dtype = data_dtype_from_header(mrc.header)
        self.path = Path(path)
        self._fh: BinaryIO | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.header.shape

    def _file(self):
        if self._fh is None:  # opened on first read: a pickled reader (DataLoader worker) opens its own
            self._fh = open(self.path, "rb")
        return self._fh

    def read(self, indices) -> np.ndarray:
        """Images (k, y, x) float32 at 0-based `indices` (any order, repeats allowed), one read per run of
        consecutive images."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        _, ny, nx = self.shape
        out = np.empty((len(idx), ny, nx), dtype=np.float32)
        if not len(idx):
            return out
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        breaks = np.nonzero(np.diff(sorted_idx) != 1)[0] + 1
        fh, per_image = self._file(), ny * nx
        for run in np.split(np.arange(len(idx)), breaks):
            first = int(sorted_idx[run[0]])
            last = int(sorted_idx[run[-1]])
            fh.seek(self.header.data_offset + first * per_image * self.dtype.itemsize)
            block = np.fromfile(fh, dtype=self.dtype, count=(last - first + 1) * per_image)
            out[order[run]] = block.reshape(-1, ny, nx)[sorted_idx[run] - first]
        return out

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fh"] = None
        return state

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class StackWriter:
    """Write an (n, L, L) float32 stack batch by batch with plain file writes (no memory map, so resident memory
    stays flat for any n); header statistics from one streamed pass at the end; renamed into place on success."""

    def __init__(self, path: str | os.PathLike, n: int, size: int, voxel_size: float):
        import mrcfile

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}.mrcs")
        self.shape = (n, size, size)
        with mrcfile.new_mmap(self._tmp, shape=self.shape, mrc_mode=2, overwrite=True) as mrc:
            mrc.set_image_stack()
            mrc.voxel_size = voxel_size
            _fixed_label(mrc)
            self._offset = 1024 + int(mrc.header.nsymbt)
        self._fh = open(self._tmp, "r+b")

    def _seek(self, start: int) -> None:
        self._fh.seek(self._offset + start * self.shape[1] * self.shape[2] * 4)

    def write(self, start: int, images: np.ndarray) -> None:
        self._seek(start)
        self._fh.write(np.ascontiguousarray(images, dtype="<f4").tobytes())

    def read(self, start: int, count: int) -> np.ndarray:
        self._fh.flush()
        self._seek(start)
        count = min(count, self.shape[0] - start)
        return np.fromfile(self._fh, dtype="<f4", count=count * self.shape[1] * self.shape[2]).reshape(
            count, *self.shape[1:]
        )

    def _header_stats(self) -> None:
        """min, max, mean and rms (σ, as mrcfile's update_header_stats) of the data, streamed in blocks."""
        import mrcfile

        lo, hi, total, squares, count = np.inf, -np.inf, 0.0, 0.0, 0
        per_block = max(1, 2**22 // (self.shape[1] * self.shape[2]))  # 4 M pixels (32 MB in float64) at a time
        for start in range(0, self.shape[0], per_block):
            block = self.read(start, per_block).astype(np.float64)
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
            total, squares, count = total + block.sum(), squares + (block**2).sum(), count + block.size
        mean = total / max(count, 1)
        with mrcfile.mmap(self._tmp, mode="r+") as mrc:  # header only: the data pages are not touched
            mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = lo, hi, mean
            mrc.header.rms = np.sqrt(max(squares / max(count, 1) - mean**2, 0.0))

    def __enter__(self) -> StackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._fh.flush()
            if exc_type is None:
                self._header_stats()
            self._fh.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp.exists():
                self._tmp.unlink()
