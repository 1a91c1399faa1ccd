"""IDX parsing and the fetch/cache/checksum logic, on small fake files and fake sources (no network)."""

import gzip
import hashlib

import numpy as np
import pytest

from scratch_cnn.data import DataError, ensure_mnist, load_split
from scratch_cnn.idx import IdxError, encode_idx, parse_idx

RNG = np.random.default_rng(0)
FAKE = {
    "train-images-idx3-ubyte": encode_idx(RNG.integers(0, 256, (6, 28, 28))),
    "train-labels-idx1-ubyte": encode_idx(RNG.integers(0, 10, 6)),
    "t10k-images-idx3-ubyte": encode_idx(RNG.integers(0, 256, (4, 28, 28))),
    "t10k-labels-idx1-ubyte": encode_idx(RNG.integers(0, 10, 4)),
}
SUMS = {name: hashlib.sha256(data).hexdigest() for name, data in FAKE.items()}


def source(files, calls=None, gz=False, name="fake"):
    """A fake source serving ``files`` (name -> bytes); records the names it was asked for."""

    def fetch(names, workdir):
        if calls is not None:
            calls.append(list(names))
        got = {}
        for n in names:
            if n in files:
                path = workdir / (n + ".gz" if gz else n)
                path.write_bytes(gzip.compress(files[n]) if gz else files[n])
                got[n] = path
        return got

    fetch.__name__ = name
    return fetch


def failing(message):
    def fetch(names, workdir):
        raise OSError(message)

    fetch.__name__ = "broken mirror"
    return fetch


def fetch_into(tmp_path, sources, **kw):
    return ensure_mnist(cache=tmp_path / "cache", sources=sources, checksums=SUMS, **kw)


def test_parse_idx_round_trips_and_rejects_bad_files():
    images = RNG.integers(0, 256, (3, 28, 28)).astype(np.uint8)
    assert np.array_equal(parse_idx(encode_idx(images), ndim=3), images)
    good = encode_idx(images)
    for bad, match in [
        (good[:-1], "truncated: 2367 bytes"),
        (good + b"\0", "has trailing bytes"),
        (b"\x00\x00\x0d\x03" + good[4:], "bad magic number 0x00000d03"),
        (b"PK\x03\x04" + good[4:], "bad magic number"),
        (good[:2], "too short for an IDX header"),
        (good[:9], "truncated header"),
    ]:
        with pytest.raises(IdxError, match=match):
            parse_idx(bad, ndim=3)
    with pytest.raises(IdxError, match="expected 1 dimensions, header says 3"):
        parse_idx(good, ndim=1)


def test_files_are_fetched_verified_and_cached_then_served_from_the_cache(tmp_path):
    calls = []
    cache = fetch_into(tmp_path, [source(FAKE, calls, gz=True)])
    images, labels = load_split("train", cache)
    assert images.shape == (6, 28, 28, 1) and images.dtype == np.uint8 and labels.shape == (6,)
    assert calls == [list(FAKE)]
    fetch_into(tmp_path, [source(FAKE, calls)])
    assert len(calls) == 1  # the second call found everything in the cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(FAKE)  # no temp files left behind


def test_a_corrupt_cached_file_is_reported_removed_and_refetched(tmp_path, capsys):
    fetch_into(tmp_path, [source(FAKE)])
    (tmp_path / "cache" / "t10k-labels-idx1-ubyte").write_bytes(b"garbage")
    calls = []
    fetch_into(tmp_path, [source(FAKE, calls)])
    assert calls == [["t10k-labels-idx1-ubyte"]]
    assert "fails its SHA-256 check" in capsys.readouterr().err
    assert (tmp_path / "cache" / "t10k-labels-idx1-ubyte").read_bytes() == FAKE["t10k-labels-idx1-ubyte"]


def test_a_bad_download_never_enters_the_cache_and_the_next_source_is_tried(tmp_path):
    tampered = dict(FAKE, **{"train-images-idx3-ubyte": FAKE["train-images-idx3-ubyte"][:-5] + b"xxxxx"})
    calls = []
    fetch_into(tmp_path, [failing("Name or service not known"), source(tampered, name="bad"), source(FAKE, calls)])
    assert calls == [["train-images-idx3-ubyte"]]
    assert (tmp_path / "cache" / "train-images-idx3-ubyte").read_bytes() == FAKE["train-images-idx3-ubyte"]


def test_when_every_source_fails_the_error_lists_what_was_tried_and_how_to_place_files(tmp_path):
    with pytest.raises(DataError) as err:
        fetch_into(tmp_path, [failing("Name or service not known"), source({}, name="empty")])
    text = str(err.value)
    assert "broken mirror" in text and "Name or service not known" in text
    assert "pass --data-dir DIR" in text
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_user_directory_is_used_first_and_gz_files_are_accepted(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    for name, data in FAKE.items():
        (user / f"{name}.gz").write_bytes(gzip.compress(data))
    calls = []
    fetch_into(tmp_path, [source(FAKE, calls)], data_dir=user)
    assert calls == []


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: None, "train-images-idx3-ubyte: not there"),  # empty
        (lambda d: [(d / n).write_bytes(b"garbage") for n in FAKE], "checksum mismatch"),
        (
            lambda d: [(d / n).write_bytes(FAKE[m]) for n, m in zip(FAKE, reversed(list(FAKE)), strict=True)],
            "checksum mismatch",
        ),  # swapped files
        (
            lambda d: [(d / n).write_bytes(data) for n, data in list(FAKE.items())[:3]],
            "t10k-labels-idx1-ubyte: not there",
        ),
    ],
    ids=["empty", "garbage", "swapped", "one-missing"],
)
def test_a_named_data_dir_without_valid_mnist_is_an_error_even_with_a_cache(tmp_path, make, words):
    fetch_into(tmp_path, [source(FAKE)])  # a good cache exists
    user = tmp_path / "mine"
    user.mkdir()
    make(user)
    calls = []
    with pytest.raises(DataError, match=f"does not hold verified MNIST: .*{words}"):
        fetch_into(tmp_path, [source(FAKE, calls)], data_dir=user)
    assert calls == []  # never silently replaced by a download either
    assert all(not p.name.endswith(".part") for p in (tmp_path / "cache").iterdir())


def test_a_cached_file_that_is_truncated_after_verification_gives_a_parse_error(tmp_path):
    cache = fetch_into(tmp_path, [source(FAKE)])
    (cache / "train-labels-idx1-ubyte").write_bytes(FAKE["train-labels-idx1-ubyte"][:-2])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: truncated"):
        load_split("train", cache)
