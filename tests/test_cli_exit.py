"""`python -m reference judge` ends its process promptly (reference.cli.exit_promptly: no teardown of
torch's and pandas' modules) but only once everything is out: its lines printed, its reports and
JUnit file whole, its exit code the verdict's. A faulty layer and a right one, each in its own process."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pandas as pd
import pytest


def judged(tmp_path, impl, layers):
    out, junit = tmp_path / "out", tmp_path / "junit.xml"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # NOTE: its output buffered, as a pipe's is
    done = subprocess.run([sys.executable, "-m", "reference", "judge", "--impl", impl, "--layers", layers, "--quick",
                           "--no-curves", "--out", str(out), "--junit", str(junit)], capture_output=True, text=True,
                          timeout=600, env=env)  # fmt: skip
    return done, out, junit


@pytest.mark.parametrize(("impl", "code", "verdict"), [("tests/impls/several_faults.py", 1, "FAIL"),
                                                       ("scratch_cnn", 0, "PASS")])  # fmt: skip
def test_the_judge_process_exits_with_its_verdict_after_every_report_is_written(tmp_path, impl, code, verdict):
    done, out, junit = judged(tmp_path, impl, "ReLU")
    assert done.returncode == code, done.stderr
    assert done.stdout.rstrip().splitlines()[-1].startswith(f"{verdict}: reports in ")  # the last line printed
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert verdicts.loc[verdicts["layer"] == "ReLU", "verdict"].item() == verdict
    assert (out / "summary.md").read_text().strip() and (out / "run.json").stat().st_size > 0
    failures = ET.parse(junit).getroot().findall(".//failure")  # whole XML, one failure per failing layer
    assert len(failures) == (1 if verdict == "FAIL" else 0)
