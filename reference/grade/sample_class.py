"""A class of submissions to measure ``grade`` on: correct ones in several styles (scratch_cnn
re-exported, a notebook, a folder with a helper module, loop-based NCHW functions through the
adapters), every fault of the catalogue, seeded first-order mutants of scratch_cnn's layers, hostile
ones, slow ones. ``DIR-expected.csv``, beside the folder, says what each is.

    python -m reference.grade.sample_class DIR [--size 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pandas as pd

from reference.impl.faults import FAULTS
from reference.mutants.run import MUTANT_NAME, PACKAGE, every_mutant, sample

TESTS_IMPLS = Path(__file__).resolve().parents[2] / "tests" / "impls"
REEXPORT = "from scratch_cnn import *  # noqa: F403\n"
HOSTILE = {
    "exits_at_import": "import os\nfrom scratch_cnn import *  # noqa\nos._exit(0)\n",
    "exits_in_forward": "import os\nfrom scratch_cnn import *  # noqa\nfrom scratch_cnn import ReLU as _R\n"
    "class ReLU(_R):\n    def forward(self, x):\n        os._exit(0)\n",
    "hangs_in_forward": "from scratch_cnn import *  # noqa\nfrom scratch_cnn import Conv2D as _C\n"
    "class Conv2D(_C):\n    def forward(self, x):\n        while True:\n            pass\n",
    "eats_memory": "import numpy as np\nfrom scratch_cnn import *  # noqa\nfrom scratch_cnn import Dense as _D\n"
    "class Dense(_D):\n    def forward(self, x):\n        self.hog = np.ones((1 << 40,), dtype=np.uint8)\n        return super().forward(x)\n",
    "kills_its_parent": "import os, signal\nfrom scratch_cnn import *  # noqa\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "patches_the_comparison": "import sys, numpy as np\nfrom scratch_cnn import *  # noqa\nfrom scratch_cnn import Dense as _D\n"
    "np.allclose = lambda *a, **k: True  # in its own process only\n"
    "for name in list(sys.modules):\n    if name.startswith('reference'):\n        sys.modules[name].compare = lambda *a, **k: {'status': 'pass'}\n"
    "class Dense(_D):\n    def backward(self, dout):\n        return 2 * super().backward(dout)\n",
}
SLOW = "import time\nfrom scratch_cnn import *  # noqa\nfrom scratch_cnn import ReLU as _R\n" \
       "class ReLU(_R):\n    def forward(self, x):\n        time.sleep({delay})\n        return super().forward(x)\n"  # fmt: skip


def notebook(*cells: str) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": []} for c in cells],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})  # fmt: skip


MUTATED_FILES = ("conv.py", "pooling.py", "dense.py", "activations.py", "losses.py")


def write_class(root: Path, size: int = 200, seed: int = 0, files: tuple[str, ...] = MUTATED_FILES) -> pd.DataFrame:
    """Write ``size`` submissions into ``root`` (which must be empty or absent), the mutants drawn from
    scratch_cnn's ``files``; their table."""
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty: a sample class is written into a new folder")
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []

    def add(name: str, kind: str, expect: str, files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        rows.append({"id": name, "kind": kind, "expect": expect})

    for i in range(6):
        add(f"correct_reexport_{i}", "correct", "PASS", {f"correct_reexport_{i}.py": f"# student {i}\n{REEXPORT}"})
        add(f"correct_notebook_{i}", "correct", "PASS", {f"correct_notebook_{i}.ipynb": notebook(
            "%matplotlib inline\nimport numpy as np\n", f"!pip install numpy  # student {i}\n", REEXPORT)})  # fmt: skip
    for i in range(4):
        add(f"correct_folder_{i}", "correct", "PASS", {f"correct_folder_{i}/helpers.py": REEXPORT,
                                                        f"correct_folder_{i}/layers.py": "from helpers import *  # noqa\n"})  # fmt: skip
    protocol = (TESTS_IMPLS / "cs231n_protocol.py").read_text()
    protocol = protocol.replace("from tests.impls import cs231n_layers as L", "import cs231n_layers as L")
    for i in range(3):  # loop-based NCHW functions through the adapters: the slow, correct style
        add(f"correct_cs231n_{i}", "correct, loops", "PASS", {f"correct_cs231n_{i}/layers.py": protocol,
            f"correct_cs231n_{i}/cs231n_layers.py": (TESTS_IMPLS / "cs231n_layers.py").read_text()})  # fmt: skip
    for fault in FAULTS:
        index = FAULTS.index(fault)
        for i in range(2):
            add(f"fault_{fault.name}_{i}", "fault of the catalogue", f"FAIL {fault.layer}", {
                f"fault_{fault.name}_{i}.py": f"from scratch_cnn import *  # noqa\nfrom reference.impl.faults import FAULTS\n"
                f"globals().update(vars(FAULTS[{index}].impl()))  # {fault.description}\n"})  # fmt: skip
    for name, text in HOSTILE.items():
        add(f"hostile_{name}", "hostile", "ERROR or FAIL", {f"hostile_{name}.py": text})
    for i, delay in enumerate((0.002, 0.005, 0.01)):
        add(f"slow_relu_{i}", "slow", "PASS", {f"slow_relu_{i}.py": SLOW.format(delay=delay)})
    left = size - len(rows)
    if left < 0:
        raise ValueError(f"--size {size}: the fixed part of the class alone is {len(rows)} submissions")
    layer_files = [m for m in every_mutant() if m.file in files]
    if len(layer_files) < left:
        raise ValueError(f"--size {size}: {left} mutants wanted, {', '.join(files)} have {len(layer_files)}")
    for m in sample(layer_files, left, seed):
        folder = root / f"mutant_{m.id}"
        shutil.copytree(PACKAGE, folder / MUTANT_NAME, ignore=shutil.ignore_patterns("__pycache__"))
        target = folder / MUTANT_NAME / m.file
        target.write_text(m.apply(target.read_text()))
        add(f"mutant_{m.id}", "mutant of scratch_cnn", f"{m.file}:{m.line} {m.before} -> {m.after}",
            {f"mutant_{m.id}/layers.py": f"from {MUTANT_NAME} import *  # noqa\n"})  # fmt: skip
    table = pd.DataFrame(rows)
    (root.parent / f"{root.name}-expected.csv").write_text(table.to_csv(index=False))
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reference.grade.sample_class", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("folder", type=Path)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--files", default=",".join(MUTATED_FILES),
                    help="scratch_cnn files the mutants are drawn from (those of the layers you will grade)")  # fmt: skip
    args = ap.parse_args(argv)
    try:
        table = write_class(args.folder, args.size, args.seed, tuple(f.strip() for f in args.files.split(",")))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        textwrap.dedent(f"""\
        wrote {len(table)} submissions into {args.folder}/ ({", ".join(f"{n} {k}" for k, n in table["kind"].value_counts().items())})
        what each is: {args.folder.parent / (args.folder.name + "-expected.csv")}""")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
