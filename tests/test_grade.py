"""Grading a class: a folder of submissions (correct, wrong, hostile, a notebook, a folder, one
through the course's adapter) graded on Dask, on an embedded LocalCluster and on a scheduler and a
worker started as separate processes (over TLS, with certificates the test makes). Judged on Dense
and ReLU only, so a class takes seconds. Hostile submissions aimed at the grader itself:
tests/test_grade_hostile.py."""

import datetime
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from reference import cli
from reference.cli import main
from reference.grade.gradebook import parse_points
from reference.grade.submissions import discover, notebook_code
from tests.impls.hostile import DOUBLED_DW

LAYERS = ["--layers", "Dense,ReLU"]

COURSE_ADAPTER = """
# the course's wrapper: students write dense_forward / dense_backward; the course maps them once for all
import numpy as np
import submission
from scratch_cnn import ReLU  # noqa: F401  (the course gives them ReLU)

class Dense:
    def __init__(self, n_in, n_out, bias=True, *, rng, dtype):
        self.params = {"W": (rng.standard_normal((n_in, n_out)) * 0.1).astype(dtype)}
        if bias:
            self.params["b"] = np.zeros(n_out, dtype=dtype)
        self.grads = {}

    def forward(self, x):
        self.x = x
        return submission.dense_forward(x, self.params["W"], self.params.get("b"))

    def backward(self, dout):
        dx, dW, db = submission.dense_backward(dout, self.x, self.params["W"])
        self.grads = {"W": dW, **({"b": db} if "b" in self.params else {})}
        return dx
"""
STUDENT_FUNCTIONS = """
def dense_forward(x, W, b):
    return x @ W + (0 if b is None else b)

def dense_backward(dout, x, W):
    return dout @ W.T, x.T @ dout, dout.sum(axis=0)
"""


@pytest.fixture
def grade_cli():
    return cli.main


