"""Read one digit image for `predict`: .npy, or an 8-bit non-interlaced PNG (decoded with zlib)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (grey, RGB, grey+alpha, RGBA)


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the PNG per-row filters (None, Sub, Up, Average, Paeth)."""
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    pos = 0
    for r in range(height):
        kind, line = raw[pos], np.frombuffer(raw, np.uint8, stride, pos + 1).astype(np.int32)
        pos += stride + 1
        cur = np.zeros(stride, dtype=np.int32)
        for i in range(stride):
            left = cur[i - bpp] if i >= bpp else 0
            up, up_left = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = left
            elif kind == 2:
                pred = up
            elif kind == 3:
                pred = (left + up) // 2
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
            else:
                raise ValueError(f"PNG row {r} has unknown filter type {kind}")
            cur[i] = (line[i] + pred) & 0xFF
        out[r], prev = cur, cur
    return out


def read_png(path: Path) -> np.ndarray:
    """8-bit greyscale/RGB(A) PNG -> uint8 greyscale (H, W)."""
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file (bad signature)")
    pos, header, idat = len(PNG_SIGNATURE), None, b""
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise ValueError(f"{path}: PNG without IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in CHANNELS or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced grey/RGB(A) PNGs are supported "
                         f"(got bit depth {depth}, colour type {colour}, interlace {interlace})")  # fmt: skip
    channels = CHANNELS[colour]
    try:
        raw = zlib.decompress(idat)
    except zlib.error as err:
        raise ValueError(f"{path}: corrupt PNG data ({err})") from err
    if len(raw) != height * (width * channels + 1):
        raise ValueError(f"{path}: truncated PNG data")
    pixels = _unfilter(raw, height, width * channels, channels).reshape(height, width, channels)
    grey = pixels[..., 0] if channels <= 2 else pixels[..., :3].mean(axis=2).round().astype(np.uint8)
    return grey


def write_png(path: Path, grey: np.ndarray) -> None:
    """uint8 (H, W) -> greyscale PNG (filter 0); used by tests and examples."""
    h, w = grey.shape
    raw = b"".join(b"\x00" + grey[r].astype(np.uint8).tobytes() for r in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def read_digit(path: str | Path) -> np.ndarray:
    """An image file -> float32 (1, 28, 28, 1) in [0, 1]. uint8 arrays are scaled by 1/255."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image {path} does not exist")
    if path.suffix == ".npy":
        try:
            image = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path} is not a readable .npy array ({err})") from err
    elif path.suffix == ".png":
        image = read_png(path)
    else:
        raise ValueError(f"{path}: expected a .png or .npy image, got {path.suffix or 'no extension'}")
    image = np.squeeze(image)
    if image.shape != (28, 28):
        raise ValueError(f"{path}: expected a 28x28 image, got shape {image.shape}")
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / np.float32(255)
    elif np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
        if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
            raise ValueError(f"{path}: float images must hold finite values in [0, 1]")
    else:
        raise ValueError(f"{path}: expected uint8 or float pixels, got {image.dtype}")
    return image.reshape(1, 28, 28, 1)
