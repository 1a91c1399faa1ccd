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


def test_every_file_s_layers_are_ones_the_judges_take_and_shared_files_get_every_judge():
    """A stage the judge refuses (exit 2 on a bad --layers) would count every mutant of a file as
    killed: each file's scope must select cases, and a file training shares is judged whole."""
    from reference.pipeline import select_cases

    for file, layers in SCOPE.items():
        if layers is not None:
            cases, _ = select_cases(True, ",".join(layers), None)
            assert {c.layer for c in cases} == set(layers), file
    assert SCOPE["optim.py"] is None and SCOPE["model.py"] is None  # SGD and the model: every judge, lockstep


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


# CI's fixed sample: one mutant per file the judges kill at the first stage, and one killed by each
# later stage (a protocol rule, the lifecycle judge, the lockstep) and by the rules the mutation run
# added (labels refused, Sequential's astype), and one equivalent mutant (it must stay listed)
CI_SAMPLE = ["3beb40481f", "35a289720c", "041b6f39c9", "986654a540", "c64b040050", "aac03b7740",
             "b7400f91e3", "9506013dab", "6234a44d23", "6ddc2c29ed", "c8a8520823", "321c15b52c"]  # fmt: skip


def test_ci_s_fixed_sample_of_mutants_is_killed_by_the_judges(tmp_path, capsys):
    """The unmutated code passes every stage, and every mutant of the sample is killed or listed as
    equivalent. Fails when a judge stops catching what it caught (or a mutant's line changed: then
    pick its successor from reports/latest/mutants/mutants.csv)."""
    out = tmp_path / "mutants"
    code = main(["--only", ",".join(CI_SAMPLE), "--out", str(out)])
    printed = capsys.readouterr().out
    rows = pd.read_csv(out / "mutants.csv").set_index("id")
    assert code == 0, printed
    assert sorted(rows.index) == sorted(CI_SAMPLE)
    assert rows.loc["321c15b52c", "status"] == "equivalent" and (rows.drop("321c15b52c")["status"] == "killed").all()
    assert (
        rows.loc["6ddc2c29ed", "killed_by"] == "lockstep" and rows.loc["6234a44d23", "killed_by"] == "judge (lifecycle)"
    )
    assert rows.loc["c8a8520823", "killed_by"] == "judge (protocol)"
    summary = (out / "summary.md").read_text()
    assert "Kill rate: 100.0% (11 of 11)" in summary and (out / "index.html").is_file() and (out / "run.json").is_file()
