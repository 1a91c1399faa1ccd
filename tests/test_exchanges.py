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


# --- an optimiser's case: constructed, stepped and read after every step in one exchange ---------------

OPTIMISERS = """
import numpy as np


class Adam:  # right (a student's, moments in dicts)
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params, self.lr, self.betas, self.eps, self.wd = params, lr, betas, eps, weight_decay
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        for k, p in self.params.items():
            g = grads[k] + (self.wd * p if k.endswith("W") else 0)
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            m_hat, v_hat = self.m[k] / (1 - b1**self.t), self.v[k] / (1 - b2**self.t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class RMSprop(Adam):  # bias corrections tabled for the first two steps only: IndexError at step 3
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr, (0.9, alpha), eps, weight_decay)
        self.c = [1 - alpha, 1 - alpha**2]

    def step(self, grads):
        self.t += 1
        for k, p in self.params.items():
            self.v[k] = self.betas[1] * self.v[k] + (1 - self.betas[1]) * grads[k] ** 2
            p -= self.lr * grads[k] / (np.sqrt(self.v[k] / self.c[self.t - 1]) + self.eps)
"""

REBINDING = OPTIMISERS.replace(
    "            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)",
    "            self.params = [self.params[q] for q in self.params]  # a list from step 1 on\n            break",
)


def optimiser_rows(tmp_path, source, one_by_one, monkeypatch):
    from reference.cases.grid import grid
    from reference.judges.base import Context
    from reference.judges.optimizers import OptimizerJudge

    (tmp_path / str(one_by_one)).mkdir()
    path = tmp_path / str(one_by_one) / "optimisers.py"  # one name: the rows' notes quote it
    path.write_text(textwrap.dedent(source))
    if one_by_one:
        monkeypatch.setattr(requests, "construct_then", lambda *a, **k: None)
    s = open_session(find_target(str(path)), ["Adam", "RMSprop"], sandbox="auto")
    try:
        cases = [c for c in grid() if c.layer in ("Adam", "RMSprop")]
        rows = OptimizerJudge().run(Context(s.impl, "student", cases)).rows
        spent = {scope: w.exchanges for scope, w in s.workers.items()}
    finally:
        s.close()
        monkeypatch.undo()
    return rows.drop(columns=[c for c in rows.columns if c.endswith("_s")]), spent


@pytest.mark.parametrize("source", [OPTIMISERS, REBINDING], ids=["right and IndexError at step 3", "params rebound"])
def test_an_optimiser_case_is_one_exchange_and_judged_as_step_by_step(tmp_path, source, monkeypatch):
    fused, fused_spent = optimiser_rows(tmp_path, source, False, monkeypatch)
    steps, steps_spent = optimiser_rows(tmp_path, source, True, monkeypatch)
    pd = pytest.importorskip("pandas")
    pd.testing.assert_frame_equal(fused, steps)
    for layer in ("Adam", "RMSprop"):  # its class read once, then one exchange per case and dtype
        assert fused_spent[layer] == 1 + fused[fused["layer"] == layer][["case", "dtype"]].drop_duplicates().shape[0]
    if source is OPTIMISERS:  # 25 steps each, one by one: a step and a read of the params per step
        assert sum(fused_spent.values()) * 5 < sum(steps_spent.values())
    if source is OPTIMISERS:
        adam, rms = fused[fused["layer"] == "Adam"], fused[fused["layer"] == "RMSprop"]
        assert len(adam) and (adam["status"] == "pass").all(), adam[["status", "note"]]
        assert len(rms) and rms["note"].str.contains("IndexError").all(), rms["note"].tolist()
    else:
        assert fused.loc[fused["layer"] == "Adam", "note"].str.contains("after step 1 is list").all()


def test_a_backward_its_grads_and_the_params_after_it_come_back_in_one_exchange(session):
    from reference.impl.protocol import backward_grads_and_params

    with session.case("Dense"):
        layer = build_case_layer(session.impl, "Dense", {"n_in": 3, "n_out": 2, "bias": True}, PARAMS, "float64")
        layer.forward(np.ones((4, 3)))
        before = exchanges(session, "Dense")
        dx, grads, now = backward_grads_and_params(layer, "Dense", np.ones((4, 2)), ["W", "b"])
        assert exchanges(session, "Dense") - before == 1
        assert np.array_equal(grads["W"], np.full((3, 2), 4.0)) and set(now) == {"W", "b"}
        assert all(np.array_equal(now[k], PARAMS[k]) for k in PARAMS)
    with session.case("Tanh"):  # its backward raises: as the requests one by one raise it
        tanh = session.impl.Tanh()
        tanh.forward(np.ones(3))
        with pytest.raises(RemoteError, match="backward not written yet"):
            backward_grads_and_params(tanh, "Tanh", np.ones(3), ["W"])


