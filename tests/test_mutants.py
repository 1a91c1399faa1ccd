"""The mutation run: the mutator makes one readable change per mutant, keys survive edits elsewhere,
the sample spreads over every file, and CI's fixed sample is killed whole by the judges."""

import ast
import textwrap

import pandas as pd
import pytest

from reference.mutants.operators import find_mutants
from reference.mutants.run import SCOPE, every_mutant, load_equivalent, main, sample

SOURCE = textwrap.dedent('''
    """Docstring: never mutated."""

    def pool(x, k=2):
        """Nor this one."""
        if x.shape[1] < k:
            raise ValueError(f"too small: {x.shape} < {k}")
        out = x[:, : x.shape[1] - 1] * 2.0 + 1
        out += -x[:, :1]
        np.add.at(out, 0, 1)
        return out if k >= 1 and not x.flags.writeable else out
''')


def mutated_lines(source):
    return {(m.operator, m.before, m.after) for m in find_mutants("m.py", source)}


def test_every_operator_makes_one_valid_edit_and_leaves_docstrings_messages_and_defaults_alone():
    found = mutated_lines(SOURCE)
    ops = {op for op, _, _ in found}
    assert ops == {"binary operator", "augmented assignment", "comparison", "constant", "slice bound",
                   "unary operator removed", "boolean operator", "statement removed"}  # fmt: skip
    assert ("comparison", "x.shape[1] < k", "x.shape[1] <= k") in found
    assert (
        "binary operator",
        "x[:, :x.shape[1] - 1] * 2.0",
        "x[:, :x.shape[1] - 1] / 2.0",
    ) not in found  # the source span
    assert ("constant", "2.0", "4.0") in found and ("slice bound", "x.shape[1] - 1", "(x.shape[1] - 1) + 1") in found
    assert not any("too small" in before or "Docstring" in before for _, before, _ in found)
    assert not any(after == "3" and before == "2" and op == "constant" for op, before, after in found if "k=" in before)
    for m in find_mutants("m.py", SOURCE):
        mutated = m.apply(SOURCE)
        ast.parse(mutated)
        changed = [a for a, b in zip(SOURCE.splitlines(), mutated.splitlines(), strict=False) if a != b]
        assert len(changed) == 1 and m.diff(SOURCE).count("\n-") == 1  # one line, shown as one diff line


def test_a_mutants_key_survives_an_edit_elsewhere_in_the_file():
    before = {m.key for m in find_mutants("m.py", SOURCE)}
    after = {m.key for m in find_mutants("m.py", "import numpy as np\n\n\n" + SOURCE)}
    assert before == after and len(before) == len(find_mutants("m.py", SOURCE))


def test_the_sample_is_seeded_and_spreads_over_every_file_in_scope():
    everything = every_mutant()
    chosen = sample(everything, 150, seed=1)
    assert len(chosen) == 150 and chosen == sample(everything, 150, seed=1) and chosen != sample(everything, 150, 2)
    assert {m.file for m in chosen} == set(SCOPE)
    assert len({m.key for m in everything}) == len(everything)  # keys unique


def test_every_equivalent_mutant_has_a_reason_and_is_a_mutant_of_the_code(tmp_path):
    listed = load_equivalent()
    keys = {m.key for m in every_mutant()}
    assert all(reason.strip() and cls in ("equivalent", "outside the protocol") for cls, reason in listed.values())
    assert set(listed) <= keys, sorted(set(listed) - keys)  # a stale entry must be removed
    bad = tmp_path / "equivalent.csv"
    bad.write_text("key,class,reason\nconv.py::f::constant::1 -> 2::0,equivalent,\n")
    with pytest.raises(ValueError, match="needs a reason"):
        load_equivalent(bad)
    bad.write_text("key,class,reason\nconv.py::f::constant::1 -> 2::0,harmless,it is fine\n")
    with pytest.raises(ValueError, match="class must be one of"):
        load_equivalent(bad)


def test_ci_s_fixed_sample_of_mutants_is_killed_by_the_judges(tmp_path, capsys):
    """The CI sample (12 mutants, seed 7): the unmutated code passes every stage, and every mutant of
    the sample is killed or listed as equivalent. Fails when a judge stops catching what it caught."""
    out = tmp_path / "mutants"
    code = main(["--sample", "12", "--seed", "7", "--out", str(out)])
    printed = capsys.readouterr().out
    rows = pd.read_csv(out / "mutants.csv")
    assert code == 0, printed
    assert len(rows) == 12 and set(rows["status"]) <= {"killed", "timed out", "equivalent", "outside the protocol"}
    assert (rows.loc[rows["status"] == "killed", "killed_by"] != "").all()
    summary = (out / "summary.md").read_text()
    assert "Kill rate: 100.0%" in summary and (out / "index.html").is_file() and (out / "run.json").is_file()
