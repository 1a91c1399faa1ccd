"""The picture of each failing layer's worst case (reference/report/heatmap.py): the kinks it marks
are exactly the case's, the collector keeps the worst case and its most telling tensor, and a judge
run on a catalogue fault leaves a readable PNG that index.html shows under the layer's rows."""

import struct
import textwrap
import types

import numpy as np
import pandas as pd
import pytest

from reference.cases.grid import grid
from reference.cli import main
from reference.report import heatmap

# 4x4, one channel. Max pool 2x2, stride 2: window (0,0) has an exact tie (5 at (0,0) and (1,1)),
# window (1,0) a near-tie (3 at (2,0), 3 + 1e-7 at (3,1)); windows (0,1) and (1,1) have one maximum.
# The one exact zero is (3,3), in window (1,1), whose maximum (4 at (2,2)) it is not.
X = np.array([[5.0, -1.0, 2.0, -3.0],
              [-2.0, 5.0, 1.5, 0.5],
              [3.0, -4.0, 4.0, -0.5],
              [1.0, 3.0 + 1e-7, 2.5, 0.0]]).reshape(1, 4, 4, 1)  # fmt: skip
POOL = {"kernel_size": 2, "stride": None}


def cells(mask):
    return {tuple(int(i) for i in idx[1:3]) for idx in np.argwhere(mask)}


def test_the_kinks_of_a_hand_made_input_are_exactly_its_tie_near_tie_and_zero():
    pool = heatmap.kink_cells("MaxPool2D", POOL, X, X.shape)
    assert cells(pool["tie"]) == {(0, 0), (1, 1)}
    assert cells(pool["near_tie"]) == {(2, 0), (3, 1)}
    assert cells(pool["zero"]) == set()  # a zero is a kink of ReLU, not of a pool
    relu = heatmap.kink_cells("ReLU", {}, X, X.shape)
    assert cells(relu["zero"]) == {(3, 3)} and not relu["tie"].any() and not relu["near_tie"].any()
    # the forward's output: one cell per window, marked where its window is tied
    out = heatmap.kink_cells("MaxPool2D", POOL, X, (1, 2, 2, 1))
    assert cells(out["tie"]) == {(0, 0)} and cells(out["near_tie"]) == {(1, 0)}
    # a layer without kinks, or a tensor of another shape (a parameter gradient): nothing marked
    assert not any(m.any() for m in heatmap.kink_cells("Conv2D", {}, X, X.shape).values())
    assert not any(m.any() for m in heatmap.kink_cells("MaxPool2D", POOL, X, (3, 3)).values())


def test_overlapping_windows_and_the_window_lines():
    x = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).reshape(1, 3, 3, 1)
    marks = heatmap.kink_cells("MaxPool2D", {"kernel_size": 2, "stride": 1}, x, x.shape)
    # window (0,0) ties the two ones; windows (1,*) tie zeros (every element of theirs)
    assert cells(marks["tie"]) == {(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)}
    assert heatmap.window_lines("MaxPool2D", POOL, X, X.shape) == ([0, 2, 4], [0, 2, 4])
    assert heatmap.window_lines("AvgPool2D", {"kernel_size": 2, "stride": 3}, np.zeros((1, 5, 5, 1)), (1, 5, 5, 1)) == (
        [0, 2, 3, 5],
        [0, 2, 3, 5],
    )
    assert heatmap.window_lines("ReLU", {}, X, X.shape) == ([], [])


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_draw_marks_the_ties_the_router_to_every_maximum_gets_wrong(tmp_path):
    g = np.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    ref = np.zeros_like(X)
    ours = np.zeros_like(X)
    for (i, j), (ti, tj) in {(0, 0): (0, 0), (0, 1): (1, 2), (1, 0): (3, 1), (1, 1): (2, 2)}.items():
        ref[0, ti, tj, 0] = g[0, i, j, 0]  # torch: the first maximum of each window
        ours[0, ti, tj, 0] = g[0, i, j, 0]
    ours[0, 1, 1, 0] = g[0, 0, 0, 0]  # the fault: the tied maximum at (1,1) gets it too
    pic = heatmap.Picture("autograd", "MaxPool2D", "hand-made", "dx", "float64", ours, ref, POOL, X, 1e11)
    shown = heatmap.draw(pic, tmp_path / "h.png")
    assert shown["ties"] == 2 and shown["near_ties"] == 2 and shown["zeros"] == 0
    assert shown["max_abs_err"] == 1.0 and shown["panels"] == "sample 0, channel 0"
    w, h = png_size(tmp_path / "h.png")
    assert 600 <= w <= 1700 and 400 <= h <= 1600


