"""Read one digit image for `predict`: .npy, or an 8-bit non-interlaced PNG (decoded with zlib).

Any size is accepted: the image is taken to greyscale, inverted when it is dark on light, padded to a
square and resized to 28x28 (area averaging to shrink, bilinear to enlarge), each step told in a note.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .data import to_float

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (grey, RGB, grey+alpha, RGBA)
SIDE = 28  # what the networks take: MNIST's 28x28
MAX_PIXELS = 40_000_000  # a larger PNG is refused before it is decompressed
SAMPLE = "samples/digit-7.png"  # inside the package: a 7 drawn like MNIST (examples/make_sample_digit.py)
OTHER_FORMATS = {b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


@contextmanager
def sample_path() -> Iterator[Path]:
    """The path of the sample digit shipped with the package (a real file while the context lasts)."""
    with resources.as_file(resources.files(__package__).joinpath(SAMPLE)) as path:
        yield path


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the PNG per-row filters (None, Sub, Up, Average, Paeth). The first three are vectorised;
    Average and Paeth depend on the byte just decoded, so they run byte by byte."""
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for r in range(height):
        pos = r * (stride + 1)
        kind, line = raw[pos], np.frombuffer(raw, np.uint8, stride, pos + 1).astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 1:  # each byte adds the one bpp to its left: a running sum per channel
            cur = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) & 0xFF
        elif kind == 2:
            cur = (line + prev) & 0xFF
        elif kind in (3, 4):
            cur = np.asarray(_unfilter_sequential(kind, line.tolist(), prev.tolist(), bpp), dtype=np.int64)
        else:
            raise ValueError(f"PNG row {r} has unknown filter type {kind}")
        out[r], prev = cur, cur
    return out


def _unfilter_sequential(kind: int, line: list[int], prev: list[int], bpp: int) -> list[int]:
    cur = [0] * len(line)
    for i, value in enumerate(line):
        left, up = (cur[i - bpp] if i >= bpp else 0), prev[i]
        if kind == 3:
            pred = (left + up) // 2
        else:
            up_left = prev[i - bpp] if i >= bpp else 0
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            pred = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
        cur[i] = (value + pred) & 0xFF
    return cur


def _chunks(path: Path, data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(kind, body) of each chunk up to IEND. A file cut short just ends the list (the pixel data then
    comes up short and says so); a checksum that fails in a critical chunk is corruption."""
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if pos + 12 + length > len(data):
            return
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if kind[:1].isupper() and crc != zlib.crc32(kind + body):
            raise ValueError(f"{path}: corrupt PNG (checksum mismatch in the {kind.decode('latin-1')} chunk)")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + length


def read_png(path: Path, notes: list[str] | None = None) -> np.ndarray:
    """8-bit greyscale/RGB(A) PNG -> uint8 greyscale (H, W). Colour is averaged to grey; transparent
    pixels are laid over white (as a viewer shows them). ``notes``, if given, gets a line for each."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        other = next((name for magic, name in OTHER_FORMATS.items() if data.startswith(magic)), None)
        hint = f"; it looks like a {other} file: save it as PNG" if other else ""
        raise ValueError(f"{path} is not a PNG file (bad signature){hint}")
    header, idat = None, []
    for kind, body in _chunks(path, data):
        if kind == b"IHDR":
            if len(body) != 13:
                raise ValueError(f"{path}: corrupt PNG (IHDR chunk of {len(body)} bytes, not 13)")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    if header is None:
        raise ValueError(f"{path}: PNG without IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if colour == 3:
        raise ValueError(f"{path}: palette (indexed-colour) PNGs are not supported; save it as 8-bit greyscale or RGB")
    if colour not in CHANNELS:
        raise ValueError(f"{path}: corrupt PNG (unknown colour type {colour})")
    if depth != 8:
        raise ValueError(f"{path}: {depth}-bit PNGs are not supported; save it with 8 bits per channel")
    if interlace:
        raise ValueError(f"{path}: interlaced PNGs are not supported; save it without interlacing")
    if width == 0 or height == 0:
        raise ValueError(f"{path}: corrupt PNG (the image is {width}x{height})")
    if width * height > MAX_PIXELS:
        raise ValueError(f"{path}: the image is {width}x{height}, more than {MAX_PIXELS // 10**6} megapixels; "
                         f"shrink it first")  # fmt: skip
    channels = CHANNELS[colour]
    size = height * (width * channels + 1)
    if not idat:
        raise ValueError(f"{path}: PNG without image data (no IDAT chunk; is the file cut short?)")
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), size)  # never more than the header promises
    except zlib.error as err:
        raise ValueError(f"{path}: corrupt PNG data ({err})") from err
    if len(raw) != size:
        raise ValueError(f"{path}: truncated PNG data ({len(raw)} of the {size} bytes a {width}x{height} image needs)")
    pixels = _unfilter(raw, height, width * channels, channels).reshape(height, width, channels)
    grey = pixels[..., 0] if channels <= 2 else pixels[..., :3].mean(axis=2).round().astype(np.uint8)
    if notes is not None and channels >= 3 and not (pixels[..., :1] == pixels[..., 1:3]).all():
        notes.append("colour image: its red, green and blue are averaged to greyscale")
    if channels in (2, 4) and (alpha := pixels[..., -1]).min() < 255:
        a = alpha / 255.0
        grey = (grey * a + 255 * (1 - a)).round().astype(np.uint8)
        if notes is not None:
            notes.append("transparent pixels are laid over white")
    return grey


