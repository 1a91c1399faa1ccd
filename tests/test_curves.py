"""The curve judge: lockstep holds its bound for scratch_cnn; wrong training pieces break it."""

import pandas as pd
import pytest

from reference.impl.faults import CURVE_FAULTS
from reference.impl.protocol import load_impl
from reference.judges.curves import curve_checks, lockstep_verdict, plot_curves, run_curves, run_lockstep
from scratch_cnn.train import TrainConfig
from tests.test_train import fake_mnist

DATA = fake_mnist(n_train=400, n_test=200)


def test_lockstep_of_scratch_cnn_and_its_twin_stays_within_rounding_for_tens_of_steps():
    df = run_lockstep(load_impl(), DATA, steps=20)
    verdict = lockstep_verdict(df)
    assert verdict["status"] == "pass" and verdict["steps"] == 20
    assert verdict["max_param_rel_diff"] < 1e-12  # rounding, far inside the 1e-6 bound
    assert df["loss"].iloc[-1] < df["loss"].iloc[0]  # it did train


@pytest.mark.parametrize("fault", CURVE_FAULTS, ids=lambda f: f.name)
def test_a_wrong_training_piece_breaks_the_lockstep_bound_and_is_named(fault):
    df = run_lockstep(fault.impl(), DATA, steps=6, labels_for_impl=fault.labels_for_impl)
    verdict = lockstep_verdict(df)
    assert verdict["status"] == "fail"
    assert verdict["first_broken_step"] in (1, 2) and verdict["broken_by"]


def test_the_verdict_names_the_first_step_and_the_parameter_that_broke_the_bound():
    df = pd.DataFrame({"step": [1, 2, 3], "loss_rel_diff": [1e-16, 1e-15, 1e-3], "param_rel_diff": [1e-16, 2e-6, 1e-3],
                       "worst_param": ["0.W", "3.b", "3.b"]})  # fmt: skip
    verdict = lockstep_verdict(df)
    assert (verdict["first_broken_step"], verdict["broken_by"]) == (2, "parameter 3.b")


def test_side_by_side_curves_record_both_runs_and_the_checks_hold_bounds(tmp_path):
    config = TrainConfig(arch="lenet", epochs=1, batch_size=50, lr=0.05)
    curves = run_curves(load_impl(), DATA, config, log_every=2)
    epochs = curves[curves["kind"] == "epoch"]
    assert set(epochs["run"]) == {"impl", "torch"} and epochs["seconds"].gt(0).all()
    assert len(curves[curves["kind"] == "step"]) == 2 * (8 // 2)
    checks = curve_checks(curves, min_accuracy=0.5).set_index("check")
    assert checks.loc["final test accuracy (ours)", "status"] == "pass"
    assert checks.loc["final test accuracy gap |ours - twin|", "value"] <= 0.02
    assert (
        curve_checks(curves, min_accuracy=1.01).set_index("check").loc["final test accuracy (ours)", "status"] == "fail"
    )
    paths = plot_curves(curves, run_lockstep(load_impl(), DATA, steps=3), tmp_path)
    assert [p.name for p in paths] == ["curves_lenet.png", "lockstep.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_lenet_bn_s_accuracy_gap_has_its_own_bound_and_lenet_keeps_the_tight_one():
    from reference.core.tolerances import MAX_ACCURACY_GAP, MAX_ACCURACY_GAP_BN

    def epochs(arch, ours, twin):
        return pd.DataFrame([{"arch": arch, "run": run, "kind": "epoch", "epoch": 1, "test_acc": acc, "test_loss": 0.07}
                             for run, acc in (("impl", ours), ("torch", twin))])  # fmt: skip

    gap = (MAX_ACCURACY_GAP + MAX_ACCURACY_GAP_BN) / 2  # rounding's size for lenet-bn's one epoch, not lenet's three
    bn = curve_checks(epochs("lenet-bn", 0.979, 0.979 - gap), min_accuracy=0.97, arch="lenet-bn",
                      max_gap=MAX_ACCURACY_GAP_BN).set_index("check")  # fmt: skip
    lenet = curve_checks(epochs("lenet", 0.99, 0.99 - gap)).set_index("check")
    assert bn.loc["lenet-bn: final test accuracy gap |ours - twin|", "status"] == "pass"
    assert lenet.loc["final test accuracy gap |ours - twin|", "status"] == "fail"
    far = curve_checks(epochs("lenet-bn", 0.979, 0.979 - 1.5 * MAX_ACCURACY_GAP_BN), min_accuracy=0.97,
                       arch="lenet-bn", max_gap=MAX_ACCURACY_GAP_BN).set_index("check")  # fmt: skip
    assert far.loc["lenet-bn: final test accuracy gap |ours - twin|", "status"] == "fail"