def fake(tensor, budget, bad=1, layer="MaxPool2D", case="c1", dtype="float64", shape=(1, 4, 4, 1)):
    ours, ref = np.ones(shape), np.zeros(shape)
    ev = types.SimpleNamespace(layer=layer, tensor=tensor, ours=ours, ref=ref, dtype=dtype, config=POOL, x=None,
                               bad=lambda: np.arange(ours.size) < bad)  # fmt: skip
    row = {"judge": "autograd", "layer": layer, "case": case, "dtype": dtype, "tensor": tensor, "status": "fail",
           "budget": budget}  # fmt: skip
    return ev, row


def test_the_collector_keeps_the_worst_case_and_its_most_telling_tensor():
    col = heatmap.Collector()
    heatmap.offer(*fake("dx", 1e9))  # outside a judge's run: nobody collects
    assert len(col) == 0
    offer = col.around(heatmap.offer)
    offer(*fake("out", 1e3, case="c1"))
    offer(*fake("dx", 1e2, case="c1"))  # the same case: dx is shown, the case keeps its worst budget
    offer(*fake("dW", 5e3, case="c2", shape=(2, 2, 1, 1)))  # within a factor of 10 of c1: fewer failing elements
    offer(*fake("dx", 2e3, case="c3", bad=4))  # same order of magnitude, more to see: the worst
    offer(*fake("out", 1e5, case="c4", shape=(3,)))  # an order of magnitude past every other: the worst
    offer(*fake("dx", 1e9, layer="ReLU", case="r1"))
    mismatch = fake("dx", 1e12, layer="ReLU", case="r2")
    mismatch[0].ours = np.ones((2, 2))  # a shape mismatch cannot be subtracted: told by the row, not drawn
    offer(*mismatch)
    ragged = fake("dx", 1e12, layer="ReLU", case="r3")
    ragged[0].ours = np.array([object(), "x"], dtype=object).reshape(1, 2)  # not numbers: not drawn, never raises
    offer(*ragged)
    best = {p.layer: p for p in col.pictures()}
    assert (best["MaxPool2D"].case, best["MaxPool2D"].tensor) == ("c4", "out")
    assert (best["ReLU"].case, best["ReLU"].tensor) == ("r1", "dx")
    col2 = heatmap.Collector()
    offer2 = col2.around(heatmap.offer)
    offer2(*fake("out", 1e3, case="c1"))
    offer2(*fake("dx", 1e2, case="c1"))
    offer2(*fake("dW", 5e3, case="c2", shape=(2, 2, 1, 1)))
    offer2(*fake("dx", 2e3, case="c3", bad=4))
    assert [(p.case, p.tensor) for p in col2.pictures()] == [("c3", "dx")]
    col3 = heatmap.Collector()
    offer3 = col3.around(heatmap.offer)
    offer3(*fake("out", 1e3, case="c1"))
    offer3(*fake("dx", 1e2, case="c1"))
    offer3(*fake("dW", 5e3, case="c2", shape=(2, 2, 1, 1)))
    assert [(p.case, p.tensor) for p in col3.pictures()] == [("c1", "dx")]