def make_certificates(folder):
    """A CA and one certificate it signed for 127.0.0.1 (the scheduler's, the worker's and the
    grader's), as `dask scheduler --tls-ca-file --tls-cert --tls-key` takes them: {option: path}."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    span = {"not_valid_before": now - datetime.timedelta(hours=1), "not_valid_after": now + datetime.timedelta(days=1)}

    def signed(subject, key, issuer, issuer_key, ca, extra=()):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(span["not_valid_before"])
                   .not_valid_after(span["not_valid_after"])
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))  # fmt: skip
        for ext in extra:
            builder = builder.add_extension(ext, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "grade test CA")])
    ca = signed(ca_name, ca_key, ca_name, ca_key, True)
    host = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = signed(host, key, ca_name, ca_key, False, [san])
    paths = {"--tls-ca-file": folder / "ca.pem", "--tls-cert": folder / "cert.pem", "--tls-key": folder / "key.pem"}
    paths["--tls-ca-file"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["--tls-cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["--tls-key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))  # fmt: skip
    return {k: str(v) for k, v in paths.items()}


def notebook(*cells):
    return json.dumps({"cells": [{"cell_type": "code", "source": c} for c in cells], "metadata": {},
                       "nbformat": 4, "nbformat_minor": 5})  # fmt: skip


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    (root / "alice.py").write_text("from scratch_cnn import *  # noqa\n")
    (root / "bob.py").write_text(textwrap.dedent(DOUBLED_DW))
    (root / "carol").mkdir()
    (root / "carol" / "helper.py").write_text("from scratch_cnn import Dense, ReLU  # noqa\n")
    (root / "carol" / "layers.py").write_text("from helper import Dense, ReLU  # noqa\n")
    (root / "dave.ipynb").write_text(notebook("%matplotlib inline\nimport numpy as np\n", "!pip install x\n",
                                              "from scratch_cnn import Dense, ReLU\n"))  # fmt: skip
    (root / "eve.py").write_text(
        "import os\nfrom scratch_cnn import *  # noqa\nos._exit(0)\n"
    )  # ends the worker at import
    (root / "frank.py").write_text("import cupy\n")
    return root


def grade(klass, out, *extra):
    return main(["grade", str(klass), "--out", str(out), *LAYERS, "--workers", "2", *extra])


def book_of(out):
    return pd.read_csv(out / "gradebook.csv").set_index("id")


def test_submissions_are_found_in_every_form_and_notebook_magics_are_listed(klass):
    subs = {s.id: s for s in discover(klass)}
    assert sorted(subs) == ["alice", "bob", "carol", "dave", "eve", "frank"]
    assert subs["carol"].entry == "layers.py" and set(subs["carol"].files) == {"helper.py", "layers.py"}
    assert subs["dave"].entry == "dave.py" and len(subs["dave"].dropped) == 2
    code, dropped = notebook_code(notebook("%time x = 1\ny = 2\n").encode())
    assert "y = 2" in code and "%time" not in code and dropped == ["cell 1: %time x = 1"]


def test_points_are_per_layer_and_a_bad_spec_is_named():
    assert parse_points("Dense=3", ("Dense", "ReLU")) == {"Dense": 3.0, "ReLU": 1.0}
    with pytest.raises(ValueError, match="not LAYER=POINTS"):
        parse_points("Conv=3", ("Dense",))


def test_a_class_graded_on_a_local_cluster_gets_a_gradebook_a_summary_and_reports(klass, tmp_path, capsys):
    out = tmp_path / "grades"
    junit = tmp_path / "class.xml"
    assert grade(klass, out, "--format", "gradescope", "--junit", str(junit), "--points", "Dense=3") == 0
    book = book_of(out)
    assert book.loc["alice", ["Dense", "ReLU"]].tolist() == ["PASS", "PASS"] and book.loc["alice", "score"] == 4
    assert book.loc["bob", "Dense"] == "FAIL" and book.loc["bob", "score"] == 1
    assert "2 x ref" in book.loc["bob", "first_diagnosis"]
    assert book.loc["carol", "score"] == 4 and book.loc["dave", "score"] == 4
    assert book.loc["dave", "dropped_notebook_lines"] == 2 and (out / "dave" / "dropped_notebook_lines.txt").is_file()
    assert book.loc["eve", "Dense"] == "ERROR" and "status 0" in book.loc["eve", "first_diagnosis"]
    assert book.loc["frank", "Dense"] == "ERROR" and "cupy" in book.loc["frank", "first_diagnosis"]
    assert book["sha256"].notna().all() and book["judge_version"].nunique() == 1
    assert (book.loc[["alice", "bob", "carol", "dave"], "stamp"] == "verified").all()
    assert book.loc["alice", "sandbox"] in ("bwrap", "landlock") and book.loc["alice", "name"] == "alice.py"
    summary = (out / "summary.md").read_text()
    assert "| Dense   |      3 |" in summary and "1 of 6" in summary and "bob" in summary
    assert f"sandbox: {book.loc['alice', 'sandbox']} " in summary
    assert '<td class="FAIL">FAIL</td>' in (out / "index.html").read_text()
    results = json.loads((out / "bob" / "results.json").read_text())
    dense = next(t for t in results["tests"] if t["name"] == "Dense")
    assert results["score"] == 1 and dense["score"] == 0 and dense["max_score"] == 3 and "2 x ref" in dense["output"]
    suites = ET.parse(junit).getroot()
    assert len(suites) == 6 and suites.find("testsuite[@name='bob']").get("failures") == "1"
    assert (out / "alice" / "summary.md").is_file() and json.loads((out / "alice" / "run.json").read_text())["run_id"]
    # the gradebook's verdicts are the submission's own `reference judge` verdicts
    solo = tmp_path / "bob-alone"
    main(
        [
            "judge",
            "--impl",
            str(klass / "bob.py"),
            *LAYERS,
            "--quick",
            "--no-curves",
            "--parallel",
            "1",
            "--out",
            str(solo),
        ]
    )
    alone = pd.read_csv(solo / "verdicts.csv").set_index("layer")["verdict"]
    assert alone["Dense"] == book.loc["bob", "Dense"] and alone["ReLU"] == book.loc["bob", "ReLU"]
    capsys.readouterr()
    # the same command again judges nothing; --only rejudges one
    assert grade(klass, out) == 0
    assert "0 to judge, 6 unchanged" in capsys.readouterr().out
    assert grade(klass, out, "--only", "bob") == 0
    assert "1 to judge, 5 unchanged" in capsys.readouterr().out
    assert book_of(out).loc["bob", "Dense"] == "FAIL"
    # a changed submission is judged again, and only it
    (klass / "alice.py").write_text(textwrap.dedent(DOUBLED_DW))
    try:
        assert grade(klass, out) == 0
        assert "1 to judge, 5 unchanged" in capsys.readouterr().out
        assert book_of(out).loc["alice", "Dense"] == "FAIL"
    finally:
        (klass / "alice.py").write_text("from scratch_cnn import *  # noqa\n")


def test_the_course_adapter_wraps_students_functions(tmp_path):
    klass = tmp_path / "course"
    klass.mkdir()
    (klass / "ann.py").write_text(STUDENT_FUNCTIONS)
    (klass / "ben.py").write_text(STUDENT_FUNCTIONS.replace("x.T @ dout", "x.T @ dout / len(x)"))  # dW with 1/m
    adapter = tmp_path / "course.py"
    adapter.write_text(textwrap.dedent(COURSE_ADAPTER))
    out = tmp_path / "grades"
    assert main(["grade", str(klass), "--out", str(out), *LAYERS, "--adapter", str(adapter), "--workers", "1"]) == 0
    book = book_of(out)
    assert book.loc["ann", "Dense"] == "PASS" and book.loc["ben", "Dense"] == "FAIL"


def test_bad_input_is_refused_with_its_reason(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["grade", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no submission" in capsys.readouterr().err
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.py").write_text("x = 1\n")
    assert main(["grade", str(tmp_path / "one"), "--out", str(tmp_path / "o"), "--only", "zed"]) == 2
    assert "no submission zed" in capsys.readouterr().err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_separately_started_scheduler_and_worker_grade_the_same_class(klass, tmp_path, grade_cli, capsys):
    port = free_port()
    bindir = os.path.dirname(sys.executable)
    tls = make_certificates(tmp_path)
    tls_args = [x for pair in tls.items() for x in pair]
    address = f"tls://127.0.0.1:{port}"
    # a plain tcp:// scheduler is refused before anything runs: whoever reaches it runs code in the grader
    assert grade_cli(["grade", str(klass), "--out", str(tmp_path / "g"), "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    assert "--insecure-scheduler" in capsys.readouterr().err
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    scheduler = subprocess.Popen([os.path.join(bindir, "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--protocol", "tls", "--no-dashboard", *tls_args],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    worker = subprocess.Popen([os.path.join(bindir, "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                               *tls_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    try:
        time.sleep(3)
        out = tmp_path / "grades"
        assert grade_cli(["grade", str(klass), "--out", str(out), *LAYERS, "--scheduler", address, *tls_args]) == 0
        book = book_of(out)
        assert len(book) == 6 and book.loc["alice", "score"] == 2 and book.loc["bob", "Dense"] == "FAIL"
        assert book.loc["alice", "stamp"] == "verified" and book.loc["alice", "sandbox"] in ("bwrap", "landlock")
    finally:
        for p in (worker, scheduler):
            p.send_signal(signal.SIGINT)
        for p in (worker, scheduler):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_real_ctrl_c_keeps_every_finished_result_and_the_rerun_judges_only_the_rest(tmp_path):
    klass = tmp_path / "class"
    klass.mkdir()
    for i in range(8):  # an interrupt after two leaves some unjudged, however loaded the machine
        (klass / f"s{i}.py").write_text(f"from scratch_cnn import *  # noqa  student {i}\n")
    out = tmp_path / "grades"
    cmd = [sys.executable, "-m", "reference", "grade", str(klass), "--out", str(out), *LAYERS, "--workers", "1"]
    # NOTE: Ctrl-C as a terminal delivers it: SIGINT at its default, whatever this process inherited (a CI
    # job started in the background ignores SIGINT, and Python then keeps ignoring it: no KeyboardInterrupt)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 400  # generous: the machine may be loaded; the judging is what is timed
    while len(list(out.glob("*/grade.json"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "every finished submission is kept" in err, err
    first = {p.parent.name: json.loads(p.read_text())["run_id"] for p in out.glob("*/grade.json")}
    assert 2 <= len(first) < 8
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert f"{8 - len(first)} to judge, {len(first)} unchanged" in again.stdout
    after = {p.parent.name: json.loads(p.read_text())["run_id"] for p in out.glob("*/grade.json")}
    assert len(after) == 8 and all(after[k] == v for k, v in first.items())  # none judged twice
    assert len(book_of(out)) == 8 and (book_of(out)["Dense"] == "PASS").all()
