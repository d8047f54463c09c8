"""Append pre-compressed chunks to a NetCDF-4/HDF5 variable.

The HDF5 library compresses chunks one at a time in the writing thread, with zlib: for
float32 wind fields that costs ~8x more than computing them. Here the chunks are encoded by
us, exactly as HDF5's own *shuffle* + *deflate* filter pipeline would encode them, in
parallel threads (compression releases the GIL), with ISA-L's deflate (``isal``, 5-10x
faster than zlib at a similar ratio) when it is installed; they are then written as they
are with ``H5Dwrite_chunk`` (h5py's ``write_direct_chunk``). The file is an ordinary
NetCDF-4 file that any netCDF or HDF5 reader decodes.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["ChunkAppender", "deflate", "shuffle"]

#: HDF5 filter identifiers (H5Zpublic.h).
_H5Z_FILTER_DEFLATE = 1
_H5Z_FILTER_SHUFFLE = 2

try:  # ISA-L writes standard zlib streams; levels 0-3.
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - platforms without isal wheels
    _isal = None


def deflate(data: bytes | memoryview, level: int) -> bytes:
    """Deflate ``data`` into a zlib stream (the format of HDF5's deflate filter).

    Parameters
    ----------
    data : bytes-like
        Bytes to compress.
    level : int
        1 to 9. Levels 1 to 3 use ISA-L at the same level when ``isal`` is installed (its
        range is 0-3, several times faster than zlib at a similar ratio); levels 4 to 9,
        and every level without ``isal``, use zlib.

    Returns
    -------
    bytes
        A zlib stream that :func:`zlib.decompress` (and HDF5) decodes.
    """
    if _isal is not None and level <= 3:
        return _isal.compress(data, level)
    return zlib.compress(data, level)


def shuffle(chunk: np.ndarray) -> bytes:
    """Bytes of ``chunk`` reordered like HDF5's shuffle filter.

    All first bytes of the elements, then all second bytes, and so on: the slowly varying
    sign/exponent bytes end up together and compress well.
    """
    a = np.ascontiguousarray(chunk)
    size = a.dtype.itemsize
    if size == 1:
        return a.tobytes()
    return np.ascontiguousarray(a.view(np.uint8).reshape(-1, size).T).tobytes()


def _filters(dset) -> list[tuple[int, int]]:
    """``(filter id, flags)`` of the dataset's filter pipeline, in order."""
    plist = dset.id.get_create_plist()
    return [plist.get_filter(i)[:2] for i in range(plist.get_nfilters())]


class ChunkAppender:
    """Append time chunks of variables of an open NetCDF-4 file (h5py), compressed in parallel.

    Parameters
    ----------
    h5file : h5py.File
        The file, open for writing; every variable to append to has ``time`` (unlimited) as
        its first dimension, chunked along it.
    names : sequence of str
        Variables appended by :meth:`append`.
    threads : int
        Threads that compress the chunks of one call together.

    Notes
    -----
    Direct writes need whole chunks and the exact filter pipeline *shuffle, deflate* (the
    one netCDF-C builds for ``zlib=True, shuffle=True``); any other variable, and any block
    that does not start on a chunk boundary, is written through HDF5 (its own filters), so
    the result is the same, only slower.
    """

    def __init__(self, h5file, names, threads: int = 2):
        self.file = h5file
        self.names = list(names)
        self.threads = max(1, int(threads))
        self._direct = {}
        for name in self.names:
            dset = h5file[name]
            filters = [f[0] for f in _filters(dset)]
            level = None
            if filters == [_H5Z_FILTER_SHUFFLE, _H5Z_FILTER_DEFLATE]:
                level = int(dset.compression_opts)
            self._direct[name] = level

    def append(self, a: int, b: int, arrays, time_name: str | None = None, times=None) -> None:
        """Write steps ``a:b`` of each variable (and of the time coordinate).

        Parameters
        ----------
        a, b : int
            First and one-past-last time index. The datasets grow to ``b`` steps.
        arrays : sequence of numpy.ndarray
            ``(b - a, ...)`` data of each variable of ``names``, in that order.
        time_name : str, optional
            The time coordinate variable, written with ``times`` (plain HDF5 write).
        times : numpy.ndarray, optional
            ``(b - a,)`` time values in the coordinate's encoding.
        """
        jobs = []  # (dataset, chunk offset, payload bytes or None, data)
        for name, arr in zip(self.names, arrays, strict=True):
            dset = self.file[name]
            if dset.shape[0] < b:
                dset.resize(b, axis=0)
            arr = np.asarray(arr, dtype=dset.dtype)
            tc = dset.chunks[0]
            level = self._direct[name]
            if level is None or a % tc != 0 or tuple(dset.chunks[1:]) != dset.shape[1:]:
                dset[a:b] = arr
                continue
            for c in range(a, b, tc):
                part = arr[c - a : min(b, c + tc) - a]
                if part.shape[0] < tc:  # last chunk: stored full size, padded with fill
                    pad = np.full((tc,) + part.shape[1:], _fill(dset), dtype=dset.dtype)
                    pad[: part.shape[0]] = part
                    part = pad
                jobs.append((dset, (c,) + (0,) * (part.ndim - 1), level, part))
        if time_name is not None:
            tvar = self.file[time_name]
            if tvar.shape[0] < b:
                tvar.resize(b, axis=0)
            tvar[a:b] = times
        self._write_chunks(jobs)

    def write_region(self, a: int, b: int, y0: int, x0: int, arrays) -> None:
        """Write ``[a:b, y0:y0 + h, x0:x0 + w]`` of each (3-D) variable.

        A region made of whole chunks (its start on the chunk grid, its end on the chunk grid
        or at the end of the dataset; chunks cut by the end are padded with the fill value, as
        HDF5 stores them) is shuffled and deflated in parallel and written directly; any other
        region goes through HDF5 (its own filters; chunks shared with other regions are read
        back and rewritten by the library).

        Parameters
        ----------
        a, b : int
            First and one-past-last record.
        y0, x0 : int
            First row and column of the region.
        arrays : sequence of numpy.ndarray
            ``(b - a, h, w)`` data of each variable of ``names``, in that order.
        """
        jobs = []
        for name, arr in zip(self.names, arrays, strict=True):
            dset = self.file[name]
            arr = np.asarray(arr, dtype=dset.dtype)
            h, w = arr.shape[1:]
            region = (slice(a, b), slice(y0, y0 + h), slice(x0, x0 + w))
            level = self._direct[name]
            chunks = dset.chunks
            whole = chunks is not None and all(
                s.start % c == 0 and (s.stop % c == 0 or s.stop == n)
                for s, c, n in zip(region, chunks, dset.shape, strict=True)
            )
            if level is None or not whole or b > dset.shape[0]:
                dset[region] = arr
                continue
            tc, cy, cx = chunks
            for c in range(a, b, tc):
                for iy in range(y0, y0 + h, cy):
                    for ix in range(x0, x0 + w, cx):
                        at = (c - a, iy - y0, ix - x0)
                        part = arr[tuple(slice(o, o + n) for o, n in zip(at, chunks, strict=True))]
                        if part.shape != chunks:  # cut by the end of the dataset: pad
                            pad = np.full(chunks, _fill(dset), dtype=dset.dtype)
                            pad[: part.shape[0], : part.shape[1], : part.shape[2]] = part
                            part = pad
                        jobs.append((dset, (c, iy, ix), level, np.ascontiguousarray(part)))
        self._write_chunks(jobs)

    def _write_chunks(self, jobs) -> None:
        """Shuffle + deflate ``(dataset, chunk offset, level, data)`` jobs on the threads and
        write each chunk as it is."""
        if not jobs:
            return

        def encode(job):
            return deflate(shuffle(job[3]), job[2])

        def write(job, payload):
            job[0].id.write_direct_chunk(job[1], payload, filter_mask=0)

        if self.threads <= 1 or len(jobs) == 1:
            for job in jobs:
                write(job, encode(job))
            return
        with ThreadPoolExecutor(min(self.threads, len(jobs))) as pool:
            # Written in order as they come: only a few compressed chunks are alive at once.
            for job, payload in zip(jobs, pool.map(encode, jobs), strict=True):
                write(job, payload)


def _fill(dset):
    fill = dset.fillvalue
    return np.nan if fill is None else fill
