"""The benchmark's floor: the matrix products of a lenet step, counted from the architecture."""

import numpy as np

from reference.bench import gemm_operands


def flops(products):
    return sum(2 * a[0] * a[1] * b[1] * times for _, a, b, times in products)


def test_the_floor_multiplies_conformable_matrices_for_every_conv_and_dense_layer():
    products = gemm_operands(8)
    assert all(a[1] == b[0] for _, a, b, _ in products)
    assert {what.split()[0] for what, *_ in products} == {"0", "3", "7", "9"}  # lenet's convs and denses


def test_the_first_layer_pays_no_dx_and_the_others_pay_forward_dw_and_dx_alike():
    products = gemm_operands(8)
    by_layer = {i: [p for p in products if p[0].startswith(f"{i} ")] for i in ("0", "3", "7")}
    forward = {i: flops([p for p in ps if p[0].endswith("forward")]) for i, ps in by_layer.items()}
    assert flops(by_layer["0"]) == 2 * forward["0"]  # forward and dW, no dx of the images
    assert flops(by_layer["3"]) == 3 * forward["3"] == 3 * 2 * 8 * 14 * 14 * 64 * 5 * 5 * 32
    assert flops(by_layer["7"]) == 3 * forward["7"] == 3 * 2 * 8 * 3136 * 128
    assert np.isclose(flops(products) / 8, flops(gemm_operands(16)) / 16)  # linear in the batch
