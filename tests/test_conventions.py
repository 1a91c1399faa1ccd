"""A declared convention at a kink is judged against its declaration and named in the verdict; an
undeclared one fails; a declaration that is no subgradient is an error."""

import textwrap

import numpy as np
import pandas as pd

import scratch_cnn
from reference.cases.grid import grid
from reference.cli import main
from reference.core.verdicts import layer_verdicts
from reference.judges.autograd import AutogradJudge
from reference.judges.base import Context

RELU_CASES = [c for c in grid() if c.layer == "ReLU" and c.values in ("zeros", "mnist") and not c.lifecycle][:6]
POOL_CASES = [c for c in grid() if c.layer == "MaxPool2D" and c.values == "ties" and not c.lifecycle][:6]


class ReluOneAtZero:
    """ReLU with the mask x >= 0: ReLU'(0) = 1, a valid subgradient."""

    params: dict = {}
    grads: dict = {}

    def forward(self, x):
        self.mask = x >= 0
        return np.maximum(x, 0)

    def backward(self, dout):
        return dout * self.mask


class LastMaxPool(scratch_cnn.MaxPool2D):
    """Ties routed to the last maximum of each window (argmax over the reversed window)."""

    def backward(self, dout):
        from reference.core.diagnosis import route_max_pool

        k, s = self.kernel_size, self.stride
        return route_max_pool(self._x, dout.astype(np.float64), k, s, "last").astype(dout.dtype)

    def forward(self, x):
        self._x = x.astype(np.float64)
        return super().forward(x)


def module(**classes):
    return type("Impl", (), classes)


def declaring(cls, **kinks):
    return type(cls.__name__, (cls,), {"kink_conventions": kinks})


def judged(impl, cases):
    rows = AutogradJudge().run(Context(impl, "t", cases)).rows
    return rows, layer_verdicts(rows).set_index("layer")


def test_relu_prime_one_at_zero_declared_passes_and_the_verdict_names_the_declaration():
    rows, verdicts = judged(module(ReLU=declaring(ReluOneAtZero, relu_grad_at_zero=1.0)), RELU_CASES)
    assert set(rows["status"]) == {"pass"} and rows["convention"].str.startswith("ReLU'(0) = 1 (declared").all()
    assert "judged against its ReLU'(0) = 1 (declared" in verdicts.loc["ReLU", "why"]


def test_relu_prime_one_at_zero_undeclared_fails_and_the_diagnosis_says_how_to_declare_it():
    rows, verdicts = judged(module(ReLU=ReluOneAtZero), RELU_CASES)
    assert verdicts.loc["ReLU", "verdict"] == "FAIL"
    assert rows.loc[rows["status"] == "fail", "diagnosis"].str.contains("relu_grad_at_zero").all()


def test_a_declared_relu_prime_outside_the_subdifferential_is_an_error_not_a_convention():
    rows, _ = judged(module(ReLU=declaring(ReluOneAtZero, relu_grad_at_zero=2.0)), RELU_CASES)
    assert set(rows["status"]) == {"error"} and rows["note"].str.contains("not a subgradient of ReLU at 0").all()


def test_a_wrong_gradient_is_still_caught_under_a_declared_convention():
    class Halved(ReluOneAtZero):
        def backward(self, dout):
            return dout * self.mask * 0.5

    rows, verdicts = judged(module(ReLU=declaring(Halved, relu_grad_at_zero=1.0)), RELU_CASES)
    assert verdicts.loc["ReLU", "verdict"] == "FAIL" and rows["status"].eq("fail").any()


def test_max_pool_ties_to_the_last_maximum_pass_only_when_declared():
    _, undeclared = judged(module(MaxPool2D=LastMaxPool), POOL_CASES)
    assert undeclared.loc["MaxPool2D", "verdict"] == "FAIL"
    rows, declared = judged(module(MaxPool2D=declaring(LastMaxPool, maxpool_ties="last")), POOL_CASES)
    assert set(rows["status"]) == {"pass"} and "ties to the last maximum (declared" in declared.loc["MaxPool2D", "why"]
    rows, _ = judged(module(MaxPool2D=declaring(LastMaxPool, maxpool_ties="every")), POOL_CASES)
    assert set(rows["status"]) == {"error"}  # every tied maximum at once is no subgradient


def test_the_declaration_crosses_the_trust_boundary(tmp_path):
    (tmp_path / "relu_one.py").write_text(textwrap.dedent('''
        import numpy as np

        class ReLU:
            kink_conventions = {"relu_grad_at_zero": 1.0}
            params, grads = {}, {}

            def forward(self, x):
                self.mask = x >= 0
                return np.maximum(x, 0)

            def backward(self, dout):
                return dout * self.mask
    '''))  # fmt: skip
    out = tmp_path / "r"
    assert (
        main(["autograd", "--impl", str(tmp_path / "relu_one.py"), "--quick", "--layers", "ReLU", "--out", str(out)])
        == 0
    )
    rows = pd.read_csv(out / "autograd.csv")
    assert set(rows["status"]) == {"pass"} and rows["convention"].notna().all()
