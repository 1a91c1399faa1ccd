"""The judges from Python: ``reference.judge(...)`` returns the verdicts as DataFrames, and ``check(...)``
judges the classes a student just wrote (a notebook's cells or a script, cut down to definitions),
shown as HTML in a real Jupyter kernel and as text elsewhere; the console scripts run the commands."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import reference
from reference.notebook import CheckError, _target, definitions_only

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "check_layers.ipynb"

RELU = """
class ReLU:
    params: dict = {}
    grads: dict = {}

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask
"""
# the commonest Dense bug of the public tutorials: dW averaged over the batch, which the loss already did
DENSE_OVER_M = """
class Dense:
    def __init__(self, n_in, n_out, bias=True, *, rng, dtype=np.float64):
        self.params = {"W": rng.standard_normal((n_in, n_out)).astype(dtype)}
        if bias:
            self.params["b"] = np.zeros(n_out, dtype)
        self.grads = {}

    def forward(self, x):
        self.x = x
        out = x @ self.params["W"]
        return out + self.params["b"] if "b" in self.params else out

    def backward(self, dout):
        self.grads["W"] = self.x.T @ dout / self.x.shape[0]
        if "b" in self.params:
            self.grads["b"] = dout.sum(axis=0)
        return dout @ self.params["W"].T
"""


# --- what of a notebook is judged ----------------------------------------------------------------------


def test_definitions_are_kept_and_the_work_a_cell_does_is_not_rerun():
    cells = ["import numpy as np\nfrom reference import check", "SCALE = np.float64(2.0)\nN = 3",
             "def helper(x):\n    return x * SCALE", "@staticmethod\ndef deco():\n    pass",
             "model = train_for_an_hour()\nplt.plot(model.losses)", "result = check(ReLU)\nresult",
             "this cell does not parse (", "get_ipython().run_line_magic('matplotlib', 'inline')"]  # fmt: skip
    kept = definitions_only(cells)
    assert "import numpy as np" in kept and "def helper" in kept and "@staticmethod" in kept
    assert "SCALE = np.float64(2.0)" in kept and "N = 3" in kept  # guarded: a failing one leaves its name out
    for gone in ("train_for_an_hour", "plt.plot", "check(", "from reference", "does not parse", "get_ipython"):
        assert gone not in kept, gone
    namespace: dict = {}
    exec(compile(kept, "<kept>", "exec"), namespace)  # what is kept runs alone
    assert namespace["helper"](1.5) == 3.0


def test_an_assignment_that_fails_in_the_worker_leaves_its_name_out_not_the_module():
    kept = definitions_only(["import numpy as np", "W0 = np.load('/no/such/file.npy')", "class ReLU:\n    pass"])
    namespace: dict = {}
    exec(compile(kept, "<kept>", "exec"), namespace)
    assert "ReLU" in namespace and "W0" not in namespace


@pytest.mark.parametrize(
    "args, kwargs, says",
    [
        ((int,), {}, "not named as a layer of the protocol"),
        ((), {"Convolution": int}, "not a layer of the protocol"),
        ((), {"Conv2D": 3}, "must be a class"),
        ((42,), {}, "cannot judge 42"),
        (({"x": 1},), {}, "no layer class to judge"),
    ],
)
def test_what_cannot_be_checked_is_refused_with_what_to_pass_instead(args, kwargs, says):
    with pytest.raises(CheckError, match=says):
        _target(args, kwargs)


def test_a_class_from_an_importable_module_is_judged_in_that_module():
    import scratch_cnn

    assert _target((scratch_cnn.ReLU,), {}) == (["ReLU"], "scratch_cnn.activations")
    with pytest.raises(CheckError, match="check one module at a time"):
        _target((scratch_cnn.ReLU, scratch_cnn.Dense), {})


# --- the Python API ----------------------------------------------------------------------------------


def test_judge_returns_the_verdicts_the_rows_and_the_exit_code_and_reruns_a_case(tmp_path):
    result = reference.judge("tests/impls/several_faults.py", layers=["Dense", "MaxPool2D"], out=tmp_path / "r")
    assert not result.passed and result.exit_code == 1 and result.word == "FAIL"
    verdicts = result.verdicts.set_index("layer")["verdict"]
    assert verdicts["Dense"] == "FAIL" and verdicts["MaxPool2D"] == "PASS"
    assert set(result.rows["judge"]) >= {"protocol", "autograd", "finite_diff", "lifecycle"}
    assert list(result.failing["layer"]) == ["Dense"] and "dW" in set(
        result.rows.loc[result.rows["status"] == "fail", "tensor"]
    )
    smallest = result.smallest.iloc[0]
    assert smallest["layer"] == "Dense" and "dW" in smallest["description"]
    assert smallest["rerun"] == f"reference.judge('tests/impls/several_faults.py', case={smallest['case']!r})"
    again = reference.judge("tests/impls/several_faults.py", case=smallest["case"], out=tmp_path / "again")
    assert again.exit_code == 1 and set(again.rows.loc[again.rows["status"] == "fail", "layer"]) == {"Dense"}
    assert (tmp_path / "r" / "summary.md").is_file() and "FAIL" in str(result)


def test_judge_on_a_correct_layer_passes_and_says_so_in_html():
    result = reference.judge("scratch_cnn", layers="ReLU")
    assert result.passed and result.exit_code == 0 and list(result.verdicts["verdict"]) == ["PASS"]
    page = result._repr_html_()
    assert "PASS" in page and "ReLU" in page and "why it fails" not in page and result.out.is_dir()


# --- check() where students work ------------------------------------------------------------------------


def test_check_in_a_script_judges_the_classes_it_defines_and_does_not_rerun_the_script(tmp_path):
    script = tmp_path / "homework.py"
    script.write_text("import numpy as np\nfrom reference import check\n" + RELU + DENSE_OVER_M + textwrap.dedent("""
        def train():  # the script's own work: it must never run in the judge's worker
            raise SystemExit("the script's top level ran again in the worker")

        if __name__ == "__main__":
            result = check(ReLU, Dense)
            print(result)
            print("EXIT", result.exit_code)
        else:
            train()
        """))  # fmt: skip
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "EXIT 1" in out and "Dense: FAIL" in out and "ReLU: PASS" in out, out
    assert "divided by the batch size twice" in out  # the diagnosis, not just the verdict
    assert "rerun: check(ReLU, Dense, case='" in out


def test_the_example_notebook_runs_in_a_real_kernel_and_shows_the_verdicts_as_html(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(EXAMPLE, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    pages = [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if "text/html" in o.get("data", {})]  # fmt: skip
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors, errors
    assert len(pages) == 2, pages
    buggy, fixed = pages
    assert ">FAIL<" in buggy and "Dense: why it fails" in buggy and "divided by the batch size twice" in buggy
    assert "data:image/png;base64," in buggy  # the heat map inline: the notebook needs no file beside it
    assert "check(ReLU, Dense, case=" in buggy
    assert "why it fails" not in fixed and fixed.count(">PASS<") == 3  # the run's word and both layers


def test_the_console_scripts_run_the_commands():
    bindir = Path(sys.executable).parent
    for script in ("scratch-cnn-judge", "scratch-cnn-grade", "scratch-cnn-reference"):
        assert (bindir / script).is_file(), f"{script} is not installed beside {sys.executable}"
    done = subprocess.run([str(bindir / "scratch-cnn-judge"), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--impl" in done.stdout and "--quick" in done.stdout