def judge(tmp_path, fault_import, *options):
    (tmp_path / "impl.py").write_text(textwrap.dedent(f"""
        from scratch_cnn import *  # noqa
        {fault_import}  # noqa
    """))  # fmt: skip
    out = tmp_path / "out"
    code = main(["judge", "--impl", str(tmp_path / "impl.py"), "--judges", "autograd", "--out", str(out), *options])
    return code, out


def test_a_pool_that_routes_to_every_tied_maximum_is_drawn_with_its_ties(tmp_path, capsys):
    code, out = judge(tmp_path, "from reference.layers.maxpool2d import MaxPoolTiesToEveryMax as MaxPool2D",
                      "--quick", "--layers", "MaxPool2D")  # fmt: skip
    capsys.readouterr()
    assert code == 1
    index = pd.read_csv(out / "heatmaps.csv")
    # the worst case, and the smallest failing input it shrinks to (tests/test_shrink.py)
    assert list(index["file"]) == ["heatmap-MaxPool2D.png", "heatmap-MaxPool2D-smallest.png"]
    assert list(index["kind"]) == ["worst", "smallest"]
    row = index.iloc[0]
    assert row["tensor"] == "dx" and row["ties"] > 0 and row["dtype"] in ("float64", "float32")
    failing = pd.read_csv(out / "autograd.csv")
    assert row["case"] in set(failing[failing["status"] == "fail"]["case"])
    w, h = png_size(out / "heatmap-MaxPool2D.png")
    assert 600 <= w <= 1700 and 400 <= h <= 1600
    page = (out / "index.html").read_text()
    rows_at = page.index("autograd: MaxPool2D: rows that did not pass")
    figure_at = page.index("<figure id='heatmap-MaxPool2D'><img")
    assert rows_at < figure_at and "exact ties" in page[figure_at:]
    summary = (out / "summary.md").read_text()
    assert (
        "![heatmap-MaxPool2D.png](heatmap-MaxPool2D.png)" in summary and "[Picture](heatmap-MaxPool2D.png)" in summary
    )
    assert "## Plots" not in summary  # the heat map is shown under its layer, not again among the plots


SHIFTED = next(c.id for c in grid() if c.layer == "Conv2D" and not c.lifecycle and c.config.get("padding") == 1
               and c.config.get("stride", 1) == 1 and c.input_shape[1] >= 7)  # fmt: skip


@pytest.mark.parametrize("case", [SHIFTED])
def test_a_conv_backward_shifted_by_one_row_is_drawn(tmp_path, capsys, case):
    code, out = judge(tmp_path, "from reference.layers.conv2d import ConvBackwardOffByOnePad as Conv2D", "--case", case)
    capsys.readouterr()
    assert code == 1
    row = pd.read_csv(out / "heatmaps.csv").iloc[0]
    assert (row["layer"], row["case"], row["tensor"]) == ("Conv2D", case, "dx")
    assert row["ties"] == 0 and row["zeros"] == 0  # a convolution has no kink to mark
    assert png_size(out / "heatmap-Conv2D.png")[0] >= 600


def test_a_passing_layer_has_no_picture(tmp_path, capsys):
    code, out = judge(tmp_path, "from scratch_cnn import ReLU", "--quick", "--layers", "ReLU")
    capsys.readouterr()
    assert code == 0 and not list(out.glob("heatmap*"))


def test_a_reused_out_folder_keeps_no_stale_picture(tmp_path):
    col = heatmap.Collector()
    col.around(heatmap.offer)(*fake("dx", 1e3))
    assert [p.name for p in col.write(tmp_path)] == ["heatmap-MaxPool2D.png"]
    assert list(heatmap.load_index(tmp_path)["file"]) == ["heatmap-MaxPool2D.png"]
    assert heatmap.Collector().write(tmp_path) == []  # the layer passes now: its old picture goes
    assert not list(tmp_path.glob("heatmap*"))
