"""`predict` on images of any size: the shipped sample, resizing, inversion, colour, and clear errors."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from scratch_cnn.cli import main
from scratch_cnn.imageio import PNG_SIGNATURE, read_digit, read_png, resize, sample_path, write_png
from scratch_cnn.train import TrainConfig, run_training
from tests.test_train import fake_mnist

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    run_training(TrainConfig(arch="tiny", epochs=2, limit=300, seed=3), fake_mnist(), out, echo=lambda *_: None)
    return str(out / "model.npz")


@pytest.fixture(scope="module")
def sample():
    with sample_path() as path:
        return read_png(path)


def png_bytes(pixels: np.ndarray, colour: int, depth: int = 8) -> bytes:
    """A PNG of uint8 (H, W[, C]) pixels, each row under a different filter (None, Sub, Up, Average, Paeth)."""
    h, w = pixels.shape[:2]
    bpp = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows, prev = [], np.zeros(w * bpp, np.int64)
    for r in range(h):
        cur = pixels[r].reshape(-1).astype(np.int64)
        left = np.concatenate([np.zeros(bpp, np.int64), cur[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        p = left + prev - up_left
        pa, pb, pc = abs(p - left), abs(p - prev), abs(p - up_left)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
        kind = r % 5
        pred = [0 * cur, left, prev, (left + prev) // 2, paeth][kind]
        rows.append(bytes([kind]) + ((cur - pred) & 0xFF).astype(np.uint8).tobytes())
        prev = cur

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    idat = zlib.compress(b"".join(rows))
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def upscale(image: np.ndarray, side: int) -> np.ndarray:
    return np.round(resize(image.astype(np.float64), side, side)).astype(np.uint8)


def predict(capsys, model, *argv):
    assert main(["predict", model, *argv]) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].startswith("digit ") and len(out) == 11  # notes go to stderr: stdout stays the same
    return int(out[0].split()[1]), np.array([float(line.split(":")[1]) for line in out[1:]]), captured.err


def test_the_sample_is_a_28x28_light_on_dark_png_that_ships_with_the_package(sample):
    assert sample.shape == (28, 28) and sample.dtype == np.uint8
    assert sample.max() == 255 and sample.mean() < 0.25 * 255 and sample[:4].max() == 0  # a stroke on black
    tomllib = pytest.importorskip("tomllib")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    with sample_path() as path:
        assert any(path.match(f"scratch_cnn/{pattern}") for pattern in data["scratch_cnn"])


def test_predict_sample_classifies_the_shipped_digit_and_says_which_it_is(capsys, model, sample, tmp_path):
    digit, probs, err = predict(capsys, model, "--sample")
    assert err.startswith("note: the sample digit shipped with scratch_cnn, a 7: ") and "digit-7.png" in err
    write_png(tmp_path / "COPY.PNG", sample)  # the suffix in any case
    assert predict(capsys, model, str(tmp_path / "COPY.PNG")) == (digit, pytest.approx(probs, abs=1e-4), "")


def test_a_200x200_png_is_resized_to_28x28_and_predicts_as_the_sample(capsys, model, sample, tmp_path):
    digit, probs, _ = predict(capsys, model, "--sample")
    write_png(tmp_path / "big.png", upscale(sample, 200))
    notes = []
    x = read_digit(tmp_path / "big.png", notes=notes)
    assert x.shape == (1, 28, 28, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert np.abs(x[0, :, :, 0] - sample / 255).mean() < 0.03  # the round trip 28 -> 200 -> 28 keeps the digit
    big_digit, big_probs, err = predict(capsys, model, str(tmp_path / "big.png"))
    assert err == "note: the image is 200x200, resized to 28x28\n"
    assert big_digit == digit and np.abs(big_probs - probs).max() < 0.15


def test_a_dark_digit_on_white_is_inverted_and_predicts_as_the_original(capsys, model, sample, tmp_path):
    digit, probs, _ = predict(capsys, model, "--sample")
    write_png(tmp_path / "inv.png", 255 - sample)
    assert np.allclose(read_digit(tmp_path / "inv.png"), sample.reshape(1, 28, 28, 1) / 255, atol=1e-6)
    inv_digit, inv_probs, err = predict(capsys, model, str(tmp_path / "inv.png"))
    assert inv_digit == digit and inv_probs == pytest.approx(probs, abs=1e-4)
    assert err.startswith("note: the image is mostly light") and "inverted" in err and err.count("\n") == 1
    write_png(tmp_path / "inv-big.png", upscale(255 - sample, 120))
    big_digit, _, err = predict(capsys, model, str(tmp_path / "inv-big.png"))
    assert big_digit == digit and "inverted" in err and "the image is 120x120, resized to 28x28" in err


def test_colour_and_transparent_pngs_are_read_as_grey_and_every_filter_decodes(capsys, model, sample, tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    (tmp_path / "rgb.png").write_bytes(png_bytes(noise, colour=2))
    assert np.array_equal(read_png(tmp_path / "rgb.png"), noise.mean(axis=2).round().astype(np.uint8))
    (tmp_path / "grey.png").write_bytes(png_bytes(noise[..., 0], colour=0))
    assert np.array_equal(read_png(tmp_path / "grey.png"), noise[..., 0])

    digit, _, _ = predict(capsys, model, "--sample")
    big = upscale(sample, 84)
    ink = np.zeros((84, 84, 4), np.uint8)  # black ink on a transparent canvas, as drawing programs export
    ink[..., 3] = big
    (tmp_path / "ink.png").write_bytes(png_bytes(ink, colour=6))
    ink_digit, _, err = predict(capsys, model, str(tmp_path / "ink.png"))
    assert ink_digit == digit
    assert err.splitlines()[0] == "note: transparent pixels are laid over white"
    assert "inverted" in err and "the image is 84x84, resized to 28x28" in err
    red = np.zeros((84, 84, 3), np.uint8)
    red[..., 0] = big
    (tmp_path / "red.png").write_bytes(png_bytes(red, colour=2))
    assert (
        "note: colour image: its red, green and blue are averaged to greyscale"
        in predict(capsys, model, str(tmp_path / "red.png"))[2]
    )


def test_a_non_square_image_is_padded_to_a_square_before_resizing(capsys, model, sample, tmp_path):
    wide = np.zeros((28, 56), np.uint8)
    wide[:, 14:42] = sample
    square = np.zeros((56, 56), np.uint8)
    square[14:42, 14:42] = sample
    np.save(tmp_path / "wide.npy", wide)
    write_png(tmp_path / "square.png", square)
    assert np.array_equal(read_digit(tmp_path / "wide.npy"), read_digit(tmp_path / "square.png"))
    err = predict(capsys, model, str(tmp_path / "wide.npy"))[2]
    assert err == ("note: the image is 56x28 (width x height), padded with background to 56x56 to keep its shape, "
                   "resized to 28x28\n")  # fmt: skip


def test_npy_arrays_of_any_2d_size_are_resized_and_keep_the_training_scale(capsys, model, sample, tmp_path):
    np.save(tmp_path / "f.npy", (upscale(sample, 70) / 255.0)[None, :, :, None])  # float, with batch/channel axes
    np.save(tmp_path / "u.npy", upscale(sample, 70))
    assert np.allclose(read_digit(tmp_path / "f.npy"), read_digit(tmp_path / "u.npy"), atol=1e-6)
    assert "the image is 70x70, resized to 28x28" in predict(capsys, model, str(tmp_path / "f.npy"))[2]
    np.save(tmp_path / "s.npy", sample)  # 28x28 uint8: exactly as training scales MNIST (data.to_float)
    assert np.array_equal(read_digit(tmp_path / "s.npy", dtype=np.float64)[0, :, :, 0], sample / np.float64(255))


def bad_inputs(tmp_path: Path, sample: np.ndarray) -> dict[str, tuple[str, str]]:
    good = png_bytes(sample, colour=0)
    ihdr = good.index(b"IHDR")
    idat = good.index(b"IDAT")
    sixteen = png_bytes(np.zeros((4, 8), np.uint8), colour=0, depth=16)  # rows of 8 bytes: 4 pixels of 16 bits
    files = {
        "gif.png": (b"GIF89a" + bytes(20), "is not a PNG file (bad signature); it looks like a GIF file"),
        "sixteen.png": (sixteen, "16-bit PNGs are not supported; save it with 8 bits per channel"),
        "palette.png": (png_bytes(sample, colour=3), "palette (indexed-colour) PNGs are not supported"),
        "cut.png": (good[: idat + 20], "PNG without image data"),
        "flipped.png": (good[: idat + 10] + bytes([good[idat + 10] ^ 1]) + good[idat + 11 :], "checksum mismatch"),
        "no-ihdr.png": (PNG_SIGNATURE + good[idat - 4 :], "PNG without IHDR chunk"),
        "short-ihdr.png": (good[: ihdr - 4] + b"\x00\x00\x00\x02IHDR\x00\x01" + good[ihdr + 6 :], "corrupt PNG"),
        "digit.jpg": (b"\xff\xd8\xff\xe0", "expected a .png or .npy image, got .jpg"),
        "garbage.npy": (b"not an array at all", "is not a readable .npy array"),
    }
    for name, (content, _) in files.items():
        (tmp_path / name).write_bytes(content)
    arrays = {
        "batch.npy": (np.zeros((5, 28, 28), np.uint8), "(a 2-D array), got shape (5, 28, 28)"),
        "rgb.npy": (np.zeros((28, 28, 3), np.uint8), "(a 2-D array), got shape (28, 28, 3)"),
        "empty.npy": (np.zeros((0, 28), np.uint8), "the image is empty"),
        "ints.npy": (np.zeros((28, 28), np.int64), "expected uint8 or float pixels, got int64"),
        "bright.npy": (np.full((28, 28), 255.0), "float images must hold finite values in [0, 1]"),
    }
    for name, (array, _) in arrays.items():
        np.save(tmp_path / name, array)
    with open(tmp_path / "archive.npy", "wb") as f:
        np.savez(f, image=sample)
    arrays["archive.npy"] = (None, "is an .npz archive, not a .npy array")
    (tmp_path / "folder.png").mkdir()
    cases = {name: message for name, (_, message) in {**files, **arrays}.items()}
    return cases | {"folder.png": "is not a file", "missing.png": "does not exist"}


def test_bad_images_fail_in_one_line_naming_the_problem_with_exit_2(capsys, model, sample, tmp_path):
    for name, message in bad_inputs(tmp_path, sample).items():
        assert main(["predict", model, str(tmp_path / name)]) == 2, name
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1, name
        assert message in captured.err, (name, captured.err)
    assert main(["predict", model]) == 2
    assert "predict needs an image (a .png or .npy file), or --sample" in capsys.readouterr().err
    assert main(["predict", model, str(tmp_path / "x.png"), "--sample"]) == 2
    assert "an image or --sample, not both" in capsys.readouterr().err


def test_every_truncation_or_flipped_byte_of_a_png_is_refused_or_read_never_a_crash(sample, tmp_path):
    good = png_bytes(sample[:6, :10], colour=0)
    path = tmp_path / "damaged.png"
    variants = [good[:n] for n in range(len(good))]
    variants += [good[:i] + bytes([good[i] ^ 0x41]) + good[i + 1 :] for i in range(len(good))]
    for content in variants:
        path.write_bytes(content)
        try:
            image = read_png(path)
        except ValueError:
            continue
        assert image.shape[0] * image.shape[1] > 0
