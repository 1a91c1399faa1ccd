"""Draw the sample digit shipped with scratch_cnn (scratch_cnn/samples/digit-7.png) with NumPy alone.

A "7" as MNIST draws its digits: white strokes on black, 28x28, the digit inside a 20x20 box near
the centre, anti-aliased edges. Run from the repository root: python examples/make_sample_digit.py
"""

from pathlib import Path

import numpy as np

from scratch_cnn.imageio import write_png

SIZE, SUPER = 28, 8  # output side; samples per pixel side (anti-aliasing)
STROKES = [((8.5, 7.0), (19.5, 6.5)), ((19.5, 6.5), (16.0, 14.0)), ((16.0, 14.0), (12.5, 21.5))]  # (x, y) pixels
HALF_WIDTH = 1.4  # half the stroke width, in pixels


def distance_to_segment(px: np.ndarray, py: np.ndarray, a: tuple, b: tuple) -> np.ndarray:
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy), 0, 1)
    return np.hypot(px - (ax + t * dx), py - (ay + t * dy))


def draw_seven() -> np.ndarray:
    """uint8 (28, 28): the fraction of each pixel the strokes cover, times 255."""
    centres = (np.arange(SIZE * SUPER) + 0.5) / SUPER
    px, py = np.meshgrid(centres, centres)
    d = np.min([distance_to_segment(px, py, a, b) for a, b in STROKES], axis=0)
    ink = (d <= HALF_WIDTH).astype(np.float64).reshape(SIZE, SUPER, SIZE, SUPER).mean(axis=(1, 3))
    return np.round(255 * ink).astype(np.uint8)


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "scratch_cnn" / "samples" / "digit-7.png"
    write_png(out, draw_seven())
    print(f"wrote {out}")
