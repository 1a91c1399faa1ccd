"""The IDX file format of MNIST: a big-endian header (magic, dims) followed by raw bytes."""

from __future__ import annotations

import struct

import numpy as np

IDX_UBYTE = 0x08


class IdxError(ValueError):
    """A file that is not a well-formed unsigned-byte IDX file."""


def parse_idx(data: bytes, *, name: str = "IDX file", ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a uint8 array of the header's dims; ``ndim`` checks the rank.

    Header: two zero bytes, a type byte (0x08 = unsigned byte), a rank byte, then one big-endian
    uint32 per dimension. The payload must hold exactly prod(dims) bytes.
    """
    if len(data) < 4:
        raise IdxError(f"{name}: {len(data)} bytes is too short for an IDX header (truncated or not IDX)")
    zero, dtype_code, rank = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != IDX_UBYTE:
        raise IdxError(
            f"{name}: bad magic number 0x{data[:4].hex()} (expected 0x000008NN for an unsigned-byte IDX file)"
        )
    if ndim is not None and rank != ndim:
        raise IdxError(f"{name}: expected {ndim} dimensions, header says {rank}")
    header = 4 + 4 * rank
    if len(data) < header:
        raise IdxError(f"{name}: truncated header ({len(data)} bytes, need {header})")
    dims = struct.unpack(f">{rank}I", data[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "has trailing bytes"
        raise IdxError(f"{name}: {state}: {len(data)} bytes, dims {dims} need exactly {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def encode_idx(array: np.ndarray) -> bytes:
    """uint8 array -> IDX bytes (used to write test fixtures)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(f">HBB{array.ndim}I", 0, IDX_UBYTE, array.ndim, *array.shape) + array.tobytes()
