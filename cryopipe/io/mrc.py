"""MRC maps and MRCS stacks via mrcfile; arrays are (z, y, x) / (n, y, x), voxel size in Å."""

from __future__ import annotations

import os
from pathlib import Path

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
        mrc = mrcfile.mmap(path, mode="r", permissive=True)
    except ValueError as e:
        raise CryopipeError(f"{path}: not a readable MRC stack ({e})") from None
    data = mrc.data
    return data[None] if data.ndim == 2 else data


class StackWriter:
    """Write an (n, L, L) float32 stack batch by batch into a memory map; renamed into place on success."""

    def __init__(self, path: str | os.PathLike, n: int, size: int, voxel_size: float):
        import mrcfile

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}.mrcs")
        self._mrc = mrcfile.new_mmap(self._tmp, shape=(n, size, size), mrc_mode=2, overwrite=True)
        self._mrc.set_image_stack()
        self._mrc.voxel_size = voxel_size
        _fixed_label(self._mrc)

    def write(self, start: int, images: np.ndarray) -> None:
        self._mrc.data[start : start + len(images)] = images

    def read(self, start: int, count: int) -> np.ndarray:
        return np.array(self._mrc.data[start : start + count])

    def __enter__(self) -> StackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._mrc.update_header_stats()
            self._mrc.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp.exists():
                self._tmp.unlink()
