"""Fewer round trips, the same judgement (issue: a class in minutes): a case's layer is built with its
parameters written and read back in one exchange, a backward and its grads read in one; each result
comes back as it was when its call ended; and whatever goes wrong is named exactly as the requests one
by one name it. Students' layers, each in a sandboxed worker (the strongest tier here)."""

import textwrap

import numpy as np
import pytest

from reference.impl.protocol import ProtocolViolation, backward_and_grads, build_case_layer
from reference.sandbox import requests
from reference.sandbox.client import RemoteError, open_session
from reference.sandbox.requests import Call, Read
from reference.sandbox.target import find_target

LAYERS = """
import numpy as np


class ReLU:  # right, but its backward makes its mask in place, in the array its forward returned
    params, grads = {}, {}

    def forward(self, x):
        self.out = np.maximum(x, 0)
        return self.out

    def backward(self, dout):
        self.out[self.out > 0] = 1
        return dout * self.out


class Dense:  # right
    def __init__(self, n_in, n_out, bias=True, *, rng, dtype=np.float64):
        self.params = {"W": rng.standard_normal((n_in, n_out)).astype(dtype)}
        if bias:
            self.params["b"] = np.zeros(n_out, dtype)
        self.grads = {}

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params.get("b", 0)

    def backward(self, dout):
        self.grads = {"W": self.x.T @ dout}
        if "b" in self.params:
            self.grads["b"] = dout.sum(axis=0)
        return dout @ self.params["W"].T


class Sigmoid:  # its backward forgets to fill grads: it has none, and says so with an AttributeError
    params = {}

    def forward(self, x):
        self.s = 1 / (1 + np.exp(-x))
        return self.s

    def backward(self, dout):
        return dout * self.s * (1 - self.s)

    def __getattr__(self, name):
        raise AttributeError(name)


class Tanh:  # its backward raises
    params, grads = {}, {}

    def forward(self, x):
        return np.tanh(x)

    def backward(self, dout):
        raise ValueError("backward not written yet")
"""

COPYING_DENSE = (
    LAYERS
    + """

class Dense:  # a user's own Dense: right maths, but `params` a property that returns copies
    def __init__(self, n_in, n_out, bias=True, *, rng, dtype=np.float64):
        self._p = {"W": rng.standard_normal((n_in, n_out)).astype(dtype), "b": np.zeros(n_out, dtype)}
        self.grads = {}

    @property
    def params(self):
        return {k: v.copy() for k, v in self._p.items()}

    def forward(self, x):
        self.x = x
        return x @ self._p["W"] + self._p["b"]
"""
)


@pytest.fixture
def session(tmp_path, request):
    path = tmp_path / "layers.py"
    path.write_text(textwrap.dedent(getattr(request, "param", LAYERS)))
    s = open_session(find_target(str(path)), ["ReLU", "Dense", "Sigmoid", "Tanh"], sandbox="auto")
    yield s
    s.close()


def exchanges(session, scope):
    return session.workers[scope].exchanges


PARAMS = {"W": np.arange(6.0).reshape(3, 2), "b": np.array([0.5, -0.5])}


def test_a_layer_is_built_with_its_params_written_and_read_back_in_one_exchange(session):
    with session.case("Dense"):
        session.worker().class_handle("Dense")  # the class handle is read once per worker
        before = exchanges(session, "Dense")
        layer = build_case_layer(session.impl, "Dense", {"n_in": 3, "n_out": 2, "bias": True}, PARAMS, "float64")
        assert exchanges(session, "Dense") - before == 1
        assert np.array_equal(layer.forward(np.ones((1, 3))), [[6.5, 8.5]])  # the params written are live


@pytest.mark.parametrize("session", [COPYING_DENSE], indirect=True)
def test_params_that_are_copies_are_named_as_the_step_by_step_build_names_them(session):
    with session.case("Dense"), pytest.raises(ProtocolViolation, match=r"params\['W'\] is not live"):
        build_case_layer(session.impl, "Dense", {"n_in": 3, "n_out": 2, "bias": True}, PARAMS, "float64")


def test_a_backward_and_its_grads_come_back_in_one_exchange(session):
    with session.case("Dense"):
        layer = build_case_layer(session.impl, "Dense", {"n_in": 3, "n_out": 2, "bias": True}, PARAMS, "float64")
        layer.forward(np.ones((4, 3)))
        before = exchanges(session, "Dense")
        dx, grads = backward_and_grads(layer, "Dense", np.ones((4, 2)), ["W", "b"])
        assert exchanges(session, "Dense") - before == 1
        assert np.array_equal(dx, np.ones((4, 2)) @ PARAMS["W"].T)
        assert np.array_equal(grads["W"], np.full((3, 2), 4.0)) and np.array_equal(grads["b"], [4.0, 4.0])


def test_a_backward_that_raises_and_grads_that_are_missing_are_named_as_one_by_one(session):
    with session.case("Tanh"):
        tanh = session.impl.Tanh()
        tanh.forward(np.ones(3))
        with pytest.raises(RemoteError, match="backward not written yet") as raised:
            backward_and_grads(tanh, "Tanh", np.ones(3), [])
        assert raised.value.during == "Tanh.backward"
    with session.case("Sigmoid"):
        sigmoid = session.impl.Sigmoid()
        sigmoid.forward(np.zeros(3))
        with pytest.raises(ProtocolViolation, match="Sigmoid.grads is NoneType, not a dict"):
            backward_and_grads(sigmoid, "Sigmoid", np.ones(3), [])


def test_each_result_of_a_batch_is_what_its_call_returned_when_it_ended(session):
    x = np.array([-1.0, 2.0, 3.0])
    with session.case("ReLU"):
        relu = session.impl.ReLU()
        out, dx = requests.run([Call(relu, "forward", (x,)), Call(relu, "backward", (np.full(3, 5.0),))], "ReLU")
    assert np.array_equal(out, [0.0, 2.0, 3.0])  # not the mask its backward later wrote into it
    assert np.array_equal(dx, [0.0, 5.0, 5.0])


def test_a_partial_batch_returns_what_ran_and_names_the_item_that_raised(session):
    with session.case("Tanh"):
        tanh = session.impl.Tanh()
        values, failed = requests.run(
            [Call(tanh, "forward", (np.zeros(2),)), Call(tanh, "backward", (np.ones(2),)), Read(tanh, "grads")],
            "Tanh",
            keep=[0, 1, 2],
            partial=True,
        )
    assert len(values) == 1 and np.array_equal(values[0], [0.0, 0.0])
    assert failed[0] == 1 and failed[1]["type"] == "ValueError"