# --- the adjoint identity in one exchange; a layer's declared conventions read with its construction ----

DENSES = {
    "right": "",
    "backward raises": "    def backward(self, dout):\n        raise ValueError('backward not written yet')\n",
    "dW doubled": (
        "    def backward(self, dout):\n        self.grads = {'W': 2 * self.x.T @ dout, 'b': dout.sum(axis=0)}\n"
        "        return dout @ self.params['W'].T\n"
    ),
    "no grads": ("    def backward(self, dout):\n        del self.grads\n        return dout @ self.params['W'].T\n"),
}


def _judged_twice(tmp_path, monkeypatch, source, layers, judge, fuse_off):
    """The rows of ``judge(impl)`` with the fused exchanges, then with ``fuse_off`` applied (the
    requests one by one), each in a fresh sandboxed session; and the exchanges each spent."""
    out = []
    for one_by_one in (False, True):
        (tmp_path / str(one_by_one)).mkdir()
        path = tmp_path / str(one_by_one) / "layers.py"  # one name: the rows' notes quote it
        path.write_text(textwrap.dedent(source))
        if one_by_one:
            fuse_off(monkeypatch)
        s = open_session(find_target(str(path)), layers, sandbox="auto")
        try:
            rows = judge(s.impl)
            spent = sum(w.exchanges for w in s.workers.values())
        finally:
            s.close()
            monkeypatch.undo()
        out.append((rows.drop(columns=[c for c in rows.columns if c.endswith("_s")]), spent))
    return out


@pytest.mark.parametrize("variant", list(DENSES))
def test_the_adjoint_identity_is_one_exchange_after_the_build_and_judged_as_one_by_one(tmp_path, monkeypatch,
                                                                                     variant):  # fmt: skip
    import pandas as pd

    from reference.cases.grid import grid
    from reference.judges import finite_diff

    source = LAYERS.replace("        return dout @ self.params[\"W\"].T\n", '        return dout @ self.params["W"].T\n'
                            + ("\n" + DENSES[variant] if DENSES[variant] else ""), 1)  # fmt: skip
    cases = [c for c in grid() if c.layer == "Dense" and not c.lifecycle][:3]

    def judge(impl):
        with requests.scope(impl, "Dense"):
            return pd.DataFrame([r for c in cases for r in finite_diff.adjoint_rows(impl, c)])

    def one_by_one(mp):
        mp.setattr(finite_diff, "forward_backward_reads", lambda *a, **k: None)

    (fused, fused_spent), (steps, steps_spent) = _judged_twice(tmp_path, monkeypatch, source, ["Dense"], judge,
                                                               one_by_one)  # fmt: skip
    pd.testing.assert_frame_equal(fused, steps)
    statuses = set(fused["status"])
    assert statuses == {"right": {"pass"}, "backward raises": {"error"}, "dW doubled": {"pass", "fail"},
                        "no grads": {"error"}}[variant], fused[["tensor", "status", "note"]]  # fmt: skip
    if variant == "right":  # per case: the class once, then a build and one exchange (was: build and five)
        assert fused_spent == 1 + 2 * len(cases) and steps_spent == 1 + 6 * len(cases)
    if variant == "no grads":
        assert fused["note"].str.contains("Dense.grads is NoneType").all()


RELUS = {
    "declared": "    kink_conventions = {'relu_grad_at_zero': 1.0}\n",
    "undeclared": "",
    "declaration raises": "    @property\n    def kink_conventions(self):\n        raise ValueError('not yet')\n",
    "outside the subdifferential": "    kink_conventions = {'relu_grad_at_zero': 2.0}\n",
}