def write_png(path: Path, grey: np.ndarray) -> None:
    """uint8 (H, W) -> greyscale PNG (filter 0); used by tests and examples."""
    h, w = grey.shape
    raw = b"".join(b"\x00" + grey[r].astype(np.uint8).tobytes() for r in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def resample_matrix(m: int, n: int) -> np.ndarray:
    """(n, m) weights taking a line of m pixels to n: area averaging when shrinking (each output
    pixel the mean of the input it covers, in fractions of a pixel), bilinear when enlarging."""
    if n <= m:
        edges = np.arange(n + 1) * (m / n)
        j = np.arange(m)
        w = np.minimum(edges[1:, None], j + 1) - np.maximum(edges[:-1, None], j)
        w = np.clip(w, 0, None)
    else:
        centre = np.clip((np.arange(n) + 0.5) * (m / n) - 0.5, 0, m - 1)
        lo = np.floor(centre).astype(int)
        hi = np.minimum(lo + 1, m - 1)
        w = np.zeros((n, m))
        np.add.at(w, (np.arange(n), lo), 1 - (centre - lo))
        np.add.at(w, (np.arange(n), hi), centre - lo)
    return w / w.sum(axis=1, keepdims=True)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """float (H, W) -> float64 (height, width); separable, so a convex mix of the input pixels."""
    return resample_matrix(image.shape[0], height) @ image @ resample_matrix(image.shape[1], width).T


def to_digit(image: np.ndarray, dtype: Any = np.float32, notes: list[str] | None = None) -> np.ndarray:
    """A 2-D uint8 or [0, 1] float image -> (1, 28, 28, 1) of ``dtype`` in [0, 1], as MNIST is scaled
    for training (uint8 / 255): inverted if mostly light, padded to a square and resized to 28x28."""
    notes = [] if notes is None else notes
    dtype = np.dtype(dtype)
    x = to_float(image, dtype) if image.dtype == np.uint8 else image.astype(dtype)
    mean = float(x.mean(dtype=np.float64))
    if mean > 0.5:
        x = 1 - x
        notes.append(f"the image is mostly light (mean {mean:.2f} on a 0-1 scale), so it is taken as a dark digit "
                     f"on a light background and inverted (MNIST digits are light on dark)")  # fmt: skip
    h, w = x.shape
    if (h, w) != (SIDE, SIDE):
        side = max(h, w)
        if h != w:
            square = np.zeros((side, side), dtype=x.dtype)
            top, left = (side - h) // 2, (side - w) // 2
            square[top : top + h, left : left + w] = x
            x = square
        x = np.clip(resize(x.astype(np.float64), SIDE, SIDE), 0, 1).astype(dtype)
        padded = f" (width x height), padded with background to {side}x{side} to keep its shape," if h != w else ","
        notes.append(f"the image is {w}x{h}{padded} resized to {SIDE}x{SIDE}")
    return x.reshape(1, SIDE, SIDE, 1)


def read_digit(path: str | Path, dtype: Any = np.float32, notes: list[str] | None = None) -> np.ndarray:
    """An image file -> (1, 28, 28, 1) of ``dtype`` in [0, 1] (see ``to_digit``). uint8 pixels are
    scaled by 1/255, float pixels must lie in [0, 1]. ``notes``, if given, gets a line for each change."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"image {path} does not exist")
    if not path.is_file():
        raise ValueError(f"image {path} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            image = np.load(path, allow_pickle=False)
        except (ValueError, EOFError) as err:
            raise ValueError(f"{path} is not a readable .npy array ({err})") from err
        if not isinstance(image, np.ndarray):  # an .npz archive under a .npy name
            image.close()
            raise ValueError(f"{path} is an .npz archive, not a .npy array")
    elif suffix == ".png":
        image = read_png(path, notes)
    else:
        raise ValueError(f"{path}: expected a .png or .npy image, got {path.suffix or 'no extension'}")
    image = np.squeeze(image)
    if image.ndim != 2:
        raise ValueError(f"{path}: expected one greyscale image (a 2-D array), got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"{path}: the image is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"{path}: expected uint8 or float pixels, got {image.dtype}")
        if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
            raise ValueError(f"{path}: float images must hold finite values in [0, 1]")
    return to_digit(image, dtype, notes)
