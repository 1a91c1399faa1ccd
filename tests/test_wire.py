"""The wire's values (reference.sandbox.wire): what the judge sends is what the worker reads, and back.
A sequence of plain JSON scalars takes one step each way (a sweep's thousands of numbers); it must read
exactly as the general path reads it, and the nesting limit holds on that path too."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.sandbox import wire

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**62), 2**62), st.text(max_size=5),
                    st.floats(allow_nan=False))  # fmt: skip
arrays = st.builds(lambda shape, seed: np.random.default_rng(seed).standard_normal(shape),
                   st.lists(st.integers(0, 3), max_size=3), st.integers(0, 2**32 - 1))  # fmt: skip
values = st.recursive(
    st.one_of(scalars, arrays),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=6).map(tuple),
        st.dictionaries(st.text(max_size=4), inner, max_size=4),
    ),  # fmt: skip
    max_leaves=30,
)


def crossed(value):
    """``value`` encoded, its header through JSON (as on the pipe), and decoded."""
    enc = wire.Encoder()
    node = json.loads(json.dumps(enc.value(value)))
    return wire.Decoder([memoryview(bytes(b)) for b in enc.buffers]).value(node)


def same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(values)
def test_a_value_crosses_the_wire_unchanged(value):
    assert same(value, crossed(value))


@given(st.lists(scalars, max_size=50))
def test_a_sequence_of_plain_scalars_reads_as_the_general_path_reads_it(items):
    node = {"t": "list", "v": items}
    general = [wire.Decoder([]).value(x, 1) for x in items]  # each item alone, by value()
    assert same(wire.Decoder([]).value(node), general) and same(crossed(tuple(items)), tuple(items))


def nested(depth, leaf):
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize("leaf", [1.5, "x", None], ids=["float", "str", "None"])
def test_the_nesting_limit_holds_for_sequences_of_plain_scalars(leaf):
    deepest = nested(wire.MAX_DEPTH, [leaf, leaf])  # its scalars at depth MAX_DEPTH + 1
    assert same(crossed(nested(wire.MAX_DEPTH - 1, [leaf, leaf])), nested(wire.MAX_DEPTH - 1, [leaf, leaf]))
    with pytest.raises(TypeError, match="nested too deep"):
        wire.Encoder().value(deepest)
    node = {"t": "list", "v": [leaf, leaf]}
    for _ in range(wire.MAX_DEPTH):
        node = {"t": "list", "v": [node]}
    with pytest.raises(wire.WireError, match="nested too deep"):
        wire.Decoder([]).value(node)
