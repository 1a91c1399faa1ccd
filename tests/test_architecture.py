"""The house rules of reference/ (DESIGN.md, "One layer, one place"), checked on the code itself
(tests/architecture_checks.py; ``python -m tests.architecture_checks`` prints the findings)."""

import pytest

from tests import architecture_checks as checks


@pytest.mark.parametrize("title", list(checks.CHECKS))
def test_the_house_rule_holds(title):
    found = checks.CHECKS[title]()
    assert found == [], f"{title}: {len(found)}\n" + "\n".join(found)


def test_each_check_finds_what_it_is_for(tmp_path, monkeypatch):
    """Each check, run on a small tree that breaks its rule, reports it (a check that cannot fail proves nothing)."""
    package = tmp_path / "reference"
    (package / "a").mkdir(parents=True)
    (package / "b").mkdir()
    (package / "sandbox").mkdir()
    for p in (package, package / "a", package / "b", package / "sandbox"):
        (p / "__init__.py").write_text("")
    (package / "a" / "x.py").write_text("from reference.b import y\n")
    (package / "b" / "y.py").write_text("def f():\n    from reference.a import x\n")
    (package / "a" / "z.py").write_text(
        'def g(layer, impl):\n    if layer == "Conv2D":\n        return impl._session\n' + "    pass\n" * 61
    )
    monkeypatch.setattr(checks, "ROOT", package)
    monkeypatch.setattr(checks, "kind_names", lambda: {"Conv2D"})
    assert any("reference.a <-> reference.b" in c for c in checks.import_cycles())
    assert checks.name_branches() == ["reference/a/z.py:2: 'Conv2D'"]
    assert checks.proxies_outside_sandbox() == ["reference/a/z.py:3: impl._session"]
    assert checks.long_functions() == ["reference/a/z.py:1: g (64 lines)"]


def test_the_per_layer_judges_are_named_alike_in_the_pipeline_and_the_verdicts():
    from reference.core.verdicts import OWN_JUDGES
    from reference.pipeline import LAYER_JUDGES

    assert set(LAYER_JUDGES) == set(OWN_JUDGES)
