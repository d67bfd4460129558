"""The binary intermediate of ``slimctr prepare``: parsed rows appended to raw
files in the order read, then read back by row range through memory maps, so
the text of the input is parsed once however many passes follow.

Rows are kept in segments of ``segment_rows`` rows, one raw file per column
each, so that a pass that has consumed rows can ``release`` them: deleting a
segment hands its page cache back at once (unwritten pages are never written
to disk), and the next files written reuse it.
"""

import logging
import shutil
from pathlib import Path
from typing import BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

SEGMENT_ROWS = 1 << 16


class Intermediate:
    """Rows of named arrays on disk, in a folder of their own that ``remove``
    (or leaving a ``with`` block) deletes.

    Args:
        folder: an empty folder, used by this store alone.
        columns: name -> ``(dtype, width)``; width ``None`` for a ``(n,)``
            array, an int for ``(n, width)``.
        segment_rows: rows per segment file.

    Example::

        with Intermediate(tmp, {"labels": (np.uint8, None),
                                "sparse": (np.int64, 26)}) as store:
            store.append(labels=y, sparse=keys)  # (B,), (B, 26)
            store.close()
            part = store.read(0, 1000)  # {"labels": (1000,), "sparse": ...}
            store.release(1000)  # rows [0, 1000) are not read again
    """

    def __init__(
        self,
        folder: str | Path,
        columns: dict[str, tuple],
        segment_rows: int = SEGMENT_ROWS,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"folder: {self.folder} does not exist")
        if not columns:
            raise ValueError("columns: expected at least one column")
        if isinstance(segment_rows, bool) or not isinstance(segment_rows, int):
            raise TypeError(f"segment_rows: expected an int, got {segment_rows!r}")
        if segment_rows < 1:
            raise ValueError(f"segment_rows: expected >= 1, got {segment_rows}")
        self.columns = {
            name: (np.dtype(dtype), width) for name, (dtype, width) in columns.items()
        }
        self.segment_rows = segment_rows
        self.rows = 0
        self.released = 0  # rows below this were released
        self._writing = True
        self._files: dict[str, BinaryIO] = {}

    def _path(self, segment: int, name: str) -> Path:
        return self.folder / f"{segment:06d}.{name}.bin"

    def _shape(self, name: str, rows: int) -> tuple[int, ...]:
        width = self.columns[name][1]
        return (rows,) if width is None else (rows, width)

    def append(self, **arrays: np.ndarray) -> None:
        """Append rows: one array per column, all with the same row count."""
        if not self._writing:
            raise RuntimeError("append: the intermediate is closed for writing")
        if set(arrays) != set(self.columns):
            raise ValueError(
                f"arrays: expected the columns {sorted(self.columns)}, got "
                f"{sorted(arrays)}"
            )
        rows = len(next(iter(arrays.values())))
        for name, values in arrays.items():
            if values.shape != self._shape(name, rows):
                raise ValueError(
                    f"{name}: expected shape {self._shape(name, rows)}, got "
                    f"{values.shape}"
                )
        done = 0
        while done < rows:
            segment, offset = divmod(self.rows, self.segment_rows)
            if offset == 0:
                self._open(segment)
            take = min(self.segment_rows - offset, rows - done)
            for name, values in arrays.items():
                dtype = self.columns[name][0]
                part = np.ascontiguousarray(values[done : done + take], dtype=dtype)
                part.tofile(self._files[name])
            done += take
            self.rows += take

    def _open(self, segment: int) -> None:
        self._close_files()
        self._files = {
            name: open(self._path(segment, name), "wb") for name in self.columns
        }

    def _close_files(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files = {}

    def close(self) -> None:
        """Stop writing; the rows become readable."""
        self._close_files()
        self._writing = False

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``[start, stop)`` of every column: read-only memory maps of just
        that range when it lies in one segment (the mapping goes when the
        arrays are dropped), copies joined from the maps when it spans more."""
        if self._writing:
            raise RuntimeError("read: close the intermediate for writing first")
        if not self.released <= start <= stop <= self.rows:
            raise ValueError(
                f"start, stop: expected {self.released} <= start <= stop <= "
                f"{self.rows}, got {start}, {stop}"
            )
        parts = []
        at = start
        while at < stop or not parts:
            segment, offset = divmod(at, self.segment_rows)
            take = min(self.segment_rows - offset, stop - at)
            parts.append({n: self._map(segment, n, offset, take) for n in self.columns})
            at += take
        if len(parts) == 1:
            return parts[0]
        return {n: np.concatenate([p[n] for p in parts]) for n in self.columns}

    def _map(self, segment: int, name: str, offset: int, rows: int) -> np.ndarray:
        dtype = self.columns[name][0]
        shape = self._shape(name, rows)
        if np.prod(shape) == 0:  # nothing to map: mmap refuses a zero length
            return np.empty(shape, dtype=dtype)
        row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
        return np.memmap(
            self._path(segment, name),
            dtype,
            "r",
            offset=offset * row_bytes,
            shape=shape,
        )

    def release(self, stop: int) -> None:
        """Delete the segments whose rows all lie below ``stop``; those rows
        cannot be read any more."""
        if self._writing:
            raise RuntimeError("release: close the intermediate for writing first")
        stop = min(stop, self.rows)
        first = self.released // self.segment_rows
        last = (
            stop // self.segment_rows
            if stop < self.rows
            else -(-stop // self.segment_rows)
        )
        for segment in range(first, last):
            for name in self.columns:
                self._path(segment, name).unlink(missing_ok=True)
        self.released = max(self.released, min(last * self.segment_rows, self.rows))

    def remove(self) -> None:
        """Close and delete the folder and everything in it."""
        self._close_files()
        self._writing = False
        shutil.rmtree(self.folder, ignore_errors=True)
        logger.debug("removed the intermediate %s", self.folder)

    def __enter__(self) -> "Intermediate":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