@pytest.mark.parametrize("variant", list(RELUS))
def test_declared_conventions_are_read_with_the_layer_and_judged_as_one_by_one(tmp_path, monkeypatch, variant):
    from reference.cases.grid import grid
    from reference.judges import conventions
    from reference.judges.autograd import AutogradJudge
    from reference.judges.base import Context

    relu = f"""
import numpy as np


class ReLU:  # ReLU'(0) = 1: the mask is x >= 0
{RELUS[variant]}    params, grads = {{}}, {{}}

    def forward(self, x):
        self.mask = x >= 0
        return np.maximum(x, 0)

    def backward(self, dout):
        return dout * self.mask
"""
    cases = [c for c in grid() if c.layer == "ReLU"][:6]

    def judge(impl):
        return AutogradJudge().run(Context(impl, "student", cases)).rows

    def one_by_one(mp):
        mp.setattr(conventions, "reads", lambda layer_type: ())

    (fused, fused_spent), (steps, steps_spent) = _judged_twice(tmp_path, monkeypatch, relu, ["ReLU"], judge,
                                                               one_by_one)  # fmt: skip
    import pandas as pd

    pd.testing.assert_frame_equal(fused, steps)
    verdicts = set(fused["status"])
    if variant == "declared":
        assert verdicts == {"pass"} and fused["convention"].notna().all()
        assert fused_spent < steps_spent  # the declaration's read rode with each build
    elif variant == "outside the subdifferential":
        assert verdicts == {"error"} and fused["note"].str.contains(r"ReLU'\(0\) = 2.0 is not a sub").all()
    else:  # nothing declared (or a declaration that raises: nothing): ReLU'(0) = 1 is a wrong gradient
        assert "fail" in verdicts
        assert "convention" not in fused or fused["convention"].isna().all()


# --- the finite-difference judge starts from the autograd judge's float64 run of each case ----------------


def _fd_after_autograd(tmp_path, handoffs):
    import pandas as pd

    from reference.cases.grid import grid
    from reference.judges.autograd import AutogradJudge
    from reference.judges.base import Context
    from reference.judges.finite_diff import FiniteDiffJudge
    from reference.judges.runs import Handoffs

    (tmp_path / str(handoffs)).mkdir()
    path = tmp_path / str(handoffs) / "layers.py"  # one name: the rows' notes quote it
    path.write_text(textwrap.dedent(LAYERS))
    layers = ["ReLU", "Dense", "Sigmoid", "Tanh"]
    s = open_session(find_target(str(path)), layers, sandbox="auto")
    try:
        cases = [c for layer in layers for c in [c for c in grid() if c.layer == layer and not c.lifecycle][:3]]
        ctx = Context(s.impl, "student", cases, networks={}, handoffs=Handoffs() if handoffs else None)
        AutogradJudge().run(ctx)
        before = sum(w.exchanges for w in s.workers.values())
        rows = FiniteDiffJudge(crosscheck=False).run(ctx).rows
        spent = sum(w.exchanges for w in s.workers.values()) - before
    finally:
        s.close()
    return rows.drop(columns=[c for c in rows.columns if c.endswith("_s")]).reset_index(drop=True), spent, pd


def test_the_finite_difference_judge_starts_from_the_autograd_run_and_judges_as_on_its_own(tmp_path):
    handed, handed_spent, pd = _fd_after_autograd(tmp_path, True)
    own, own_spent = _fd_after_autograd(tmp_path, False)[:2]
    pd.testing.assert_frame_equal(handed, own)
    status = handed.groupby("layer")["status"].agg(set).to_dict()
    # the right Dense and the ReLU whose backward writes its mask into its forward's output: judged and
    # passing from the handed run; Sigmoid (no grads) and Tanh (backward raises): no run handed, their own
    assert status["Dense"] == {"pass"} and status["ReLU"] == {"pass"}, status
    assert status["Sigmoid"] == {"error"} and status["Tanh"] == {"error"}, status
    # a handed case saves its build, forward and backward-with-reads: three exchanges each (3 ReLU, 3 Dense)
    assert own_spent - handed_spent == 3 * 6


def test_a_layer_of_this_process_hands_no_run_on():
    """Its forward's array is its own (its backward may write into it): only a worker's copies are handed on."""
    import scratch_cnn
    from reference.cases.grid import grid
    from reference.judges.autograd import AutogradJudge
    from reference.judges.base import Context
    from reference.judges.runs import Handoffs

    cases = [c for c in grid() if c.layer in ("ReLU", "Dense") and not c.lifecycle][:4]
    ctx = Context(scratch_cnn, "scratch_cnn", cases, handoffs=Handoffs())
    rows = AutogradJudge().run(ctx).rows
    assert len(rows) and set(rows["status"]) == {"pass"} and len(ctx.handoffs) == 0
